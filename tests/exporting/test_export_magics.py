"""Export of magics, by kind: each row of docs/export.md "Magics, by kind", refusals that name
the cell, modules that run in real subprocesses, and two properties over generated cells (any
cell gives compiling modules or an error naming it; layout never changes the module).
"""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbops
from helpers.notebooks import PYTHON, code, label, main_body, run, write_notebook
from nbops.errors import NbopsError
from nbops.exporting import ExportError, export, plan
from nbops.exporting.cells import Cell
from nbops.exporting.translate import translate


def statements(source: str) -> list[str]:
    """The statements one feature cell becomes, unparsed, without the ``pass`` left by dropped magics."""
    with tempfile.TemporaryDirectory() as tmp:
        p = plan(write_notebook(Path(tmp) / "m.ipynb", [code(source, "feature", id="m")]))
    return [ast.unparse(s) for s in main_body(p.files["feature_pipeline.py"]) if not isinstance(s, ast.Pass)]


def translated(source: str) -> Any:
    return translate(Cell(index=0, id="m", source=source, tags=(), execution_count=None), experiment="m")


# -- each row of the table ---------------------------------------------------------------------
ROWS = {
    "extensions": ("%load_ext autoreload\n%reload_ext autoreload\n%autoreload 2\n%aimport os\nx = 1", ["x = 1"]),
    "env set": ("%env A=1\n%env B two words\n%set_env C = 3", [
        "import os", "os.environ['A'] = '1'", "os.environ['B'] = 'two words'", "os.environ['C'] = '3'"]),
    "env read": ("%env\n%env HOME\nh = %env HOME\nall_env = %env", [
        "import os", "h = os.environ['HOME']", "all_env = dict(os.environ)"]),
    "display": ("%config Completer.use_jedi = False\n%matplotlib inline\n%who\n%whos\n%who_ls\n%precision 3\n"
                "%xmode Plain\n%pdb on\n%debug\n%history -n\nx = 1", ["x = 1"]),
    "pwd": ("%pwd\nhere = %pwd", ["import os", "here = os.getcwd()"]),
    "cd": ("%cd data\n%cd -q 'my dir'\n%cd ~/x\n%cd", [
        "import os", "os.chdir('data')", "os.chdir('my dir')", "os.chdir(os.path.expanduser('~/x'))",
        "os.chdir(os.path.expanduser('~'))"]),
    "time": ("%time y = 2\nz = %time y + 1", ["y = 2", "z = y + 1"]),
    "time cell": ("%%time\ny = 2\n%time w = y", ["y = 2", "w = y"]),
    "indented cell": ("  %%time\n  y = 2", ["y = 2"]),  # IPython dedents the whole cell first
    "timeit": ("%timeit y = 2\nx = 1", ["x = 1"]),
    "timeit cell": ("%%timeit -n 3\ny = 2", []),
    "capture": ("%%capture out\nprint('noisy')", ["print('noisy')"]),
    "prun": ("%prun -s cumtime -q print(1)", ["print(1)"]),
    "help": ("df = 1\ndf?\n?df\ndf.real??\n%pinfo df\n%pinfo2 df\n%psearch d*\n?", ["df = 1"]),
    "bash": ("%%bash\necho hi", ["import subprocess", "subprocess.run(['bash'], input='echo hi\\n', text=True, check=True)"]),
    "sh": ("%%sh --no-raise-error\nfalse", ["import subprocess", "subprocess.run(['sh'], input='false\\n', text=True, check=False)"]),
    "script bash": ("%%script bash -e\necho hi", [
        "import subprocess", "subprocess.run(['bash', '-e'], input='echo hi\\n', text=True, check=True)"]),
    "shell": ("!echo hi\n!!date", [
        "import subprocess", "subprocess.run('echo hi', shell=True, check=True)", "subprocess.run('date', shell=True, check=True)"]),
    "shell output": ("files = !ls -a", ["import subprocess", "files = subprocess.run('ls -a', shell=True, check=True, "
                     "stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.splitlines()"]),
    "sx": ("files = %sx ls", ["import subprocess", "files = subprocess.run('ls', shell=True, check=True, "
           "stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.splitlines()"]),
    "display cells": ("%%html\n<b>x</b>", []),
    "pip": ("%pip install -q requests\n!pip install 'numpy>=1'\nx = 1", ["x = 1"]),
}  # fmt: skip


