"""Cells to plain Python: every magic handled by kind.

IPython's own input transformers find the magics (``%line``, ``%%cell``,
``!shell``); each is then handled by what it is:

- nbops magics become calls of the Python API (``%snapshot df`` ->
  ``nbops_store.snapshot(df, "df")``, ``%%features`` -> ``register_features``,
  ``%%track`` -> ``with nbops.track(...)``), parsed with the magics' own
  argument parsers so the meaning is exactly the notebook's;
- ``%pip install`` / ``!pip install`` become requirements;
- ``%%writefile F`` becomes a file written beside the modules;
- ``%%time``, ``%%capture``, ``%time`` and the like unwrap to their body;
- display-only magics (``%matplotlib``, ``%config``, ``%load_ext``, panels)
  and bare display expressions (``df.head()``, ``display(x)``, ``df``) drop;
- anything else is an :class:`ExportError` naming the cell and the magic.

User text is never pasted into code: every string from a magic line becomes
a Python literal through ``repr``, and text repeated in a comment is shown
as a literal when it holds anything but printable characters.
"""

from __future__ import annotations

import ast
import keyword
import re
import shlex
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from nbops.exporting.cells import Cell, ExportError

UNWRAP_CELL = {"time", "capture", "timeit", "prun"}
#: Leading options of %timeit / %prun (``-n 10 -r 3 -q``), which are not part of the statement.
_TIMING_OPTIONS = re.compile(r"^(?:\s*-(?:[nrpsTDl]\s*\S+|[tcqo])\b)*\s*")
UNWRAP_LINE = {"time", "timeit", "prun"}
DISPLAY_CELL = {"html", "markdown", "javascript", "js", "latex", "svg"}
DROP_LINE = {
    "matplotlib", "config", "load_ext", "reload_ext", "unload_ext", "autoreload", "aimport",
    "nbops", "features", "drift", "snapshots", "runs", "lineage", "export", "who", "whos",
    "precision", "pprint", "xmode", "colors",
}  # fmt: skip
# Methods whose call as a bare statement only shows something (not `info`: log.info() logs).
DISPLAY_METHODS = {"head", "tail", "describe", "style", "to_markdown", "value_counts"}


@dataclass
class Translated:
    code: str
    requirements: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def translate(cell: Cell, experiment: str) -> Translated:
    """The cell as plain Python, plus what its magics asked for."""
    out = Translated(code="")
    source = cell.source
    first = next((line for line in source.splitlines() if line.strip()), "")
    if first.lstrip().startswith("%%"):
        out.code = _cell_magic(cell, source, experiment, out)
    else:
        out.code = _line_magics(cell, source, out)
    out.code = _drop_display(cell, out.code, out)
    return out


# -- cell magics -----------------------------------------------------------------------
def _split_cell_magic(source: str) -> tuple[str, str, str]:
    lines = source.lstrip("\n").split("\n")
    head, body = lines[0].strip()[2:], "\n".join(lines[1:])
    name, _, line = head.partition(" ")
    return name, line.strip(), body


def _cell_magic(cell: Cell, source: str, experiment: str, out: Translated) -> str:
    name, line, body = _split_cell_magic(source)
    if name in UNWRAP_CELL:
        out.dropped.append(f"%%{name} (unwrapped)")
        return _line_magics(cell, body, out)
    if name in DISPLAY_CELL:
        out.dropped.append(f"%%{name} (display only)")
        return ""
    if name == "writefile":
        args = _shell_words(cell, line)
        names = [a for a in args if not a.startswith("-")]
        if len(names) != 1 or "-a" in args or "--append" in args:
            raise ExportError(f"{cell.label}: %%writefile needs exactly one file name (and no --append) to export")
        out.files[_writefile_path(cell, names[0])] = body if body.endswith("\n") else body + "\n"
        return ""
    if name == "features":
        return _features(cell, line, body, out)
    if name == "track":
        return _track(cell, line, body, experiment, out)
    raise ExportError(f"{cell.label}: the cell magic %%{name} cannot be exported; nbops does not know what it does")


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


def _features(cell: Cell, line: str, body: str, out: Translated) -> str:
    from nbops.magics.features import FeatureMagics

    args = _parse(cell, FeatureMagics.features, line, "%%features")
    if not args.group or not args.keys or not args.event_time:
        raise ExportError(f"{cell.label}: %%features needs GROUP --keys K --event-time COL")
    code = _line_magics(cell, body, out)
    tree = _parse_python(cell, code)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        raise ExportError(f"{cell.label}: the last line of a %%features cell must be the feature DataFrame")
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


def _track(cell: Cell, line: str, body: str, experiment: str, out: Translated) -> str:
    from nbops.magics.tracking import TrackingMagics

    args = _parse(cell, TrackingMagics.track, line, "%%track")
    if args.verb:
        raise ExportError(f"{cell.label}: %%track takes no start/stop")
    kwargs = [f"experiment={(args.experiment or experiment)!r}"]
    if args.run_name:
        kwargs.append(f"run_name={args.run_name!r}")
    if args.register_model:
        kwargs.append(f"register_model={args.register_model!r}")
    if args.autolog:
        kwargs.append("autolog=True")
    code = _line_magics(cell, body, out)
    inner = _indent(code, "    ") if code.strip() else "    pass"
    return f"with nbops.track({', '.join(kwargs)}):\n{inner}"


