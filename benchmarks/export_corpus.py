"""Export a corpus of public notebooks statically and count what happens.

Run (from the repository root)::

    python benchmarks/export_corpus.py CORPUS_DIR                       # as they are
    python benchmarks/export_corpus.py CORPUS_DIR --markers             # and with stage markers added
    python benchmarks/export_corpus.py CORPUS_DIR --markers --json out.json
    python benchmarks/export_corpus.py CORPUS_DIR --markers --follow-advice 5   # and fix markers as advised

Every ``*.ipynb`` under ``CORPUS_DIR`` is exported; the first folder under
``CORPUS_DIR`` names its group (e.g. ``hopsworks/`` and ``others/``), and the
figures are given per group.  The notebooks are never changed and never
executed.  For each notebook, in each mode:

1. ``nbops.exporting.plan(path)``, then ``nbops.export(path, out=..., store=...)``
   into a temporary folder and a temporary store;
2. classified as *exported*, *refused* (an ``NbopsError``: ``ExportError`` or
   another; the message is kept) or *crashed* (any other exception; the
   traceback is kept);
3. every ``.py`` file the export wrote is compiled, and every pipeline module
   is run as ``python MODULE --help`` in a subprocess (this interpreter,
   ``NBOPS_HOME`` pointing to a temporary folder, cwd the export folder);
   it passes when it exits 0.

Stage markers (``--markers``) are added the way a user would add them by
hand, as cell tags in a copy of the notebook (sources untouched; a cell that
already has a stage tag keeps it).  The copy sits in a temporary folder with
the ``requirements*.txt`` files of the notebook's folder (and no other file),
so that ``pip install -r requirements.txt`` resolves as it does in place:

- the notebook's **file name** says its stage when it names one (checked in
  this order): inference (``inference``, ``predict``, ``serving``, ``deploy``,
  ``online``, ``scheduler``), training (``train``, ``model``, ``ranking``,
  ``retrieval``, ``fine_tuning``), feature (``feature``, ``backfill``, ``fg``,
  ``prep``, ``load``, ``ingest``, ``embedding``, ``dataset``, ``stream``,
  ``data``, ``eda``, ``register``).  Then every code cell gets that tag, as in
  Hopsworks' ``1_..._feature_pipeline`` / ``2_..._training_pipeline`` /
  ``3_..._inference`` split;
- otherwise (an end-to-end notebook) each code cell gets the stage of the
  section it is in, from the last markdown heading whose text names one
  (same words, plus ``fit``/``evaluat``/``tun`` for training and
  ``clean``/``transform``/``preprocess`` for feature); before any such
  heading, a cell that calls ``.fit(`` is training, ``.predict(`` inference,
  other cells stay support cells;
- a notebook where neither finds a stage gets ``feature`` on every code cell;
- in every case a cell that only imports and defines functions or classes
  stays untagged: a support cell, which each stage that needs it includes.

``--follow-advice N`` (with ``--markers``) then plays a user who fixes the
markers by following a refusal's advice, at most N rounds per notebook: for
each line ``cell A (id ..) (STAGE) uses 'x', which cell B (id ..) of the OTHER
stage computes; ... or tag cell B (id ..) into both stages`` it adds STAGE to
cell B's tags (cell B is the B-th cell of the notebook, its id checked), and
exports again.  It does not when cell B writes something (``WRITES``, a regex
over its source: saves, registers, inserts, uploads, deploys...): the write
would run once in each stage, which a careful user would not do, so such a
notebook stays refused.  The figures of that last try are mode
``markers+advice``; each of its refusals says why following stopped (no tag
advice in the message, a writing cell, or N rounds used).

Figures: notebooks tried / exported / refused / crashed, modules written /
compiled / answering ``--help``.  Refusal messages are grouped by class (cell
labels, quoted names, numbers and shell commands stripped), crashes by
exception type and innermost frame.  This is a benchmark, not a test: it
exits 0 whatever it finds (``--strict`` exits 1 on any crash or failing module).
"""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="nbops-corpus-home-")
for _key in ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI", "NBOPS_CATALOG_URL", "NBOPS_DATA"):
    os.environ.pop(_key, None)