@pytest.mark.parametrize(("source", "expected"), list(ROWS.values()), ids=list(ROWS))
def test_each_magic_becomes_its_row_of_the_table(source: str, expected: list[str]) -> None:
    assert statements(source) == expected


@pytest.mark.parametrize("magic", ["html", "markdown", "javascript", "js", "latex", "svg"])
def test_display_cell_magics_drop(magic: str) -> None:
    out = translated(f"%%{magic}\n<b>{{x}} $y</b>")
    assert out.code == "" and out.dropped == [f"%%{magic} (display only)"]


@pytest.mark.parametrize(
    ("line", "requirements", "files"),
    [
        ("!pip install -r requirements.txt", [], ["requirements.txt"]),
        ("%pip install -r reqs/dev.txt pandas", ["pandas"], ["reqs/dev.txt"]),
        ("!pip install --requirement=r.txt -rextra.txt", [], ["r.txt", "extra.txt"]),
        ("!{sys.executable} -m pip install 'scikit-learn==1.2' -U", ["scikit-learn==1.2"], []),
        ('!"{sys.executable}" -m pip install polars', ["polars"], []),
        ("!python3 -m pip install --index-url https://example.org/simple x", ["x"], []),
        ("%uv pip install httpx", ["httpx"], []),
    ],
)
def test_pip_lines_become_requirements_and_requirement_files(
    line: str, requirements: list[str], files: list[str]
) -> None:
    out = translated(f"{line}\nx = 1")
    assert (out.requirements, out.requirement_files) == (requirements, files)
    assert out.code.splitlines()[0].startswith("pass  # ") and out.code.endswith("x = 1")


def test_writefile_and_its_file_alias_write_files() -> None:
    assert translated("%%writefile helpers.py\nX = 1\n\n\n").files == {"helpers.py": "X = 1\n"}
    assert translated("%%file notes.txt\r\nhello {x} $y\r\n").files == {"notes.txt": "hello {x} $y\n"}


def test_capture_with_a_name_is_unwrapped_and_says_the_name_is_not_bound() -> None:
    assert translated("%%capture out --no-stderr\nprint(1)").dropped == [
        "%%capture out (unwrapped; 'out' is not bound)"
    ]


