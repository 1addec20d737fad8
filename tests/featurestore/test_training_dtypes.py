"""Training data feeds scikit-learn and MLflow directly: NumPy dtypes, NaN for missing numbers.

Real store in ``tmp_path``; real ``mlflow.models.infer_signature`` and
scikit-learn estimators.  Hypothesis varies the missing-value patterns.
"""

from __future__ import annotations

import warnings
from itertools import count
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbops
from nbops.errors import InvalidInputError
from nbops.featurestore.groups import numpy_dtypes
from nbops.store import Store

DAY = pd.Timestamp("2024-01-02")


def training_data(store: Store, *args: object, **kwargs: object) -> pd.DataFrame:
    """``store.training_data``, called with ``dtype_backend=`` and the other options as keywords."""
    return store.training_data(*args, **kwargs)  # type: ignore[arg-type]


def feature_frame() -> pd.DataFrame:
    """Keys 1..3 (key 4 of the spine never matches, so every feature is missing there)."""
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "ts": pd.to_datetime(["2024-01-01"] * 3),
            "count": pd.array([5, 6, 7], dtype="Int64"),
            "plain_int": np.array([1, 2, 3], dtype=np.int64),
            "flag": pd.array([True, False, True], dtype="boolean"),
            "score": pd.array([0.5, None, 1.5], dtype="Float64"),
            "city": pd.array(["a", None, "c"], dtype="string"),
            "seen": pd.to_datetime(["2023-12-01", None, "2023-12-03"]),
            "kind": pd.Categorical(["x", "y", "x"]),
        }
    )


def spine(ids: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "ts": [DAY] * len(ids), "label": pd.array([i % 2 for i in ids], dtype="Int64")})


@pytest.fixture
def filled(store: Store) -> Store:
    store.register_features(feature_frame(), "fx", keys="id", event_time="ts")
    return store


def test_default_dtypes_are_numpy_with_nan_for_missing_values(filled: Store) -> None:
    train = filled.training_data(spine([1, 2, 3, 4]), ["fx.*"], event_time="ts", label="label")
    dtypes = {c: str(t) for c, t in train.dtypes.items()}
    assert dtypes["label"] == "int64"  # a spine column without missing values
    assert dtypes["count"] == dtypes["plain_int"] == dtypes["score"] == dtypes["flag"] == "float64"
    assert dtypes["seen"].startswith("datetime64") and dtypes["kind"] == "category"
    assert train["city"].dtype == pd.StringDtype(na_value=np.nan)
    assert train["count"].tolist()[:3] == [5.0, 6.0, 7.0] and np.isnan(train["count"].iloc[3])
    assert train["flag"].tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(train["flag"].iloc[3])
    assert np.isnan(train["score"].iloc[1]) and pd.isna(train["city"].iloc[1]) and pd.isna(train["seen"].iloc[3])


def test_columns_without_missing_values_keep_their_numpy_type(filled: Store) -> None:
    train = filled.training_data(spine([1, 2, 3]), ["fx.count", "fx.flag", "fx.plain_int"], event_time="ts")
    assert [str(t) for t in train.dtypes] == ["int64", "datetime64[us]", "int64", "int64", "bool", "int64"]


def test_mlflow_infer_signature_and_sklearn_take_it_as_it_is(filled: Store) -> None:
    from mlflow.models import infer_signature

    sklearn = pytest.importorskip("sklearn.ensemble")
    train = filled.training_data(
        spine([1, 2, 3, 4] * 3), ["fx.count", "fx.flag", "fx.score"], event_time="ts", label="label"
    )
    X, y = train.drop(columns=["id", "ts", "label"]), train["label"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(X, y)
    assert {c.name for c in signature.inputs.inputs} == {"count", "flag", "score"}
    model = sklearn.HistGradientBoostingClassifier(max_iter=3).fit(X, y)
    assert model.predict(X).shape == (12,)
    from sklearn.linear_model import LogisticRegression

    full = train[["count", "flag", "label"]].dropna()  # rows of keys 1..3: no missing value
    LogisticRegression().fit(full[["count", "flag"]], full["label"])


def test_nullable_dtypes_on_request(filled: Store) -> None:
    train = training_data(
        filled,
        spine([1, 2, 3, 4]),
        ["fx.count", "fx.flag", "fx.city"],
        event_time="ts",
        label="label",
        dtype_backend="numpy_nullable",
    )
    assert [str(t) for t in train[["count", "flag", "city", "label"]].dtypes] == ["Int64", "boolean", "string", "Int64"]
    assert train["count"].iloc[3] is pd.NA


def test_an_unknown_dtype_backend_is_refused_and_saves_nothing(filled: Store) -> None:
    with pytest.raises(InvalidInputError, match=r"dtype_backend='pyarrow' is not known"):
        training_data(filled, spine([1]), ["fx.count"], event_time="ts", save_as="t_bad", dtype_backend="pyarrow")
    assert "t_bad" not in filled.datasets()["name"].tolist()


def big_ints(store: Store, values: list[int]) -> None:
    frame = pd.DataFrame(
        {"id": [1, 2], "ts": pd.to_datetime(["2024-01-01"] * 2), "big": np.array(values, dtype=np.int64)}
    )
    store.register_features(frame, "big", keys="id", event_time="ts")


def test_big_integers_with_missing_values_are_refused_rather_than_rounded(store: Store) -> None:
    big_ints(store, [2**53 + 1, 3])
    with pytest.raises(
        InvalidInputError,
        match=r"column 'big' has missing values and integers that float64 cannot hold exactly \(e\.g\. 9007199254740993\).*dtype_backend='numpy_nullable'",
    ):
        store.training_data(spine([1, 2, 9]), ["big.big"], event_time="ts", save_as="t_big")
    assert "t_big" not in store.datasets()["name"].tolist()
    kept = training_data(store, spine([1, 2, 9]), ["big.big"], event_time="ts", dtype_backend="numpy_nullable")
    assert kept["big"].tolist()[:2] == [2**53 + 1, 3] and kept["big"].iloc[2] is pd.NA
    exact = store.training_data(spine([1, 2]), ["big.big"], event_time="ts")  # no missing value: int64
    assert exact["big"].dtype == np.int64 and exact["big"].tolist() == [2**53 + 1, 3]


def test_big_integers_that_float64_holds_exactly_become_float(store: Store) -> None:
    big_ints(store, [2**60, -(2**53)])
    train = store.training_data(spine([1, 2, 9]), ["big.big"], event_time="ts")
    assert train["big"].dtype == np.float64
    assert [int(v) for v in train["big"].iloc[:2]] == [2**60, -(2**53)] and np.isnan(train["big"].iloc[2])


# -- properties ---------------------------------------------------------------------------
INT64 = st.integers(-(2**63), 2**63 - 1)
COLUMN_KINDS = ("Int64", "Int8", "UInt64", "boolean", "Float64", "Float32", "string")


def values_for(kind: str) -> st.SearchStrategy:
    return {
        "Int64": st.one_of(st.integers(-(2**20), 2**20), INT64),
        "Int8": st.integers(-128, 127),
        "UInt64": st.integers(0, 2**64 - 1),
        "boolean": st.booleans(),
        "Float64": st.floats(allow_nan=False, width=64),
        "Float32": st.floats(allow_nan=False, width=32),
        "string": st.text(max_size=3),
    }[kind]


@st.composite
def nullable_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    columns = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(COLUMN_KINDS), min_size=1, max_size=4))):
        cells = draw(st.lists(st.one_of(st.none(), values_for(kind)), min_size=n, max_size=n))
        columns[f"c{i}"] = pd.array(cells, dtype=kind)
    return pd.DataFrame(columns)


