"""Publishing a feature group as a Delta Lake table: version k of the table is commit k, for any reader.

Each table is read back by ``deltalake``'s reader and by Polars (another
engine, which plans its own Parquet reads from the Delta log), never through
nbops, and compared value for value with ``store.features(group, as_of=k)``.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbops
from helpers.s3server import CREDENTIALS, S3Server, s3_server_fixture  # noqa: F401  (provides the s3_server fixture)
from nbops.cli import main as cli
from nbops.errors import InvalidInputError, NotFoundError, PublishError
from nbops.featurestore import publish as publishing
from nbops.featurestore.groups import read_group_table
from nbops.store import Store

DAY = dt.timedelta(days=1)
T0 = pd.Timestamp("2025-01-01", tz="UTC")


def frame(keys: list[int], days: list[int], values: list[float], **more: Any) -> pd.DataFrame:
    return pd.DataFrame({"cc_num": keys, "ts": [T0 + d * DAY for d in days], "amount": values, **more})


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """A table's rows as tuples of Python values, sorted: equal whatever the engine's row order and types."""
    names = table.column_names
    return sorted((tuple(r[n] for n in names) for r in table.to_pylist()), key=repr)


def stored(store: Store, group: str, commit: int) -> list[tuple[Any, ...]]:
    """The rows nbops holds as of ``commit``, as Python values (the types nbops stores)."""
    _, _, table = read_group_table(store, group, as_of=commit)
    return rows(table.replace_schema_metadata(None).combine_chunks().cast(_python_types(table.schema)))


def _python_types(schema: pa.Schema) -> pa.Schema:
    """Dictionaries as their values: a reader of the Delta table sees the strings."""
    return pa.schema(
        [pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type) for f in schema]
    )


def assert_every_version_equals_its_commit(store: Store, group: str, uri: Path) -> None:
    import polars as pl

    table = DeltaTable(str(uri))
    commits = store.feature_commits(group)["commit"].tolist()
    assert table.version() == commits[-1]
    assert DeltaTable(str(uri), version=0).to_pyarrow_table().num_rows == 0
    for k in commits:
        expected = stored(store, group, k)
        by_deltalake = DeltaTable(str(uri), version=k).to_pyarrow_table()
        assert rows(by_deltalake) == expected, f"version {k}"
        by_polars = pl.read_delta(str(uri), version=k).to_arrow()
        assert rows(by_polars) == expected, f"version {k} read by Polars"
    refs = [h["nbops.ref"] for h in publishing.history(str(uri))]
    assert refs == [f"{group}:1", *(f"{group}:1@{k}" for k in commits)]


# -- every commit, every path ----------------------------------------------------------------
def test_inserts_updates_and_late_commits_each_become_one_equal_delta_version(store: Store, tmp_path: Path) -> None:
    uri = tmp_path / "lake" / "tx"
    store.register_features(frame([1, 2], [0, 1], [1.0, 2.0]), "tx", keys="cc_num", event_time="ts")
    first = store.publish("tx", str(uri))
    assert first.published == (1,) and first.latest == 1
    store.register_features(frame([3], [2], [3.0]), "tx", keys="cc_num", event_time="ts")  # appends
    store.register_features(frame([2, 4], [1, 3], [20.0, 4.0]), "tx", keys="cc_num", event_time="ts")  # merges
    store.register_features(frame([1], [5], [np.nan]), "tx", keys="cc_num", event_time="ts")
    report = store.publish("tx", str(uri))
    assert report.published == (2, 3, 4) and str(report).startswith("published tx:1 commits 2..4")
    assert_every_version_equals_its_commit(store, "tx", uri)
    operations = [h["operation"] for h in sorted(DeltaTable(str(uri)).history(), key=lambda h: h["version"])]
    assert operations == ["WRITE", "WRITE", "WRITE", "MERGE", "WRITE"]


def test_every_dtype_a_notebook_makes_is_stored_value_for_value(
    store: Store, sample_df: pd.DataFrame, tmp_path: Path
) -> None:
    df = sample_df.assign(key=[1, 2, 3, 4], ts=[T0 + d * DAY for d in range(4)])
    store.register_features(df, "wide", keys="key", event_time="ts")
    store.register_features(df.iloc[[0, 1]].assign(u8=np.uint8(9)), "wide", keys="key", event_time="ts")
    uri = tmp_path / "wide"
    store.publish("wide", str(uri))
    assert_every_version_equals_its_commit(store, "wide", uri)
    delta = DeltaTable(str(uri)).to_pyarrow_table().schema
    assert delta.field("u8").type == pa.int16()  # uint8 255 stays 255, not -1
    assert delta.field("ts_naive").type == pa.timestamp("us")  # timestamp_ntz
    assert delta.field("ts_paris").type == pa.timestamp("us", tz="UTC")  # the same instants, in UTC


def test_float_keys_are_written_as_the_whole_state_and_still_equal(store: Store, tmp_path: Path) -> None:
    # A SQL join would not match -0.0 with 0.0 as nbops does: such commits are written whole, not merged.
    df = pd.DataFrame({"k": [0.5, 1.5], "ts": [T0, T0], "v": [1, 2]})
    store.register_features(df, "fk", keys="k", event_time="ts")
    store.register_features(df.assign(v=[10, 20]), "fk", keys="k", event_time="ts")
    uri = tmp_path / "fk"
    store.publish("fk", str(uri))
    assert_every_version_equals_its_commit(store, "fk", uri)
    assert [h["operation"] for h in DeltaTable(str(uri)).history()][0] == "WRITE"


def test_several_keys_with_hyphenated_names_merge_on_all_of_them(store: Store, tmp_path: Path) -> None:
    df = pd.DataFrame({"shop-id": [1, 1, 2], "cc-num": ["a", "b", "a"], "ts": [T0] * 3, "x-y": [1.0, 2.0, 3.0]})
    store.register_features(df, "multi", keys=["shop-id", "cc-num"], event_time="ts")
    store.register_features(df.iloc[[1, 2]].assign(**{"x-y": [5.0, 6.0]}), "multi", keys=["shop-id", "cc-num"],
                            event_time="ts")  # fmt: skip
    uri = tmp_path / "multi"
    store.publish("multi", str(uri))
    assert_every_version_equals_its_commit(store, "multi", uri)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.floats(-1e6, 1e6)), min_size=1, max_size=6),
        min_size=1,
        max_size=4,
    ),
    publish_after=st.integers(1, 4),
)
def test_any_sequence_of_upserts_published_in_any_two_calls_equals_the_store(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[tuple[int, int, float]]], publish_after: int
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    with nbops.open(folder / ".nbops") as store:
        for i, batch in enumerate(batches, start=1):
            unique = {(k, d): v for k, d, v in batch}  # one row per (key, time) in one insert
            keys, days = zip(*unique, strict=True)
            store.register_features(frame(list(keys), list(days), list(unique.values())), "g", keys="cc_num",
                                    event_time="ts")  # fmt: skip
            if i == publish_after:
                store.publish("g", str(folder / "t"))
        store.publish("g", str(folder / "t"))
        assert_every_version_equals_its_commit(store, "g", folder / "t")


def test_a_table_on_object_storage_is_published_and_extended_the_same_way(
    store: Store, s3_server: S3Server, tmp_path: Path
) -> None:
    s3_server.create_bucket("lake")
    options = {
        "AWS_ENDPOINT_URL": f"http://{s3_server.endpoint}",
        "AWS_ACCESS_KEY_ID": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    uri = "s3://lake/features/tx"
    store.register_features(frame([1, 2], [0, 1], [1.0, 2.0]), "tx", keys="cc_num", event_time="ts")
    assert store.publish("tx", uri, storage_options=options).published == (1,)
    store.register_features(frame([2, 3], [1, 2], [20.0, 3.0]), "tx", keys="cc_num", event_time="ts")
    assert store.publish("tx", uri, storage_options=options).published == (2,)
    assert store.publish("tx", uri, storage_options=options).published == ()
    for k in (1, 2):
        assert rows(DeltaTable(uri, version=k, storage_options=options).to_pyarrow_table()) == stored(store, "tx", k)


# -- idempotent, resumable, up to a commit ----------------------------------------------------
def test_publishing_again_writes_nothing(store: Store, tmp_path: Path) -> None:
    store.register_features(frame([1], [0], [1.0]), "tx", keys="cc_num", event_time="ts")
    uri = tmp_path / "tx"
    store.publish("tx", str(uri))
    log_files = sorted((uri / "_delta_log").iterdir())
    again = store.publish("tx", str(uri))
    assert again.published == () and str(again) == f"tx:1 at {uri} is up to date (commit 1)"
    assert sorted((uri / "_delta_log").iterdir()) == log_files


def test_a_publish_killed_between_versions_is_finished_by_the_next_call(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        store.register_features(frame([i, 10], [i, 0], [float(i), 9.0 + i]), "tx", keys="cc_num", event_time="ts")
    uri = tmp_path / "tx"
    env = {**os.environ, "NBOPS_FAULT": "between_published_commits"}
    code = f"import nbops; nbops.open({str(store.root)!r}).publish('tx', {str(uri)!r})"
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert DeltaTable(str(uri)).version() == 1  # the first commit is a whole version; nothing of the second
    resumed = store.publish("tx", str(uri))
    assert resumed.published == (2, 3)
    assert_every_version_equals_its_commit(store, "tx", uri)


def test_up_to_a_commit_then_the_rest(store: Store, tmp_path: Path) -> None:
    for i in range(3):
        store.register_features(frame([i], [i], [float(i)]), "tx", keys="cc_num", event_time="ts")
    uri = tmp_path / "tx"
    assert store.publish("tx:1@2", str(uri)).published == (1, 2)
    with pytest.raises(PublishError, match=r"holds commits up to 2, past the asked tx:1@1"):
        store.publish("tx@1", str(uri))
    assert store.publish("tx", str(uri)).published == (3,)
    assert_every_version_equals_its_commit(store, "tx", uri)


def test_each_group_version_is_its_own_table(store: Store, tmp_path: Path) -> None:
    store.register_features(frame([1], [0], [1.0]), "tx", keys="cc_num", event_time="ts")
    store.register_features(frame([1], [0], [1.0], extra=[1]), "tx", keys="cc_num", event_time="ts", version=2)
    store.publish("tx:1", str(tmp_path / "v1"))
    report = store.publish("tx", str(tmp_path / "v2"))  # the latest version
    assert (report.version, report.published) == (2, (1,))
    assert DeltaTable(str(tmp_path / "v2")).schema().to_arrow().names == ["cc_num", "ts", "amount", "extra"]
    with pytest.raises(PublishError, match=r"holds tx:1 commit 0 as version 0, not tx:2"):
        store.publish("tx:2", str(tmp_path / "v1"))


# -- refused, and nothing written -----------------------------------------------------------
def _versions(uri: Path) -> int | None:
    return DeltaTable(str(uri)).version() if uri.exists() else None


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pd.Series([2**63, 1], dtype="uint64"), r"column 'bad' \(uint64\) cannot be stored as Delta int64"),
        (
            pd.Series(
                pd.to_datetime(["2025-01-01 00:00:00.000000001", "2025-01-02"], format="ISO8601"), dtype="M8[ns]"
            ),
            r"column 'bad' \(timestamp\[ns\]\) cannot be stored as Delta timestamp\[us\]",
        ),
        (
            pd.Series(pd.to_timedelta([1, 2], unit="s"), dtype="m8[ns]"),
            r"column 'bad' has type duration\[ns\], which Delta Lake cannot store",
        ),
    ],
    ids=["uint64-past-long", "nanoseconds", "duration"],
)
def test_a_value_delta_cannot_hold_is_refused_naming_the_column_before_anything_is_written(
    store: Store, tmp_path: Path, column: pd.Series, message: str
) -> None:
    store.register_features(frame([1, 2], [0, 1], [1.0, 2.0], bad=column), "tx", keys="cc_num", event_time="ts")
    uri = tmp_path / "tx"
    with pytest.raises(PublishError, match=message):
        store.publish("tx", str(uri))
    assert _versions(uri) is None


def test_a_table_written_by_something_else_is_not_extended(store: Store, tmp_path: Path) -> None:
    store.register_features(frame([1], [0], [1.0]), "tx", keys="cc_num", event_time="ts")
    uri = tmp_path / "foreign"
    write_deltalake(str(uri), pa.table({"cc_num": [7]}))
    with pytest.raises(PublishError, match=r"has version 0 \(WRITE\) that nbops did not write"):
        store.publish("tx", str(uri))
    assert _versions(uri) == 0 and DeltaTable(str(uri)).to_pyarrow_table().to_pydict() == {"cc_num": [7]}


def test_a_table_published_from_another_store_is_refused(store: Store, tmp_path: Path) -> None:
    uri = tmp_path / "tx"
    with nbops.open(tmp_path / "other") as other:
        other.register_features(frame([1], [0], [5.0]), "tx", keys="cc_num", event_time="ts")
        other.publish("tx", str(uri))
    store.register_features(frame([1], [0], [1.0]), "tx", keys="cc_num", event_time="ts")
    with pytest.raises(PublishError, match=r"published from another store"):
        store.publish("tx", str(uri))
    assert _versions(uri) == 1


def test_bad_calls_get_clear_errors(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no feature group named 'tx'"):
        store.publish("tx", str(tmp_path / "t"))
    store.register_features(frame([1], [0], [1.0]), "tx", keys="cc_num", event_time="ts")
    with pytest.raises(InvalidInputError, match="format='iceberg' is not supported"):
        store.publish("tx", str(tmp_path / "t"), format="iceberg")
    with pytest.raises(PublishError, match=r"tx:1 has no commit 9; its commits are 1..1"):
        store.publish("tx@9", str(tmp_path / "t"))
    with pytest.raises(InvalidInputError, match="not a feature group reference"):
        store.publish("tx.amount", str(tmp_path / "t"))
    assert not (tmp_path / "t").exists()


def test_a_second_publisher_of_the_same_table_is_refused_while_the_first_runs(store: Store, tmp_path: Path) -> None:
    store.register_features(frame([1], [0], [1.0]), "tx", keys="cc_num", event_time="ts")
    uri = str(tmp_path / "tx")
    with publishing._publish_lock(store, uri):
        code = f"import nbops; nbops.open({str(store.root)!r}).publish('tx', {uri!r})"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.returncode == 1 and "another process is publishing to" in other.stderr
    assert not Path(uri).exists()
    assert store.publish("tx", uri).published == (1,)


# -- the command --------------------------------------------------------------------------------
def test_the_command_publishes_and_reports(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store.register_features(frame([1, 2], [0, 1], [1.0, 2.0]), "tx", keys="cc_num", event_time="ts")
    uri = tmp_path / "lake" / "tx"
    assert cli(["--store", str(store.root), "publish", "tx", "--to", str(uri)]) == 0
    assert capsys.readouterr().out.strip() == f"published tx:1 commit 1 to {uri} (delta version 1)"
    assert cli(["--store", str(store.root), "publish", "nope", "--to", str(uri)]) == 2
    assert "no feature group named 'nope'" in capsys.readouterr().err
    assert store.audit("tx")["action"].tolist()[-1] == "read"