# -- refusals name the cell and say why --------------------------------------------------------
REFUSALS = {
    "who_ls assigned": ("names = %who_ls", "the result of %who_ls cannot be exported"),
    "matplotlib assigned": ("m = %matplotlib inline", "the result of %matplotlib cannot be exported"),
    "timeit assigned": ("t = %timeit -o f()", "the result of %timeit cannot be exported"),
    "reset": ("%reset -f", "%reset cannot be exported: it empties"),
    "run": ("%run helpers.py", "%run cannot be exported: it runs another file"),
    "run notebook": ("%run other.ipynb", "%run cannot be exported"),
    "store": ("%store df", "%store cannot be exported: it keeps variables in IPython's own database; save data with %snapshot"),
    "sql line": ("%sql SELECT 1", "%sql cannot be exported: it needs the connection"),
    "sql cell": ("%%sql sqlite://\nSELECT 1", "%%sql cannot be exported: it needs the connection"),
    "bash --out": ("%%bash --out v\nls", "--out binds a variable"),
    "bash --bg": ("%%bash --bg\nls", "--bg runs the script in the background"),
    "script python": ("%%script python3\nprint(1)", "it runs the cell with 'python3' in another process"),
    "python cell": ("%%python\nprint(1)", "it runs the cell with 'python' in another process"),
    "shell $var": ("!ls $HOME", "IPython fills {...} and $name from Python variables"),
    "shell {var}": ("!echo {x}", "IPython fills {...} and $name from Python variables"),
    "shell backtick": ("!echo `date`", "IPython fills"),
    "env {var}": ("%env A={x}", "IPython fills"),
    "set_env usage": ("%set_env A", "the usage is %set_env NAME=VALUE"),
    "env space in name": ("%env A B=1", "cannot name an environment variable"),
    "cd history": ("%cd -", "IPython's directory history or bookmarks"),
    "cd bookmark": ("%cd -b proj", "IPython's directory history or bookmarks"),
    "conda": ("%conda install numpy", "%conda cannot be exported: conda packages are not pip requirements"),
    "shell conda": ("!conda install -y numpy", "conda packages are not pip requirements"),
    "pip editable": ("!pip install -e .", "`pip install -e ...` cannot become a requirement: an editable install"),
    "pip constraint": ("%pip install -c c.txt x", "`pip install -c ...` cannot become a requirement"),
    "pip path": ("%pip install ./pkg", "'./pkg' is a path or URL, not a package name"),
    "pip url": ("!pip install git+https://example.org/x.git", "is a path or URL"),
    "pip redirect": ("!pip install pandas>=2", "the shell reads '>' as an operator; quote version specifiers"),
    "pip chain": ("!pip install x && rm -rf y", "the shell reads '&&' as an operator"),
    "pip list": ("%pip list", "only %pip install can be exported, not %pip list"),
    "pip output": ("out = !pip install x", "the output of !pip install x cannot be exported"),
    "cell magic not first": ("# timing\n%%time\nx = 1", "%%time must be the first line of the cell"),
    "time with statement": ("%%time x = 1\ny = 2", "%%time takes no statement on its line"),
    "time assigns a statement": ("v = %time w = 1", "v = %time needs an expression"),
    "autocall": ("/print 1", "IPython's autocall shorthand"),
    "unknown line": ("%frobnicate now", "the magic %frobnicate cannot be exported; nbops does not know what it does"),
    "unknown cell": ("%%frobnicate\nx = 1", "the cell magic %%frobnicate cannot be exported"),
    "get_ipython in expression": ("print(get_ipython().run_line_magic('pwd', ''))", "a magic inside an expression"),
    "lone carriage return": ("x = 1\ry = 2", "carriage return"),
    "unclosed quote": ("%%writefile 'a.py\nx", "cannot read"),
    "writefile {var}": ("%%writefile {name}.py\nx = 1", "IPython fills"),
}  # fmt: skip


