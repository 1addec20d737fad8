"""Export a notebook into versioned feature, training and inference pipeline modules.

    >>> result = nbops.export("fraud.ipynb", out="pipelines/")   # doctest: +SKIP
    >>> result.version, sorted(result.files)                    # doctest: +SKIP

writes ``OUT/<stem>/feature_pipeline.py``, ``training_pipeline.py``,
``inference_pipeline.py`` (the stages the notebook has), ``manifest.json``
and ``test_pipelines.py``, plus any ``%%writefile`` files.  The notebook is
read, never changed, and never executed (``verify`` executes it, on a
scratch store).  Each export is recorded in the store's catalog: an
unchanged export keeps its version and rewrites nothing.

Text from the notebook (file name, metadata, cell ids, parameters, strings)
reaches the generated files only as literals, and export writes only inside
``OUT``: never through a symbolic link (see :mod:`nbops.exporting.writing`).
A ``%%writefile`` may not replace a generated file nor shadow a module the
pipelines import (``nbops``, the standard library, installed packages).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from nbops.errors import ExportError
from nbops.exporting.cells import (
    STAGES,
    Cell,
    Finding,
    Selection,
    analyse,
    assign_stage,
    execution_order_findings,
    select_stage,
)

if TYPE_CHECKING:
    from nbops.store import Store

EXPORT_FORMAT = 1
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

__all__ = ["ExportError", "ExportResult", "export", "history", "plan"]


@dataclass
class ExportResult:
    """What one export made: the files of ``<stem>@<version>``, its manifest, and the findings.

    ``files`` holds every generated file by name (written or not); ``written`` the
    ones this export wrote, none when it was ``unchanged``.
    """

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
        """The stage modules among the files (``feature_pipeline.py`` ...), in manifest order."""
        return [name for name in self.files if name.endswith("_pipeline.py")]

    def summary(self) -> str:
        """What ``%export`` and ``nbops export`` print: the version, where, each module's cells, and warnings."""
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
    files: dict[str, str]  # the export version as render.VERSION_PLACEHOLDER; no manifest.json
    manifest: dict[str, Any]  # "version" is render.VERSION_PLACEHOLDER
    findings: list[Finding]
    selections: dict[str, Selection] = field(default_factory=dict)
    latest: bool = False  # store reads without the notebook's version pins

    def manifest_at(self, version: int) -> dict[str, Any]:
        """The manifest of export ``version``."""
        manifest: dict[str, Any] = json.loads(json.dumps(self.manifest))
        manifest["version"] = version
        return manifest

    def files_at(self, version: int) -> dict[str, str]:
        """Every file of export ``version``, ``manifest.json`` included.

        The modules are rendered again with the version in them: nothing in
        :attr:`files` is searched and replaced, so no text from the notebook
        can be mistaken for the version's place.
        """
        from nbops.exporting import render

        files = dict(self.files)
        for stage, chosen in self.stages.items():
            selection = self.selections[stage]
            files[render.MODULES[stage]], _ = render.module(
                self.stem, stage, chosen, {p: self.params[p] for p in selection.parameters}, self.notebook.name,
                self.notebook_sha256, self.manifest["nbops_version"], version, selection.reads, self.latest,
            )  # fmt: skip
        files["manifest.json"] = json.dumps(self.manifest_at(version), indent=2, sort_keys=False) + "\n"
        return files


