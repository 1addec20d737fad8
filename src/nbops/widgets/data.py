"""The plain data behind the panels: pages, diffs with sample rows, details, graph layout.

Nothing here imports IPython or ipywidgets, so all of it is tested as plain
Python.  Reads made for a panel are not lineage reads: looking at a version
does not make it a parent of the next thing the notebook writes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbops.core import catalog as cat
from nbops.core import repository
from nbops.errors import NotFoundError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from nbops.core.refs import SnapshotDiff
    from nbops.store import Store

#: Rows shown per page in every panel table.
PAGE_SIZE = 50
#: Rows shown in a preview and per side in a diff's sample.
SAMPLE_ROWS = 10


def text(value: Any) -> str:
    """A cell value as the short text a table shows."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    try:
        import pandas as pd

        if value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


def page_bounds(page: int, total: int, size: int = PAGE_SIZE) -> tuple[int, int]:
    """[start, stop) of a page, the page clamped to the ones that exist."""
    pages = max(1, math.ceil(total / size))
    page = min(max(page, 0), pages - 1)
    return page * size, min(total, (page + 1) * size)


# -- snapshots ---------------------------------------------------------------------------
def preview(store: Store, name: str, version: int, limit: int = SAMPLE_ROWS) -> pd.DataFrame:
    """The first ``limit`` rows of ``name`` version ``version``, as pandas (not a lineage read)."""
    from nbops.core.columns import table_to_pandas
    from nbops.datasets import snapshots

    table = snapshots.load_table(store, name, version, record=False)
    return table_to_pandas(table.slice(0, limit))


@dataclass
class DiffSample:
    """A diff of two versions with a few of the rows behind its counts."""

    diff: SnapshotDiff
    added: pd.DataFrame
    removed: pd.DataFrame
    #: With keys: the key columns, then ``column (vA)`` / ``column (vB)`` for each changed value column.
    changed: pd.DataFrame
    keys: tuple[str, ...] = field(default_factory=tuple)


def diff_sample(
    store: Store, name: str, a: int, b: int, keys: Sequence[str] = (), limit: int = SAMPLE_ROWS
) -> DiffSample:
    """``store.diff`` plus up to ``limit`` added, removed and changed rows."""
    import duckdb

    from nbops.datasets import snapshots

    table_a = snapshots.load_table(store, name, a, record=False)
    table_b = snapshots.load_table(store, name, b, record=False)
    summary = snapshots.compare_tables(name, a, b, table_a, table_b, list(keys))
    types_a = {f.name: f.type for f in table_a.schema}
    common = [f.name for f in table_b.schema if types_a.get(f.name) == f.type]

    def q(column: str) -> str:
        return '"' + column.replace('"', '""') + '"'

    con = duckdb.connect()
    try:
        con.register("ta", table_a.select(common))
        con.register("tb", table_b.select(common))
        cols = ", ".join(q(c) for c in common)
        if keys:
            values = [c for c in common if c not in keys]
            on = " AND ".join(f"a.{q(k)} IS NOT DISTINCT FROM b.{q(k)}" for k in keys)
            key_list = ", ".join(f"a.{q(k)}" for k in keys)
            added = con.sql(f"SELECT b.* FROM tb b ANTI JOIN ta a ON {on} LIMIT {int(limit)}").to_arrow_table()
            removed = con.sql(f"SELECT a.* FROM ta a ANTI JOIN tb b ON {on} LIMIT {int(limit)}").to_arrow_table()
            differs = " OR ".join(f"a.{q(c)} IS DISTINCT FROM b.{q(c)}" for c in values) or "false"
            pairs = ", ".join(f"a.{q(c)} AS {q(f'{c} (v{a})')}, b.{q(c)} AS {q(f'{c} (v{b})')}" for c in values)
            changed = con.sql(
                f"SELECT {key_list}{', ' + pairs if pairs else ''} FROM ta a JOIN tb b ON {on} "
                f"WHERE {differs} LIMIT {int(limit)}"
            ).to_arrow_table()
            changed_frame = _only_changed_pairs(_frame(changed), values, a, b, keys)
        else:
            added = con.sql(
                f"SELECT {cols} FROM tb EXCEPT ALL SELECT {cols} FROM ta LIMIT {int(limit)}"
            ).to_arrow_table()
            removed = con.sql(
                f"SELECT {cols} FROM ta EXCEPT ALL SELECT {cols} FROM tb LIMIT {int(limit)}"
            ).to_arrow_table()
            import pandas as pd

            changed_frame = pd.DataFrame()
    finally:
        con.close()
    return DiffSample(summary, _frame(added), _frame(removed), changed_frame, tuple(keys))


