"""Catalog queries that the layers above the domains ask for, as small functions.

The facade (its summary), the exporter (the ``exports`` table) and the panels
(details of a commit or an export) read and write the catalog only through
these: none of them writes SQL.  Each function opens its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from nbops.core import audit
from nbops.core import catalog as cat

if TYPE_CHECKING:
    import pandas as pd

    from nbops.core.catalog import Catalog


# -- shared by the domains' repositories ---------------------------------------------------
def rows_frame(
    rows: Sequence[Any], columns: Mapping[str, str | Callable[[Any], Any]], times: Sequence[str] = ()
) -> pd.DataFrame:
    """Catalog rows as a DataFrame: each column a row attribute (or a function of the row); ``times`` as UTC.

    ``times`` name output columns whose values are catalog times (naive UTC): they become
    time-zone aware ``datetime64[..., UTC]`` columns.
    """
    import pandas as pd

    data: dict[str, Any] = {}
    for name, source in columns.items():
        values = [source(r) if callable(source) else getattr(r, source) for r in rows]
        data[name] = pd.to_datetime([cat.as_utc(v) for v in values], utc=True) if name in times else values
    return pd.DataFrame(data)


def insert_columns(
    conn: sa.Connection, table: sa.Table, owner: dict[str, int], names: list[str], digests: Sequence[str]
) -> None:
    """The column rows of one version or commit: ``owner`` (e.g. ``{"snapshot_id": 3}``), position, name, object."""
    conn.execute(
        table.insert(),
        [
            {**owner, "position": i, "name": name, "object_digest": d}
            for i, (name, d) in enumerate(zip(names, digests, strict=True))
        ],
    )


def latest_version_digest(conn: sa.Connection, table: sa.Table, owner: sa.ColumnElement[bool]) -> Any:
    """``(version, digest)`` of the latest row of a versioned ``table`` (snapshots, exports) that ``owner`` picks, or None."""
    return conn.execute(
        sa.select(table.c.version, table.c.digest).where(owner).order_by(table.c.version.desc()).limit(1)
    ).first()


def _commit_query(group: str, version: int | None, commit: int | None, *columns: Any) -> sa.Select[Any]:
    """``SELECT columns`` (of a commit, its group version or group) of feature commit ``group:version@commit``."""
    g, v, c = cat.feature_groups, cat.feature_group_versions, cat.feature_commits
    return (
        sa.select(*columns)
        .select_from(c)
        .join(v, v.c.id == c.c.group_version_id)
        .join(g, g.c.id == v.c.group_id)
        .where(g.c.name == group, v.c.version == version, c.c.commit_no == commit)
    )


# -- the store as a whole ------------------------------------------------------------------
def counts(catalog: Catalog) -> dict[str, int]:
    """How many datasets, snapshot versions, feature groups, commits and objects (and their bytes) the catalog holds."""
    with catalog.read() as conn:
        n_datasets = conn.execute(sa.select(sa.func.count()).select_from(cat.datasets)).scalar_one()
        n_versions = conn.execute(sa.select(sa.func.count()).select_from(cat.snapshots)).scalar_one()
        n_objects, n_bytes = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(cat.objects.c.bytes), 0))
        ).one()
        n_groups = conn.execute(sa.select(sa.func.count()).select_from(cat.feature_groups)).scalar_one()
        n_commits = conn.execute(sa.select(sa.func.count()).select_from(cat.feature_commits)).scalar_one()
    return {
        "datasets": n_datasets,
        "snapshot_versions": n_versions,
        "feature_groups": n_groups,
        "feature_commits": n_commits,
        "objects": n_objects,
        "bytes": int(n_bytes),
    }


def has_object(catalog: Catalog, digest: str) -> bool:
    """Whether the catalog has a row for object ``digest`` (else the object is an orphan)."""
    with catalog.read() as conn:
        row = conn.execute(sa.select(cat.objects.c.digest).where(cat.objects.c.digest == digest)).first()
    return row is not None


def snapshot_digest(conn: sa.Connection, name: str, version: int) -> Any:
    """``(digest, rows)`` of snapshot ``name@version`` (a row), or None."""
    return conn.execute(
        sa.select(cat.snapshots.c.digest, cat.snapshots.c.rows)
        .join(cat.datasets, cat.datasets.c.id == cat.snapshots.c.dataset_id)
        .where(cat.datasets.c.name == name, cat.snapshots.c.version == version)
    ).first()


def commit_digest(conn: sa.Connection, group: str, version: int, commit: int) -> Any:
    """``(digest, total rows)`` of feature commit ``group:version@commit`` (a row), or None."""
    c = cat.feature_commits
    return conn.execute(_commit_query(group, version, commit, c.c.digest, c.c.total_rows)).first()


# -- feature commits -----------------------------------------------------------------------
def commit_detail(catalog: Catalog, group: str, version: int, commit: int) -> Any:
    """Expectations, statistics, validation, lineage and sizes of one commit (a row), or None."""
    v, c = cat.feature_group_versions, cat.feature_commits
    with catalog.read() as conn:
        return conn.execute(
            _commit_query(
                group,
                version,
                commit,
                v.c.expectations,
                v.c.online,
                v.c.description,
                c.c.statistics,
                c.c.validation,
                c.c.lineage,
                c.c.digest,
                c.c.rows,
                c.c.total_rows,
                c.c.created,
                c.c.author,
            )
        ).first()


def commit_context(catalog: Catalog, group: str, version: int | None, commit: int | None) -> dict[str, Any]:
    """The notebook and cell recorded with a commit ({} when none was)."""
    with catalog.read() as conn:
        lineage = conn.execute(_commit_query(group, version, commit, cat.feature_commits.c.lineage)).scalar()
    return dict(json.loads(lineage)) if lineage else {}


# -- exported pipelines --------------------------------------------------------------------
def record_export(
    catalog: Catalog,
    pipeline: str,
    digest: str,
    notebook: str,
    notebook_sha256: str,
    out_dir: str,
    manifest: dict[str, Any],
) -> tuple[int, bool]:
    """Record an export of ``pipeline`` with content ``digest``: ``(version, unchanged)``.

    The same content as the latest version is that version (``unchanged``);
    other content is the next version, audited in the same transaction.
    """
    with catalog.write() as conn:
        latest = latest_version_digest(conn, cat.exports, cat.exports.c.pipeline == pipeline)
        if latest is not None and latest.digest == digest:
            return int(latest.version), True
        version = (latest.version if latest else 0) + 1
        now = cat.utcnow()
        conn.execute(
            cat.exports.insert().values(
                pipeline=pipeline,
                version=version,
                digest=digest,
                notebook=notebook,
                notebook_sha256=notebook_sha256,
                out_dir=out_dir,
                manifest=json.dumps(manifest, default=str),
                created=now,
            )
        )
        audit.record_write(conn, "pipeline", f"{pipeline}@{version}", now)
    return version, False


def set_export_folder(catalog: Catalog, pipeline: str, version: int, out_dir: str) -> None:
    """Where export ``pipeline@version`` was last written."""
    with catalog.write() as conn:
        conn.execute(
            cat.exports.update()
            .where(cat.exports.c.pipeline == pipeline, cat.exports.c.version == version)
            .values(out_dir=out_dir)
        )


def exports(catalog: Catalog, pipeline: str) -> list[Any]:
    """Every export version of ``pipeline`` (rows of the ``exports`` table), oldest first."""
    with catalog.read() as conn:
        return list(
            conn.execute(
                sa.select(cat.exports).where(cat.exports.c.pipeline == pipeline).order_by(cat.exports.c.version)
            ).all()
        )


def export(catalog: Catalog, pipeline: str, version: int) -> Any:
    """Export ``pipeline@version`` (a row of the ``exports`` table), or None."""
    with catalog.read() as conn:
        return conn.execute(
            sa.select(cat.exports).where(cat.exports.c.pipeline == pipeline, cat.exports.c.version == version)
        ).first()
