"""Export a notebook into versioned feature, training and inference pipeline modules.

    >>> result = nbops.export("fraud.ipynb", out="pipelines/")   # doctest: +SKIP
    >>> result.version, sorted(result.files)                    # doctest: +SKIP

writes ``OUT/<stem>/feature_pipeline.py``, ``training_pipeline.py``,
``inference_pipeline.py`` (the stages the notebook has), ``manifest.json``
and ``test_pipelines.py``, plus any ``%%writefile`` files.  The notebook is
read, never changed, and never executed (``verify`` executes it, on a
scratch store).  Each export is recorded in the store's catalog: an
unchanged export keeps its version and rewrites nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.exporting.cells import (
    STAGES,
    Cell,
    ExportError,
    Finding,
    analyse,
    assign_stage,
    execution_order_findings,
    select,
)

if TYPE_CHECKING:
    from nbops.store import Store

EXPORT_FORMAT = 1
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

__all__ = ["ExportError", "ExportResult", "export", "history", "plan"]


@dataclass
class ExportResult:
    stem: str
    version: int
    out_dir: Path
    files: dict[str, str]  # relative name -> content
    manifest: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    unchanged: bool = False
    written: list[str] = field(default_factory=list)

    @property
    def modules(self) -> list[str]:
        return [name for name in self.files if name.endswith("_pipeline.py")]

    def summary(self) -> str:
        state = "unchanged, nothing rewritten" if self.unchanged else f"wrote {len(self.written)} files"
        lines = [f"{self.stem}@{self.version} -> {self.out_dir} ({state})"]
        for stage in self.manifest["stages"]:
            cells = ", ".join(c["id"] for c in stage["cells"])
            lines.append(f"  {stage['module']}: cells {cells}")
        for finding in self.findings:
            lines.append(f"  warning: {finding.message}")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())


@dataclass
class Plan:
    """Everything an export would write, before anything is written."""

    stem: str
    notebook: Path
    notebook_sha256: str
    cells: list[Cell]
    params: dict[str, Any]
    stages: dict[str, list[Cell]]
    files: dict[str, str]
    manifest: dict[str, Any]
    findings: list[Finding]


def _read_cells(path: Path) -> tuple[list[Cell], bytes]:
    import nbformat

    raw = path.read_bytes()
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as exc:  # not JSON, not a notebook, not UTF-8: all the same to the user
        raise ExportError(f"cannot read {path} as a notebook: {exc}") from None
    cells = []
    for index, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        cell_id = str(c.get("id") or "")
        if not _SAFE_ID.fullmatch(cell_id):
            cell_id = f"cell{index + 1}"  # ids go into comments and the manifest: keep them plain
        cells.append(
            Cell(
                index=index,
                id=cell_id,
                source=c.source,
                tags=tuple(c.get("metadata", {}).get("tags", [])),
                execution_count=c.get("execution_count"),
            )
        )
    return cells, raw


def plan(notebook: str | os.PathLike[str], target: str | None = None) -> Plan:
    """Read the notebook and work out every file of its export (writes nothing)."""
    from nbops._version import __version__
    from nbops.exporting import render
    from nbops.exporting.translate import translate

    path = Path(notebook)
    if not path.is_file():
        raise ExportError(f"no notebook at {path}")
    if target not in (None, "airflow"):
        raise ExportError(f"unknown target {target!r}; the one adapter is 'airflow'")
    stem = path.stem
    from nbops.names import validate_name

    try:
        validate_name(stem.replace(".", "_"), "notebook")
    except Exception as exc:
        raise ExportError(f"the notebook's name cannot name a pipeline: {exc}") from None
    stem = stem.replace(".", "_")
    cells, raw = _read_cells(path)
    sha = hashlib.sha256(raw).hexdigest()
    requirements: list[str] = []
    extra_files: dict[str, str] = {}
    dropped: dict[str, list[str]] = {}
    import ast

    for cell in cells:
        assign_stage(cell)
        if not cell.source.strip():
            continue
        if cell.stage == "skip":
            _analyse_skipped(cell, stem)  # only so that findings can name what it defines
            continue
        translated = translate(cell, experiment=stem)
        cell.code = translated.code
        requirements += translated.requirements
        for name, content in translated.files.items():
            if name in extra_files and extra_files[name] != content:
                raise ExportError(f"{cell.label}: %%writefile {name} is written twice with different contents")
            extra_files[name] = content
        if translated.dropped:
            dropped[cell.id] = translated.dropped
        analyse(cell, ast.parse(cell.code))
    param_cells = [c for c in cells if c.stage == "parameters"]
    if len(param_cells) > 1:
        raise ExportError("more than one cell is tagged 'parameters'; keep one")
    params = render.parameters(param_cells[0] if param_cells else None)

    findings = execution_order_findings(cells)
    stages: dict[str, list[Cell]] = {}
    for stage in STAGES:
        if not any(c.stage == stage for c in cells):
            continue
        chosen, found = select(cells, stage, params)
        stages[stage] = [c for c in chosen if c.stage != "parameters" and c.code.strip()]
        findings += [f for f in found if f not in findings]
    if not stages:
        raise ExportError(
            f"{path.name} has no stage: tag cells feature / training / inference, start one with "
            "'# nbops: feature', or use %%features / %%track"
        )

    files: dict[str, str] = {}
    stage_entries = []
    for stage, chosen in stages.items():
        source, ranges = render.module(stem, stage, chosen, params, path.name, sha, __version__)
        _check_compiles(source, render.MODULES[stage], ranges, chosen)
        files[render.MODULES[stage]] = source
        stage_entries.append(
            {
                "stage": stage,
                "module": render.MODULES[stage],
                "cells": [
                    {"id": cid, "index": next(c.index for c in chosen if c.id == cid), "lines": [a, b],
                     "reason": next(c.stage_reason or "dependency" for c in chosen if c.id == cid)}
                    for cid, a, b in ranges
                ],
            }
        )
    for name, content in extra_files.items():
        if name in files or name in ("manifest.json", "test_pipelines.py"):
            raise ExportError(f"%%writefile {name} would overwrite a generated file; rename it")
        files[name] = content
    files["test_pipelines.py"] = render.test_module(stem, list(stages))
    if target == "airflow":
        files[f"{stem}_dag.py"] = render.airflow_dag(stem, list(stages))
    all_cells = [c for chosen in stages.values() for c in chosen]
    manifest = {
        "format": EXPORT_FORMAT,
        "pipeline": stem,
        "version": render.VERSION_PLACEHOLDER,
        "notebook": {"path": str(path.resolve()), "sha256": sha},
        "nbops_version": __version__,
        "parameters": params,
        "stages": stage_entries,
        "requirements": render.requirements(render.imported_modules(all_cells), requirements),
        "store_references": _store_references(all_cells),
        "files": sorted(n for n in files if n != "manifest.json"),
        "dropped": dropped,
        "findings": [{"kind": f.kind, "cell": f.cell, "name": f.name, "message": f.message} for f in findings],
    }
    return Plan(stem, path, sha, cells, params, stages, files, manifest, findings)


def _check_compiles(source: str, name: str, ranges: list[tuple[str, int, int]], cells: list[Cell]) -> None:
    """A module that does not compile is an error naming the cell (e.g. ``from m import *``)."""
    try:
        compile(source, name, "exec")
    except SyntaxError as exc:
        line = exc.lineno or 0
        where = next((cid for cid, a, b in ranges if a <= line <= b), None)
        cell = next((c for c in cells if c.id == where), None)
        label = cell.label if cell is not None else name
        raise ExportError(
            f"{label}: {exc.msg} once inside main() (e.g. `from m import *` or a top-level await); "
            "write it another way"
        ) from None


def _analyse_skipped(cell: Cell, stem: str) -> None:
    import ast

    from nbops.exporting.translate import translate

    try:
        analyse(cell, ast.parse(translate(cell, experiment=stem).code))
    except (ExportError, SyntaxError):
        cell.defines = set()  # a skipped cell may hold anything; it defines nothing we can see


def _store_references(cells: list[Cell]) -> dict[str, list[str]]:
    """Names the code reads and writes through the store, where they are literal strings."""
    import ast

    reads: list[str] = []
    writes: list[str] = []
    for cell in cells:
        for node in ast.walk(ast.parse(cell.code)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            literals = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            keywords = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            if method in ("load", "load_table", "features", "history") and literals:
                reads.append(literals[0])
            elif method in ("snapshot", "register_features") and literals:
                writes.append(literals[0])
            elif method in ("training_data", "online_features"):
                for arg in node.args:
                    if isinstance(arg, ast.List):
                        reads += [e.value for e in arg.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if isinstance(keywords.get("save_as"), str):
                    writes.append(keywords["save_as"])
    return {"reads": sorted(set(reads)), "writes": sorted(set(writes))}


def _digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


def export(
    notebook: str | os.PathLike[str],
    out: str | os.PathLike[str] = "pipelines",
    store: Store | None = None,
    target: str | None = None,
    verify: bool = False,
) -> ExportResult:
    """Export ``notebook`` into ``OUT/<stem>/``; record the version in the store's catalog."""
    from nbops import catalog as cat
    from nbops.store import current

    store = store if store is not None else current()
    p = plan(notebook, target)
    # The path as typed (relative or absolute) is not content: the notebook's hash is.
    versioned = {**p.manifest, "notebook": {"sha256": p.notebook_sha256}}
    content_digest = _digest(p.files | {"manifest.json": json.dumps(versioned, sort_keys=True)})
    out_dir = Path(out).expanduser().resolve() / p.stem
    version, unchanged = _record(store, p, content_digest, out_dir)
    files = {name: text.replace("{{NBOPS_EXPORT_VERSION}}", str(version)) for name, text in p.files.items()}
    manifest = json.loads(json.dumps(p.manifest).replace("{{NBOPS_EXPORT_VERSION}}", str(version)))
    manifest["version"] = version
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    written = _write(out_dir, files)
    with store.catalog.write() as conn:
        conn.execute(
            cat.exports.update()
            .where(cat.exports.c.pipeline == p.stem, cat.exports.c.version == version)
            .values(out_dir=str(out_dir))
        )
    result = ExportResult(p.stem, version, out_dir, files, manifest, p.findings, unchanged and not written, written)
    if verify:
        from nbops.exporting.verify import verify as run_verify

        result.verification = run_verify(p.notebook, out_dir)  # type: ignore[attr-defined]
    return result