def _frame(table: pa.Table) -> pd.DataFrame:
    from nbops.core.columns import table_to_pandas

    return table_to_pandas(table)


def _only_changed_pairs(
    frame: pd.DataFrame, values: Sequence[str], a: int, b: int, keys: Sequence[str]
) -> pd.DataFrame:
    """Keep the before/after columns of values that changed in at least one sampled row."""
    keep = list(keys)
    for column in values:
        before, after = frame[f"{column} (v{a})"], frame[f"{column} (v{b})"]
        same = (before == after) | (before.isna() & after.isna())
        if not bool(same.all()):
            keep += [f"{column} (v{a})", f"{column} (v{b})"]
    return frame[keep]


# -- feature groups ------------------------------------------------------------------------
def group_detail(store: Store, group: str, version: int, commit: int) -> dict[str, Any]:
    """Statistics, expectations, validation and lineage of one commit of a group version."""
    row = repository.commit_detail(store.catalog, group, version, commit)
    if row is None:
        raise NotFoundError(f"feature group {group}:{version} has no commit {commit}")
    ref = f"{group}:{version}@{commit}"
    graph = store.lineage(ref)
    parents = [e["parent"] for e in graph["edges"] if e["child"] == graph["root"]]
    children = [e["child"] for e in graph["edges"] if e["parent"] == graph["root"]]
    return {
        "ref": ref,
        # A commit's statistics are computed when first asked for (here, if nobody asked yet).
        "statistics": (
            json.loads(row.statistics)
            if row.statistics is not None
            else store.feature_statistics(group, version, commit)
        ),
        "expectations": json.loads(row.expectations) if row.expectations else [],
        "validation": json.loads(row.validation) if row.validation else None,
        "online": bool(row.online),
        "description": row.description,
        "digest": row.digest,
        "rows": row.rows,
        "total_rows": row.total_rows,
        "created": cat.as_utc(row.created),
        "author": row.author,
        "context": json.loads(row.lineage) if row.lineage else {},
        "parents": parents,
        "children": children,
    }


# -- runs --------------------------------------------------------------------------------
@contextmanager
def _tracking_errors() -> Iterator[None]:
    """MLflow's errors as a :class:`~nbops.tracking.experiments.TrackingError` whose message names no credential.

    MLflow's own messages quote the request URL, with the password of a
    tracking URI such as ``http://user:pw@host``; a panel shows the message.
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        import mlflow

        from nbops.core.redact import env_secrets, redact_text, url_secrets
        from nbops.tracking.experiments import TrackingError

        secrets = [*url_secrets(mlflow.get_tracking_uri()), *env_secrets()]
        raise TrackingError(f"MLflow: {redact_text(str(exc), *secrets)}") from None


def experiments(store: Store) -> list[tuple[str, str]]:
    """(id, name) of every active experiment, by name."""
    from nbops.tracking import experiments as tracking

    tracking.ensure_backend(store)
    with _tracking_errors():
        found = tracking.client().search_experiments()
    return sorted(((str(e.experiment_id), e.name) for e in found), key=lambda p: p[1])


@dataclass
class RunsPage:
    """One page of runs, each a dict as the runs table shows it.

    ``next_token`` is None on the last page; ``metrics`` and ``params`` are the names its runs have.
    """

    runs: list[dict[str, Any]]
    next_token: str | None
    metrics: list[str]
    params: list[str]


def runs_page(store: Store, experiment_ids: Sequence[str], token: str | None = None, size: int = PAGE_SIZE) -> RunsPage:
    """One page of runs, newest first, read with MLflow's own paging (not all 10,000 at once)."""
    from nbops.tracking import experiments as tracking

    tracking.ensure_backend(store)
    if not experiment_ids:
        return RunsPage([], None, [], [])
    with _tracking_errors():
        found = tracking.client().search_runs(
            list(experiment_ids), max_results=size, order_by=["attributes.start_time DESC"], page_token=token
        )
    runs = []
    metrics: dict[str, None] = {}
    params: dict[str, None] = {}
    for r in found:
        start = _ms(r.info.start_time)
        end = _ms(r.info.end_time)
        runs.append(
            {
                "run_id": r.info.run_id,
                "experiment_id": str(r.info.experiment_id),
                "run_name": r.info.run_name or r.info.run_id[:8],
                "status": r.info.status,
                "start_time": start,
                "duration_s": (end - start).total_seconds() if start and end else None,
                "inputs": [d.dataset.name for d in r.inputs.dataset_inputs] if r.inputs else [],
                "params": dict(r.data.params),
                "metrics": dict(r.data.metrics),
            }
        )
        metrics.update(dict.fromkeys(sorted(r.data.metrics)))
        params.update(dict.fromkeys(sorted(r.data.params)))
    return RunsPage(runs, found.token or None, list(metrics), list(params))


