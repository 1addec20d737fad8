"""Cells to plain Python: every magic handled by kind.

A cell is read exactly as IPython reads it: line endings are made ``\\n``,
trailing whitespace outside strings goes, then IPython's own input
transformers turn ``%line``, ``%%cell``, ``!shell`` and ``x?`` into
``get_ipython()`` calls (a ``%%magic`` counts only on the cell's first
line, as in IPython).  Each call is then handled by what it is:

- nbops magics become calls of the Python API (``%snapshot df`` ->
  ``nbops_store.snapshot(df, "df")``, ``%%features`` -> ``register_features``,
  ``%%track`` -> ``with nbops.track(...)``), parsed with the magics' own
  argument parsers so the meaning is exactly the notebook's;
- ``%pip install`` / ``!pip install`` become requirements (``-r FILE``: a
  requirements file); ``%%writefile F`` becomes a file beside the modules;
- ``%%time``, ``%%capture``, ``%time``, ``%prun`` unwrap to their body;
  ``%timeit`` drops (nothing it assigns outlives it in IPython);
- ``%env``, ``%cd``, ``%pwd`` become ``os`` calls; shell lines and
  ``%%bash`` become ``subprocess.run(..., check=True)``;
- display-only magics (``%matplotlib``, ``%config``, ``%load_ext``, help,
  panels) and bare display expressions (``df.head()``, ``display(x)``, ``df``)
  drop;
- anything else is an :class:`ExportError` naming the cell and the magic,
  with what to do instead where there is a known way.

User text is never pasted into code: every string from a magic line becomes
a Python literal through ``repr``, text that IPython would fill from Python
variables (``{x}``, ``$x``) is refused, and text repeated in a comment is
shown as a literal when it holds anything but printable characters.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import shlex
import tokenize
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from nbops.errors import ExportError
from nbops.exporting.cells import Cell

#: Cell magics whose body runs in the notebook's namespace, unchanged.
UNWRAP_CELL = {"time", "capture", "prun"}
#: Cell magics that only show something.
DISPLAY_CELL = {"html", "markdown", "javascript", "js", "latex", "svg"}
#: Line magics dropped, with the reason shown in the module and the manifest.
DROP_LINE = {
    **dict.fromkeys(["matplotlib", "config", "precision", "pprint", "xmode", "colors", "who", "whos", "who_ls"],
                    "display only"),
    **dict.fromkeys(["load_ext", "reload_ext", "unload_ext", "autoreload", "aimport"], "IPython extension"),
    **dict.fromkeys(
        ["nbops", "features", "drift", "snapshots", "runs", "lineage", "monitor", "export"], "nbops panel"
    ),
    **dict.fromkeys(["pinfo", "pinfo2", "psearch", "pdef", "pdoc", "psource", "pfile"], "help"),
    **dict.fromkeys(["history", "hist", "pdb", "tb"], "session only"),
}  # fmt: skip
#: Line and cell magics refused, with what to do instead.
REFUSED = {
    "reset": "it empties the notebook's namespace, which a pipeline does not have; delete names with `del`",
    "reset_selective": "it deletes variables by pattern; delete names with `del`",
    "xdel": "it deletes a variable and IPython's references to it; use `del`",
    "run": "it runs another file in the notebook's namespace; import that code instead "
    "(write it with %%writefile or install it as a package)",
    "store": "it keeps variables in IPython's own database; save data with %snapshot "
    "(nbops_store.snapshot) and read it with nbops_store.load",
    "sql": "it needs the connection of the notebook session; run the query in Python, "
    "e.g. pandas.read_sql(query, sqlalchemy.create_engine(url))",
    "conda": "conda packages are not pip requirements; use %pip install or a requirements file (-r)",
    "load": "it pastes a file into the cell when run; paste the code or import it",
    "macro": "IPython macros replay the session's input history",
    "recall": "it edits the session's input history",
    "rerun": "it replays the session's input history",
}  # fmt: skip
for _name in ("sqlcmd", "sqlplot"):
    REFUSED[_name] = REFUSED["sql"]
for _name in ("mamba", "micromamba"):
    REFUSED[_name] = REFUSED["conda"]
#: Programs of ``%%script`` whose cell can run as a shell script.
SHELLS = {"bash", "sh"}
# Methods whose call as a bare statement only shows something (not `info`: log.info() logs).
DISPLAY_METHODS = {"head", "tail", "describe", "style", "to_markdown", "value_counts"}
_MAX_DEPTH = 8  # %time inside %%time inside %%capture ...
_EXPANDED = re.compile(r"[{}$`]")


@dataclass
class Translated:
    """A cell as plain Python, and what its magics asked for: requirements, ``%%writefile`` files, magics dropped."""

    code: str
    requirements: list[str] = field(default_factory=list)
    #: ``pip install -r FILE`` files, as written (relative to the notebook's folder).
    requirement_files: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def translate(cell: Cell, experiment: str) -> Translated:
    """The cell as plain Python, plus what its magics asked for (an ExportError naming the cell if it cannot be)."""
    out = Translated(code="")
    try:
        translator = _Translator(cell, experiment, out)
        code = _drop_display(cell, translator.source(cell.source, 0), out)
        if translator.imports and code.strip():
            code = "\n".join(f"import {name}" for name in sorted(translator.imports)) + "\n" + code
        if code.strip() and not ast.parse(code).body:  # only comments: still a block once inside main()
            code += "\npass"
        out.code = code
    except ExportError:
        raise
    except Exception as exc:  # never anything but an ExportError naming the cell
        raise ExportError(f"{cell.label}: cannot export this cell: {type(exc).__name__}: {exc}") from None
    return out


class _Translator:
    """Translates one cell (and the bodies of its cell magics), collecting what it needs into ``out``."""

    def __init__(self, cell: Cell, experiment: str, out: Translated) -> None:
        self.cell, self.experiment, self.out = cell, experiment, out
        self.label = cell.label
        self.imports: set[str] = set()  # standard modules the translated magics use

    # -- a cell, as IPython reads it --------------------------------------------------------
    def source(self, source: str, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise ExportError(f"{self.label}: magics nested more than {_MAX_DEPTH} deep")
        text = source.replace("\r\n", "\n")
        if "\r" in text:
            line = text[: text.index("\r")].count("\n") + 1
            raise ExportError(
                f"{self.label}: line {line} holds a carriage return (\\r) that ends no line; Python and IPython "
                "read it as a line break in the middle of the line: remove it"
            )
        first = next((line for line in text.split("\n") if line.strip()), "")
        if not first.startswith("%%"):  # a cell magic's body is its own business (a file, a script)
            text = _strip_line_ends(text)
        code = _ipython(self.cell, text)
        tree = _parse_python(self.cell, code)
        magics = _magic_statements(self.cell, tree)
        if len(tree.body) == 1 and magics and magics[0][0] is tree.body[0] and magics[0][2] == "run_cell_magic":
            stmt, target, method, args = magics[0]
            return self.magic(target, method, args, depth)  # the whole cell is one cell magic
        edits = [(stmt, self.magic(target, method, args, depth) or "pass") for stmt, target, method, args in magics]
        return _splice(self.cell, code, edits).strip("\n")

    def magic(self, target: str | None, method: str, args: list[str], depth: int) -> str:
        if method == "run_line_magic" and len(args) == 2:
            return self.line_magic(target, args[0], args[1], depth)
        if method == "run_cell_magic" and len(args) == 3 and target is None:
            return self.cell_magic(args[0], args[1], args[2], depth)
        if method in ("system", "getoutput") and len(args) == 1:
            return self.shell(target, args[0], capture=method == "getoutput", shown="!" + args[0])
        if method == "show_usage" and not args and target is None:
            self.out.dropped.append("? (help)")
            return "pass  # ? (help)"
        raise ExportError(f"{self.label}: get_ipython().{method}(...) cannot be exported; a pipeline has no IPython")

    # -- cell magics ----------------------------------------------------------------------
    def cell_magic(self, name: str, line: str, body: str, depth: int) -> str:
        line = line.strip()
        if name == "time":
            if line:
                raise ExportError(f"{self.label}: %%time takes no statement on its line (IPython refuses it too)")
            self.out.dropped.append("%%time (unwrapped)")
            return self.source(body, depth + 1)
        if name == "capture":
            from IPython.core.magics.execution import ExecutionMagics

            args = _parse(self.cell, ExecutionMagics.capture, line, "%%capture")
            note = f"%%capture {args.output} (unwrapped; {args.output!r} is not bound)" if args.output else ""
            self.out.dropped.append(note or "%%capture (unwrapped)")
            return self.source(body, depth + 1)
        if name == "prun":
            statement = self._prun_statement(line)
            self.out.dropped.append("%%prun (unwrapped)")
            return self.source(f"{statement}\n{body}" if statement.strip() else body, depth + 1)
        if name == "timeit":
            self.out.dropped.append("%%timeit (timing only)")
            return "pass  # %%timeit (timing only: nothing it assigns outlives it)"
        if name in DISPLAY_CELL:
            self.out.dropped.append(f"%%{name} (display only)")
            return ""
        if name in ("writefile", "file"):
            return self._writefile(name, line, body)
        if name in ("script", "bash", "sh") or name in ("perl", "ruby", "python", "python2", "python3", "pypy"):
            return self._script(name, line, body)
        if name == "features":
            return self._features(line, body, depth)
        if name == "track":
            return self._track(line, body, depth)
        if name in REFUSED:
            raise ExportError(f"{self.label}: %%{name} cannot be exported: {REFUSED[name]}")
        raise ExportError(f"{self.label}: the cell magic %%{name} cannot be exported; nbops does not know what it does")

    def _writefile(self, name: str, line: str, body: str) -> str:
        self._literal_text(f"%%{name} {line}", line, "name the file as it is")
        args = _shell_words(self.cell, line)
        names = [a for a in args if not a.startswith("-")]
        if len(names) != 1 or "-a" in args or "--append" in args:
            raise ExportError(f"{self.label}: %%{name} needs exactly one file name (and no --append) to export")
        self.out.files[_writefile_path(self.cell, names[0])] = _data_body(body)
        return ""

    def _script(self, name: str, line: str, body: str) -> str:
        from IPython.core.magics.script import ScriptMagics
        from IPython.utils.process import arg_split  # type: ignore[attr-defined]  # public, not in its __all__

        shown = f"%%{name} {line}".rstrip()
        self._literal_text(shown, line, "write the values into the script")
        try:
            args, command = ScriptMagics.shebang.parser.parse_known_args(
                arg_split(line if name == "script" else f"{name} {line}")
            )
        except (Exception, SystemExit) as exc:
            raise ExportError(f"{self.label}: cannot read the {shown} line: {exc}") from None
        program = command[0] if command else ""
        if program not in SHELLS:
            raise ExportError(
                f"{self.label}: {shown} cannot be exported: it runs the cell with {program or 'no program'!r} in "
                "another process; only bash and sh scripts are; write the code in Python or as a file "
                "(%%writefile) that the pipeline runs"
            )
        for option in ("out", "err", "proc"):
            if getattr(args, option):
                raise ExportError(
                    f"{self.label}: {shown} cannot be exported: --{option} binds a variable to the script's output; "
                    "use subprocess.run(..., capture_output=True) in Python"
                )
        if args.bg:
            raise ExportError(f"{self.label}: {shown} cannot be exported: --bg runs the script in the background")
        self.imports.add("subprocess")
        check = "True" if args.raise_error else "False"
        return f"subprocess.run({command!r}, input={_text_literal(_data_body(body))}, text=True, check={check})"

    def _features(self, line: str, body: str, depth: int) -> str:
        args = _parse(self.cell, "features", line, "%%features")
        if not args.group or not args.keys or not args.event_time:
            raise ExportError(f"{self.label}: %%features needs GROUP --keys K --event-time COL")
        code = self.source(body, depth + 1)
        tree = _parse_python(self.cell, code)
        if not tree.body or not isinstance(tree.body[-1], ast.Expr):
            raise ExportError(f"{self.label}: the last line of a %%features cell must be the feature DataFrame")
        last = tree.body[-1]
        lines = code.split("\n")
        expr = ast.get_source_segment(code, last.value) or ast.unparse(last.value)
        keys = [k.strip() for k in args.keys.split(",") if k.strip()]
        call = (
            f"nbops_store.register_features({expr}, {args.group!r}, keys={keys!r}, event_time={args.event_time!r}"
            + (", online=True" if args.online else "")
            + (f", version={args.version!r}" if args.version is not None else "")
            + (f", description={args.description!r}" if args.description is not None else "")
            + ")"
        )
        head = lines[: last.lineno - 1]
        prefix = lines[last.lineno - 1][: last.col_offset]
        tail = lines[last.end_lineno :] if last.end_lineno is not None else []
        return "\n".join([*head, prefix + call, *tail])

    def _track(self, line: str, body: str, depth: int) -> str:
        args = _parse(self.cell, "track", line, "%%track")
        if args.verb:
            raise ExportError(f"{self.label}: %%track takes no start/stop")
        kwargs = [f"experiment={(args.experiment or self.experiment)!r}"]
        if args.run_name:
            kwargs.append(f"run_name={args.run_name!r}")
        if args.register_model:
            kwargs.append(f"register_model={args.register_model!r}")
        if args.autolog:
            kwargs.append("autolog=True")
        code = self.source(body, depth + 1)
        inner = _indent(code, "    ") if code.strip() else "    pass"
        return f"with nbops.track({', '.join(kwargs)}):\n{inner}"

    # -- line magics ------------------------------------------------------------------------
    def line_magic(self, target: str | None, name: str, line: str, depth: int) -> str:
        shown = f"%{name} {line}".rstrip()
        if name.startswith("%"):
            raise ExportError(
                f"{self.label}: %{name} must be the first line of the cell; IPython runs a cell magic only "
                "from there (anywhere else it fails)"
            )
        if name == "time":
            return self._time(target, line, depth)
        if name in ("pip", "uv"):
            if target is not None:
                raise ExportError(f"{self.label}: the result of %{name} cannot be exported")
            return self._packages(shown, f"pip {line}" if name == "pip" else line, "%" if name == "pip" else "%uv ")
        if name in ("sx", "system"):
            return self.shell(target, line, capture=True, shown=shown)
        if name in ("env", "set_env"):
            return self._env(target, name, line)
        if name == "pwd" and not line.strip():
            if target is None:
                return self._drop(name, "display only")
            self.imports.add("os")
            return f"{target} = os.getcwd()"
        if target is not None:
            raise ExportError(f"{self.label}: the result of %{name} cannot be exported")
        if name == "cd":
            return self._cd(line)
        if name == "prun":
            self.out.dropped.append("%prun (unwrapped)")
            return self.source(self._prun_statement(line), depth + 1)
        if name == "timeit":
            return self._drop(name, "timing only: nothing it assigns outlives it")
        if name == "debug" and not line.strip():
            return self._drop(name, "session only")
        if name in DROP_LINE:
            return self._drop(name, DROP_LINE[name])
        if name == "snapshot":
            return _snapshot(self.cell, line)
        if name in REFUSED:
            raise ExportError(f"{self.label}: %{name} cannot be exported: {REFUSED[name]}")
        raise ExportError(f"{self.label}: the magic %{name} cannot be exported; nbops does not know what it does")

    def _drop(self, name: str, why: str) -> str:
        self.out.dropped.append(f"%{name} ({why.split(':')[0]})")
        return f"pass  # %{_comment(name)} ({why})"

    def _time(self, target: str | None, line: str, depth: int) -> str:
        self.out.dropped.append("%time (unwrapped)")
        if target is None:
            return self.source(line, depth + 1)
        try:
            ast.parse(line.strip(), mode="eval")
        except (SyntaxError, ValueError):
            raise ExportError(f"{self.label}: {target} = %time needs an expression, not {line.strip()!r}") from None
        return f"{target} = {line.strip()}"

    def _prun_statement(self, line: str) -> str:
        from IPython.core.error import UsageError
        from IPython.core.magics.execution import ExecutionMagics

        try:
            _, statement = ExecutionMagics(shell=None).parse_options(line, "D:l:rs:T:q", list_all=True, posix=False)  # type: ignore[no-untyped-call]
        except (UsageError, ValueError) as exc:
            raise ExportError(f"{self.label}: cannot read the %prun line {line!r}: {exc}") from None
        return str(statement)

    def _env(self, target: str | None, name: str, line: str) -> str:
        shown = f"%{name} {line}".rstrip()
        if not line.strip():
            if name == "set_env":
                raise ExportError(f"{self.label}: %set_env needs NAME=VALUE (IPython refuses it too)")
            if target is None:
                return self._drop(name, "display only")
            self.imports.add("os")
            return f"{target} = dict(os.environ)"
        self._literal_text(shown, line, "set os.environ[...] in Python")
        split = "=" if "=" in line else " "
        bits = line.split(split, 1)
        if name == "env" and len(line.split(split)) == 1:  # %env NAME: read it
            if target is None:
                return self._drop(name, "display only")
            self.imports.add("os")
            return f"{target} = os.environ[{line.strip()!r}]"
        if len(bits) < 2:
            raise ExportError(f"{self.label}: {shown}: the usage is %{name} NAME=VALUE")
        var, value = bits[0].strip(), bits[1].strip()
        if not var or re.search(r"\s", var) or "\0" in var + value:
            raise ExportError(f"{self.label}: {shown}: {var!r} cannot name an environment variable")
        if target is not None:
            raise ExportError(f"{self.label}: the result of %{name} cannot be exported")
        self.imports.add("os")
        return f"os.environ[{var!r}] = {value!r}"

    def _cd(self, line: str) -> str:
        from IPython.core.error import UsageError
        from IPython.core.magics.osm import OSMagics

        shown = f"%cd {line}".rstrip()
        self._literal_text(shown, line, "call os.chdir(...) in Python")
        try:
            opts, path = OSMagics(shell=None).parse_options(line, "qb", mode="string")  # type: ignore[no-untyped-call]
        except (UsageError, ValueError) as exc:
            raise ExportError(f"{self.label}: cannot read {shown!r}: {exc}") from None
        if "b" in opts or str(path).startswith("-"):
            raise ExportError(
                f"{self.label}: {shown} cannot be exported: it uses IPython's directory history or bookmarks; "
                "name the folder"
            )
        self.imports.add("os")
        if not path:
            return "os.chdir(os.path.expanduser('~'))"
        return f"os.chdir(os.path.expanduser({str(path)!r}))" if "~" in path else f"os.chdir({str(path)!r})"

    # -- shell commands and packages --------------------------------------------------------------
    def shell(self, target: str | None, command: str, capture: bool, shown: str) -> str:
        words = _shell_words(self.cell, command) if _might_be_package(command) else []
        if words and _package_tool(words) is not None:
            if target is not None:
                raise ExportError(f"{self.label}: the output of {_comment(shown)} cannot be exported")
            return self._packages(shown, command, "!")
        if not command.strip():
            self.out.dropped.append("! (empty)")
            return "pass  # ! (empty command)"
        self._literal_text(shown, command, "put the command in a %%bash cell (its body is run as written)")
        self.imports.add("subprocess")
        if target is None:
            return f"subprocess.run({command!r}, shell=True, check=True)"
        return (
            f"{target} = subprocess.run({command!r}, shell=True, check=True, stdout=subprocess.PIPE, "
            "stderr=subprocess.STDOUT, text=True).stdout.splitlines()"
        )

    def _packages(self, shown: str, command: str, via: str) -> str:
        """``pip install ...`` (from %pip, %uv or a shell line) as requirements; anything else refused."""
        program, _, after = command.strip().partition(" ")
        if program.strip("'\"") == "{sys.executable}":  # the usual `!{sys.executable} -m pip install x`
            command = f"python {after}"
        self._literal_text(shown, command, "name the packages as they are")
        operator = _shell_operator(self.cell, command)
        if operator is not None:
            raise ExportError(
                f"{self.label}: {_comment(shown)}: the shell reads {operator!r} as an operator; "
                "quote version specifiers ('pandas>=2') and install on a line of its own"
            )
        tool = _package_tool(_shell_words(self.cell, command))
        if tool is not None and tool[0] == "conda":
            raise ExportError(f"{self.label}: {_comment(shown)} cannot be exported: {REFUSED['conda']}")
        if tool is None or not tool[1] or tool[1][0] != "install":
            raise ExportError(f"{self.label}: only {via}pip install can be exported, not {_comment(shown)}")
        self._pip_install(tool[1][1:], shown)
        return f"pass  # {_comment(shown)} -> manifest requirements"

    def _pip_install(self, words: list[str], shown: str) -> None:
        rest = iter(words)
        for word in rest:
            short = word[:2] if word.startswith("-") and not word.startswith("--") else word.split("=", 1)[0]
            if short in ("-r", "--requirement"):
                inline = word[2:] if short == "-r" else word.partition("=")[2]
                path = inline or next(rest, "")
                if not path or "://" in path:
                    raise ExportError(
                        f"{self.label}: {_comment(shown)}: -r needs a requirements file in the notebook's folder"
                    )
                self.out.requirement_files.append(path)
            elif short in ("-e", "--editable"):
                raise ExportError(
                    f"{self.label}: `pip install {short} ...` cannot become a requirement: an editable install is a "
                    "local folder; name the package instead"
                )
            elif short in ("-c", "--constraint"):
                raise ExportError(
                    f"{self.label}: `pip install {short} ...` cannot become a requirement: a constraints file pins "
                    "versions without naming packages; name the packages (or use -r FILE)"
                )
            elif word in _PIP_VALUE_OPTIONS:
                next(rest, None)  # the option's value, not a package
            elif word.startswith("-"):
                continue
            elif word.startswith((".", "/", "~")) or "://" in word or "@" in word or word.endswith(_ARCHIVES):
                raise ExportError(
                    f"{self.label}: {_comment(shown)}: {word!r} is a path or URL, not a package name; "
                    "name the package (or list it in a requirements file, -r)"
                )
            else:
                self.out.requirements.append(word)

    def _literal_text(self, shown: str, text: str, instead: str) -> None:
        """Refuse text that IPython would fill from Python variables (``{x}``, ``$x``) or the shell would run (`` `x` ``)."""
        found = _EXPANDED.search(text)
        if found is not None:
            raise ExportError(
                f"{self.label}: {_comment(shown)} cannot be exported: IPython fills {{...}} and $name from Python "
                f"variables when it runs (found {found.group()!r}), so the text is not known; {instead}"
            )


def _writefile_path(cell: Cell, name: str) -> str:
    """``name`` as a relative path inside the export folder, or an ExportError naming the cell."""
    path = PurePosixPath(name)
    plain = all(
        part != ".."
        and "\\" not in part
        and not re.match(r"[A-Za-z]:", part)  # a drive on Windows
        and not any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in part)
        for part in path.parts
    )
    if path.is_absolute() or not path.parts or not plain:
        raise ExportError(
            f"{cell.label}: %%writefile {name!r} must be a relative path inside the export folder "
            "(no '..', no leading '/', no '\\', drive or control characters)"
        )
    return str(path)


def _snapshot(cell: Cell, line: str) -> str:
    args = _parse(cell, "snapshot", line, "%snapshot")
    if args.load:
        from nbops.core.refs import parse_ref
        from nbops.errors import NbopsError

        try:
            name, _ = parse_ref(args.load)
        except NbopsError as exc:
            raise ExportError(f"{cell.label}: %snapshot --load {args.load!r}: {exc}") from None
        var = args.as_var or name
        if not var.isidentifier() or keyword.iskeyword(var):
            raise ExportError(f"{cell.label}: --as {var!r} is not a variable name")
        return f"{var} = nbops_store.load({args.load!r})"
    if not args.dataframe or not args.dataframe.isidentifier() or keyword.iskeyword(args.dataframe):
        raise ExportError(f"{cell.label}: %snapshot needs the name of a DataFrame variable")
    call = f"nbops_store.snapshot({args.dataframe}, {(args.name or args.dataframe)!r}"
    if args.message is not None:
        call += f", message={args.message!r}"
    return call + ")"


_PIP_VALUE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target",
    "--prefix", "--root", "--platform", "--python-version", "--implementation", "--abi",
    "--progress-bar", "--src", "--upgrade-strategy", "--cache-dir", "--log", "--proxy", "--timeout",
    "--trusted-host", "--no-binary", "--only-binary", "-C", "--config-settings", "--global-option",
    "--cert", "--client-cert", "--retries", "--exists-action", "--report", "--python", "--keyring-provider",
    "--use-feature", "--use-deprecated",
}  # fmt: skip


_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2")


def _might_be_package(command: str) -> bool:
    return re.search(r"\b(pip[0-9.]*|conda|mamba|micromamba)\b", command) is not None


def _package_tool(words: list[str]) -> tuple[str, list[str]] | None:
    """("pip" | "conda", the words after it) when ``words`` run a package manager, else None."""
    if not words:
        return None
    program, rest = PurePosixPath(words[0]).name, words[1:]
    if program == "{sys.executable}" or re.fullmatch(r"python[0-9.]*", program):
        if rest[:2] == ["-m", "pip"]:
            return "pip", rest[2:]
        if rest[:3] == ["-m", "uv", "pip"]:
            return "pip", rest[3:]
        return None
    if re.fullmatch(r"pip[0-9.]*", program):
        return "pip", rest
    if program == "uv" and rest[:1] == ["pip"]:
        return "pip", rest[1:]
    if program in ("conda", "mamba", "micromamba"):
        return "conda", rest
    return None


def _shell_operator(cell: Cell, command: str) -> str | None:
    """The first unquoted shell operator (``>``, ``&&``, ``;``, ``|``, ...) in ``command``, if any."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        for token in lexer:
            if token and all(ch in "();<>|&" for ch in token):
                return token
    except ValueError as exc:
        raise ExportError(f"{cell.label}: cannot read {command!r}: {exc}") from None
    return None