def _read_cells(path: Path) -> tuple[list[Cell], bytes]:
    import nbformat

    raw = path.read_bytes()
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # not JSON, not a notebook, not UTF-8: all the same to the user
        raise ExportError(f"cannot read {path} as a notebook: {exc}") from None
    cells = []
    for index, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        cell_id = c.get("id")
        if not isinstance(cell_id, str) or not _SAFE_ID.fullmatch(cell_id):
            cell_id = f"cell{index + 1}"  # ids go into comments and the manifest: keep them plain
        metadata = c.get("metadata")
        tags = metadata.get("tags", []) if isinstance(metadata, dict) else []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ExportError(f"cell {index + 1} (id {cell_id}): its metadata 'tags' must be a list of strings")
        if not isinstance(c.get("source"), str):
            raise ExportError(f"cell {index + 1} (id {cell_id}): its source is not text")
        count = c.get("execution_count")
        cells.append(
            Cell(
                index=index,
                id=cell_id,
                source=c.source,
                tags=tuple(tags),
                execution_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
        )
    return cells, raw


def plan(notebook: str | os.PathLike[str], target: str | None = None, latest: bool = False) -> Plan:
    """Read the notebook and work out every file of its export (writes nothing).

    ``latest``: a later stage reads what an earlier one persisted without the
    notebook's version pins (``store.features(group)`` rather than ``version=2``).
    """
    from nbops._version import __version__
    from nbops.exporting import render
    from nbops.exporting.translate import translate

    path = Path(notebook)
    if not path.is_file():
        raise ExportError(f"no notebook at {path}")
    if target not in (None, "airflow"):
        raise ExportError(f"unknown target {target!r}; the one adapter is 'airflow'")
    from nbops.core.names import experiment_name_from, pipeline_name_from

    stem = pipeline_name_from(path.stem)  # `1_feature_pipeline` -> `nb_1_feature_pipeline`: never blocks export
    experiment = experiment_name_from(path.stem)  # what %%track uses in the notebook
    cells, raw = _read_cells(path)
    sha = hashlib.sha256(raw).hexdigest()
    requirements: list[str] = []
    extra_files: dict[str, str] = {}
    writers: dict[str, Cell] = {}
    dropped: dict[str, list[str]] = {}
    import ast

    for cell in cells:
        assign_stage(cell)
        if not cell.source.strip():
            continue
        if cell.stage == "skip":
            _analyse_skipped(cell, experiment)  # only so that findings can name what it defines
            continue
        cell.source = _without_leading_indent(cell.source)
        translated = translate(cell, experiment=experiment)
        cell.code = translated.code
        requirements += translated.requirements
        for name in getattr(translated, "requirement_files", []):
            requirements += _requirement_file(path, name, cell)
        for name, content in translated.files.items():
            if name in extra_files and extra_files[name] != content:
                raise ExportError(f"{cell.label}: %%writefile {name} is written twice with different contents")
            extra_files[name] = content
            writers.setdefault(name, cell)
        if translated.dropped:
            dropped[cell.id] = translated.dropped
        try:
            analyse(cell, ast.parse(cell.code))
        except (SyntaxError, ValueError) as exc:  # translate() checks the syntax; this is a last guard
            raise ExportError(f"{cell.label}: cannot read the cell: {exc}") from None
    param_cells = [c for c in cells if c.stage == "parameters"]
    if len(param_cells) > 1:
        raise ExportError("more than one cell is tagged 'parameters'; keep one")
    params = render.parameters(param_cells[0] if param_cells else None)

    findings = execution_order_findings(cells)
    stages: dict[str, list[Cell]] = {}
    selections: dict[str, Selection] = {}
    for stage in STAGES:
        if not any(c.in_stage(stage) for c in cells):
            continue
        selection = select_stage(cells, stage, params)
        selections[stage] = selection
        stages[stage] = [c for c in selection.cells if c.stage != "parameters" and c.code.strip()]
        findings += [f for f in selection.findings if f not in findings]
    fatal = [f for f in findings if f.fatal]
    if fatal:
        shown = "\n".join(f"  - {f.message}" for f in fatal[:10])
        more = f"\n  ... and {len(fatal) - 10} more" if len(fatal) > 10 else ""
        raise ExportError(
            f"{fatal[0].message}"
            if len(fatal) == 1
            else f"{len(fatal)} names would be undefined in the exported modules:\n{shown}{more}"
        )
    if not stages:
        raise ExportError(
            f"{path.name} has no stage: tag cells feature / training / inference, start one with "
            "'# nbops: feature', or use %%features / %%track"
        )

    files: dict[str, str] = {}
    stage_entries = []
    parameters_of: dict[str, dict[str, Any]] = {}
    for stage, chosen in stages.items():
        selection = selections[stage]
        stage_params = parameters_of[stage] = {p: params[p] for p in selection.parameters}
        source, ranges = render.module(
            stem, stage, chosen, stage_params, path.name, sha, __version__, None, selection.reads, latest
        )
        _check_compiles(source, render.MODULES[stage], ranges, chosen)
        files[render.MODULES[stage]] = source
        stage_entries.append(
            {
                "stage": stage,
                "module": render.MODULES[stage],
                "parameters": list(stage_params),
                "store_reads": [
                    {"name": r.name, "read": r.expression(latest), "what": r.what} for r in selection.reads
                ],
                "cells": [
                    {
                        "id": cid,
                        "index": next(c.index for c in chosen if c.id == cid),
                        "lines": [a, b],
                        "reason": next(c.stage_reason or "dependency" for c in chosen if c.id == cid),
                    }
                    for cid, a, b in ranges
                ],
            }
        )
    for name, content in extra_files.items():
        _check_writefile(name, writers[name], stem)
        files[name] = content
    files["test_pipelines.py"] = render.test_module(stem, list(stages))
    if target == "airflow":
        files[f"{stem}_dag.py"] = render.airflow_dag(stem, parameters_of)
    all_cells = [c for chosen in stages.values() for c in chosen]
    manifest = {
        "format": EXPORT_FORMAT,
        "pipeline": stem,
        "version": render.VERSION_PLACEHOLDER,
        "notebook": {"path": str(path.resolve()), "name": path.name, "sha256": sha},
        "nbops_version": __version__,
        "parameters": params,
        "stages": stage_entries,
        "requirements": render.requirements(render.imported_modules(all_cells), requirements),
        "store_references": _store_references(all_cells),
        "files": sorted(n for n in files if n != "manifest.json"),
        "dropped": dropped,
        "findings": [{"kind": f.kind, "cell": f.cell, "name": f.name, "message": f.message} for f in findings],
    }
    return Plan(stem, path, sha, cells, params, stages, files, manifest, findings, selections, latest)


#: Files export writes (or Python makes) beside the modules, besides the modules themselves.
_GENERATED = ("manifest.json", "test_pipelines.py", "__pycache__")
#: Modules the generated files import, or that Python imports at start-up, which may not be installed here.
_ALWAYS_SHADOWED = frozenset({"nbops", "pytest", "_pytest", "pendulum", "airflow", "sitecustomize", "usercustomize"})


def _check_writefile(name: str, cell: Cell, stem: str) -> None:
    """A ``%%writefile`` that would replace a generated file, or shadow an imported module, is an ExportError."""
    from nbops.exporting import render

    first = PurePosixPath(name).parts[0]
    generated = [*render.MODULES.values(), *_GENERATED, f"{stem}_dag.py"]
    # Compared without case: on macOS and Windows, Feature_Pipeline.py is feature_pipeline.py.
    taken = next((g for g in generated if g.casefold() == first.casefold()), None)
    if taken is not None:
        raise ExportError(f"{cell.label}: %%writefile {name!r} would overwrite the generated {taken}; rename it")
    module = _module_of(name)
    if module is not None and module in _shadowed_modules():
        raise ExportError(
            f"{cell.label}: %%writefile {name!r} would shadow the module {module!r} that the pipelines import "
            "(a file beside the modules is found before any installed one); rename it"
        )


def _module_of(name: str) -> str | None:
    """The top-level module a file at ``name`` would define (``pandas.py``, ``pandas/...`` -> pandas), if any."""
    import importlib.machinery

    parts = PurePosixPath(name).parts
    if len(parts) > 1:
        return parts[0]  # a package folder
    for suffix in sorted(importlib.machinery.all_suffixes(), key=len, reverse=True):
        if parts[0].endswith(suffix) and len(parts[0]) > len(suffix):
            return parts[0][: -len(suffix)]
    return None


def _shadowed_modules() -> frozenset[str]:
    """Top-level modules a running pipeline may import: nbops, the standard library, every installed package.

    Which of them an export imports depends on the code paths it takes (nbops
    imports pandas, MLflow, ...), so every module of this environment counts.
    """
    from nbops.exporting import render

    installed = {name for name in render._distributions() if name.isidentifier()}
    return _ALWAYS_SHADOWED | frozenset(sys.stdlib_module_names) | installed


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
            f"{label}: {exc.msg} once inside main() (e.g. `from m import *` or a top-level await); write it another way"
        ) from None