def _ms(value: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC) if value else None


def as_number(value: Any) -> float | None:
    """A param as a number for an axis, or None when it is not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# -- lineage -------------------------------------------------------------------------------
def lineage_graph(store: Store, ref: str) -> dict[str, Any]:
    """``store.lineage(ref)`` with the notebook cells that wrote feature commits and runs."""
    graph = store.lineage(ref)
    nodes = {n["id"]: dict(n) for n in graph["nodes"]}
    edges = [dict(e) for e in graph["edges"]]
    for node in list(nodes.values()):
        context = artifact_context(store, node)
        if node["kind"] == "run" and context.get("run_name"):
            node["label"] = str(context["run_name"])
        cell = context.get("cell_id") or (context.get("cell_sha256") or "")[:12]
        if not cell:
            continue
        notebook = str(context.get("notebook") or "notebook")
        cell_id = f"cell:{notebook}#{cell}"
        nodes.setdefault(cell_id, {"id": cell_id, "kind": "cell", "ref": f"{notebook.rsplit('/', 1)[-1]} #{cell}"})
        edge = {"parent": cell_id, "child": node["id"]}
        if edge not in edges:
            edges.append(edge)
    return {"root": graph["root"], "nodes": list(nodes.values()), "edges": edges}


def artifact_context(store: Store, node: dict[str, str]) -> dict[str, Any]:
    """Notebook and cell recorded with a feature commit or a run ({} for other kinds)."""
    if node["kind"] == "feature_commit":
        from nbops.featurestore.groups import parse_group_ref

        group, version, commit = parse_group_ref(node["ref"])
        return repository.commit_context(store.catalog, group, version, commit)
    if node["kind"] == "run":
        from mlflow.exceptions import MlflowException

        from nbops.tracking import experiments as tracking

        tracking.ensure_backend(store)
        try:
            tags = tracking.client().get_run(node["ref"]).data.tags
        except MlflowException:  # a run deleted from MLflow still has lineage edges
            return {}
        context = {k[len("nbops.") :]: v for k, v in tags.items() if k.startswith("nbops.")}
        if tags.get("mlflow.runName"):
            context["run_name"] = tags["mlflow.runName"]
        return context
    return {}


def node_details(store: Store, node: dict[str, str]) -> list[tuple[str, str]]:
    """What the panel shows for a selected lineage node, as (label, text) pairs."""
    kind, ref = node["kind"], node["ref"]
    rows: list[tuple[str, str]] = [("kind", kind.replace("_", " ")), ("reference", ref)]
    if kind == "snapshot":
        r = store.ref(ref)
        rows += [
            ("digest", r.digest),
            ("rows", f"{r.rows:,}"),
            ("columns", ", ".join(r.columns)),
            ("created", text(r.created)),
            ("message", r.message or ""),
            ("author", r.author or ""),
        ]
    elif kind == "feature_commit":
        from nbops.featurestore.groups import parse_group_ref

        group, version, commit = parse_group_ref(ref)
        d = group_detail(store, group, int(version or 1), int(commit or 1))
        rows += [
            ("digest", d["digest"]),
            ("rows written", f"{d['rows']:,}"),
            ("rows visible", f"{d['total_rows']:,}"),
            ("features", ", ".join(d["statistics"])),
            ("created", text(d["created"])),
            ("author", d["author"] or ""),
            ("online", text(d["online"])),
        ]
    elif kind == "run":
        from nbops.tracking import experiments as tracking

        tracking.ensure_backend(store)
        with _tracking_errors():
            run = tracking.client().get_run(ref)
        rows += [
            ("run name", run.info.run_name or ""),
            ("status", run.info.status),
            ("started", text(_ms(run.info.start_time))),
        ]
        rows += [(f"param {k}", v) for k, v in sorted(run.data.params.items())]
        rows += [(f"metric {k}", text(v)) for k, v in sorted(run.data.metrics.items())]
    elif kind == "model":
        from nbops.tracking import experiments as tracking

        tracking.ensure_backend(store)
        name, _, model_version = ref.rpartition("@")
        with _tracking_errors():
            mv = tracking.client().get_model_version(name, model_version)
        rows += [
            ("source run", mv.run_id or ""),
            ("aliases", ", ".join(getattr(mv, "aliases", []) or [])),
            ("status", mv.status or ""),
            ("created", text(_ms(mv.creation_timestamp))),
        ]
    elif kind == "pipeline":
        stem, _, export_version = ref.rpartition("@")
        row = repository.export(store.catalog, stem, int(export_version))
        if row is not None:
            rows += [
                ("notebook", row.notebook),
                ("notebook sha256", row.notebook_sha256[:16]),
                ("modules in", row.out_dir),
                ("created", text(cat.as_utc(row.created))),
            ]
    elif kind == "cell":
        notebook, _, cell = node["id"][len("cell:") :].rpartition("#")
        rows += [("notebook", notebook), ("cell", cell)]
    return rows


#: Left-to-right order of kinds when the graph has no edge to say otherwise.
_KIND_ORDER = {"cell": 0, "snapshot": 1, "feature_commit": 2, "run": 3, "model": 4, "pipeline": 5}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def layout(
    graph: dict[str, Any], node_width: int = 190, node_height: int = 36, gap_x: int = 60, gap_y: int = 16
) -> dict[str, Any]:
    """Positions for a left-to-right layered drawing.

    A node's layer is the longest path to it from a node without parents;
    inside a layer nodes are ordered by the mean position of their parents
    (one barycentre sweep), which keeps most edges from crossing.
    """
    ids = [n["id"] for n in graph["nodes"]]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for e in graph["edges"]:
        if e["parent"] in parents and e["child"] in parents:
            parents[e["child"]].append(e["parent"])
    layer: dict[str, int] = {}

    def depth(node: str, trail: frozenset[str] = frozenset()) -> int:
        if node in layer:
            return layer[node]
        ups = [p for p in parents[node] if p not in trail]  # a cycle would recurse forever
        layer[node] = 0 if not ups else 1 + max(depth(p, trail | {node}) for p in ups)
        return layer[node]

    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    for i in sorted(ids, key=lambda i: _KIND_ORDER.get(kinds[i], 9)):
        depth(i)
    columns: dict[int, list[str]] = {}
    for i in ids:
        columns.setdefault(layer[i], []).append(i)
    row_of: dict[str, float] = {}
    for x in sorted(columns):
        members = columns[x]
        members.sort(
            key=lambda i: (_mean([row_of[p] for p in parents[i] if p in row_of]), _KIND_ORDER.get(kinds[i], 9), i)
        )
        for position, i in enumerate(members):
            row_of[i] = float(position)
    nodes = []
    for n in graph["nodes"]:
        text = str(n.get("label") or n["ref"])
        label = text if len(text) <= 26 else text[:12] + "…" + text[-12:]
        nodes.append(
            {
                **n,
                "label": label,
                "x": 10 + layer[n["id"]] * (node_width + gap_x),
                "y": 10 + int(row_of[n["id"]]) * (node_height + gap_y),
            }
        )
    width = 20 + (max(layer.values(), default=0) + 1) * (node_width + gap_x) - gap_x
    height = 20 + max((len(m) for m in columns.values()), default=1) * (node_height + gap_y) - gap_y
    return {
        "nodes": nodes,
        "edges": graph["edges"],
        "width": width,
        "height": height,
        "node_width": node_width,
        "node_height": node_height,
    }
