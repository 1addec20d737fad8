"""store.predictor / store.predict: the model's features found from lineage, looked up online, every prediction logged.

One store for the module (``helpers.served.fraud_store``: real online features,
real saved training data, a real scikit-learn model in the store's MLflow registry).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbops
from helpers.served import INPUTS, Fraud
from nbops.errors import InvalidInputError, NotFoundError, UnknownKeysError
from nbops.predictions.log import read_predictions


def logged_rows(fraud: Fraud) -> int:
    fraud.store._flush_predictions()
    return read_predictions(fraud.store.root, "fraud").num_rows


def expected(fraud: Fraud, cards: list[int], amounts: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """What the model says on the online values, computed the long way."""
    online = fraud.store.online_features(["card.n_tx", "card.amount_mean"], keys={"cc_num": cards})
    x = online.assign(amount=amounts)[INPUTS]
    return fraud.model.predict(x), fraud.model.predict_proba(x)[:, 1]  # type: ignore[attr-defined]


def test_the_lineage_names_the_features_keys_and_request_values(fraud: Fraud) -> None:
    predictor = fraud.store.predictor("fraud@champion", log=False)
    assert predictor.spec.metadata() == {
        "model": "fraud",
        "version": "1",
        "task": "classifier",
        "inputs": INPUTS,
        "features": ["card:1.n_tx", "card:1.amount_mean"],
        "keys": ["cc_num"],
        "request_values": ["amount"],
        "defaults": {},
    }
    assert fraud.store.predictor("fraud/1", log=False).spec.version == "1"
    assert fraud.store.predictor("fraud", log=False).spec.version == "1"


def test_predictions_are_the_models_on_the_latest_online_values_and_each_is_logged(fraud: Fraud) -> None:
    before = logged_rows(fraud)
    cards, amounts = [3, 1, 3, 7], [12.5, 300.0, 80.0, 5.0]
    at = pd.Timestamp("2026-12-01 10:00")  # naive: UTC
    got = fraud.store.predict("fraud@champion", keys={"cc_num": cards}, values={"amount": amounts}, event_time=at)
    labels, scores = expected(fraud, cards, amounts)
    assert got["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(got["score"].to_numpy(), scores, rtol=0, atol=1e-12)
    assert got["request_id"].is_unique and got.attrs["model"] == "fraud@1"

    assert logged_rows(fraud) == before + 4
    log = fraud.store.predictions("fraud")
    mine = log.set_index("request_id").loc[got["request_id"]]
    assert mine["cc_num"].tolist() == cards and mine["amount"].tolist() == amounts
    online = fraud.store.online_features(["card.n_tx", "card.amount_mean"], keys={"cc_num": cards})
    assert mine["n_tx"].tolist() == online["n_tx"].tolist()
    np.testing.assert_allclose(mine["amount_mean"].to_numpy(), online["amount_mean"].to_numpy())
    assert mine["prediction"].tolist() == labels.tolist() and (mine["model_version"] == "1").all()
    assert (mine["at"] == pd.Timestamp("2026-12-01 10:00", tz="UTC")).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.integers(1, 50), st.floats(0, 1e4, allow_nan=False, allow_infinity=False)), min_size=1, max_size=20
    )
)
def test_any_request_of_known_keys_predicts_what_the_model_says(fraud: Fraud, rows: list[tuple[int, float]]) -> None:
    cards, amounts = [c for c, _ in rows], [a for _, a in rows]
    predictor = fraud.store.predictor("fraud@champion", log=False)
    got = predictor.predict({"cc_num": cards}, {"amount": amounts})
    labels, scores = expected(fraud, cards, amounts)
    assert got.predictions == labels.tolist()
    np.testing.assert_allclose(got.scores or [], scores, rtol=0, atol=1e-12)
    # The server's shortcut (NumPy arrays for a plain estimator) gives the very same numbers.
    fast = fraud.store.predictor("fraud@champion", log=False)
    assert fast.use_arrays()
    again = fast.predict({"cc_num": cards}, {"amount": amounts})
    assert again.predictions == got.predictions and again.scores == got.scores


def test_the_array_shortcut_is_bitwise_the_frame_for_many_request_sizes(fraud: Fraud) -> None:
    # A row-major array made the BLAS product sum in another order: a last-bit difference in about 2 % of
    # requests, which the property test above met only by chance. Many sizes, checked directly.
    slow = fraud.store.predictor("fraud@champion", log=False)
    fast = fraud.store.predictor("fraud@champion", log=False)
    assert fast.use_arrays()
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 21))
        inputs = {
            "n_tx": rng.integers(1, 50, n),
            "amount_mean": rng.gamma(2.0, 50.0, n),
            "amount": rng.uniform(0, 1e4, n),
        }
        frame, array = slow._model_input(inputs, n), fast._model_input(inputs, n)
        assert isinstance(array, np.ndarray)
        proba = fraud.model.predict_proba  # type: ignore[attr-defined]
        assert np.array_equal(proba(array), proba(frame))


@pytest.mark.parametrize(
    ("keys", "values", "options", "message"),
    [
        ({}, {"amount": [1.0]}, {}, "keys has no ['cc_num']"),
        ({"cc_num": [1], "merchant": [2]}, {"amount": [1.0]}, {}, "['merchant'] are not key columns"),
        ({"cc_num": ["one"]}, {"amount": [1.0]}, {}, "keys['cc_num'][0] = 'one' (str) cannot be looked up"),
        ({"cc_num": [1]}, {}, {}, "takes ['amount'] from the request"),
        ({"cc_num": [1]}, {"amount": [1.0], "n_tx": [4]}, {}, "values ['n_tx'] are not request inputs"),
        ({"cc_num": [1, 2]}, {"amount": [1.0]}, {}, "the same number of entries"),
        ({"cc_num": [1, 2]}, {"amount": [1.0, 2.0]}, {"request_ids": ["a", "a"]}, "request_ids repeat"),
        ({"cc_num": [1]}, {"amount": [1.0]}, {"request_ids": ["a", "b"]}, "request_ids must be 1"),
        ({"cc_num": [1]}, {"amount": [1.0]}, {"event_time": "yesterday-ish"}, "event_time is not a time"),
        ({"cc_num": [1]}, {"amount": [None]}, {}, "cannot predict these inputs"),
        ({"cc_num": list(range(10_001))}, {"amount": [1.0] * 10_001}, {}, "the limit is 10000"),
    ],
)
def test_bad_requests_are_refused_naming_the_problem_and_nothing_is_logged(
    fraud: Fraud,
    keys: dict[str, list[object]],
    values: dict[str, list[object]],
    options: dict[str, object],
    message: str,
) -> None:
    predictor = fraud.store.predictor("fraud@champion", flush_seconds=0.05)
    try:
        with pytest.raises(InvalidInputError) as raised:
            predictor.predict(keys, values, **options)  # type: ignore[arg-type]
        assert message in str(raised.value)
        predictor.log.flush()  # type: ignore[union-attr]
        assert predictor.log.stats["logged"] == 0  # type: ignore[union-attr]
    finally:
        predictor.close()


def test_the_array_shortcut_is_only_for_plain_estimators_fitted_on_the_inputs(fraud: Fraud) -> None:
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predictor = fraud.store.predictor("fraud@champion", log=False)
    fitted = make_pipeline(StandardScaler(), clone(fraud.model))  # a clone: fitting must not refit the fixture's
    predictor.model = fitted.fit(fraud.train[INPUTS], fraud.train["is_fraud"])
    assert not predictor.use_arrays()  # a pipeline may pick its columns by name
    predictor.model = fraud.model
    predictor.spec.inputs.reverse()
    try:
        assert not predictor.use_arrays()  # fitted on another column order
    finally:
        predictor.spec.inputs.reverse()


def test_unknown_keys_are_named_and_defaults_fill_them_when_configured(fraud: Fraud) -> None:
    strict = fraud.store.predictor("fraud@champion", log=False)
    with pytest.raises(UnknownKeysError) as raised:
        strict.predict({"cc_num": [1, 9_999, 8_888]}, {"amount": [1.0, 2.0, 3.0]})
    assert raised.value.keys == [{"cc_num": 9_999}, {"cc_num": 8_888}]
    assert "9999" in str(raised.value) and "card:1" in str(raised.value)

    lenient = fraud.store.predictor("fraud@champion", defaults={"n_tx": 0, "amount_mean": 0.0}, log=False)
    got = lenient.predict({"cc_num": [1, 9_999]}, {"amount": [1.0, 2.0]})
    x = pd.DataFrame({"n_tx": [0], "amount_mean": [0.0], "amount": [2.0]})
    assert got.scores is not None
    assert got.scores[1] == pytest.approx(fraud.model.predict_proba(x)[0, 1], abs=1e-12)  # type: ignore[attr-defined]
    assert got.scores[0] == pytest.approx(expected(fraud, [1], [1.0])[1][0], abs=1e-12)
    with pytest.raises(UnknownKeysError):  # a default for one input only does not fill a key's row
        fraud.store.predictor("fraud@champion", defaults={"n_tx": 0}, log=False).predict(
            {"cc_num": [9_999]}, {"amount": [1.0]}
        )
    with pytest.raises(InvalidInputError, match="not looked-up inputs"):
        fraud.store.predictor("fraud@champion", defaults={"amount": 1.0}, log=False)


def test_a_key_missing_from_one_group_gets_defaults_for_that_groups_inputs_only(fraud: Fraud) -> None:
    # amount_mean from a second group that knows cards 1 to 10 only; n_tx from card, which knows card 20.
    partial = pd.DataFrame({"cc_num": range(1, 11), "ts": pd.Timestamp("2026-03-01", tz="UTC"), "amount_mean": 60.0})
    fraud.store.register_features(partial, "partial_means", keys="cc_num", event_time="ts", online=True)
    predictor = fraud.store.predictor(
        "fraud@champion",
        features=["card:1.n_tx", "partial_means:1.amount_mean"],
        defaults={"n_tx": 0, "amount_mean": -1.0},
        log=False,
    )
    online = fraud.store.online_features(["card:1.n_tx"], keys={"cc_num": [20, 3]})
    got = predictor.predict({"cc_num": [20, 3]}, {"amount": [5.0, 5.0]})
    x = pd.DataFrame({"n_tx": online["n_tx"].tolist(), "amount_mean": [-1.0, 60.0], "amount": [5.0, 5.0]})
    assert online["n_tx"].tolist()[0] > 0  # card 20's real n_tx, not the default 0
    assert got.scores == pytest.approx(fraud.model.predict_proba(x)[:, 1].tolist(), abs=1e-12)  # type: ignore[attr-defined]


def test_named_features_replace_the_lineage_and_must_fill_inputs(fraud: Fraud) -> None:
    named = fraud.store.predictor("fraud@champion", features=["card:1.n_tx", "card.amount_mean"], log=False)
    assert named.spec.feature_refs == ["card:1.n_tx", "card:1.amount_mean"]
    only_one = fraud.store.predictor("fraud@champion", features=["card.n_tx"], log=False)
    assert only_one.spec.request_inputs == ["amount_mean", "amount"]
    with pytest.raises(NotFoundError, match="no feature 'nope'"):
        fraud.store.predictor("fraud@champion", features=["card.nope"], log=False)


def test_a_missing_alias_or_model_fails_before_any_request(fraud: Fraud) -> None:
    with pytest.raises(NotFoundError, match="alias 'staging'"):
        fraud.store.predictor("fraud@staging")
    with pytest.raises(NotFoundError, match="no registered model 'ghost'"):
        fraud.store.predictor("ghost")
    for bad in ("fraud/x", "fraud@", "../fraud", ""):
        with pytest.raises((InvalidInputError, nbops.errors.InvalidNameError)):
            fraud.store.predictor(bad)


def test_a_model_without_features_in_its_lineage_is_refused_unless_requests_carry_every_input(
    fraud: Fraud, tmp_path: Path
) -> None:
    from sklearn.linear_model import LinearRegression

    store = fraud.store
    x = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.0, 1.0, 0.0, 1.0]})
    with nbops.track(experiment="plain", run_name="r", store=store, register_model="plain"):
        mlflow.sklearn.log_model(LinearRegression().fit(x, [1.0, 2.0, 3.0, 5.0]), name="model", input_example=x.head(2))
    with pytest.raises(NotFoundError, match="no feature in its lineage.*--features-in-request"):
        store.predictor("plain")
    direct = store.request_predictor("plain", flush_seconds=0.05)
    try:
        got = direct.predict(values={"a": [2.0], "b": [1.0]}, request_ids=["q1"])
        assert got.predictions[0] == pytest.approx(
            float(LinearRegression().fit(x, [1.0, 2.0, 3.0, 5.0]).predict(x.iloc[[1]])[0])
        )
        direct.log.flush()  # type: ignore[union-attr]
    finally:
        direct.close()
    logged = read_predictions(store.root, "plain").to_pylist()
    assert [r["request_id"] for r in logged] == ["q1"] and json.loads(logged[0]["features"]) == {"a": 2.0, "b": 1.0}
    assert logged[0]["score"] is None


def test_a_batch_pipeline_predicts_from_its_own_frame_and_every_row_is_logged(fraud: Fraud) -> None:
    before = logged_rows(fraud)
    batch = fraud.train[[*INPUTS, "cc_num"]].head(25)
    got = fraud.store.predict("fraud@champion", frame=batch, event_time=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
    assert got["prediction"].tolist() == fraud.model.predict(batch[INPUTS]).tolist()  # type: ignore[attr-defined]
    assert logged_rows(fraud) == before + 25
    # The lineage's key column is logged with each row, so outcomes can name them by keys + event time.
    fraud.store.close()
    logged = fraud.store.predictions("fraud").set_index("request_id").loc[got["request_id"]]
    assert logged["cc_num"].tolist() == batch["cc_num"].tolist()
    once = batch.drop_duplicates("cc_num", keep=False)  # a card twice at one event time is ambiguous
    truth = once[["cc_num"]].assign(ts=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), is_fraud=True)
    stored = fraud.store.log_outcomes("fraud", truth, outcome="is_fraud", event_time="ts")
    assert stored == {"outcomes": len(once), "already_recorded": 0, "matched": len(once)} and len(once) > 5
    with pytest.raises(InvalidInputError, match=r"needs columns \['amount'\]"):
        fraud.store.predict("fraud@champion", frame=batch.drop(columns="amount"))
    with pytest.raises(InvalidInputError, match="give keys="):
        fraud.store.predict("fraud@champion")


def test_an_exported_inference_module_predicts_online_and_logs_every_prediction(tmp_path: Path) -> None:
    """A notebook that serves online in its inference cells exports to modules that do the same, on a new store."""
    from helpers.notebooks import PYTHON, code, run, write_notebook
    from nbops.exporting import export

    cells = [
        code(
            "import mlflow\nimport numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression\n"
            "import nbops\nstore = nbops.open()",
            id="setup",
        ),
        code(
            "# nbops: feature\nrng = np.random.default_rng(7)\n"
            "raw = pd.DataFrame({'id': np.arange(300) % 30, 'ts': pd.date_range('2026-01-01', periods=300, freq='h', tz='UTC'),"
            " 'x': rng.normal(size=300)})\nraw['label'] = (raw['x'] > 0).astype(int)",
            id="raw",
        ),
        code("%snapshot raw", "feature", id="snap"),
        code(
            "%%features online_tx --keys id --event-time ts --online\nfeats = raw[['id', 'ts', 'x']]\nfeats", id="feats"
        ),
        code(
            "# nbops: training\n"
            "train = store.training_data(raw[['id', 'ts', 'label']], ['online_tx.x'], event_time='ts', label='label', "
            "save_as='online_train')\n"
            "with nbops.track(experiment='online', run_name='fit', register_model='online_model'):\n"
            "    model = LogisticRegression().fit(train[['x']], train['label'])\n"
            "    mlflow.sklearn.log_model(model, name='model', input_example=train[['x']].head(2))",
            id="fit",
        ),
        code(
            "# nbops: inference\n"
            "served = store.predict('online_model', keys={'id': [1, 2, 3]}, request_ids=['a', 'b', 'c'])\n"
            "batch = store.predict('online_model', frame=train[['x']].head(5))\n"
            "print(len(served), len(batch))",
            id="serve",
        ),
    ]
    nb = write_notebook(tmp_path / "online.ipynb", cells)
    with nbops.open(tmp_path / "meta" / ".nbops") as meta:
        result = export(nb, out=tmp_path / "out", store=meta)
    home = tmp_path / "fresh" / ".nbops"
    for stage in ("feature", "training", "inference"):
        done = run([PYTHON, str(result.out_dir / f"{stage}_pipeline.py")], tmp_path / "run", home, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert "3 5" in done.stdout
    log = read_predictions(home, "online_model").to_pylist()
    assert len(log) == 8
    assert {r["request_id"] for r in log} >= {"a", "b", "c"}
    by_id = {r["request_id"]: r for r in log}
    with nbops.open(home) as fresh:
        online = fresh.online_features(["online_tx.x"], keys={"id": [1, 2, 3]})
    assert [json.loads(by_id[r]["features"])["x"] for r in "abc"] == pytest.approx(online["x"].tolist())


def test_an_input_two_group_versions_could_fill_is_refused_not_guessed(tmp_path: Path) -> None:
    """Lineage through two versions of one group, both with the model's input: which one served is unknown."""
    from sklearn.linear_model import LogisticRegression

    from helpers.served import card_features, transactions

    with nbops.open(tmp_path / ".nbops") as store:
        tx = transactions(300)
        feats = card_features(tx)
        store.register_features(feats, "card", keys="cc_num", event_time="ts", online=True)
        store.register_features(
            feats.assign(n_tx=feats["n_tx"].astype("float64")),
            "card",
            keys="cc_num",
            event_time="ts",
            online=True,
            version=2,
        )
        train = store.training_data(
            tx, ["card:1.n_tx", "card:2.amount_mean"], event_time="ts", label="is_fraud", save_as="t"
        )
        also = store.training_data(tx, ["card:2.n_tx"], event_time="ts", save_as="t2")
        with nbops.track(experiment="twice", run_name="r", store=store, register_model="twice"):
            store.load("t")
            store.load("t2")
            x = train[["n_tx", "amount_mean"]].assign(n_tx=also["n_tx"])
            mlflow.sklearn.log_model(
                LogisticRegression().fit(x, train["is_fraud"]), name="model", input_example=x.head(2)
            )
        with pytest.raises(InvalidInputError, match=r"'n_tx' could come from card:1.n_tx, card:2.n_tx"):
            store.predictor("twice")
        named = store.predictor("twice", features=["card:2.n_tx", "card:2.amount_mean"], log=False)
        assert named.spec.feature_refs == ["card:2.n_tx", "card:2.amount_mean"]


def test_a_read_only_process_predicts_but_refuses_to_log(fraud: Fraud, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbops.errors import ReadOnlyError

    monkeypatch.setenv("NBOPS_READONLY", "1")
    before = logged_rows(fraud)
    with pytest.raises(ReadOnlyError, match="log the predictions of fraud v1"):
        fraud.store.predictor("fraud@champion")
    quiet = fraud.store.predictor("fraud@champion", log=False)
    assert quiet.predict({"cc_num": [1]}, {"amount": [1.0]}).logged == 0
    with pytest.raises(ReadOnlyError, match="log outcomes of fraud"):
        fraud.store.log_outcomes("fraud", pd.DataFrame({"request_id": ["x"], "outcome": [1]}))
    monkeypatch.delenv("NBOPS_READONLY")
    assert logged_rows(fraud) == before