def _without_leading_indent(source: str) -> str:
    """The cell as IPython runs it: a first line's indentation is removed from every line that has it."""
    lines = source.split("\n")
    first = next((line for line in lines if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip(" \t"))]
    if not indent:
        return source
    return "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines)


def _requirement_file(notebook: Path, name: str, cell: Cell) -> list[str]:
    """The requirements of ``pip install -r NAME``, read beside the notebook (options and includes refused)."""
    where = (notebook.parent / name) if not Path(name).is_absolute() else Path(name)
    try:
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(
            f"{cell.label}: `pip install -r {name}` needs {where} to list the requirements: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise ExportError(
                f"{cell.label}: line {number} of {name} ({line.split()[0]}) is a pip option, not a package; "
                "list the packages themselves"
            )
        found.append(line)
    return found


def _analyse_skipped(cell: Cell, experiment: str) -> None:
    import ast

    from nbops.exporting.translate import translate

    try:
        analyse(cell, ast.parse(translate(cell, experiment=experiment).code))
    except (ExportError, SyntaxError, ValueError):
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
                save_as = keywords.get("save_as")
                if isinstance(save_as, str):
                    writes.append(save_as)
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
    latest: bool = False,
) -> ExportResult:
    """Export ``notebook`` into ``OUT/<stem>/``; record the version in the store's catalog.

    ``<stem>`` is the notebook's file name made a valid pipeline name
    (``1_feature_pipeline.ipynb`` -> ``nb_1_feature_pipeline``); the manifest
    keeps the original.  ``latest``: see :func:`plan`.
    """
    from nbops.core import repository
    from nbops.exporting import writing
    from nbops.store import current

    store = store if store is not None else current()
    p = plan(notebook, target, latest)
    # The path as typed (relative or absolute) is not content: the notebook's hash is.
    versioned = {**p.manifest, "notebook": {"sha256": p.notebook_sha256}}
    content_digest = _digest(p.files | {"manifest.json": json.dumps(versioned, sort_keys=True)})
    out_dir = writing.folder_in(Path(out).expanduser().resolve(), p.stem)
    writing.check_targets(out_dir, [*p.files, "manifest.json"])  # before the catalog records a version
    version, unchanged = _record(store, p, content_digest, out_dir)
    files = p.files_at(version)
    manifest = p.manifest_at(version)
    written = _write(out_dir, files)
    repository.set_export_folder(store.catalog, p.stem, version, str(out_dir))
    result = ExportResult(p.stem, version, out_dir, files, manifest, p.findings, unchanged and not written, written)
    if verify:
        from nbops.exporting.verify import verify as run_verify

        result.verification = run_verify(p.notebook, out_dir)  # type: ignore[attr-defined]
    return result


