"""Feature commits from Spark DataFrames, written by the executors of a local[2] session.

Each partition becomes a row block of column objects; the tests read the
commits back through the pandas reader and the Spark one, compare them with an
oracle, mix pandas and Spark commits in one version, and check bad frames,
expectations, online rows, a killed writer and the ``%%features`` magic.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nbops
from helpers.s3server import s3_server_fixture  # noqa: F401  (provides the s3_server fixture)
from helpers.stores import object_files
from nbops.errors import DuplicateKeysError, InvalidInputError
from nbops.featurestore.expectations import allowed_values, in_range, not_null, unique
from nbops.featurestore.spark import to_spark

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def tx(first: int, n: int, value: float = 0.0) -> pd.DataFrame:
    """Card transactions a minute apart, times in microseconds (what Spark holds)."""
    minutes = np.arange(first, first + n)
    return pd.DataFrame(
        {
            "cc_num": minutes % 7,
            "ts": (T0 + pd.to_timedelta(minutes, unit="min")).astype("datetime64[us, UTC]"),
            "amount": minutes * 1.5 + value,
            "merchant": [f"m{m % 3}" for m in minutes],
        }
    )


def spark_script(body: str) -> str:
    """A Python program for a process of its own: a local[2] Spark session, ``tx`` and ``to_spark``, then ``body``."""
    tests = Path(__file__).parents[1]
    preamble = f"""
        import sys
        sys.path[:0] = [{str(tests)!r}, {str(tests / "featurestore")!r}]
        from pyspark.sql import SparkSession
        import nbops
        from nbops.featurestore.spark import to_spark
        from test_spark_commit import tx
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                 .getOrCreate())
        """
    return textwrap.dedent(preamble) + textwrap.dedent(body)


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["cc_num", "ts"]).reset_index(drop=True)


def column_rows(store: nbops.Store) -> list[tuple[int, int, str]]:
    db = sqlite3.connect(store.root / "catalog.db")
    try:
        return db.execute(
            "SELECT c.commit_no, cc.position, cc.name FROM feature_commit_columns cc "
            "JOIN feature_commits c ON c.id = cc.commit_id ORDER BY c.commit_no, cc.position"
        ).fetchall()
    finally:
        db.close()


def test_a_spark_frame_is_written_in_blocks_and_reads_back_equal(spark: Any, store: nbops.Store) -> None:
    data = tx(0, 600)
    mine = to_spark(spark, data).repartition(3).cache()
    ref = store.register_features(mine, "tx", keys="cc_num", event_time="ts", description="from Spark")
    assert mine.is_cached  # the caller's cache is left alone
    assert (ref.commit, ref.rows, ref.inserted, ref.updated, ref.total_rows) == (1, 600, 600, 0, 600)
    # Three partitions, three row blocks of the four columns.
    assert [(p, n) for _, p, n in column_rows(store)] == [
        (i, name) for i, name in enumerate(["cc_num", "ts", "amount", "merchant"] * 3)
    ]
    got = store.features("tx")
    pd.testing.assert_frame_equal(ordered(got), ordered(data), check_dtype=False)
    assert str(got["ts"].dtype).startswith("datetime64") and str(got["ts"].dt.tz) == "UTC"
    report = store.verify()
    assert report.ok and report.versions_checked == 1, report.text()
    assert ref.statistics["amount"]["count"] == 600


def test_pandas_and_spark_commits_upsert_each_other(spark: Any, store: nbops.Store) -> None:
    store.register_features(tx(0, 300), "tx", keys="cc_num", event_time="ts")
    # A Spark upsert over minutes 200..399: 100 replace pandas rows, 100 are new.
    second = store.register_features(
        to_spark(spark, tx(200, 200, value=1000.0)).repartition(2), "tx", keys="cc_num", event_time="ts"
    )
    assert (second.commit, second.updated, second.inserted, second.total_rows) == (2, 100, 100, 400)
    # A pandas upsert into the Spark commit's blocks.
    third = store.register_features(tx(350, 100, value=-5.0), "tx", keys="cc_num", event_time="ts")
    assert (third.commit, third.updated, third.inserted, third.total_rows) == (3, 50, 50, 450)
    expected = pd.concat([tx(0, 200), tx(200, 150, value=1000.0), tx(350, 100, value=-5.0)])
    pd.testing.assert_frame_equal(ordered(store.features("tx")), ordered(expected), check_dtype=False)
    # Spark reads the same rows from the objects themselves, as of any commit.
    for commit, rows in ((1, 300), (2, 400), (3, 450)):
        frame = store.features("tx", as_of=commit, engine="spark", spark=spark)
        assert frame.inputFiles() and all("/objects/" in f for f in frame.inputFiles())
        assert frame.count() == rows
        got = frame.toArrow().to_pandas()
        pd.testing.assert_frame_equal(ordered(got), ordered(store.features("tx", as_of=commit)), check_dtype=False)


def test_spark_reads_a_damaged_object_as_an_error_never_as_values(spark: Any, store: nbops.Store) -> None:
    import pyarrow.parquet as pq

    store.register_features(tx(0, 5000), "tx", keys="cc_num", event_time="ts")
    db = sqlite3.connect(store.root / "catalog.db")
    [digest] = db.execute("SELECT object_digest FROM feature_commit_columns WHERE name = 'amount'").fetchone()
    db.close()
    path = store.objects.path(digest)
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)
    end = (meta.dictionary_page_offset or meta.data_page_offset) + meta.total_compressed_size
    data = bytearray(path.read_bytes())
    for at in range(end - meta.total_compressed_size // 4, end):
        data[at] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    frame = store.features("tx", engine="spark", spark=spark)
    with pytest.raises(Exception, match="CRC checksum verification failed|FAILED_READ_FILE"):
        frame.agg({"amount": "sum"}).collect()


def test_groups_spark_cannot_read_exactly_go_through_the_driver(spark: Any, store: nbops.Store) -> None:
    nanos = tx(0, 50).assign(ts=lambda d: d["ts"].astype("datetime64[ns, UTC]"))
    store.register_features(nanos, "nanos", keys="cc_num", event_time="ts")
    naive = tx(0, 50).assign(ts=lambda d: d["ts"].dt.tz_localize(None))
    store.register_features(naive, "naive", keys="cc_num", event_time="ts")
    for group in ("nanos", "naive"):
        frame = store.features(group, engine="spark", spark=spark)
        assert not frame.inputFiles()  # handed over by the driver
        got = frame.toArrow().to_pandas()
        assert sorted(got["amount"]) == sorted(nanos["amount"])
        assert str(got["ts"].dt.tz) == "UTC"  # naive means UTC


def test_naive_spark_times_are_stored_naive(spark: Any, store: nbops.Store) -> None:
    at = [dt.datetime(2026, 3, 8, 2, 30) + dt.timedelta(hours=h) for h in range(5)]  # across New York's DST gap
    frame = spark.createDataFrame(
        [(h % 2, t, float(h)) for h, t in enumerate(at)], "cc_num long, ts timestamp_ntz, amount double"
    )
    store.register_features(frame, "naive", keys="cc_num", event_time="ts")
    got = store.features("naive")
    assert got["ts"].dt.tz is None
    assert sorted(got["ts"].dt.to_pydatetime().tolist()) == at
    # An upsert of the wall times in and around the gap replaces exactly those rows.
    again = spark.createDataFrame(
        [(h % 2, t, -1.0) for h, t in enumerate(at) if h < 3], "cc_num long, ts timestamp_ntz, amount double"
    )
    ref = store.register_features(again, "naive", keys="cc_num", event_time="ts")
    assert (ref.updated, ref.inserted, ref.total_rows) == (3, 0, 5)
    assert sorted(store.features("naive")["amount"]) == [-1.0, -1.0, -1.0, 3.0, 4.0]


def nothing_written(store: nbops.Store, before: set[Path]) -> bool:
    return not column_rows(store) and object_files(store) == before


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda d: d.assign(cc_num=d["cc_num"].astype("float64").where(d.index != 5)), InvalidInputError, "float"),
        (lambda d: d.assign(merchant=d["merchant"].where(d.index != 5)), None, None),
        (lambda d: pd.concat([d, d.iloc[:2]]), DuplicateKeysError, "2 .keys, event time. pairs"),
    ],
)
def test_bad_spark_frames_are_refused_before_anything_is_written(
    spark: Any, store: nbops.Store, change: Any, error: type[Exception] | None, message: str | None
) -> None:
    before = object_files(store)
    frame = to_spark(spark, change(tx(0, 40)))
    if error is None:  # a missing feature value is fine
        store.register_features(frame, "tx", keys="cc_num", event_time="ts")
        return
    with pytest.raises(error, match=message):
        store.register_features(frame, "tx", keys="cc_num", event_time="ts")
    assert nothing_written(store, before)


def test_missing_keys_and_times_are_named(spark: Any, store: nbops.Store) -> None:
    from pyspark.sql import functions as F

    before = object_files(store)
    frame = to_spark(spark, tx(0, 40))
    with pytest.raises(InvalidInputError, match="column 'ts' has 1 missing values"):
        store.register_features(
            frame.withColumn("ts", F.when(F.col("amount") == 3.0, None).otherwise(F.col("ts"))),
            "tx",
            keys="cc_num",
            event_time="ts",
        )
    for expression, kind in (("make_interval(1, 2)", "interval"), ("""parse_json('{"a": 1}')""", "variant")):
        with pytest.raises(InvalidInputError, match=rf"column 'odd' \({kind}\) cannot be stored as a feature"):
            store.register_features(frame.withColumn("odd", F.expr(expression)), "tx", keys="cc_num", event_time="ts")
    assert nothing_written(store, before)


def messy(n: int = 40) -> pd.DataFrame:
    """Rows that break rules: null and out-of-range amounts, an unknown merchant, a repeated (merchant, amount)."""
    data = tx(0, n)
    data.loc[[3, 31], "amount"] = None
    data.loc[[7, 8, 30], "amount"] = -1.0
    data.loc[25, "merchant"] = "m9"
    return data


RULES = [
    not_null("amount"),
    in_range("amount", 0, None),
    allowed_values("merchant", ["m0", "m1", "m2"]),
    unique("merchant", "amount"),
    unique("cc_num", "ts"),
    not_null("missing_column"),
]


def test_rules_on_a_spark_frame_report_what_they_report_on_pandas(spark: Any, store: nbops.Store) -> None:
    from nbops.featurestore.expectations import ValidationError, validate

    data = messy()
    expected = validate(data, RULES)
    before = object_files(store)
    with pytest.raises(ValidationError) as raised:
        store.register_features(
            to_spark(spark, data).coalesce(2), "tx", keys="cc_num", event_time="ts", expectations=RULES
        )
    got = raised.value.report
    assert got.rows == expected.rows == 40
    for mine, theirs in zip(got.results, expected.results, strict=True):
        assert (mine.rule, mine.label, mine.passed, mine.failed_count, mine.scope) == (
            theirs.rule,
            theirs.label,
            theirs.passed,
            theirs.failed_count,
            theirs.scope,
        )
        if mine.rule != "unique":  # rows counted in partition order, which is the frame's order here
            assert [e.get("row") for e in mine.examples] == [e.get("row") for e in theirs.examples]
            assert mine.message.split(":")[0] == theirs.message.split(":")[0]
    assert nothing_written(store, before)


def test_a_groups_stored_rules_check_its_spark_commits(spark: Any, store: nbops.Store) -> None:
    from nbops.featurestore.expectations import ValidationError

    store.register_features(tx(0, 10), "tx", keys="cc_num", event_time="ts", expectations=[not_null("amount")])
    before = column_rows(store)
    bad = tx(10, 10)
    bad.loc[4, "amount"] = None
    with pytest.raises(ValidationError, match="null in 1 of 10 rows"):
        store.register_features(to_spark(spark, bad).repartition(3), "tx", keys="cc_num", event_time="ts")
    assert column_rows(store) == before
    ref = store.register_features(to_spark(spark, tx(10, 10)).repartition(3), "tx", keys="cc_num", event_time="ts")
    assert ref.validation is not None and ref.validation["ok"] and ref.commit == 2
    with pytest.raises(InvalidInputError, match="pandera"):
        import pandera.pandas as pa_schema

        schema = pa_schema.DataFrameSchema({"amount": pa_schema.Column(float)})
        store.register_features(to_spark(spark, tx(20, 5)), "tx", keys="cc_num", event_time="ts", expectations=schema)


def test_online_rows_of_a_spark_commit_are_each_keys_latest(spark: Any, store: nbops.Store) -> None:
    store.register_features(
        to_spark(spark, tx(0, 70)).repartition(3), "tx", keys="cc_num", event_time="ts", online=True
    )
    db = sqlite3.connect(store.root / "catalog.db")
    try:
        rows = db.execute("SELECT entity_key, event_time_us, feature_values FROM online_features").fetchall()
    finally:
        db.close()
    assert len(rows) == 7
    latest = tx(0, 70).groupby("cc_num").tail(1).set_index("cc_num")
    by_key = {int(key.strip("[]")): (at, values) for key, at, values in rows}
    for card, row in latest.iterrows():
        at, values = by_key[card]
        assert at == row["ts"].value // 1000
        assert str(row["amount"]) in values and row["merchant"] in values


def test_a_spark_writer_killed_before_its_commit_leaves_only_orphans_that_gc_removes(
    store: nbops.Store, tmp_path: Path
) -> None:
    store.register_features(tx(0, 10), "tx", keys="cc_num", event_time="ts")
    script = spark_script(
        f"""
        with nbops.open({str(store.root)!r}) as store:
            store.register_features(to_spark(spark, tx(100, 60)).repartition(2), "tx", keys="cc_num", event_time="ts")
        """
    )
    env = {**os.environ, "NBOPS_FAULT": "before_catalog_commit"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    assert store.feature_commits("tx")["commit"].tolist() == [1]
    report = store.gc(grace_seconds=0)
    assert report.removed_orphans, report.text()
    assert store.verify().ok
    pd.testing.assert_frame_equal(ordered(store.features("tx")), ordered(tx(0, 10)), check_dtype=False)


FEATURE_CELL = """
frame = spark.range(30).selectExpr("id % 7 AS cc_num", "timestamp_seconds(id * 60) AS ts", "id * 1.5 AS amount")
frame
"""


def test_features_magic_registers_a_spark_frame(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.shell import nbops_shell

    with nbops_shell(tmp_path / ".nbops", monkeypatch) as shell:
        shell.user_ns["spark"] = spark
        ref = shell.run_cell_magic("features", "tx --keys cc_num --event-time ts", FEATURE_CELL)
    assert (ref.group, ref.commit, ref.rows) == ("tx", 1, 30)
    with nbops.open(tmp_path / ".nbops") as store:
        got = store.features("tx")
    assert len(got) == 30 and got["amount"].sum() == sum(i * 1.5 for i in range(30))


TRACK_CELL = """
import nbops
frame = nbops.open().features("tx", engine="spark", spark=spark)
nbops.log(rows=frame.count())
frame
"""


def test_track_cell_on_a_spark_frame_logs_the_run_and_its_feature_input(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers.shell import nbops_shell

    with nbops.open(tmp_path / ".nbops") as store:
        ref = store.register_features(to_spark(spark, tx(0, 40)).repartition(2), "tx", keys="cc_num", event_time="ts")
    with nbops_shell(tmp_path / ".nbops", monkeypatch) as shell:
        shell.user_ns["spark"] = spark
        result = shell.run_cell(f"%%track --experiment spark-cell --run-name count\n{TRACK_CELL}")
        assert result.success, result.error_in_exec
    with nbops.open(tmp_path / ".nbops") as store:
        [run] = store.runs("spark-cell").to_dict("records")
        assert (run["status"], run["metrics.rows"]) == ("FINISHED", 40.0)
        assert ref.ref in run["inputs"]
        graph = store.lineage(ref.ref)
    children = [e["child"] for e in graph["edges"] if e["parent"] == graph["root"]]
    assert any(str(c).startswith("run:") for c in children), graph


def test_executors_that_cannot_write_the_data_root_are_refused_naming_it(spark: Any, store: nbops.Store) -> None:
    from nbops.errors import StoreError

    store.register_features(tx(0, 10), "tx", keys="cc_num", event_time="ts")
    before = column_rows(store)
    tmp = store.root / "tmp"
    if tmp.exists():
        tmp.rmdir()
    tmp.write_text("not a folder")  # where executors stage their files: unwritable to them (and to anyone)
    with pytest.raises(StoreError, match=rf"executors cannot write the store's data root {store.root}"):
        store.register_features(to_spark(spark, tx(10, 10)), "tx", keys="cc_num", event_time="ts")
    assert column_rows(store) == before


def assert_same_statistics(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal statistics; means, deviations and quantiles to rounding (sums and interpolations in another order)."""
    assert got.keys() == expected.keys()
    for column, theirs in expected.items():
        mine = got[column]
        assert mine.keys() == theirs.keys(), column
        for key, value in theirs.items():
            if key in ("mean", "std") and value is not None:
                assert mine[key] == pytest.approx(value, rel=1e-9), (column, key)
            elif key == "quantiles":
                assert mine[key] == {q: pytest.approx(v, rel=1e-9) if v is not None else None for q, v in value.items()}
            else:
                assert mine[key] == value, (column, key)