@pytest.mark.parametrize(("source", "says"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_refused_magics_name_the_cell_and_say_why(tmp_path: Path, source: str, says: str) -> None:
    nb = write_notebook(tmp_path / "r.ipynb", [code("# nbops: feature\nx = 1"), code(source, "feature", id="odd")])
    with pytest.raises(ExportError, match=f"^{re.escape(label(1, 'odd'))}: .*{re.escape(says)}"):
        plan(nb)


# -- what the modules do --------------------------------------------------------------------------
def test_module_with_env_cd_shell_and_bash_runs_them(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "sh.ipynb",
        [
            code("import os", id="imports"),
            code("%env GREETING=hello world\n!mkdir -p sub\n%cd sub", "feature", id="setup"),
            code('%%bash\nprintf "%s" "$GREETING" > greeting.txt\n\n', "feature", id="bash"),
            code(
                "listing = !ls\r\nhere = %pwd\r\nif listing:\r\n    %env SEEN=1\r\n"
                "with open('result.txt', 'w') as f:\r\n    f.write(repr((listing, os.path.basename(here), os.environ['SEEN'])))\r\n",
                "feature",
                id="use",
            ),
        ],
    )
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    work = tmp_path / "work"
    proc = run([PYTHON, str(result.out_dir / "feature_pipeline.py")], work, tmp_path / "scratch" / ".nbops")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "sub" / "greeting.txt").read_text() == "hello world"
    assert ast.literal_eval((work / "sub" / "result.txt").read_text()) == (["greeting.txt"], "sub", "1")


def test_failing_shell_command_stops_the_module(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "fail.ipynb", [code("!exit 3\nwith open('after.txt', 'w') as f:\n    f.write('ran')", "feature")]
    )
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    work = tmp_path / "work"
    proc = run([PYTHON, str(result.out_dir / "feature_pipeline.py")], work, tmp_path / "scratch" / ".nbops")
    assert proc.returncode != 0 and "CalledProcessError" in proc.stderr
    assert not (work / "after.txt").exists()


def test_hostile_shell_text_stays_a_literal(tmp_path: Path) -> None:
    payload = 'echo \'"""); __import__("os").system("touch MARKER") #\' > out.txt'
    nb = write_notebook(tmp_path / "h.ipynb", [code(f"!{payload}\n%%bash\n", "feature")])
    with pytest.raises(ExportError):  # %%bash not on the first line: the cell fails in IPython too
        plan(nb)
    nb = write_notebook(tmp_path / "h.ipynb", [code(f"!{payload}", "feature")])
    module = plan(nb).files["feature_pipeline.py"]
    assert payload in [n.value for n in ast.walk(ast.parse(module)) if isinstance(n, ast.Constant)]
    with nbops.open(tmp_path / ".nbops") as store:
        result = export(nb, out=tmp_path / "out", store=store)
    work = tmp_path / "work"
    proc = run([PYTHON, str(result.out_dir / "feature_pipeline.py")], work, tmp_path / "scratch" / ".nbops")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "out.txt").read_text() == '""""); __import__("os").system("touch MARKER") #\n'.replace('""""', '"""')
    assert not list(tmp_path.rglob("MARKER"))


# -- properties over generated cells ------------------------------------------------------------------
PYTHON_UNITS = [
    ["v = 1"], ["print('hi')"], ["w = v + 1"], ["# a comment"], ["# nbops: feature"], ["# nbops: feature, training"],
    ["if v:", "    w = 2", "else:", "    w = 3"], ["def f(a):", "    return a + 1"], ["for i in range(2):", "    pass"],
    ["if v:", "\tw = 2"], ["s = '''", "kept  ", "  as is'''"], ["df = f(1)"], ["df"], ["display(df)"],
]  # fmt: skip
MAGIC_UNITS = [
    ["%matplotlib inline"], ["%env A=1"], ["%env B 2"], ["%time y = 1"], ["%timeit f(1)"], ["%load_ext autoreload"],
    ["%pwd"], ["here = %pwd"], ["%cd ."], ["df?"], ["?df"], ["%who"], ["if v:", "    %env A=1"],
    ["for i in range(2):", "    !echo hi"], ["with open('x', 'w') as h:", "    %time h.write('x')"],
    ["%frobnicate x"], ["%reset -f"], ["%run x.py"], ["%%time"], ["%store v"],
    ["!echo hi"], ["files = !ls"], ["!pip install requests"], ["%pip install -r requirements.txt"], ["!ls $HOME"],
    ["!pip install x > y"], ["x = %time f(1)"], ["%sql SELECT 1"], ["/f x"],
]  # fmt: skip
CELL_MAGICS = [
    None, None, "%%time", "%%capture", "%%capture out", "%%timeit", "%%bash", "%%sh", "%%writefile helper_mod.py",
    "%%html", "%%frobnicate", "%%time x = 1", "%%script python", "%%prun",
]  # fmt: skip
DATA_MAGICS = ("%%bash", "%%sh", "%%writefile", "%%html", "%%frobnicate", "%%script")