# -- line magics -------------------------------------------------------------------------
def _line_magics(cell: Cell, source: str, out: Translated) -> str:
    if not any(line.lstrip().startswith(("%", "!")) or "!" in line for line in source.split("\n")):
        return source  # no magic or shell escape can be in it
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        transformed = TransformerManager().transform_cell(source)
    except SyntaxError as exc:
        raise ExportError(f"{cell.label}: cannot read the cell: {exc}") from None
    original = source.split("\n")
    lines = transformed.rstrip("\n").split("\n")
    if len(lines) != len(original):  # a construct the transformer reshaped; fall back to whole-cell
        if "get_ipython()" in transformed:
            raise ExportError(f"{cell.label}: a magic spans several lines; put it on a line of its own")
        return source
    result = []
    for before, after in zip(original, lines, strict=True):
        if before == after or "get_ipython()" not in after:
            result.append(before)
            continue
        indent = before[: len(before) - len(before.lstrip())]
        result.append(indent + _line_magic(cell, after.strip(), out))
    return "\n".join(result)


def _call_parts(cell: Cell, text: str) -> tuple[str | None, str, list[Any]]:
    """(assigned name, method, literal args) of ``[x = ]get_ipython().method(args)``."""
    try:
        stmt = ast.parse(text).body[0]
    except SyntaxError:
        raise ExportError(f"{cell.label}: cannot read the magic line {text!r}") from None
    target = None
    value: ast.AST = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else stmt
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        target = stmt.targets[0].id
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)):
        raise ExportError(f"{cell.label}: a magic inside an expression cannot be exported: {text!r}")
    return target, value.func.attr, [ast.literal_eval(a) for a in value.args]


def _line_magic(cell: Cell, text: str, out: Translated) -> str:
    target, method, args = _call_parts(cell, text)
    if method in ("system", "getoutput"):
        command = args[0]
        if _pip_requirements(cell, command, out):
            return f"pass  # !{_comment(command)} -> manifest requirements"
        raise ExportError(f"{cell.label}: the shell command !{command} cannot be exported; do it in Python")
    name, line = args[0], args[1] if len(args) > 1 else ""
    if target is not None and name not in UNWRAP_LINE:
        raise ExportError(f"{cell.label}: the result of %{name} cannot be exported")
    if name == "pip":
        if not _pip_requirements(cell, f"pip {line}", out):
            raise ExportError(f"{cell.label}: only %pip install can be exported, not %pip {line}")
        return f"pass  # %pip {_comment(line)} -> manifest requirements"
    if name in UNWRAP_LINE:
        out.dropped.append(f"%{name} (unwrapped)")
        statement = _TIMING_OPTIONS.sub("", line) if name != "time" else line
        return f"{target} = {statement}" if target else statement
    if name in DROP_LINE:
        out.dropped.append(f"%{name} (display only)")
        return f"pass  # %{_comment(name)} (display only)"
    if name == "snapshot":
        return _snapshot(cell, line)
    raise ExportError(f"{cell.label}: the magic %{name} cannot be exported; nbops does not know what it does")


def _snapshot(cell: Cell, line: str) -> str:
    from nbops.magics.snapshots import SnapshotMagics

    args = _parse(cell, SnapshotMagics.snapshot, line, "%snapshot")
    if args.load:
        from nbops.errors import NbopsError
        from nbops.refs import parse_ref

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


def _pip_requirements(cell: Cell, command: str, out: Translated) -> bool:
    words = _shell_words(cell, command)
    while words and (words[0] in ("python", "python3", "-m", "%pip") or words[0].endswith("/python")):
        words = words[1:]
    if len(words) < 2 or words[0] not in ("pip", "pip3") or words[1] != "install":
        return False
    rest = iter(words[2:])
    for word in rest:
        if word in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable"):
            raise ExportError(
                f"{cell.label}: `pip install {word} ...` cannot become a requirement; name the packages instead"
            )
        if word in _PIP_VALUE_OPTIONS:
            next(rest, None)  # the option's value, not a package
            continue
        if not word.startswith("-"):
            out.requirements.append(word)
    return True


_PIP_VALUE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target",
    "--prefix", "--root", "--platform", "--python-version", "--implementation", "--abi",
    "--progress-bar", "--src", "--upgrade-strategy", "--cache-dir", "--log", "--proxy", "--timeout",
}  # fmt: skip


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
    for node in reversed(tree.body):
        if _is_display(node) and node.end_lineno is not None:
            text = ast.get_source_segment(code, node) or ""
            out.dropped.append(f"display: {text.splitlines()[0] if text else ''}")
            del lines[node.lineno - 1 : node.end_lineno]
    return "\n".join(lines)


# -- helpers --------------------------------------------------------------------------------
def _parse(cell: Cell, magic: Any, line: str, what: str) -> Any:
    from IPython.core.error import UsageError

    from nbops.magics._args import parse_line

    try:
        return parse_line(magic, line)
    except (UsageError, SystemExit) as exc:
        raise ExportError(f"{cell.label}: cannot read the {what} line {line!r}: {exc}") from None


def _parse_python(cell: Cell, code: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        raise ExportError(f"{cell.label}: syntax error at line {exc.lineno}: {exc.msg}") from None


def _shell_words(cell: Cell, text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ExportError(f"{cell.label}: cannot read {text!r}: {exc}") from None


def _comment(text: str) -> str:
    """``text`` to repeat after a ``#``: itself when printable, else its ``repr`` (no line break can end the comment)."""
    return text if text.isprintable() else repr(text)


def _indent(code: str, prefix: str) -> str:
    """Indent code, leaving the inside of multi-line strings untouched."""
    import io
    import tokenize

    keep: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.STRING and tok.start[0] != tok.end[0]:
                keep.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    return "\n".join(
        line if (i in keep or not line.strip()) else prefix + line for i, line in enumerate(code.split("\n"), 1)
    )