# -- reading a cell ------------------------------------------------------------------------------
def _ipython(cell: Cell, text: str) -> str:
    """``text`` through IPython's input transformers (autocall escapes ``/f x``, ``,f x`` refused)."""
    from IPython.core.inputtransformer2 import EscapedCommand, TransformerManager

    class Escaped(EscapedCommand):
        def transform(self, lines: list[str]) -> list[str]:
            escape = lines[self.start_line][self.start_col]
            if escape in "/,;":
                raise ExportError(
                    f"{cell.label}: line {self.start_line + 1} starts with {escape!r}, IPython's autocall "
                    "shorthand; write the call in Python"
                )
            result: list[str] = super().transform(lines)  # type: ignore[no-untyped-call]
            return result

    manager = TransformerManager()  # type: ignore[no-untyped-call]
    manager.token_transformers = [Escaped if t is EscapedCommand else t for t in manager.token_transformers]
    try:
        with warnings.catch_warnings():  # IPython warns about odd line breaks (\x0c, \u2028) it then reads anyway
            warnings.simplefilter("ignore")
            return str(manager.transform_cell(text))
    except ExportError:
        raise
    except Exception as exc:  # IPython's reader fails on odd input in more ways than SyntaxError
        raise ExportError(f"{cell.label}: cannot read the cell: {exc}") from None


