"""Redis as the online store, against a real ``redis-server`` on 127.0.0.1 (see ``helpers/redisserver.py``).

Every parity test runs the same registrations on an embedded store and on a
Redis-backed one and compares the frames ``online_features`` returns.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nbops
from helpers.redisserver import RedisServer, redis_server_fixture  # noqa: F401  (fixture)
from helpers.servers import free_port
from nbops.errors import InvalidInputError, OnlineStoreError, OnlineSyncWarning
from nbops.featurestore.online import OnlineRow, entity_key

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'nbops[test]')")


@pytest.fixture
def pair(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[nbops.Store, nbops.Store]]:
    """An embedded store and a Redis-backed store, fed the same registrations."""
    with (
        nbops.open(tmp_path / "embedded") as embedded,
        nbops.open(tmp_path / "redis", online=redis_server.url) as shared,
    ):
        yield embedded, shared


def register_both(stores: tuple[nbops.Store, ...], frame: pd.DataFrame, group: str, **kwargs: object) -> None:
    for store in stores:
        store.register_features(frame, group, **kwargs)  # type: ignore[arg-type]


def assert_same_online(
    stores: tuple[nbops.Store, nbops.Store], refs: list[str], keys: dict[str, list[object]]
) -> pd.DataFrame:
    embedded, shared = stores
    expected = embedded.online_features(refs, keys=keys)
    pd.testing.assert_frame_equal(shared.online_features(refs, keys=keys), expected, check_exact=True)
    return expected


def typed_frame(n: int, start: str, seed: int) -> pd.DataFrame:
    """Features of every dtype the online table encodes, with missing values."""
    rng = np.random.default_rng(seed)
    missing = rng.random(n) < 0.2
    return pd.DataFrame(
        {
            "cc_num": np.arange(n) % 7,
            "ts": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n), unit="h"),
            "amount": np.where(missing, np.nan, rng.gamma(2.0, 10.0, n).round(2)),
            "n_tx": pd.array(np.where(missing, None, rng.integers(0, 10, n)), dtype="Int64"),
            "count": rng.integers(-5, 5, n).astype("int32"),
            "flag": rng.random(n) < 0.5,
            "flag_na": pd.array(np.where(missing, None, rng.random(n) < 0.5), dtype="boolean"),
            "category": pd.Categorical(rng.choice(["grocery", "travel", "fuel"], n)),
            "note": pd.Series(np.where(missing, None, rng.choice(["a", "ünï", ""], n)), dtype=object),
            "seen": pd.Timestamp("2025-06-01", tz="Europe/Paris")
            + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
            "naive_seen": pd.Timestamp("2025-06-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        }
    )


# -- same results as the embedded store -------------------------------------------------------
def test_redis_serves_the_same_frames_as_the_embedded_store(pair: tuple[nbops.Store, nbops.Store]) -> None:
    asked = {"cc_num": [3, 999, 0, 3, 6]}  # a missing key and a repeated one
    register_both(pair, typed_frame(60, "2026-01-01", 0), "tx", keys="cc_num", event_time="ts", online=True)
    first = assert_same_online(pair, ["tx.*"], asked)
    assert first["amount"].isna().tolist()[1] and first["cc_num"].tolist() == asked["cc_num"]
    # an older row registered later changes nothing; a newer one replaces; a tie goes to the later commit
    old = typed_frame(7, "2020-01-01", 1)
    register_both(pair, old, "tx", keys="cc_num", event_time="ts")
    assert_same_online(pair, ["tx.*"], asked)
    newer = typed_frame(3, "2031-01-01", 2)
    register_both(pair, newer, "tx", keys="cc_num", event_time="ts")
    register_both(pair, newer.assign(count=np.int32(42)), "tx", keys="cc_num", event_time="ts")
    out = assert_same_online(pair, ["tx.amount", "tx.count", "tx.seen"], asked)
    assert out["count"].tolist()[2] == 42  # key 0: the tie went to the later commit
    # a second group keyed by two columns; a version turned online later is backfilled
    profile = pd.DataFrame(
        {
            "cc_num": [0, 3, 3],
            "region": ["eu", "eu", "us"],
            "ts": pd.to_datetime(["2025-01-01"] * 3, utc=True),
            "age": [30, 41, 52],
            "count": [1.5, None, 2.5],
        }
    )
    register_both(pair, profile, "profile", keys=["cc_num", "region"], event_time="ts")
    register_both(
        pair,
        profile.assign(ts=pd.Timestamp("2025-02-01", tz="UTC"), age=[31, 42, 53]),
        "profile",
        keys=["cc_num", "region"],
        event_time="ts",
        online=True,
    )
    both = assert_same_online(
        pair,
        ["tx.amount", "tx.count", "profile.age", "profile.count"],
        {"cc_num": [3, 3, 0, 5], "region": ["us", "eu", "eu", "eu"]},
    )
    assert list(both.columns) == ["cc_num", "region", "amount", "tx__count", "age", "profile__count"]
    assert both["age"].tolist()[:3] == [53, 42, 31] and pd.isna(both["age"].iloc[3])
    # a reader reused across calls (cached plans) still agrees after a new version
    register_both(
        pair,
        typed_frame(10, "2032-01-01", 3).drop(columns="note"),
        "tx",
        keys="cc_num",
        event_time="ts",
        online=True,
        version=2,
    )
    assert_same_online(pair, ["tx:2.*", "tx:1.note"], {"cc_num": [0, 1, 999]})
    assert pair[1].sync_online() == {"profile:1": 0, "tx:1": 0, "tx:2": 0}  # nothing was behind


def test_large_batches_agree_and_the_embedded_store_has_nothing_to_sync(pair: tuple[nbops.Store, nbops.Store]) -> None:
    n = 12_000  # more rows than one push script call and more keys than one HMGET
    frame = pd.DataFrame({"user": np.arange(n), "ts": pd.Timestamp("2026-01-01", tz="UTC"), "x": np.arange(n) * 0.5})
    register_both(pair, frame, "big", keys="user", event_time="ts", online=True)
    keys = {"user": list(range(-5, n + 5, 1))}
    out = assert_same_online(pair, ["big.x"], keys)
    assert out["x"].notna().sum() == n
    assert pair[0].sync_online() == {}


# -- consistency with the catalog commit ---------------------------------------------------------
def test_a_failed_push_keeps_the_commit_and_the_next_registration_catches_up(
    pair: tuple[nbops.Store, nbops.Store], redis_server: RedisServer
) -> None:
    embedded, shared = pair
    client = redis.Redis.from_url(redis_server.url)
    register_both(pair, typed_frame(14, "2026-01-01", 0), "tx", keys="cc_num", event_time="ts", online=True)
    before = shared.online_features(["tx.amount"], keys={"cc_num": [0, 1]})
    # Redis answers reads but refuses writes (no replica to acknowledge them).
    client.config_set("min-replicas-to-write", 1)
    try:
        late = typed_frame(7, "2027-01-01", 1)
        embedded.register_features(late, "tx", keys="cc_num", event_time="ts")
        with pytest.warns(
            OnlineSyncWarning,
            match=r"tx:1@2 is committed, but its online rows did not reach the shared online store: the Redis online store at redis://127.0.0.1:\d+/0 refused the request: NOREPLICAS",
        ):
            ref = shared.register_features(late, "tx", keys="cc_num", event_time="ts")
        assert ref.commit == 2 and shared.feature_commits("tx")["commit"].tolist() == [1, 2]
        # the catalog has the commit; Redis is stale, not broken
        pd.testing.assert_frame_equal(shared.online_features(["tx.amount"], keys={"cc_num": [0, 1]}), before)
        pd.testing.assert_frame_equal(shared.features("tx"), embedded.features("tx"))
    finally:
        client.config_set("min-replicas-to-write", 0)
    # the next registration (touching one key only) re-pushes what commit 2 wrote
    one = typed_frame(1, "2028-01-01", 2)
    register_both(pair, one, "tx", keys="cc_num", event_time="ts")
    assert_same_online(pair, ["tx.*"], {"cc_num": list(range(8))})


def test_redis_down_during_registration_then_restarted_empty_is_refilled_by_sync_online(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A server of its own: this test stops it.
    server = RedisServer(redis_server.binary, tmp_path / "redis")
    server.start()
    try:
        with nbops.open(tmp_path / "e") as embedded, nbops.open(tmp_path / "r", online=server.url) as shared:
            pair = (embedded, shared)
            register_both(pair, typed_frame(14, "2026-01-01", 0), "tx", keys="cc_num", event_time="ts", online=True)
            server.stop()
            embedded.register_features(typed_frame(7, "2027-01-01", 1), "tx", keys="cc_num", event_time="ts")
            with pytest.warns(OnlineSyncWarning, match="sync_online"):
                shared.register_features(typed_frame(7, "2027-01-01", 1), "tx", keys="cc_num", event_time="ts")
            assert shared.feature_commits("tx")["commit"].tolist() == [1, 2]
            # reads say that Redis is unreachable, and where it was
            with pytest.raises(OnlineStoreError, match=rf"Redis online store at {server.url} is unreachable"):
                shared.online_features(["tx.amount"], keys={"cc_num": [1]})
            with pytest.raises(OnlineStoreError, match="unreachable"):
                shared.sync_online()
            # a restart without persistence comes back empty: reads refuse to pass that off as nulls
            server.start()
            with pytest.raises(OnlineStoreError, match=r"holds no rows of tx:1 .* run store.sync_online\(\)"):
                shared.online_features(["tx.amount"], keys={"cc_num": [1]})
            assert shared.sync_online() == {"tx:1": 7}
            assert_same_online(pair, ["tx.*"], {"cc_num": list(range(8))})
            assert shared.sync_online() == {"tx:1": 0}  # idempotent
    finally:
        server.stop()


# -- key layout and ordering ------------------------------------------------------------------------
def test_two_stores_sharing_one_redis_do_not_see_each_others_keys(tmp_path: Path, redis_server: RedisServer) -> None:
    frame = pd.DataFrame({"cc_num": [1, 2], "ts": pd.to_datetime(["2026-01-01"] * 2, utc=True), "amount": [1.0, 2.0]})
    with (
        nbops.open(tmp_path / "a", online=redis_server.url) as a,
        nbops.open(tmp_path / "b", online=redis_server.url) as b,
    ):
        a.register_features(frame, "shared_name", keys="cc_num", event_time="ts", online=True)
        b.register_features(
            frame.assign(amount=[10.0, 20.0]).head(1), "shared_name", keys="cc_num", event_time="ts", online=True
        )
        assert a.online_features(["shared_name.amount"], keys={"cc_num": [1, 2]})["amount"].tolist() == [1.0, 2.0]
        got = b.online_features(["shared_name.amount"], keys={"cc_num": [1, 2]})["amount"]
        assert got.iloc[0] == 10.0 and pd.isna(got.iloc[1])
        ns_a, ns_b = a.online_reader().namespace, b.online_reader().namespace
        assert ns_a != ns_b
        client = redis.Redis.from_url(redis_server.url)
        assert {k.decode() for k in client.scan_iter(f"nbops:{{{ns_a}:*")} == {
            f"nbops:{{{ns_a}:shared_name:1}}:rows",
            f"nbops:{{{ns_a}:shared_name:1}}:order",
        }
    # reopening the store finds the same namespace (kept in the store folder)
    with nbops.open(tmp_path / "a", online=redis_server.url) as again:
        assert again.online_reader().namespace == ns_a
    # ?namespace= sets it explicitly
    with nbops.open(tmp_path / "c", online=f"{redis_server.url}?namespace=fraud-team") as named:
        named.register_features(frame, "g", keys="cc_num", event_time="ts", online=True)
        assert client.exists("nbops:{fraud-team:g:1}:rows")


def test_out_of_order_and_retried_pushes_keep_the_latest_row_per_key(tmp_path: Path, redis_server: RedisServer) -> None:
    with nbops.open(tmp_path / "s", online=f"{redis_server.url}?namespace=order-test") as store:
        reader = store.online_reader()
        key = entity_key([1])
        # (event time in microseconds, commit); negative times are before 1970
        pushes = {
            (-5_000_000, 1): '["before 1970"]',
            (1_700_000_000_000_000, 2): '["newest, commit 2"]',
            (1_700_000_000_000_000, 4): '["newest, commit 4 wins the tie"]',
            (1_600_000_000_000_000, 5): '["older event, later commit"]',
        }
        client = redis.Redis.from_url(redis_server.url)
        rows_key, _ = reader.keys("g", 1)
        for order in ([4, 2, 1, 5], [1, 2, 4, 5], [5, 4, 4, 2, 1]):
            client.delete(*reader.keys("g", 1))
            by_commit = {c: (t, v) for (t, c), v in pushes.items()}
            for commit in order:
                t, values = by_commit[commit]
                reader.write_rows("g", 1, commit, [OnlineRow(key, t, commit, values)])
            assert client.hget(rows_key, key) == b'["newest, commit 4 wins the tie"]', order
            assert client.hget(rows_key, "#commit") == b"5"  # the highest commit pushed
        assert reader.reached("g", 1) == 5


# -- configuration ----------------------------------------------------------------------------------
def test_nbops_online_url_selects_redis_and_bad_urls_are_refused(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBOPS_ONLINE_URL", redis_server.url)
    frame = pd.DataFrame({"cc_num": [1], "ts": pd.to_datetime(["2026-01-01"], utc=True), "amount": [1.0]})
    with nbops.open(tmp_path / "env") as store:
        store.register_features(frame, "g", keys="cc_num", event_time="ts", online=True)
        assert store.online_reader().shared
        assert store.online_features(["g.amount"], keys={"cc_num": [1]})["amount"].tolist() == [1.0]
    with nbops.open(tmp_path / "env", online="embedded") as store:  # the argument wins over the variable
        assert not store.online_reader().shared
    monkeypatch.setenv("NBOPS_ONLINE_URL", "memcached://127.0.0.1")
    with (
        nbops.open(tmp_path / "env") as store,
        pytest.raises(InvalidInputError, match="unknown online store 'memcached"),
    ):
        store.online_features(["g.amount"], keys={"cc_num": [1]})
    # a password in the URL never reaches a message
    dead = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with nbops.open(tmp_path / "env", online=dead) as store, pytest.raises(OnlineStoreError) as info:
        store.online_features(["g.amount"], keys={"cc_num": [1]})
    assert "s3cret" not in str(info.value) and "unreachable" in str(info.value)


def test_the_embedded_online_store_never_imports_redis(tmp_path: Path) -> None:
    code = (
        "import sys, pandas as pd, nbops\n"
        f"s = nbops.open({str(tmp_path / 'plain')!r})\n"
        "f = pd.DataFrame({'k': [1], 'ts': pd.to_datetime(['2026-01-01'], utc=True), 'x': [1.0]})\n"
        "s.register_features(f, 'g', keys='k', event_time='ts', online=True)\n"
        "assert s.online_features(['g.x'], keys={'k': [1]})['x'].tolist() == [1.0]\n"
        "assert 'redis' not in sys.modules, 'redis was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NBOPS_ONLINE_URL"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