units = st.lists(st.sampled_from(PYTHON_UNITS) | st.sampled_from(MAGIC_UNITS), max_size=6)
noise = st.fixed_dictionaries(
    {
        "blank": st.lists(st.sampled_from(["", " ", "\t", "  \t"]), max_size=2),
        "gaps": st.lists(st.booleans(), max_size=8),
        "ends": st.lists(st.sampled_from(["", " ", "\t", "   ", " \t "]), min_size=12, max_size=12),
        "trailing": st.sampled_from(["", "\n", "\n\n", "\n  \n"]),
        "crlf": st.booleans(),
    }
)


def render_cell(magic: str | None, body: list[list[str]], noise: dict[str, Any] | None = None) -> str:
    """The cell's text: canonical without ``noise``; with it, blank lines, line-end spaces, CRLF, trailing newlines."""
    data = magic is not None and magic.startswith(DATA_MAGICS)
    lines: list[str] = []
    for i, unit in enumerate(body):
        if noise and not data and i < len(noise["gaps"]) and noise["gaps"][i]:
            lines.append(noise["blank"][0] if noise["blank"] else "")
        lines += unit
    if noise and not data:  # spaces at line ends, except inside the multi-line string unit
        in_string = False
        for i, line in enumerate(lines):
            starts = line.endswith("'''") and line.count("'''") == 1
            if not in_string and not starts:
                lines[i] = line + noise["ends"][i % len(noise["ends"])]
            in_string = in_string != (line.count("'''") == 1)
    if magic is not None:
        lines.insert(0, magic + (noise["ends"][0] if noise else ""))
    if noise:
        lines = list(noise["blank"]) + lines
    text = "\n".join(lines) + (noise["trailing"] if noise else "")
    return text.replace("\n", "\r\n") if noise and noise["crlf"] else text


SUPPORT = "import os\nv = 1\n\n\ndef f(a):\n    return a\n\n\ndf = f(v)"


def outcome(source: str) -> tuple[str, Any]:
    """("error", message) or ("ok", (statements, requirements, extra files)) of plan() on a one-cell notebook."""
    with tempfile.TemporaryDirectory() as tmp:
        nb = write_notebook(Path(tmp) / "prop.ipynb", [code(SUPPORT), code(source, "feature", id="cell")])
        (Path(tmp) / "requirements.txt").write_text("requests\n")
        try:
            p = plan(nb)
        except NbopsError as exc:
            return "error", str(exc).replace(tmp, "TMP")
    modules = {n: s for n, s in p.files.items() if n.endswith("_pipeline.py")}
    for name, module in modules.items():
        compile(module, name, "exec")
    body = [ast.dump(s) for s in main_body(modules["feature_pipeline.py"])]
    extra = {n: c for n, c in p.files.items() if n not in modules and n not in ("manifest.json", "test_pipelines.py")}
    return "ok", (body, p.manifest["requirements"], extra, p.manifest["dropped"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(magic=st.sampled_from(CELL_MAGICS), body=units, noise=noise)
def test_any_cell_gives_compiling_modules_or_an_error_naming_it(
    magic: str | None, body: list[list[str]], noise: dict[str, Any]
) -> None:
    kind, value = outcome(render_cell(magic, body, noise))  # anything but an NbopsError fails the test
    if kind == "error":
        assert value.startswith(label(1, "cell") + ": "), value


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(magic=st.sampled_from(CELL_MAGICS), body=units, noise=noise)
def test_layout_never_changes_the_module(magic: str | None, body: list[list[str]], noise: dict[str, Any]) -> None:
    plain, noisy = outcome(render_cell(magic, body)), outcome(render_cell(magic, body, noise))
    assert plain[0] == noisy[0], (plain, noisy)
    if plain[0] == "ok":
        assert plain == noisy
    else:  # the same refusal; only a line number may move
        assert re.sub(r"line \d+", "line N", plain[1]) == re.sub(r"line \d+", "line N", noisy[1])
