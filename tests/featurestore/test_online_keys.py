"""Online equals offline: online lookups match keys with the typed semantics of ``training_data``.

Each parity test registers a group, asks ``online_features`` for keys passed in
several Python, numpy and pandas forms, and compares the answer with
``training_data`` for a spine of the same values whose event time is after
every row (so it takes the latest row per key, which is what online serves).
Every parity and error test runs on the embedded online store and on Redis (a
real ``redis-server``, see ``helpers/redisserver.py``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbops
from helpers.redisserver import RedisServer, redis_server_fixture  # noqa: F401  (fixture)
from nbops.errors import InvalidInputError
from nbops.featurestore.online import entity_key, key_column_values, key_normaliser

FUTURE = pd.Timestamp("2100-01-01")
BACKENDS = ["embedded", pytest.param("redis", marks=pytest.mark.redis)]


def open_store(path: Path, backend: str, request: pytest.FixtureRequest) -> nbops.Store:
    if backend == "embedded":
        return nbops.open(path)
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'nbops[test]')")
    server: RedisServer = request.getfixturevalue("redis_server")
    return nbops.open(path, online=server.url)


@pytest.fixture(params=BACKENDS)
def serving(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[nbops.Store]:
    """A store whose online lookups go to the embedded table or to Redis."""
    with open_store(tmp_path / ".nbops", request.param, request) as store:
        yield store


def assert_online_equals_offline(store: nbops.Store, refs: list[str], keys: dict[str, Any]) -> pd.DataFrame:
    """Online features for ``keys`` equal ``training_data`` for a spine of the same values, after every row."""
    online = store.online_features(refs, keys=keys)
    spine = pd.DataFrame({k: list(v) for k, v in keys.items()})
    spine["asof"] = FUTURE
    offline = store.training_data(spine, refs, event_time="asof", dtype_backend="numpy_nullable")
    features = [c for c in online.columns if c not in keys]
    assert features, "the lookup returned no feature columns"
    pd.testing.assert_frame_equal(online[features], offline[features].reset_index(drop=True), check_exact=True)
    return online[features]


def frame(keys: dict[str, Any], n: int, start: str = "2026-01-01") -> pd.DataFrame:
    """Rows for ``keys`` (columns of length n), an hourly UTC event time and three features."""
    rng = np.random.default_rng(n)
    return pd.DataFrame(
        {
            **keys,
            "ts": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n), unit="h"),
            "amount": rng.gamma(2.0, 10.0, n).round(2),
            "n_tx": rng.integers(0, 10, n),
            "note": pd.Series([f"row {i}" for i in range(n)], dtype="str"),
        }
    )


# -- parity: the same rows online and offline ----------------------------------------------------
@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda ks: [int(k) for k in ks], id="int"),
        pytest.param(lambda ks: [float(k) for k in ks], id="float-for-int"),
        pytest.param(lambda ks: [np.int32(k) for k in ks], id="np.int32"),
        pytest.param(lambda ks: [np.int64(k) for k in ks], id="np.int64"),
        pytest.param(lambda ks: [np.uint16(k) for k in ks], id="np.uint16"),
        pytest.param(lambda ks: [np.float32(k) for k in ks], id="np.float32"),
        pytest.param(lambda ks: np.asarray(ks, dtype=np.int32), id="int32-array"),
        pytest.param(lambda ks: pd.Series(ks, dtype="Int64"), id="Int64-series"),
    ],
)
def test_int_keys_match_offline_in_every_numeric_form(serving: nbops.Store, form: Any) -> None:
    serving.register_features(
        frame({"cc_num": np.arange(40) % 8}, 40), "tx", keys="cc_num", event_time="ts", online=True
    )
    asked = [5, 0, 999, 7, 5]  # a key never registered, a repeated one
    got = assert_online_equals_offline(serving, ["tx.*"], {"cc_num": form(asked)})
    expected = serving.online_features(["tx.*"], keys={"cc_num": asked})[["amount", "n_tx", "note"]]
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # and the brute-force answer from the group's rows: the latest row of each key
    rows = serving.features("tx").sort_values("ts").drop_duplicates("cc_num", keep="last").set_index("cc_num")
    assert got["amount"].tolist()[:2] == rows.loc[[5, 0], "amount"].tolist() and got["amount"].isna().tolist()[2]


def test_narrow_int_and_float_key_columns_take_any_exact_number(serving: nbops.Store) -> None:
    serving.register_features(
        frame({"k": (np.arange(12) % 4).astype("int32")}, 12), "narrow", keys="k", event_time="ts", online=True
    )
    serving.register_features(
        frame({"x": np.array([0.5, 1.0, 2.0, -3.25] * 3)}, 12), "floaty", keys="x", event_time="ts", online=True
    )
    for asked in ([1, 3, 2**31 - 1], [np.int64(1), np.int8(3), np.uint32(2**31 - 1)], [1.0, 3.0, 2.0**31 - 1]):
        assert_online_equals_offline(serving, ["narrow.amount"], {"k": asked})
    for asked in (
        [1, 2, -3.25, 0.5, 7],
        [np.float32(1.0), np.float32(2.0), np.float32(-3.25), np.float32(0.5)],
        [np.int64(1), np.int16(2)],
    ):
        got = assert_online_equals_offline(serving, ["floaty.amount"], {"x": asked})
        assert got["amount"].notna().sum() == min(len(asked), 4)


def test_string_and_categorical_keys_match_offline(serving: nbops.Store) -> None:
    names = ["a", "ünï", "", "x y", "日本"]
    serving.register_features(
        frame({"user": pd.Series(names * 2, dtype="str")}, 10), "users", keys="user", event_time="ts", online=True
    )
    serving.register_features(
        frame({"shop": pd.Categorical(["north", "south"] * 5)}, 10), "shops", keys="shop", event_time="ts", online=True
    )
    for asked in (["ünï", "", "missing", "a", "日本"], [np.str_("x y"), np.str_("a")]):
        got = assert_online_equals_offline(serving, ["users.amount", "users.note"], {"user": asked})
        assert got["amount"].notna().tolist() == [a != "missing" for a in asked]
    assert_online_equals_offline(serving, ["shops.amount"], {"shop": ["south", "east", "north"]})


INSTANTS = pd.DatetimeIndex(
    ["2024-03-31 00:30", "2024-03-31 01:30", "2024-10-27 00:30", "1969-12-31 23:59:59.5"], tz="UTC"
)


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(lambda t: t.tz_convert(None), id="naive"),
        pytest.param(lambda t: t, id="utc"),
        pytest.param(lambda t: t.tz_convert("Europe/Paris"), id="paris"),
        pytest.param(lambda t: t.tz_convert("Asia/Kolkata").as_unit("ns"), id="kolkata-ns"),
    ],
)
def test_datetime_keys_compare_instants_with_naive_as_utc(serving: nbops.Store, column: Any) -> None:
    serving.register_features(
        frame({"day": column(INSTANTS).repeat(3)}, 12), "daily", keys="day", event_time="ts", online=True
    )
    wanted = INSTANTS[[1, 3, 0]]
    forms = {
        "naive Timestamp (UTC)": list(wanted.tz_convert(None)),
        "UTC Timestamp": list(wanted),
        "New York Timestamp": list(wanted.tz_convert("America/New_York")),
        "datetime, +05:30": [
            t.tz_convert(dt.timezone(dt.timedelta(hours=5, minutes=30))).to_pydatetime() for t in wanted
        ],
        "naive datetime": [t.tz_convert(None).to_pydatetime() for t in wanted],
        "np.datetime64[ns]": list(wanted.tz_convert(None).to_numpy(dtype="datetime64[ns]")),
    }
    results = {
        name: assert_online_equals_offline(serving, ["daily.*"], {"day": asked}) for name, asked in forms.items()
    }
    first = results["UTC Timestamp"]
    assert first["amount"].notna().all()
    for name, got in results.items():
        pd.testing.assert_frame_equal(got, first, check_exact=True, obj=name)
    later = [wanted[0] + pd.Timedelta(microseconds=1), pd.Timestamp("2024-03-31 02:30")]  # near misses
    assert assert_online_equals_offline(serving, ["daily.amount"], {"day": later})["amount"].isna().all()


def test_nanosecond_keys_are_found_to_the_nanosecond(serving: nbops.Store) -> None:
    base = pd.Timestamp("2024-01-01 12:00", tz="UTC").as_unit("ns")
    times = pd.DatetimeIndex([base, base + pd.Timedelta(1, "ns")])
    serving.register_features(frame({"at": times.repeat(2)}, 4), "ticks", keys="at", event_time="ts", online=True)
    got = assert_online_equals_offline(
        serving, ["ticks.amount"], {"at": [times[1], times[0], base + pd.Timedelta(2, "ns")]}
    )
    assert got["amount"].notna().tolist() == [True, True, False]


def test_composite_keys_match_offline(serving: nbops.Store) -> None:
    n = 24
    keys = {
        "cc_num": np.arange(n) % 3,
        "merchant": pd.Series(["m1", "m2"] * (n // 2), dtype="str"),
        "day": pd.DatetimeIndex(["2025-06-01", "2025-06-02"], tz="Europe/Paris").repeat(n // 2),
    }
    serving.register_features(frame(keys, n), "pairs", keys=["cc_num", "merchant", "day"], event_time="ts", online=True)
    day = pd.Timestamp("2025-06-01", tz="Europe/Paris")
    asked: dict[str, Any] = {
        "cc_num": [1.0, np.int32(2), 0, 1],
        "merchant": ["m2", "m1", "m1", "nope"],
        "day": [day.tz_convert("America/New_York")] * 4,
    }
    got = assert_online_equals_offline(serving, ["pairs.amount", "pairs.n_tx"], asked)
    assert got["amount"].notna().tolist() == [True, True, True, False]
    # zones may differ from value to value online (a spine column cannot mix them)
    asked["day"] = [
        day.tz_convert("UTC"),
        day.tz_convert(None),
        day.to_pydatetime(),
        np.datetime64(day.tz_convert(None)),
    ]
    pd.testing.assert_frame_equal(serving.online_features(["pairs.amount", "pairs.n_tx"], keys=asked)[got.columns], got)


# -- refused: missing values and values of another kind ----------------------------------------
INT_REFUSED = [
    pytest.param(None, "missing value", id="None"),
    pytest.param(float("nan"), "missing value", id="nan"),
    pytest.param(np.float64("nan"), "missing value", id="np.nan"),
    pytest.param(pd.NA, "missing value", id="pd.NA"),
    pytest.param(pd.NaT, "missing value", id="pd.NaT"),
    pytest.param(decimal.Decimal("1"), "integer key takes", id="Decimal"),
    pytest.param(pd.Timestamp("2026-01-01"), "integer key takes", id="Timestamp"),
    pytest.param(1.5, "fractional part", id="1.5"),
    pytest.param(np.float32(2.5), "fractional part", id="np.float32(2.5)"),
    pytest.param(float("inf"), "infinite", id="inf"),
    pytest.param(True, "bool is not an integer", id="True"),
    pytest.param(np.bool_(False), "bool is not an integer", id="np.bool_"),
    pytest.param("1", "integer key takes", id="str"),
    pytest.param(2**63, "outside the range", id="2**63"),
]


@pytest.mark.parametrize(("value", "reason"), INT_REFUSED)
def test_int_key_refuses_missing_and_foreign_values(serving: nbops.Store, value: Any, reason: str) -> None:
    serving.register_features(frame({"cc_num": np.arange(8) % 4}, 8), "tx", keys="cc_num", event_time="ts", online=True)
    before = serving.online_features(["tx.amount"], keys={"cc_num": [1, 2]})
    with pytest.raises(InvalidInputError, match=reason) as caught:
        serving.online_features(["tx.amount"], keys={"cc_num": [1, 2, value]})
    message = str(caught.value)
    assert "keys['cc_num'][2]" in message and "key 'cc_num' is int64" in message and repr(value)[:60] in message
    assert "\n" not in message
    pd.testing.assert_frame_equal(serving.online_features(["tx.amount"], keys={"cc_num": [1, 2]}), before)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        pytest.param("user", 1, "string key takes a str", id="int-for-str"),
        pytest.param("user", b"a", "string key takes a str", id="bytes-for-str"),
        pytest.param("user", None, "missing value", id="None-for-str"),
        pytest.param("day", dt.date(2026, 1, 1), "a date is not a timestamp", id="date-for-timestamp"),
        pytest.param("day", "2026-01-01", "timestamp key takes", id="str-for-timestamp"),
        pytest.param("day", 1_767_225_600_000_000, "timestamp key takes", id="int-for-timestamp"),
        pytest.param("day", np.datetime64("2026-01-01T00:00:00.000000001"), "finer than", id="ns-for-us"),
        pytest.param("day", pd.NaT, "missing value", id="NaT"),
        pytest.param("day", np.datetime64("NaT"), "missing value", id="np.NaT"),
    ],
)
def test_string_and_timestamp_keys_refuse_foreign_values(
    serving: nbops.Store, key: str, value: Any, reason: str
) -> None:
    keys = {"user": pd.Series(["a", "b"] * 2, dtype="str"), "day": pd.DatetimeIndex(["2026-01-01"] * 4, tz="UTC")}
    serving.register_features(frame(keys, 4), "both", keys=["user", "day"], event_time="ts", online=True)
    asked: dict[str, list[Any]] = {"user": ["a"], "day": [pd.Timestamp("2026-01-01")]}
    assert serving.online_features(["both.amount"], keys=asked)["amount"].notna().all()
    asked[key] = [value]
    with pytest.raises(InvalidInputError, match=reason) as caught:
        serving.online_features(["both.amount"], keys=asked)
    assert f"keys[{key!r}][0]" in str(caught.value) and f"key {key!r} is" in str(caught.value)


def test_stored_entity_keys_keep_their_text(tmp_path: Path) -> None:
    """Stores written before typed lookups hold this text; lookups must keep producing it."""
    with nbops.open(tmp_path / ".nbops") as store:
        cases = {
            "ints": ({"k": np.array([5, -1])}, ["[-1]", "[5]"]),
            "floats": ({"k": np.array([1.5, 2.0])}, ["[1.5]", "[2.0]"]),
            "bools": ({"k": np.array([True, False])}, ["[false]", "[true]"]),
            "strings": ({"k": pd.Series(["ünï", "a"], dtype="str")}, ['["a"]', '["\\u00fcn\\u00ef"]']),
            "pairs": ({"k": np.array([5, 6]), "j": pd.Series(["a", "b"], dtype="str")}, ['[5,"a"]', '[6,"b"]']),
            # timestamp keys: the UTC instant as a count of the column's unit
            "times": ({"k": pd.DatetimeIndex(["1970-01-01 01:00"], tz="Europe/Paris").as_unit("s").repeat(2)}, ["[0]"]),
        }
        for group, (keys, _) in cases.items():
            store.register_features(frame(keys, 2), group, keys=list(keys), event_time="ts", online=True)
        db = sqlite3.connect(store.root / "catalog.db")
        try:
            for group, (_keys, expected) in cases.items():
                stored = db.execute(
                    "SELECT o.entity_key FROM online_features o JOIN feature_group_versions v ON v.id = o.group_version_id "
                    "JOIN feature_groups g ON g.id = v.group_id WHERE g.name = ? ORDER BY o.entity_key",
                    (group,),
                ).fetchall()
                assert sorted(s for (s,) in stored) == sorted(expected), group
        finally:
            db.close()
        assert entity_key([5]) == "[5]" and entity_key([np.int64(5), "a"]) == '[5,"a"]'


def test_unservable_key_types_are_refused_at_registration(tmp_path: Path) -> None:
    with nbops.open(tmp_path / ".nbops") as store:
        data = frame({"wait": pd.to_timedelta([1, 2], unit="s")}, 2)
        with pytest.raises(InvalidInputError, match=r"key column 'wait' has type duration\[.*\], which online groups"):
            store.register_features(data, "waits", keys="wait", event_time="ts", online=True)
        assert store.feature_groups().empty  # nothing registered
        store.register_features(data, "waits", keys="wait", event_time="ts")  # offline it is fine


# -- properties: a requested value encodes as the stored row does ------------------------------
INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]


def int_bounds(typ: pa.DataType) -> tuple[int, int]:
    bits = typ.bit_width
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if pa.types.is_signed_integer(typ) else (0, 2**bits - 1)


def numeric_forms(value: int) -> list[Any]:
    """Every form of ``value`` a user may pass for an integer key and that is exactly ``value``."""
    forms: list[Any] = [value]
    if abs(value) <= 2**53:
        forms += [float(value), np.float64(value)]
    if float(np.float32(value)) == value:
        forms.append(np.float32(value))
    for kind in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        info = np.iinfo(kind)
        if info.min <= value <= info.max:
            forms.append(kind(value))
    return forms


@st.composite
def int_cases(draw: st.DrawFn) -> tuple[pa.DataType, int, Any]:
    typ = draw(st.sampled_from(INT_TYPES))
    low, high = int_bounds(typ)
    value = draw(st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, min(high, 2**53 + 1)])))
    return typ, value, draw(st.sampled_from(numeric_forms(value)))


@settings(max_examples=300, deadline=None)
@given(int_cases())
def test_int_requests_encode_as_stored_rows(case: tuple[pa.DataType, int, Any]) -> None:
    typ, value, form = case
    stored = entity_key(key_column_values(pa.array([value], type=typ), "k"))
    assert entity_key([key_normaliser(typ)(form)]) == stored == f"[{value}]"
    categorical = pa.array([value], type=typ).dictionary_encode()
    assert entity_key(key_column_values(categorical, "k")) == stored


UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(UNIT_NS)),
    st.sampled_from([None, "UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu"]),
    st.sampled_from(["UTC", "Pacific/Chatham", "America/Los_Angeles", "Europe/Paris"]),
    st.data(),
)
def test_timestamp_requests_encode_as_stored_rows(unit: str, tz: str | None, zone: str, data: st.DataObject) -> None:
    typ = pa.timestamp(unit, tz=tz)
    ns = UNIT_NS[unit]
    count = data.draw(st.integers(-(9 * 10**18) // ns, 9 * 10**18 // ns))  # within pandas' nanosecond range
    stored = entity_key(key_column_values(pa.array([count], type=pa.int64()).cast(typ), "k"))
    instant = pd.Timestamp(count * ns, unit="ns", tz="UTC")
    forms: list[Any] = [instant, instant.tz_convert(None), instant.tz_convert(zone), np.datetime64(count, unit)]
    if instant.nanosecond == 0:
        forms += [
            instant.to_pydatetime(),
            instant.tz_convert(zone).to_pydatetime(),
            instant.tz_convert(None).to_pydatetime(),
        ]
    normalise = key_normaliser(typ)
    for form in forms:
        assert entity_key([normalise(form)]) == stored, form


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=False, width=64), st.floats(allow_nan=False, width=32).map(np.float32)))
def test_float_requests_encode_as_stored_rows(value: Any) -> None:
    for typ in (pa.float64(), pa.float32()):
        try:
            stored = entity_key(key_column_values(pa.array([value], type=typ), "k"))
        except pa.ArrowInvalid:
            continue
        if float(pa.array([value], type=typ)[0].as_py()) == float(value):
            assert entity_key([key_normaliser(typ)(value)]) == stored


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_string_requests_encode_as_stored_rows(value: str) -> None:
    for typ in (pa.string(), pa.large_string()):
        stored = entity_key(key_column_values(pa.array([value], type=typ), "k"))
        assert entity_key([key_normaliser(typ)(value)]) == stored == entity_key([value])


# -- property on real stores: any int form finds the row that its int finds ------------------------
EXTREMES = [-(2**63), 2**63 - 1, 0, -1, 2**53, 2**53 + 1, 2**31, 12345]


@pytest.fixture(scope="module", params=BACKENDS)
def extremes_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[nbops.Store]:
    with open_store(tmp_path_factory.mktemp("extremes") / ".nbops", request.param, request) as store:
        data = frame({"cc_num": np.array(EXTREMES, dtype=np.int64)}, len(EXTREMES))
        data["amount"] = np.arange(len(EXTREMES), dtype=np.float64)
        store.register_features(data, "ext", keys="cc_num", event_time="ts", online=True)
        yield store


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.sampled_from(EXTREMES), st.integers(-(2**63), 2**63 - 1)), st.data())
def test_any_form_of_an_int_key_finds_its_row_online(
    extremes_store: nbops.Store, value: int, data: st.DataObject
) -> None:
    form = data.draw(st.sampled_from(numeric_forms(value)))
    got = extremes_store.online_features(["ext.amount"], keys={"cc_num": [form]})["amount"].iloc[0]
    if value in EXTREMES:
        assert got == EXTREMES.index(value)
    else:
        assert np.isnan(got)
