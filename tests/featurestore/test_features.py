"""Feature groups on a real store: versions, commits, time travel, validation, online, training data."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nbops
from helpers.stores import object_files
from nbops.core import lineage
from nbops.errors import InvalidInputError, InvalidNameError, NotFoundError
from nbops.featurestore.expectations import ValidationError, allowed_values, in_range, not_null
from nbops.featurestore.groups import DuplicateKeysError, SchemaChangeError, split_by_time


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[nbops.Store]:
    with nbops.open(tmp_path / ".nbops") as store:
        yield store


def tx(n: int = 200, seed: int = 0, start: str = "2026-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "cc_num": np.arange(n) % 20,
            "ts": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n), unit="h"),
            "amount": rng.gamma(2.0, 10.0, n).round(2),
            "category": pd.Categorical(rng.choice(["grocery", "travel"], n)),
            "n_tx": rng.integers(0, 10, n),
        }
    )


def catalog_counts(store: nbops.Store) -> dict[str, int]:
    db = sqlite3.connect(store.root / "catalog.db")
    try:
        tables = ["feature_groups", "feature_group_versions", "feature_commits", "online_features", "objects"]
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        db.close()


# -- versions and commits ----------------------------------------------------------
def test_first_registration_creates_version_1_commit_1(fs: nbops.Store) -> None:
    ref = fs.register_features(tx(), "tx_features", keys="cc_num", event_time="ts", description="card activity")
    assert (ref.group, ref.version, ref.commit, ref.rows, ref.inserted, ref.updated) == (
        "tx_features",
        1,
        1,
        200,
        200,
        0,
    )
    assert ref.features == ("amount", "category", "n_tx") and ref.keys == ("cc_num",)
    assert ref.ref == "tx_features:1@1"
    pd.testing.assert_frame_equal(fs.features("tx_features"), tx())
    groups = fs.feature_groups()
    assert groups[["group", "version", "commits", "rows", "online"]].values.tolist() == [
        ["tx_features", 1, 1, 200, False]
    ]
    assert groups["description"].tolist() == ["card activity"]


def test_same_schema_adds_commits_that_upsert_on_keys_and_time(fs: nbops.Store) -> None:
    base = tx()
    fs.register_features(base, "tx", keys="cc_num", event_time="ts")
    change = base.iloc[:10].copy()
    change["amount"] = -1.0
    extra = tx(5, start="2027-01-01")
    ref = fs.register_features(pd.concat([change, extra], ignore_index=True), "tx", keys=["cc_num"], event_time="ts")
    assert (ref.version, ref.commit, ref.rows, ref.updated, ref.inserted, ref.total_rows) == (1, 2, 15, 10, 5, 205)
    now = fs.features("tx")
    assert len(now) == 205 and (now["amount"] == -1.0).sum() == 10
    assert now.duplicated(["cc_num", "ts"]).sum() == 0
    # time travel: as of commit 1, by number, by reference and by time
    pd.testing.assert_frame_equal(fs.features("tx", as_of=1), base)
    pd.testing.assert_frame_equal(fs.features("tx:1@1"), base)
    first_time = fs.feature_commits("tx")["created"].iloc[0]
    pd.testing.assert_frame_equal(fs.features("tx", as_of=first_time.to_pydatetime()), base)
    assert fs.feature_commits("tx")[["commit", "rows", "inserted", "updated", "total_rows"]].values.tolist() == [
        [1, 200, 200, 0, 200],
        [2, 15, 5, 10, 205],
    ]


def test_columns_in_another_order_are_the_same_schema(fs: nbops.Store) -> None:
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    ref = fs.register_features(
        tx(3)[["amount", "ts", "n_tx", "cc_num", "category"]], "tx", keys="cc_num", event_time="ts"
    )
    assert ref.commit == 2 and list(fs.features("tx").columns) == list(tx().columns)


def test_schema_change_needs_an_explicit_version_and_names_each_column(fs: nbops.Store) -> None:
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    before = catalog_counts(fs), object_files(fs)
    changed = tx().assign(amount=lambda d: d["amount"].astype("float32")).drop(columns="n_tx").assign(fee=1.0)
    with pytest.raises(SchemaChangeError) as info:
        fs.register_features(changed, "tx", keys="cc_num", event_time="ts")
    message = str(info.value)
    assert "amount: double -> float" in message
    assert "n_tx: removed (was int64)" in message and "fee: added (double)" in message
    assert "version=2" in message
    assert (catalog_counts(fs), object_files(fs)) == before
    ref = fs.register_features(changed, "tx", keys="cc_num", event_time="ts", version=2)
    assert (ref.version, ref.commit) == (2, 1)
    assert "n_tx" in fs.features("tx", version=1).columns and "fee" in fs.features("tx").columns
    with pytest.raises(InvalidInputError, match="the next new version is 3, not 5"):
        fs.register_features(changed, "tx", keys="cc_num", event_time="ts", version=5)
    with pytest.raises(SchemaChangeError, match="version 1 exists with another schema"):
        fs.register_features(changed, "tx", keys="cc_num", event_time="ts", version=1)


def test_nan_in_an_int_column_is_a_named_type_change_not_a_silent_cast(fs: nbops.Store) -> None:
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    with_nan = tx(5).astype({"n_tx": "float64"})
    with_nan.loc[0, "n_tx"] = np.nan
    with pytest.raises(SchemaChangeError, match="n_tx: int64 -> double"):
        fs.register_features(with_nan, "tx", keys="cc_num", event_time="ts")
    nullable = tx(5).astype({"n_tx": "Int64"})
    nullable.loc[0, "n_tx"] = pd.NA
    ref = fs.register_features(nullable, "tx", keys="cc_num", event_time="ts")
    assert ref.commit == 2
    assert fs.features("tx")["n_tx"].dtype == "Int64"  # nulls kept, never silently float


def test_changing_keys_needs_a_new_version(fs: nbops.Store) -> None:
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    with pytest.raises(SchemaChangeError, match=r"has keys \['cc_num'\].*Pass version=2"):
        fs.register_features(tx(), "tx", keys=["cc_num", "n_tx"], event_time="ts")


def test_duplicate_keys_in_one_insert_show_examples_and_write_nothing(fs: nbops.Store) -> None:
    frame = pd.concat([tx(3), tx(3)], ignore_index=True)
    with pytest.raises(
        DuplicateKeysError, match=r"3 \(keys, event time\) pairs.*cc_num=0, ts=2026-01-01 00:00:00\+00:00 \(2 rows\)"
    ):
        fs.register_features(frame, "tx", keys="cc_num", event_time="ts")
    assert catalog_counts(fs)["feature_groups"] == 0 and object_files(fs) == set()


@pytest.mark.parametrize(
    ("frame", "kwargs", "error", "message"),
    [
        ([1, 2], {}, InvalidInputError, "need a pandas DataFrame or a pyarrow Table, not list"),
        (tx(), {"keys": "nope"}, InvalidInputError, "column 'nope' is not in the frame"),
        (tx(), {"event_time": "amount"}, InvalidInputError, "must be a timestamp"),
        (tx().assign(ts=lambda d: d["ts"].astype(str)), {}, InvalidInputError, "must be a timestamp"),
        (tx(), {"keys": []}, InvalidInputError, "at least one key column"),
        (tx()[["cc_num", "ts"]], {}, InvalidInputError, "no feature columns"),
        (
            tx().assign(cc_num=lambda d: d["cc_num"].astype("Int64").where(d.index != 3)),
            {},
            InvalidInputError,
            r"'cc_num' has 1 missing values \(rows \[3\]\)",
        ),
        (tx(), {"group": "../evil"}, InvalidNameError, "rule: separator"),
        (tx().rename(columns={"amount": "amount/x"}), {}, InvalidNameError, "invalid feature name"),
        (tx(), {"version": 0}, InvalidInputError, "positive int"),
    ],
)
def test_bad_registrations_are_clear_errors_that_write_nothing(
    fs: nbops.Store, frame: object, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    args = {"group": "tx", "keys": "cc_num", "event_time": "ts", **kwargs}
    group = args.pop("group")
    with pytest.raises(error, match=message):
        fs.register_features(frame, group, **args)  # type: ignore[arg-type]
    assert catalog_counts(fs)["feature_commits"] == 0 and object_files(fs) == set()


def test_unknown_group_version_and_commit(fs: nbops.Store) -> None:
    with pytest.raises(NotFoundError, match="no feature group named 'tx'; known: none yet"):
        fs.features("tx")
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    with pytest.raises(NotFoundError, match="no version 4; it has versions 1..1"):
        fs.features("tx", version=4)
    with pytest.raises(NotFoundError, match="no commit 9; its commits are 1..1"):
        fs.features("tx", as_of=9)
    with pytest.raises(NotFoundError, match="has no commit as of"):
        fs.features("tx", as_of=dt.datetime(2000, 1, 1))


# -- statistics and expectations -------------------------------------------------------
def test_statistics_are_stored_with_each_commit(fs: nbops.Store) -> None:
    frame = tx()
    ref = fs.register_features(frame, "tx", keys="cc_num", event_time="ts")
    stats = fs.feature_statistics("tx")
    assert stats == ref.statistics
    amount = stats["amount"]
    assert amount["count"] == 200 and amount["nulls"] == 0
    assert amount["mean"] == pytest.approx(frame["amount"].mean())
    assert amount["max"] == pytest.approx(frame["amount"].max())
    assert sum(amount["histogram"]["counts"]) == 200
    assert stats["category"]["kind"] == "categorical"
    json.dumps(stats, allow_nan=False)
    assert "statistics" in ref._repr_html_()


def test_failed_expectations_write_nothing_and_name_rows_and_columns(fs: nbops.Store) -> None:
    rules = [not_null("amount"), in_range("amount", min=0), allowed_values("category", ["grocery", "travel"])]
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts", expectations=rules)
    before = catalog_counts(fs), object_files(fs)
    bad = tx(10, start="2027-01-01")
    bad.loc[[2, 7], "amount"] = -5.0
    with pytest.raises(ValidationError) as info:
        fs.register_features(bad, "tx", keys="cc_num", event_time="ts")  # stored rules apply
    text = str(info.value)
    assert "in_range(amount, min=0)" in text and "2 of 10 rows" in text
    assert "row 2: amount=-5.0" in text and "row 7: amount=-5.0" in text
    assert (catalog_counts(fs), object_files(fs)) == before
    good = fs.register_features(tx(10, start="2027-01-01"), "tx", keys="cc_num", event_time="ts")
    assert good.validation is not None and good.validation["ok"]


# -- online serving -----------------------------------------------------------------------
def test_online_features_serve_the_latest_row_per_key_in_the_order_asked(fs: nbops.Store) -> None:
    frame = tx()
    fs.register_features(frame, "tx", keys="cc_num", event_time="ts", online=True)
    latest = frame.sort_values("ts").groupby("cc_num").tail(1).set_index("cc_num")
    got = fs.online_features(["tx.amount", "tx.category"], keys={"cc_num": [5, 999, 0]})
    assert got["cc_num"].tolist() == [5, 999, 0]
    assert got["amount"].iloc[0] == latest.loc[5, "amount"] and got["amount"].iloc[2] == latest.loc[0, "amount"]
    assert pd.isna(got["amount"].iloc[1]) and pd.isna(got["category"].iloc[1])
    assert got["category"].iloc[0] == latest.loc[5, "category"]
    # an older row committed later does not replace the newer one
    old = frame[frame["cc_num"] == 5].head(1).assign(ts=pd.Timestamp("2020-01-01", tz="UTC"), amount=-1.0)
    fs.register_features(old, "tx", keys="cc_num", event_time="ts")
    assert fs.online_features(["tx.amount"], keys={"cc_num": [5]})["amount"].iloc[0] == latest.loc[5, "amount"]
    newer = old.assign(ts=pd.Timestamp("2030-01-01", tz="UTC"), amount=123.0)
    fs.register_features(newer, "tx", keys="cc_num", event_time="ts")
    assert fs.online_features("tx.*", keys={"cc_num": [5]})["amount"].iloc[0] == 123.0


def test_online_needs_an_online_group_and_its_keys(fs: nbops.Store) -> None:
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    with pytest.raises(InvalidInputError, match="is not online; register it with online=True"):
        fs.online_features(["tx.amount"], keys={"cc_num": [1]})
    fs.register_features(tx(3, start="2028-01-01"), "tx", keys="cc_num", event_time="ts", online=True)
    # turning a version online backfills every key from its whole state
    assert fs.online_features(["tx.amount"], keys={"cc_num": list(range(20))})["amount"].notna().all()
    with pytest.raises(InvalidInputError, match=r"keyed by \['cc_num'\]; pass values for \['cc_num'\]"):
        fs.online_features(["tx.amount"], keys={"user": [1]})
    with pytest.raises(NotFoundError, match="has no feature 'nope'"):
        fs.online_features(["tx.nope"], keys={"cc_num": [1]})


# -- training data ---------------------------------------------------------------------------
def test_training_data_is_point_in_time_correct_and_keeps_every_spine_row(fs: nbops.Store) -> None:
    feats = pd.DataFrame(
        {
            "cc_num": [1, 1, 2],
            "ts": pd.to_datetime(["2026-01-01 00:00", "2026-01-02 00:00", "2026-01-05 00:00"], utc=True),
            "amount_7d": [10.0, 20.0, 30.0],
        }
    )
    fs.register_features(feats, "tx", keys="cc_num", event_time="ts")
    spine = pd.DataFrame(
        {
            "cc_num": [1, 1, 2, 3, 1, 1],
            # naive times mean UTC; a tie counts; only-later rows give nulls
            "ts": pd.to_datetime(
                [
                    "2026-01-01 12:00",
                    "2026-01-02 00:00",
                    "2026-01-03 00:00",
                    "2026-01-03 00:00",
                    "2025-12-31 00:00",
                    "2026-01-01 12:00",
                ]
            ),
            "is_fraud": [0, 1, 0, 1, 0, 0],
        }
    )
    out = fs.training_data(spine, ["tx.amount_7d"], event_time="ts", label="is_fraud")
    assert list(out.columns) == ["cc_num", "ts", "amount_7d", "is_fraud"]
    pd.testing.assert_frame_equal(out[["cc_num", "ts", "is_fraud"]], spine[["cc_num", "ts", "is_fraud"]])
    assert out["amount_7d"].tolist()[:2] == [10.0, 20.0]
    assert out["amount_7d"].isna().tolist() == [False, False, True, True, True, False]


def test_training_data_references_clashes_and_save_as_lineage(fs: nbops.Store) -> None:
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    profile = pd.DataFrame({"cc_num": range(20), "ts": pd.Timestamp("2025-01-01", tz="UTC"), "amount": 1.0, "age": 30})
    fs.register_features(profile, "profile", keys="cc_num", event_time="ts")
    spine = tx(50, seed=1, start="2026-01-03")[["cc_num", "ts"]]
    out = fs.training_data(spine, ["tx.*", "profile:1.amount", "profile.age"], event_time="ts", save_as="train_set")
    assert {"tx__amount", "profile__amount", "category", "n_tx", "age"} <= set(out.columns)
    assert len(out) == 50 and (out["age"] == 30).all()
    assert out.attrs["nbops_snapshot"] == "train_set@1"
    parents = lineage.parents(fs.catalog, ("snapshot", "train_set@1"))
    assert set(parents) == {("feature_commit", "tx:1@1"), ("feature_commit", "profile:1@1")}
    pd.testing.assert_frame_equal(fs.load("train_set"), out)
    with pytest.raises(InvalidInputError, match="label column 'y' is not in the spine"):
        fs.training_data(spine, ["tx.amount"], event_time="ts", label="y")
    with pytest.raises(InvalidInputError, match="not a feature reference"):
        fs.training_data(spine, ["tx"], event_time="ts")


SAVE_TRAINING_DATA = """
import sys
import pandas as pd
import nbops