def _strip_line_ends(text: str) -> str:
    """``text`` without trailing spaces and tabs, except where a line ends inside a string."""
    lines = text.split("\n")
    keep: set[int] = set()  # 0-based lines whose end is inside a string
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.start[0] != tok.end[0] and tok.type not in (tokenize.NL, tokenize.NEWLINE):
                keep.update(range(tok.start[0] - 1, tok.end[0] - 1))
    except (tokenize.TokenError, SyntaxError) as exc:  # unfinished: leave the rest as it is
        where = exc.args[1][0] if isinstance(exc, tokenize.TokenError) else exc.lineno
        keep.update(range(max((where or 1) - 1, 0), len(lines)))
    return "\n".join(line if i in keep else line.rstrip(" \t") for i, line in enumerate(lines))


def _is_ipython_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
    )


def _magic_statements(cell: Cell, tree: ast.Module) -> list[tuple[ast.stmt, str | None, str, list[str]]]:
    """Every ``[x = ]get_ipython().method('literal', ...)`` statement: (statement, x, method, arguments)."""
    found: list[tuple[ast.stmt, str | None, str, list[str]]] = []
    calls = set()
    for node in ast.walk(tree):
        target, value = None, None
        if isinstance(node, ast.Expr):
            value = node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        if value is None or not _is_ipython_call(value):
            continue
        assert isinstance(node, ast.stmt) and isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
        arguments = [a.value for a in value.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if value.keywords or len(arguments) != len(value.args):
            raise ExportError(
                f"{cell.label}: get_ipython().{value.func.attr}(...) with computed arguments cannot be exported"
            )
        calls.add(id(value))
        found.append((node, target, value.func.attr, arguments))
    for node in ast.walk(tree):
        if _is_ipython_call(node) and id(node) not in calls:
            raise ExportError(
                f"{cell.label}: a magic inside an expression cannot be exported (line {getattr(node, 'lineno', '?')})"
            )
    return sorted(found, key=lambda f: (f[0].lineno, f[0].col_offset))


def _splice(cell: Cell, code: str, edits: list[tuple[ast.stmt, str]]) -> str:
    """``code`` with each statement replaced by its translation, at the statement's indentation."""
    lines = code.split("\n")
    for stmt, replacement in reversed(edits):
        first, last = stmt.lineno - 1, (stmt.end_lineno or stmt.lineno) - 1
        prefix = lines[first].encode()[: stmt.col_offset].decode()
        suffix = lines[last].encode()[stmt.end_col_offset :].decode()
        if "\n" in replacement and (prefix.strip() or suffix.strip()):
            raise ExportError(f"{cell.label}: line {first + 1}: put the magic on a line of its own")
        if "\n" in replacement:
            new = _indent(replacement, prefix).split("\n") if prefix else replacement.split("\n")
        else:
            new = [prefix + replacement + suffix]
        lines[first : last + 1] = new
    return "\n".join(lines)


def _data_body(body: str) -> str:
    """A cell magic's body (a file, a script) with line ends ``\\n`` and exactly one final line end."""
    body = re.sub(r"(\n[ \t]*)+\Z", "", body.replace("\r\n", "\n").replace("\r", "\n"))
    return body + "\n" if body.strip() else ""


# -- display expressions ------------------------------------------------------------------
def _is_display(node: ast.stmt) -> bool:
    if not isinstance(node, ast.Expr):
        return False
    value = node.value
    if isinstance(value, (ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.Tuple, ast.Compare)):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        if isinstance(func, ast.Name) and func.id == "display":
            return True
        if isinstance(func, ast.Attribute) and func.attr in DISPLAY_METHODS:
            return True
    return False


def _drop_display(cell: Cell, code: str, out: Translated) -> str:
    if not code.strip():
        return code
    tree = _parse_python(cell, code)
    lines = code.split("\n")
    spans = [(node.lineno, node.end_lineno or node.lineno) for node in tree.body]
    for i, node in reversed(list(enumerate(tree.body))):
        first, last = spans[i]
        shared = any(a <= last and first <= b for j, (a, b) in enumerate(spans) if j != i)
        if _is_display(node) and not shared:  # `x = 1; x` keeps its line
            text = ast.get_source_segment(code, node) or ""
            out.dropped.append(f"display: {text.splitlines()[0] if text else ''}")
            del lines[first - 1 : last]
    return "\n".join(lines)


# -- helpers --------------------------------------------------------------------------------
def _parse(cell: Cell, magic: Any, line: str, what: str) -> Any:
    """The line read as the magic reads it: ``magic`` is nbops' magic's name (:mod:`nbops.syntax`) or IPython's magic."""
    from IPython.core.error import UsageError

    from nbops.syntax import parse_line, parser

    try:
        return parse_line(parser(magic) if isinstance(magic, str) else magic, line)
    except (UsageError, SystemExit) as exc:
        raise ExportError(f"{cell.label}: cannot read the {what} line {line!r}: {exc}") from None


def _parse_python(cell: Cell, code: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise ExportError(f"{cell.label}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExportError(f"{cell.label}: cannot read the cell as Python: {type(exc).__name__}") from None


def _shell_words(cell: Cell, text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ExportError(f"{cell.label}: cannot read {text!r}: {exc}") from None


def _comment(text: str) -> str:
    """``text`` to repeat after a ``#``: itself when printable, else its ``repr`` (no line break can end the comment)."""
    return text if text.isprintable() else repr(text)


def _text_literal(text: str) -> str:
    """A string literal of ``text``: triple-quoted when that reads plainly, else ``repr``."""
    plain = all(ch == "\n" or (ch.isprintable() and ch not in '"\\') for ch in text)
    source = f'"""{text}"""' if plain and text else repr(text)
    return source if ast.literal_eval(source) == text else repr(text)


def _indent(code: str, prefix: str) -> str:
    """Indent code, leaving the inside of multi-line strings untouched."""
    keep: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.start[0] != tok.end[0] and tok.type not in (tokenize.NL, tokenize.NEWLINE):  # a string
                keep.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    return "\n".join(
        line if (i in keep or not line.strip()) else prefix + line for i, line in enumerate(code.split("\n"), 1)
    )
