"""``--verify``: do the exported modules reproduce what the notebook makes?

    >>> result = verify(Path("fraud.ipynb"), Path("pipelines/fraud"))   # doctest: +SKIP
    >>> print(result.text())                                            # doctest: +SKIP
    verify fraud.ipynb vs /work/pipelines/fraud: OK, 9 checks the same
      kind           name              notebook                        pipeline                        status
      snapshot       raw_tx            32aa2dbdaad5c9b6 (20,000 rows)  32aa2dbdaad5c9b6 (20,000 rows)  same
      ...

Two runs on two scratch stores in a temporary folder, then a comparison:

1. the notebook, executed top to bottom by nbclient in a real ``python3``
   kernel (cwd ``<tmp>/a``, ``NBOPS_HOME=<tmp>/a/.nbops``);
2. each stage module of ``out_dir`` in ``manifest.json`` order, each in a
   fresh ``python`` process (cwd ``<tmp>/b``, ``NBOPS_HOME=<tmp>/b/.nbops``);
   a module that fails is reported with the tail of its stderr and the later
   stages are not run.

Neither side sees the caller's ``MLFLOW_TRACKING_URI``: runs, models and
their artifacts go to the scratch stores.  Both stores are then summarised,
each by a fresh process too, so that reading them changes nothing in this
process (MLflow's tracking URI, the lineage of an active run):

- every snapshot name: the digest of its latest version (content only, so
  chunking does not matter) and its row count;
- every feature group version, as of its latest commit: a digest of its rows
  sorted by (keys, event time, other columns), and its row count;
- every MLflow run, matched by experiment and run name (runs with names
  MLflow generated are matched by order within their experiment): its status
  and every metric, equal within a relative tolerance of 1e-9 (a smaller
  difference is noted but counts as the same);
- every registered model: its aliases (versions and run ids differ by nature).

Anything on one side only is a difference.  The notebook is read, never
written; the temporary folder is removed unless ``keep=True``; no kernel or
process is left running.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.errors import ExportError

if TYPE_CHECKING:
    from nbops.store import Store

__all__ = ["METRIC_REL_TOL", "VerifyResult", "summarize", "verify"]

#: Relative tolerance for metrics: floating-point noise, not a different model.
METRIC_REL_TOL = 1e-9
#: Set in the environment of both runs, so that a notebook which itself calls
#: ``%export --verify`` does not start a verification inside a verification.
ACTIVE_ENV = "NBOPS_VERIFYING"
#: Environment variables that would send the runs' MLflow data elsewhere.
_TRACKING_ENV = ("MLFLOW_TRACKING_URI", "NBOPS_MLFLOW_TRACKING_URI")
_STDERR_TAIL = 3000
#: MLflow names unnamed runs "<adjective>-<animal>-<number>" (at most 20 characters).
_GENERATED_RUN_NAME = re.compile(r"[a-z]+-[a-z]+-\d{1,4}")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

SAME = "same"
DIFFERENT = "DIFFERENT"
MISSING_IN_PIPELINE = "missing in pipeline"
MISSING_IN_NOTEBOOK = "missing in notebook"
FAILED = "failed"


@dataclass
class VerifyResult:
    """What a verification compared, one row per artifact.

    Each row is a dict with ``kind`` (snapshot, feature group, run, metric,
    model; notebook, module or store when something failed), ``name``,
    ``notebook`` and ``pipeline`` (what each side has, ``None`` when it has
    nothing), ``status`` (same, DIFFERENT, missing in pipeline, missing in
    notebook, failed) and ``detail`` (why, when there is more to say).
    """

    notebook: Path
    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds: ``notebook``, each module by file name, ``compare``, ``total``.
    timings: dict[str, float] = field(default_factory=dict)
    #: The scratch folder, when kept (``keep=True``).
    workdir: Path | None = None
    #: Why nothing was checked (a verification started inside a verification).
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """True when every row is the same on both sides."""
        return all(row["status"] == SAME for row in self.rows)

    @property
    def differences(self) -> list[dict[str, Any]]:
        """The rows that are not the same on both sides (different, missing, or failed)."""
        return [row for row in self.rows if row["status"] != SAME]

    def headline(self) -> str:
        """The first line of :meth:`text`: OK with the number of checks, how many differ, or why it was skipped."""
        where = f"{self.notebook.name} vs {self.out_dir}"
        if self.skipped:
            return f"verify {where}: skipped ({self.skipped})"
        if self.ok:
            return f"verify {where}: OK, {len(self.rows)} checks the same"
        return f"verify {where}: {len(self.differences)} of {len(self.rows)} checks differ or failed"

    def timing_text(self) -> str:
        """How long each part took, e.g. ``notebook 4.2 s, feature_pipeline.py 1.1 s, ...``."""
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings.items())

    def text(self) -> str:
        """A readable table: one line per check, then the details of failures and differences."""
        lines = [self.headline()]
        if self.rows:
            header = ("kind", "name", "notebook", "pipeline", "status")
            cells = [header, *[tuple(_show(row[k]) for k in header) for row in self.rows]]
            widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
            for line in cells:
                padded = "  ".join(v.ljust(w) for v, w in zip(line[:-1], widths, strict=True))
                lines.append(f"  {padded}  {line[-1]}")
        for row in self.rows:
            if row.get("detail"):
                detail = str(row["detail"]).rstrip().replace("\n", "\n    ")
                lines.append(f"  {row['kind']} {row['name']} ({row['status']}):\n    {detail}")
        if self.timings:
            lines.append(f"  timings: {self.timing_text()}")
        if self.workdir is not None:
            lines.append(f"  scratch stores kept in {self.workdir}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        import html

        import pandas as pd

        parts = [f"<p><strong>{html.escape(self.headline())}</strong></p>"]
        if self.rows:
            columns = ("kind", "name", "notebook", "pipeline", "status", "detail")
            frame = pd.DataFrame([{k: _show(row[k]) for k in columns} for row in self.rows])
            # pandas escapes cell text in to_html.
            parts.append(frame.to_html(index=False, border=0, escape=True))
        if self.timings:
            parts.append(f"<p>timings: {html.escape(self.timing_text())}</p>")
        if self.workdir is not None:
            parts.append(f"<p>scratch stores kept in <code>{html.escape(str(self.workdir))}</code></p>")
        return "\n".join(parts)


def _show(value: Any) -> str:
    return "-" if value is None else str(value)


# -- running ----------------------------------------------------------------------------
def verify(notebook: Path, out_dir: Path, timeout: int = 600, keep: bool = False) -> VerifyResult:
    """Run ``notebook`` and the modules in ``out_dir`` on scratch stores; compare what they make.

    ``timeout`` bounds each notebook cell, each module and each store
    summary, in seconds.  ``keep=True`` keeps the scratch folder (its path is
    ``result.workdir``) to look at the stores, the executed notebook and each
    module's output.
    """
    notebook, out_dir = Path(notebook).resolve(), Path(out_dir).resolve()  # the runs' cwd is elsewhere
    result = VerifyResult(notebook, out_dir)
    if os.environ.get(ACTIVE_ENV):
        result.skipped = "already inside a verification"
        return result
    if not notebook.is_file():
        raise ExportError(f"no notebook at {notebook}")
    modules = _stage_modules(out_dir)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"nbops-verify-{notebook.stem}-")).resolve()
    try:
        side_a, side_b = work / "a", work / "b"
        side_a.mkdir()
        side_b.mkdir()

        clock = time.perf_counter()
        # The kernel learns its notebook's path as JupyterLab would tell it, so that
        # defaults taken from it (%%track's experiment) match the exported modules'.
        kernel_env = {**_environment(side_a), "JPY_SESSION_NAME": str(Path(notebook).resolve())}
        failure = _execute_notebook(notebook, side_a, kernel_env, timeout, keep)
        result.timings["notebook"] = time.perf_counter() - clock
        if failure is not None:
            result.rows.append(failure)

        for position, module in enumerate(modules):
            clock = time.perf_counter()
            failure = _run_module(out_dir / module, side_b, _environment(side_b), timeout)
            result.timings[module] = time.perf_counter() - clock
            if failure is not None:
                later = modules[position + 1 :]
                if later:
                    failure["pipeline"] += f"; not run: {', '.join(later)}"
                result.rows.append(failure)
                break

        clock = time.perf_counter()
        summaries = _summarize_both(side_a, side_b, timeout)
        if all(isinstance(s, dict) for s in summaries):
            result.rows += compare(summaries[0], summaries[1])  # type: ignore[arg-type]
        else:
            for label, summary in zip(("notebook store", "pipeline store"), summaries, strict=True):
                if isinstance(summary, str):
                    result.rows.append(_row("store", label, None, None, FAILED, summary))
        result.timings["compare"] = time.perf_counter() - clock
    finally:
        result.timings["total"] = time.perf_counter() - started
        if keep:
            result.workdir = work
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _stage_modules(out_dir: Path) -> list[str]:
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ExportError(f"no manifest.json in {out_dir}; export the notebook there first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    modules = [str(stage["module"]) for stage in manifest.get("stages", [])]
    missing = [m for m in modules if not (out_dir / m).is_file()]
    if missing:
        raise ExportError(f"{out_dir} lacks {', '.join(missing)} named by its manifest; export again")
    return modules


def _environment(side: Path) -> dict[str, str]:
    """This process's environment with the side's scratch store, and MLflow left to that store."""
    env = {k: v for k, v in os.environ.items() if k not in _TRACKING_ENV}
    env["NBOPS_HOME"] = str(side / ".nbops")
    # Scratch stores are embedded whatever the team set-up says: --verify
    # must never write into a shared catalog or online store.
    env["NBOPS_CATALOG_URL"] = "embedded"
    env["NBOPS_ONLINE_URL"] = "embedded"
    env[ACTIVE_ENV] = "1"
    return env


def _row(kind: str, name: str, notebook: Any, pipeline: Any, status: str, detail: str = "") -> dict[str, Any]:
    return {"kind": kind, "name": name, "notebook": notebook, "pipeline": pipeline, "status": status, "detail": detail}


def _tail(text: str, limit: int = _STDERR_TAIL) -> str:
    text = _ANSI.sub("", text).rstrip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _execute_notebook(
    notebook: Path, cwd: Path, env: Mapping[str, str], timeout: int, keep: bool
) -> dict[str, Any] | None:
    """Execute a copy of the notebook in a fresh kernel; a failed row when a cell fails."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]  # the file is read once; execution works on the copy
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    log_path = cwd / "kernel.log"
    try:
        # The kernel's own output (not the cells') goes to a log beside its store.
        with log_path.open("w", encoding="utf-8") as log:
            # The kernel is shut down on the way out, even on errors.
            client.execute(env=dict(env), stdout=log, stderr=subprocess.STDOUT)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        cell = _failed_cell(nb)
        where = f"cell {cell}" if cell else "the notebook"
        detail = str(exc)
        if isinstance(exc, CellTimeoutError):
            summary = f"{where} timed out after {timeout} s"
        elif isinstance(exc, DeadKernelError):
            summary = f"the kernel died in {where}"
            detail += "\n" + log_path.read_text(encoding="utf-8", errors="replace")
        else:
            summary = f"{where} raised {getattr(exc, 'ename', 'an error')}"
        return _row("notebook", notebook.name, summary, None, FAILED, _tail(detail))
    finally:
        if keep:
            nbformat.write(nb, cwd / f"{notebook.stem}.executed.ipynb")  # type: ignore[no-untyped-call]
    return None