os.environ["NBOPS_HOME"] = _HOME

import argparse  # noqa: E402
import ast  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any

STAGE_WORDS = {
    "inference": r"inference|predict|serving|serve|deploy|online|scheduler",
    "training": r"train|model|ranking|retrieval|fine.?tun",
    "feature": r"feature|backfill|(?<![a-z])fg|prep|load|ingest|embedding|dataset|stream|data|eda|register",
}
HEADING_WORDS = {
    "inference": STAGE_WORDS["inference"] + r"|batch scor",
    "training": STAGE_WORDS["training"] + r"|(?<![a-z])fit|evaluat|tun",
    "feature": STAGE_WORDS["feature"] + r"|clean|transform|preprocess",
}
STAGE_TAGS = ("feature", "training", "inference", "skip")
#: a cell that writes something: tagging it into a second stage would run the write twice
WRITES = re.compile(
    r"insert|save|register|snapshot|to_csv|to_parquet|to_sql|log_model|log_artifact|upload|deploy|create_|write"
    r"|\.put\(|\.post\(|materialize|apply\(",
    re.IGNORECASE,
)
#: one piece of advice of a refusal: (user stage, name, defining cell's position, its id, its stage)
ADVICE = re.compile(
    r"cell \d+ \(id [^)]*\) \((feature|training|inference)\) uses (['\"])(.*?)\2, which cell (\d+) \(id ([^)]*)\) "
    r"of the (feature|training|inference) stage computes"
)


# -- markers -------------------------------------------------------------------------------
def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def _stage_of(text: str, words: dict[str, str]) -> str | None:
    low = text.lower().replace("-", "_")
    return next((stage for stage, pattern in words.items() if re.search(pattern, low)), None)