def _record(store: Store, p: Plan, digest: str, out_dir: Path) -> tuple[int, bool]:
    from nbops.core import audit, repository

    audit.check_writable(f"export {p.stem!r}")
    return repository.record_export(
        store.catalog, p.stem, digest, str(p.notebook.resolve()), p.notebook_sha256, str(out_dir), p.manifest
    )


def _write(out_dir: Path, files: dict[str, str]) -> list[str]:
    """Write files whose content differs (atomically, never through a link); return the names written."""
    from nbops.exporting import writing

    return writing.write_files(out_dir, files)


def history(notebook_or_stem: str, store: Store | None = None) -> Any:
    """Every export version of a notebook: version, time, digest, notebook hash, folder."""
    import pandas as pd

    from nbops.core import catalog as cat
    from nbops.core import repository
    from nbops.store import current

    store = store if store is not None else current()
    from nbops.core.names import pipeline_name_from

    stem = pipeline_name_from(Path(notebook_or_stem).stem)
    rows = repository.exports(store.catalog, stem)
    return pd.DataFrame(
        {
            "version": [r.version for r in rows],
            "created": pd.to_datetime([cat.as_utc(r.created) for r in rows], utc=True),
            "digest": [r.digest[:16] for r in rows],
            "notebook_sha256": [r.notebook_sha256[:16] for r in rows],
            "out_dir": [r.out_dir for r in rows],
        }
    )