def _failed_cell(nb: Any) -> str | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return f"{index + 1} (id {cell.get('id', '?')})"
    return None


def _run_module(module: Path, cwd: Path, env: Mapping[str, str], timeout: int) -> dict[str, Any] | None:
    """Run one stage module in a fresh process; a failed row when it fails."""
    code, stdout, stderr = _run([sys.executable, str(module)], cwd, env, timeout)
    log = f"$ python {module}\n{stdout}\n--- stderr ---\n{stderr}"
    (cwd / f"{module.stem}.log").write_text(log, encoding="utf-8")
    if code == 0:
        return None
    state = f"timed out after {timeout} s" if code is None else f"exit code {code}"
    return _row("module", module.name, None, state, FAILED, _tail(stderr or stdout))


def _run(argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: int) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr); the process and its children never outlive this."""
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so that its children go with it
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return process.returncode, stdout, stderr
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        return None, stdout, stderr
    finally:
        if process.poll() is None:  # interrupted (e.g. KeyboardInterrupt) while waiting
            _kill_group(process)
            process.communicate()
        _kill_group(process, only_children=True)


def _kill_group(process: subprocess.Popen[str], only_children: bool = False) -> None:
    """SIGKILL the process group the process leads (what it left behind, with ``only_children``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is empty: nothing left running
        os.killpg(process.pid, signal.SIGKILL)
    if not only_children:
        process.wait()


# -- summarising a store -------------------------------------------------------------------
def _summarize_both(side_a: Path, side_b: Path, timeout: int) -> list[dict[str, Any] | str]:
    """Summaries of both scratch stores, each read by a fresh process, both at once."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda side: _summarize_side(side, timeout), (side_a, side_b)))


def _summarize_side(side: Path, timeout: int) -> dict[str, Any] | str:
    """The summary of ``side``'s store, or why it could not be read."""
    root = side / ".nbops"
    if not (root / "catalog.db").exists():
        return _empty_summary()  # nothing ever opened a store on this side
    target = side / "summary.json"
    argv = [sys.executable, "-m", "nbops.exporting.verify", str(root), str(target)]
    code, stdout, stderr = _run(argv, side, _environment(side), timeout)
    if code != 0:
        state = f"timed out after {timeout} s" if code is None else f"exit code {code}"
        return f"reading the store failed ({state}):\n{_tail(stderr or stdout)}"
    summary: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    return summary


def _empty_summary() -> dict[str, Any]:
    return {"snapshots": {}, "feature_groups": {}, "runs": [], "models": {}}


def summarize(store: Store) -> dict[str, Any]:
    """What a store holds, as JSON-ready data that two stores can be compared on.

    Reading records lineage and points MLflow at the store, so
    :func:`verify` calls this in a fresh process (``python -m
    nbops.exporting.verify STORE OUT.json``).
    """
    from pyarrow import ArrowException

    summary = _empty_summary()
    for record in store.datasets().to_dict("records"):
        summary["snapshots"][record["name"]] = {"digest": record["digest"], "rows": int(record["rows"])}
    for record in store.feature_groups().to_dict("records"):
        ref = f"{record['group']}:{record['version']}"
        try:
            summary["feature_groups"][ref] = _group_summary(store, record["group"], int(record["version"]))
        except (TypeError, ValueError, ArrowException) as exc:  # values that neither sort nor hash: say so
            summary["feature_groups"][ref] = {"error": f"{type(exc).__name__}: {exc}"}
    if _tracking_database_ready(store.root):
        summary["runs"], summary["models"] = _tracking_summary(store.root)
    return summary


def _group_summary(store: Store, group: str, version: int) -> dict[str, Any]:
    """Digest of a group version's rows as of its latest commit, in a canonical row order."""
    import pyarrow as pa

    from nbops.core.columns import table_to_pandas
    from nbops.core.hashing import table_digest
    from nbops.featurestore.groups import read_group_table

    gv, commit, table = read_group_table(store, group, version)
    frame = table_to_pandas(table)  # what store.features(group, version) returns
    leading = [*gv.keys, gv.event_time]
    order = [*leading, *(c for c in frame.columns if c not in leading)]
    try:
        frame = frame.sort_values(order, kind="stable", na_position="last")
    except TypeError:  # a column of values that do not order (lists, mixed types)
        frame = frame.sort_values(leading, kind="stable", na_position="last")
    frame = frame.reset_index(drop=True)
    digest = table_digest(pa.Table.from_pandas(frame, preserve_index=False))
    return {"digest": digest, "rows": len(frame), "commits": commit}


def _tracking_database_ready(root: Path) -> bool:
    """True when the store's MLflow database has tables (else no run was ever made)."""
    import sqlite3

    from nbops.core.paths import TRACKING_DB

    path = root / TRACKING_DB
    if not path.exists():
        return False
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'experiments'").fetchone() is not None
    finally:
        db.close()


Runs = list[dict[str, Any]]
Models = dict[str, list[str]]


def _tracking_summary(root: Path) -> tuple[Runs, Models]:
    """Runs (oldest first per experiment) with status and metrics, and models with their aliases.

    Read straight from the store's ``mlflow.db``: importing MLflow takes
    seconds, the query milliseconds.  Should MLflow change those tables,
    MLflow's client reads them instead.
    """
    import sqlite3

    from nbops.core.paths import TRACKING_DB, store_tracking_uri

    try:
        return _tracking_from_database(root / TRACKING_DB)
    except sqlite3.Error:
        return _tracking_from_client(store_tracking_uri(root))


def _tracking_from_database(path: Path) -> tuple[Runs, Models]:
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        runs: dict[str, dict[str, Any]] = {}
        for run_id, experiment, name, status in db.execute(
            "SELECT r.run_uuid, e.name, r.name, r.status FROM runs r JOIN experiments e USING (experiment_id) "
            "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' "
            "ORDER BY e.experiment_id, r.start_time, r.run_uuid"
        ):
            runs[run_id] = {"experiment": experiment, "name": name or "", "status": status, "metrics": {}}
        for run_id, key, value, is_nan in db.execute("SELECT run_uuid, key, value, is_nan FROM latest_metrics"):
            if run_id in runs:
                runs[run_id]["metrics"][key] = math.nan if is_nan else float(value)
        models: Models = {name: [] for (name,) in db.execute("SELECT name FROM registered_models")}
        for name, alias in db.execute("SELECT name, alias FROM registered_model_aliases ORDER BY name, alias"):
            models.setdefault(name, []).append(alias)
    finally:
        db.close()
    return list(runs.values()), models


def _tracking_from_client(uri: str) -> tuple[Runs, Models]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # no process-wide setting changes
    runs: Runs = []
    for experiment in client.search_experiments():
        found = client.search_runs(
            [experiment.experiment_id], max_results=50_000, order_by=["attributes.start_time ASC"]
        )
        for run in found:
            runs.append(
                {
                    "experiment": experiment.name,
                    "name": run.info.run_name or "",
                    "status": run.info.status,
                    "metrics": dict(run.data.metrics),
                }
            )
    models = {m.name: sorted(getattr(m, "aliases", None) or {}) for m in client.search_registered_models()}
    return runs, models


# -- comparing ------------------------------------------------------------------------------
def compare(notebook: Mapping[str, Any], pipeline: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows comparing two store summaries (from :func:`summarize`)."""
    rows = []
    for kind, key in (("snapshot", "snapshots"), ("feature group", "feature_groups")):
        a, b = notebook[key], pipeline[key]
        for name in _union(a, b):
            rows.append(_compare_table(kind, name, a.get(name), b.get(name)))
    rows += _compare_runs(notebook["runs"], pipeline["runs"])
    for name in _union(notebook["models"], pipeline["models"]):
        a, b = notebook["models"].get(name), pipeline["models"].get(name)
        shown_a, shown_b = (None if x is None else "aliases: " + (", ".join(x) or "none") for x in (a, b))
        rows.append(_row("model", name, shown_a, shown_b, _status(a, b, a == b)))
    return rows


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    return sorted(set(a) | set(b))


def _status(a: object, b: object, same: bool) -> str:
    if a is None:
        return MISSING_IN_NOTEBOOK
    if b is None:
        return MISSING_IN_PIPELINE
    return SAME if same else DIFFERENT


def _compare_table(kind: str, name: str, a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    def shown(side: Mapping[str, Any] | None) -> str | None:
        if side is None:
            return None
        if "error" in side:
            return "unreadable"
        return f"{side['digest'][:16]} ({side['rows']:,} rows)"

    errors = [side["error"] for side in (a, b) if side is not None and "error" in side]
    if errors:
        return _row(kind, name, shown(a), shown(b), FAILED, "\n".join(errors))
    same = a is not None and b is not None and a["digest"] == b["digest"] and a["rows"] == b["rows"]
    detail = ""
    if a is not None and b is not None and not same:
        detail = f"rows {a['rows']:,} vs {b['rows']:,}" if a["rows"] != b["rows"] else "same rows, different values"
    return _row(kind, name, shown(a), shown(b), _status(a, b, same), detail)


def _compare_runs(a_runs: Sequence[Mapping[str, Any]], b_runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for a, b in match_runs(a_runs, b_runs):
        either = a if a is not None else b
        assert either is not None
        name = f"{either['experiment']}/{either['name']}"
        if a is not None and b is not None and a["name"] != b["name"]:
            name += f" ~ {b['name']}"  # names MLflow made up, matched by order
        status_a = a["status"] if a is not None else None
        status_b = b["status"] if b is not None else None
        rows.append(_row("run", name, status_a, status_b, _status(a, b, status_a == status_b)))
        a_metrics = a["metrics"] if a is not None else {}
        b_metrics = b["metrics"] if b is not None else {}
        for key in _union(a_metrics, b_metrics):
            rows.append(_compare_metric(f"{name}: {key}", a_metrics.get(key), b_metrics.get(key)))
    return rows


def _compare_metric(name: str, a: float | None, b: float | None) -> dict[str, Any]:
    shown_a, shown_b = (None if v is None else repr(float(v)) for v in (a, b))
    if a is None or b is None:
        return _row("metric", name, shown_a, shown_b, _status(a, b, False))
    if a == b or (math.isnan(a) and math.isnan(b)):
        return _row("metric", name, shown_a, shown_b, SAME)
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return _row("metric", name, shown_a, shown_b, DIFFERENT)
    close = math.isclose(a, b, rel_tol=METRIC_REL_TOL, abs_tol=0.0)
    relative = abs(a - b) / max(abs(a), abs(b))
    detail = f"differ by {abs(a - b):.3g} (relative {relative:.3g}; tolerance {METRIC_REL_TOL:g})"
    return _row("metric", name, shown_a, shown_b, SAME if close else DIFFERENT, detail)


def match_runs(
    a_runs: Sequence[Mapping[str, Any]], b_runs: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """Pairs of runs: by experiment and name (the k-th run of a name with the k-th),
    then runs MLflow named at random by their order within the experiment; the
    rest alone.  Runs arrive oldest first."""
    pairs: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
    experiments = list(dict.fromkeys([r["experiment"] for r in [*a_runs, *b_runs]]))
    for experiment in experiments:
        a_left = [r for r in a_runs if r["experiment"] == experiment]
        b_left = [r for r in b_runs if r["experiment"] == experiment]
        for a in list(a_left):
            b = next((r for r in b_left if r["name"] == a["name"]), None)
            if b is not None:
                pairs.append((a, b))
                a_left.remove(a)
                b_left.remove(b)
        a_generated = [r for r in a_left if _generated(r["name"])]
        b_generated = [r for r in b_left if _generated(r["name"])]
        for a, b in zip(a_generated, b_generated, strict=False):
            pairs.append((a, b))
            a_left.remove(a)
            b_left.remove(b)
        pairs += [(a, None) for a in a_left]
        pairs += [(None, b) for b in b_left]
    return pairs


def _generated(name: str) -> bool:
    return not name or (len(name) <= 20 and _GENERATED_RUN_NAME.fullmatch(name) is not None)


def _summary_main(argv: Sequence[str]) -> int:
    """``python -m nbops.exporting.verify STORE OUT.json``: write the store's summary."""
    from nbops.store import open as open_store

    if len(argv) != 2:
        print("usage: python -m nbops.exporting.verify STORE OUT.json", file=sys.stderr)
        return 2
    with open_store(argv[0]) as store:
        summary = summarize(store)
    Path(argv[1]).write_text(json.dumps(summary, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_summary_main(sys.argv[1:]))