def _definitions_only(source: str) -> bool:
    """Whether a cell only imports and defines functions or classes (a support cell every stage may need)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)) for s in body)


def add_markers(nb: dict[str, Any], name: str) -> str:
    """Tag the code cells of ``nb`` (a notebook's JSON) with stages, in place; return how they were chosen."""
    cells = [c for c in nb.get("cells", []) if isinstance(c, dict)]
    code = [c for c in cells if c.get("cell_type") == "code" and _text(c.get("source")).strip()]
    code = [c for c in code if not _definitions_only(_text(c.get("source")))]
    code_ids = {id(c) for c in code}
    by_name = _stage_of(Path(name).stem, STAGE_WORDS)
    chosen: dict[int, str] = {}
    if by_name is not None:
        chosen = {id(c): by_name for c in code}
        how = f"file name -> {by_name}"
    else:
        section: str | None = None
        for cell in cells:
            source = _text(cell.get("source"))
            if cell.get("cell_type") == "markdown":
                headings = [line for line in source.splitlines() if line.lstrip().startswith("#")]
                found = next((s for s in map(lambda h: _stage_of(h, HEADING_WORDS), headings) if s), None)
                section = found or section
            elif id(cell) in code_ids:
                if section is not None:
                    chosen[id(cell)] = section
                elif ".fit(" in source:
                    chosen[id(cell)] = "training"
                elif ".predict(" in source:
                    chosen[id(cell)] = "inference"
        how = "headings / code"
        if not chosen:
            chosen = {id(c): "feature" for c in code}
            how = "nothing found -> feature"
    for cell in code:
        metadata = cell.setdefault("metadata", {})
        tags = metadata.get("tags") if isinstance(metadata, dict) else None
        tags = list(tags) if isinstance(tags, list) else []
        if id(cell) in chosen and not any(t in STAGE_TAGS for t in tags):
            metadata["tags"] = [*tags, chosen[id(cell)]]
    return how


# -- one notebook --------------------------------------------------------------------------
def normalise(message: str) -> str:
    """A refusal's class: its message without cell labels, names, numbers or commands."""
    text = message.splitlines()[0] if message else ""
    text = re.sub(r"cell \d+ \(id [^)]*\)", "<cell>", text)
    text = re.sub(r"the shell command !.*? cannot be exported", "the shell command !<cmd> cannot be exported", text)
    text = re.sub(
        r"only %pip install can be exported, not %pip .*", "only %pip install can be exported, not %pip <cmd>", text
    )
    text = re.sub(r"\S+\.ipynb", "<notebook>", text)
    text = re.sub(r"(?<![A-Za-z])'[^']*'|\"[^\"]*\"", "<name>", text)  # not the ' of "notebook's"
    text = re.sub(r"\b\d+\b", "N", text)
    return text


def crash_key(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inner = next((f for f in reversed(frames) if "nbops" in f.filename), frames[-1] if frames else None)
    where = f"{Path(inner.filename).name}:{inner.lineno} in {inner.name}" if inner else "?"
    return f"{type(exc).__name__} at {where}"


def check_module(path: Path, python: str, help_runs: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"file": path.name, "compiles": True, "help": None}
    try:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except SyntaxError as exc:
        row["compiles"], row["compile_error"] = False, f"{exc.msg} (line {exc.lineno})"
    if help_runs and path.name.endswith("_pipeline.py"):
        env = {**os.environ, "NBOPS_HOME": _HOME}
        try:
            proc = subprocess.run(
                [python, path.name, "--help"], cwd=path.parent, env=env, capture_output=True, text=True, timeout=120
            )
            row["help"] = proc.returncode == 0
            if proc.returncode:
                row["help_error"] = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        except subprocess.TimeoutExpired:
            row["help"], row["help_error"] = False, "timed out after 120 s"
    return row


def export_one(path: Path, out: Path, store: Any, python: str, help_runs: bool) -> dict[str, Any]:
    import nbops
    from nbops.errors import NbopsError
    from nbops.exporting import plan

    row: dict[str, Any] = {"status": "exported", "modules": []}
    step = "plan"
    try:
        plan(path)
        step = "export"
        result = nbops.export(path, out=out, store=store)
    except NbopsError as exc:
        row.update(status="refused", step=step, error_type=type(exc).__name__, message=str(exc))
        row["reason"] = normalise(str(exc))
        parts = [line.strip()[2:] for line in str(exc).splitlines()[1:] if line.strip().startswith("- ")]
        row["parts"] = sorted({normalise(part)[:160] for part in parts})  # the classes of a list of problems
        return row
    except Exception as exc:  # everything else is a crash of the exporter
        row.update(status="crashed", step=step, error_type=type(exc).__name__, message=str(exc))
        row["crash"], row["traceback"] = crash_key(exc), traceback.format_exc()
        return row
    row["stages"] = [s["stage"] for s in result.manifest["stages"]]
    row["findings"] = len(result.findings)
    for name in sorted(result.files):
        if name.endswith(".py") and name != "test_pipelines.py":
            row["modules"].append(check_module(result.out_dir / name, python, help_runs))
    return row


# -- following the advice ------------------------------------------------------------------
def apply_advice(path: Path, message: str) -> tuple[list[str], list[str]]:
    """Tag each defining cell a refusal names into the user's stage, in the notebook at ``path``.

    Returns the fixes made (``cell 2 +training``) and those not made because the cell writes something.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    applied: list[str] = []
    writing: list[str] = []
    for user_stage, _, name, position, cell_id, its_stage in ADVICE.findall(message):
        cell = data["cells"][int(position) - 1]
        if cell_id not in (cell.get("id"), f"cell{position}"):
            raise SystemExit(f"{path}: cell {position} has id {cell.get('id')!r}, the refusal says {cell_id!r}")
        write = WRITES.search(_text(cell.get("source")))
        if write is not None:
            writing.append(f"cell {position} ({name!r}, {user_stage}) writes: {write.group(0)!r}")
            continue
        tags = list(cell.setdefault("metadata", {}).get("tags", []))
        stages = [t for t in tags if t in STAGE_TAGS] or [its_stage]  # its stage may come from a magic
        if user_stage not in stages:
            cell["metadata"]["tags"] = [*(t for t in tags if t not in STAGE_TAGS), *stages, user_stage]
            applied.append(f"cell {position} +{user_stage}")
    if applied:
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return sorted(set(applied)), sorted(set(writing))


def follow_advice(
    path: Path, first: dict[str, Any], rounds: int, out: Path, export: Callable[[Path, Path], dict[str, Any]]
) -> dict[str, Any]:
    """Follow ``first``'s advice and export again, at most ``rounds`` times; the last try, with why it stopped."""
    row, tagged, stopped, done = first, [], None, 0
    while row["status"] == "refused" and done < rounds:
        applied, writing = apply_advice(path, row["message"])
        if not applied:
            stopped = "writing cell: " + "; ".join(writing) if writing else "no tag advice to follow"
            break
        tagged, done = tagged + applied, done + 1
        row = export(path, out / str(done))
    if row["status"] == "refused" and stopped is None:
        stopped = f"still refused after {rounds} rounds"
    return {**row, "mode": "markers+advice", "rounds": done, "tagged": tagged, "stopped": stopped}


# -- the run -------------------------------------------------------------------------------
def marked_copy(nb: Path, path: Path) -> str:
    """Write ``nb`` with stage markers added at ``path``, beside its folder's requirements files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for req in nb.parent.glob("requirements*.txt"):  # so that `pip install -r` resolves as in place
        if req.is_file():
            shutil.copyfile(req, path.parent / req.name)
    try:
        data = json.loads(nb.read_text(encoding="utf-8"))
        how = add_markers(data, nb.name)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        shutil.copyfile(nb, path)
        how = f"not marked: {exc}"  # exported as it is; export says why it cannot read it
    return how


def run(corpus: Path, modes: list[str], python: str, help_runs: bool, work: Path, advice: int) -> list[dict[str, Any]]:
    import nbops

    notebooks = sorted(p for p in corpus.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    rows = []
    for mode in modes:
        store = nbops.open(work / f"store-{mode}")
        for i, nb in enumerate(notebooks):
            rel = nb.relative_to(corpus)
            group = rel.parts[0] if len(rel.parts) > 1 else "."
            path, how = nb, None
            if mode == "markers":
                path = work / mode / rel
                how = marked_copy(nb, path)
            started = time.perf_counter()
            row = export_one(path, work / f"out-{mode}" / str(i), store, python, help_runs)
            row.update(notebook=str(rel), group=group, mode=mode, markers=how,
                       seconds=round(time.perf_counter() - started, 3))  # fmt: skip
            rows.append(row)
            print(f"  [{mode}] {row['status']:8} {rel}", file=sys.stderr, flush=True)
            if mode == "markers" and advice:
                export = functools.partial(export_one, store=store, python=python, help_runs=help_runs)
                last = follow_advice(path, row, advice, work / "out-advice" / str(i), export)
                last.update(notebook=str(rel), group=group, markers=how)
                rows.append(last)
                if last["rounds"]:
                    print(
                        f"  [advice]  {last['status']:8} {rel} ({last['rounds']} rounds)", file=sys.stderr, flush=True
                    )
        store.close()
    return rows


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        for group in (row["group"], "all"):
            t = table.setdefault((group, row["mode"]), defaultdict(int, group=group, mode=row["mode"]))
            t["tried"] += 1
            t[row["status"]] += 1
            for m in row["modules"]:
                t["modules"] += 1
                t["compiled"] += m["compiles"]
                if m["help"] is not None:
                    t["help_tried"] += 1
                    t["help_ok"] += m["help"]
    return [dict(t) for _, t in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0] == "all", kv[0][0]))]


def report(rows: list[dict[str, Any]]) -> None:
    cols = ["group", "mode", "tried", "exported", "refused", "crashed", "modules", "compiled", "help_tried", "help_ok"]
    width = {c: 14 if c == "mode" else 10 for c in cols}
    print("  ".join(f"{c:>{width[c]}}" for c in cols))
    for t in figures(rows):
        print("  ".join(f"{t.get(c, 0)!s:>{width[c]}}" for c in cols))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        refused: dict[str, list[dict[str, Any]]] = defaultdict(list)
        crashed: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["mode"] == mode and row["status"] == "refused":
                refused[f"{row['error_type']}: {row['reason']}"].append(row)
            elif row["mode"] == mode and row["status"] == "crashed":
                crashed[row["crash"]].append(row)
        print(f"\n== {mode}: refusals by class")
        for reason, hits in sorted(refused.items(), key=lambda kv: -len(kv[1])):
            print(f"{len(hits):4}  {reason}\n      e.g. {hits[0]['notebook']}: {hits[0]['message'][:200]}")
            parts = [p for hit in hits for p in hit.get("parts", [])]
            for part in sorted(set(parts), key=lambda p: -parts.count(p)):
                print(f"        {parts.count(part):4} notebooks: {part}")
        if mode == "markers+advice":
            rows_m = [r for r in rows if r["mode"] == mode]
            helped = [r for r in rows_m if r["status"] == "exported" and r["tagged"]]
            print(
                f"\n== {mode}: {len(helped)} notebooks export once the advice is followed "
                f"({sum(len(r['tagged']) for r in helped)} cells tagged into a second stage)"
            )
            print(f"\n== {mode}: each remaining refusal (rounds, cells tagged, why following stopped)")
            for row in (r for r in rows_m if r["status"] == "refused"):
                print(f"      {row['notebook']}: {row['rounds']} rounds, {len(row['tagged'])} tagged; {row['stopped']}")
                for line in row["message"].splitlines()[:4]:
                    print(f"          {line[:230]}")
        print(f"\n== {mode}: crashes by class")
        for key, hits in sorted(crashed.items(), key=lambda kv: -len(kv[1])):
            print(f"{len(hits):4}  {key}  e.g. {hits[0]['notebook']}\n{hits[0]['traceback']}")
        bad = [
            (r, m) for r in rows if r["mode"] == mode for m in r["modules"] if not m["compiles"] or m["help"] is False
        ]
        print(f"\n== {mode}: modules that do not compile or whose --help fails ({len(bad)})")
        for row, m in bad:
            print(f"      {row['notebook']} {m['file']}: {m.get('compile_error') or m.get('help_error')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path, help="folder of notebooks (first sub-folder = group)")
    parser.add_argument("--markers", action="store_true", help="also export copies with stage markers added")
    parser.add_argument("--json", type=Path, help="write every row (and the figures) as JSON here")
    parser.add_argument("--no-help", action="store_true", help="do not run `python MODULE --help`")
    parser.add_argument("--python", default=sys.executable, help="interpreter for `--help` (default: this one)")
    parser.add_argument(
        "--follow-advice",
        type=int,
        default=0,
        metavar="N",
        help="with --markers: tag defining cells into a second stage as refusals advise (N rounds)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary exports and stores")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a crash or a module that fails")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        parser.error(f"no folder at {args.corpus}")
    if args.follow_advice and not args.markers:
        parser.error("--follow-advice follows the advice of refusals of marked notebooks: add --markers")
    work = Path(tempfile.mkdtemp(prefix="nbops-corpus-"))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        modes = ["as-is", "markers"] if args.markers else ["as-is"]
        rows = run(args.corpus.resolve(), modes, args.python, not args.no_help, work, args.follow_advice)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(_HOME, ignore_errors=True)
    report(rows)
    if args.json:
        args.json.write_text(json.dumps({"started": started, "figures": figures(rows), "rows": rows}, indent=1))
    failed = any(r["status"] == "crashed" or any(not m["compiles"] or m["help"] is False for m in r["modules"])
                 for r in rows)  # fmt: skip
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