with nbops.open(sys.argv[1]) as store:
    spine = pd.DataFrame({"cc_num": [1, 2], "ts": pd.to_datetime(["2026-02-01", "2026-02-02"], utc=True)})
    store.training_data(spine, ["tx.amount"], event_time="ts", save_as="train_set")
"""


def test_a_saved_training_set_and_its_feature_lineage_commit_together(fs: nbops.Store) -> None:
    # Killed the moment the training set's version commits, the version must
    # already name the feature commits it was joined from.
    fs.register_features(tx(), "tx", keys="cc_num", event_time="ts")
    env = {**os.environ, "NBOPS_FAULT": "after_catalog_commit"}
    command = [sys.executable, "-c", SAVE_TRAINING_DATA, str(fs.root)]
    done = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert list(fs.history("train_set")["version"]) == [1]
    assert lineage.parents(fs.catalog, ("snapshot", "train_set@1")) == [("feature_commit", "tx:1@1")]


def test_registration_records_what_the_same_call_read(fs: nbops.Store) -> None:
    raw = tx()
    fs.snapshot(raw, "raw_tx")
    loaded = fs.load("raw_tx")
    fs.register_features(loaded, "tx", keys="cc_num", event_time="ts")
    assert lineage.parents(fs.catalog, ("feature_commit", "tx:1@1")) == [("snapshot", "raw_tx@1")]
    fs.register_features(tx(5, start="2028-01-01"), "tx", keys="cc_num", event_time="ts")
    assert lineage.parents(fs.catalog, ("feature_commit", "tx:1@2")) == []


def test_split_by_time_never_puts_a_later_row_in_train() -> None:
    frame = tx(100)
    train, test = split_by_time(frame, "ts", test_size=0.25)
    assert len(train) + len(test) == 100 and len(test) == 25
    assert train["ts"].max() < test["ts"].min()
    train, test = split_by_time(frame, "ts", cutoff="2026-01-03")  # naive means UTC
    assert (test["ts"] >= pd.Timestamp("2026-01-03", tz="UTC")).all() and len(train) == 48


# -- drift -------------------------------------------------------------------------------------
def test_drift_between_commits_and_against_a_frame(fs: nbops.Store) -> None:
    fs.register_features(tx(500), "tx", keys="cc_num", event_time="ts")
    shifted = tx(500, seed=2, start="2027-01-01").assign(amount=lambda d: d["amount"] * 3)
    fs.register_features(shifted, "tx", keys="cc_num", event_time="ts")
    report = fs.drift("tx", 1, 2)
    assert report["feature"].iloc[0] == "amount" and bool(report["drifting"].iloc[0])
    assert set(report["feature"]) == {"amount", "category", "n_tx"}
    same = fs.drift("tx", tx(500), None, columns=["amount"])  # a frame against commit... latest
    assert len(same) == 1
    with pytest.raises(NotFoundError):
        fs.drift("nope")