def _record(store: Store, p: Plan, digest: str, out_dir: Path) -> tuple[int, bool]:
    import sqlalchemy as sa

    from nbops import audit
    from nbops import catalog as cat

    audit.check_writable(f"export {p.stem!r}")
    with store.catalog.write() as conn:
        latest = conn.execute(
            sa.select(cat.exports.c.version, cat.exports.c.digest)
            .where(cat.exports.c.pipeline == p.stem)
            .order_by(cat.exports.c.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.digest == digest:
            return int(latest.version), True
        version = (latest.version if latest else 0) + 1
        now = cat.utcnow()
        conn.execute(
            cat.exports.insert().values(
                pipeline=p.stem,
                version=version,
                digest=digest,
                notebook=str(p.notebook.resolve()),
                notebook_sha256=p.notebook_sha256,
                out_dir=str(out_dir),
                manifest=json.dumps(p.manifest, default=str),
                created=now,
            )
        )
        audit.record_write(conn, "pipeline", f"{p.stem}@{version}", now)
    return version, False


def _write(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Write files whose content differs (atomically, by rename); return the names written."""
    written = []
    for name, content in files.items():
        target = out_dir / name
        if target.exists() and target.read_text(encoding="utf-8") == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, target)  # generated files, not versions: replacing is the point
        written.append(name)
    return written


def history(notebook_or_stem: str, store: Store | None = None) -> Any:
    """Every export version of a notebook: version, time, digest, notebook hash, folder."""
    import pandas as pd
    import sqlalchemy as sa

    from nbops import catalog as cat
    from nbops.store import current

    store = store if store is not None else current()
    stem = Path(notebook_or_stem).stem.replace(".", "_")
    with store.catalog.read() as conn:
        rows = conn.execute(
            sa.select(cat.exports).where(cat.exports.c.pipeline == stem).order_by(cat.exports.c.version)
        ).all()
    return pd.DataFrame(
        {
            "version": [r.version for r in rows],
            "created": pd.to_datetime([cat.as_utc(r.created) for r in rows], utc=True),
            "digest": [r.digest[:16] for r in rows],
            "notebook_sha256": [r.notebook_sha256[:16] for r in rows],
            "out_dir": [r.out_dir for r in rows],
        }
    )