def test_statistics_of_a_spark_version_are_spark_aggregates_equal_to_duckdbs(spark: Any, store: nbops.Store) -> None:
    import decimal

    from nbops.featurestore.groups import read_group_table
    from nbops.featurestore.stats import feature_statistics

    rng = np.random.default_rng(5)
    n = 3000
    data = tx(0, n).assign(
        amount=np.where(rng.random(n) < 0.05, np.nan, rng.normal(40, 15, n).round(2)),
        spike=np.where(np.arange(n) % 997 == 0, np.inf, rng.exponential(3, n)),
        n_tx=rng.integers(-5, 50, n),
        fraud=rng.random(n) < 0.1,
        merchant=rng.choice(["b", "a", "c", "é"], n, p=[0.4, 0.4, 0.15, 0.05]),
        day=pd.to_datetime("2026-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
        seen=(T0 + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")).astype("datetime64[ms, UTC]"),
    )
    data["day"] = data["day"].dt.date
    data["price"] = [decimal.Decimal(int(v)) / 100 for v in rng.integers(0, 10**6, n)]
    ref = store.register_features(to_spark(spark, data).repartition(3), "tx", keys="cc_num", event_time="ts")
    upsert = data.iloc[:500].assign(n_tx=99)
    store.register_features(to_spark(spark, upsert).repartition(2), "tx", keys="cc_num", event_time="ts")
    features = [c for c in data.columns if c not in ("cc_num", "ts")]
    state = read_group_table(store, "tx")[2]  # the stored Arrow rows, read and verified on the driver
    expected = json_roundtrip(feature_statistics(state, features))
    assert_same_statistics(store.feature_statistics("tx"), expected)
    first = json_roundtrip(feature_statistics(read_group_table(store, "tx", as_of=1)[2], features))
    assert_same_statistics(ref.statistics, first)
    # Kept in the catalog by the first caller.
    db = sqlite3.connect(store.root / "catalog.db")
    try:
        assert all(s is not None for (s,) in db.execute("SELECT statistics FROM feature_commits"))
    finally:
        db.close()


def json_roundtrip(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def test_executors_write_a_commit_to_object_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: Any
) -> None:
    """Executors started with the object store's credentials in their environment write straight to it."""
    from helpers.s3server import CREDENTIALS  # noqa: F811

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3_server.create_bucket("nbops-spark")
    uri = s3_server.uri("nbops-spark", "team/data")
    root = tmp_path / ".nbops"
    script = spark_script(
        f"""
        data = tx(0, 90)
        with nbops.open({str(root)!r}, data={uri!r}) as store:
            first = store.register_features(to_spark(spark, data).repartition(3), "tx", keys="cc_num", event_time="ts")
            again = to_spark(spark, data.iloc[60:].assign(amount=-1.0)).repartition(2)
            second = store.register_features(again, "tx", keys="cc_num", event_time="ts")
            print(first.rows, second.updated, second.total_rows)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["90", "30", "90"]
    with nbops.open(root, data=uri) as store:
        expected = pd.concat([tx(0, 60), tx(60, 30).assign(amount=-1.0)])
        pd.testing.assert_frame_equal(ordered(store.features("tx")), ordered(expected), check_dtype=False)
        report = store.verify()
        assert report.ok and report.objects_checked > 0, report.text()
    assert not (root / "objects").exists()  # every object went to the bucket


def test_objects_removed_between_the_write_and_the_commit_are_refused(
    spark: Any, store: nbops.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbops.errors import StoreError
    from nbops.featurestore import spark_commit

    store.register_features(tx(0, 10), "tx", keys="cc_num", event_time="ts")
    before = column_rows(store)
    write_blocks = spark_commit.write_blocks

    def write_then_lose_one(*args: Any, **kwargs: Any) -> Any:
        blocks = write_blocks(*args, **kwargs)
        store.objects.path(blocks[-1].digests[-1]).unlink()  # what a concurrent gc --grace 0 would do
        return blocks

    monkeypatch.setattr(spark_commit, "write_blocks", write_then_lose_one)
    with pytest.raises(StoreError, match="objects the executors wrote are gone"):
        store.register_features(to_spark(spark, tx(100, 30)).repartition(2), "tx", keys="cc_num", event_time="ts")
    assert column_rows(store) == before
    assert store.verify().ok