def exact_in_float64(value: int) -> bool:
    return int(float(value)) == value


@settings(max_examples=200, deadline=None)
@given(nullable_frames())
def test_numpy_dtypes_is_exact_or_refuses(frame: pd.DataFrame) -> None:
    inexact = [
        c
        for c in frame.columns
        if frame[c].dtype.kind in "iu"
        and frame[c].isna().any()
        and not all(exact_in_float64(int(v)) for v in frame[c].dropna())
    ]
    if inexact:
        with pytest.raises(InvalidInputError, match=f"column '{inexact[0]}'"):
            numpy_dtypes(frame)
        return
    out = numpy_dtypes(frame)
    assert out.index.equals(frame.index) and list(out.columns) == list(frame.columns)
    for column in frame.columns:
        before, after = frame[column], out[column]
        if before.dtype == "string":
            assert after.dtype == pd.StringDtype(na_value=np.nan)
        else:
            assert isinstance(after.dtype, np.dtype), (column, after.dtype)
            assert after.dtype.kind in ("f" if before.isna().any() else before.dtype.kind)
        assert after.isna().tolist() == before.isna().tolist()
        for a, b in zip(after[before.notna()], before[before.notna()], strict=True):
            assert a == b and (not isinstance(b, (int, np.integer)) or int(a) == int(b))


_groups = count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    present=st.lists(st.booleans(), min_size=1, max_size=5),
    ints=st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=5, max_size=5),
    flags=st.lists(st.one_of(st.none(), st.booleans()), min_size=5, max_size=5),
)
def test_training_data_matches_its_nullable_form_under_any_missing_pattern(
    tmp_path: Path, present: list[bool], ints: list[int | None], flags: list[bool | None]
) -> None:
    """Keys of the spine that are missing from the group, and missing values in it, give NaN; the rest is equal."""
    group = f"g{next(_groups)}"
    with nbops.open(tmp_path / ".nbops") as store:
        ids = [i for i, here in enumerate(present) if here]
        frame = pd.DataFrame(
            {
                "id": ids,
                "ts": pd.to_datetime(["2024-01-01"] * len(ids)),
                "n": pd.array([ints[i] for i in ids], dtype="Int64"),
                "f": pd.array([flags[i] for i in ids], dtype="boolean"),
            }
        )
        if ids:
            store.register_features(frame, group, keys="id", event_time="ts")
        else:
            store.register_features(
                pd.DataFrame(
                    {"id": [99], "ts": [DAY], "n": pd.array([1], dtype="Int64"), "f": pd.array([True], dtype="boolean")}
                ),
                group,
                keys="id",
                event_time="ts",
            )
        asked = spine(list(range(len(present))))
        plain = store.training_data(asked, [f"{group}.*"], event_time="ts", label="label")
        nullable = training_data(
            store, asked, [f"{group}.*"], event_time="ts", label="label", dtype_backend="numpy_nullable"
        )
    for column in ("n", "f"):
        assert isinstance(plain[column].dtype, np.dtype)
        assert plain[column].isna().tolist() == nullable[column].isna().tolist()
        kept = nullable[column].notna()
        assert [float(v) for v in plain[column][kept]] == [float(v) for v in nullable[column][kept]]
    assert plain["label"].dtype == np.int64
