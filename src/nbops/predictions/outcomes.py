"""Ground truth for logged predictions: what really happened, recorded later and joined back.

An outcome names its prediction by ``request_id``, or by the entity keys and
the event time the prediction was logged with. Outcomes live beside the
prediction logs, under ``<store>/outcomes/<model>/``, as Parquet batches named
by their digest and published the same way (temporary file, fsync, link,
folder fsync), so a killed process never leaves half a batch.

Recording the same outcome again changes nothing; a different outcome for a
prediction that already has one is refused, naming it: two truths for one
prediction would make every metric computed from them silently wrong. For
the same reason an outcome that names more than one logged prediction (a
request id a client used twice, or one card predicted twice at the same event
time) is refused before anything is stored; one whose prediction is repeated
later, after it was stored, is left out of the join and counted
(``attrs["ambiguous"]``), so monitoring goes on and says so.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nbops.core.names import validate_experiment_name
from nbops.errors import InvalidInputError
from nbops.predictions.log import publish_table, read_predictions, verified_batches

if TYPE_CHECKING:
    import pandas as pd

#: One row per outcome; ``keys`` and ``outcome`` are JSON text, as in the prediction log.
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("keys", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("outcome", pa.string()),
        ("name", pa.string()),  # the column the outcome came from (e.g. the training label's name)
        ("logged_at", pa.timestamp("us", tz="UTC")),
    ]
)


def outcome_folder(root: Path, model: str) -> Path:
    """Where the outcomes of ``model`` live."""
    return root / "outcomes" / validate_experiment_name(model, "model")


def key_text(values: dict[str, Any]) -> str:
    """The JSON text of a row's entity keys, with whole floats as ints: 1.0 and 1 name the same card.

    The prediction log keeps keys as each caller sent them (a request may send
    ``1.0`` for an int key); :func:`canonical_keys` makes its texts comparable.
    """
    return json.dumps({k: _whole(v) for k, v in values.items()}, default=str, sort_keys=True)


def canonical_keys(text: Any) -> Any:
    """A logged (or stored) key text in the form :func:`key_text` gives (anything else, e.g. None, as it is)."""
    if not isinstance(text, str) or "." not in text:  # no float in it (the common case): already canonical
        return text
    return key_text(json.loads(text))


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def log_outcomes(
    root: Path, model: str, outcomes: pd.DataFrame, outcome: str = "outcome", event_time: str | None = None
) -> dict[str, int]:
    """Store the outcomes in ``outcomes`` (see :meth:`nbops.Store.log_outcomes`); counts of what happened."""
    import pandas as pd

    if not isinstance(outcomes, pd.DataFrame):
        raise InvalidInputError(f"outcomes must be a pandas DataFrame, not {type(outcomes).__name__}")
    if outcome not in outcomes.columns:
        raise InvalidInputError(
            f"outcomes has no column {outcome!r} (the truth); its columns are {list(map(str, outcomes.columns))}; "
            "name it with outcome="
        )
    if len(outcomes) == 0:
        raise InvalidInputError("outcomes has no rows")
    if outcomes[outcome].isna().any():
        raise InvalidInputError(f"outcomes[{outcome!r}] has missing values; leave those rows out until they are known")
    truth = [json.dumps(plain_value(v), default=str) for v in outcomes[outcome].tolist()]
    n = len(outcomes)
    if "request_id" in outcomes.columns:
        if event_time is not None:
            raise InvalidInputError("outcomes name their predictions by request_id or by keys + event_time, not both")
        ids = outcomes["request_id"]
        if ids.isna().any() or not all(isinstance(i, str) and i for i in ids):
            raise InvalidInputError("outcomes['request_id'] must hold non-empty strings")
        ids_list: list[str | None] = list(ids)
        keys_list: list[str | None] = [None] * n
        times: list[dt.datetime | None] = [None] * n
        identity = [str(i) for i in ids_list]
    else:
        if event_time is None or event_time not in outcomes.columns:
            raise InvalidInputError(
                "outcomes need a request_id column, or key columns and an event time column (event_time=...)"
            )
        key_columns = [str(c) for c in outcomes.columns if c not in (outcome, event_time)]
        if not key_columns:
            raise InvalidInputError("outcomes by keys need the model's key columns beside the event time")
        stamps = pd.to_datetime(outcomes[event_time])
        if stamps.isna().any():
            raise InvalidInputError(f"outcomes[{event_time!r}] has missing times")
        stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
        columns = {k: [plain_value(v) for v in outcomes[k].tolist()] for k in key_columns}
        keys_list = [key_text({k: columns[k][i] for k in key_columns}) for i in range(n)]
        stamped = [s.to_pydatetime() for s in stamps]
        times = list(stamped)
        ids_list = [None] * n
        identity = [f"{k}@{t.isoformat()}" for k, t in zip(keys_list, stamped, strict=True)]
    given: dict[str, str] = {}
    for who, value in zip(identity, truth, strict=True):
        if given.setdefault(who, value) != value:
            raise InvalidInputError(f"outcomes gives two different outcomes for {who}; nothing was stored")
    named = _predictions_named(read_predictions(root, model), given, by_request_id="request_id" in outcomes.columns)
    ambiguous = [who for who, count in named.items() if count > 1]
    if ambiguous:
        other = "keys + event_time" if "request_id" in outcomes.columns else "request_id"
        raise InvalidInputError(
            f"{len(ambiguous)} outcomes each name more than one logged prediction, e.g. {ambiguous[:5]} (a "
            "request id used twice, or the same keys predicted twice at one event time): which prediction each "
            f"belongs to cannot be told. Name those predictions by {other}; nothing was stored"
        )
    known = _known(root, model)
    conflicts = [who for who, value in given.items() if who in known and known[who] != value]
    if conflicts:
        raise InvalidInputError(
            f"{len(conflicts)} outcomes differ from ones recorded before, e.g. {conflicts[:5]}; nothing was stored"
        )
    seen = set(known)
    keep = []
    for i, who in enumerate(identity):
        if who not in seen:
            seen.add(who)
            keep.append(i)
    now = dt.datetime.now(dt.UTC)
    if keep:
        table = pa.table(
            {
                "request_id": [ids_list[i] for i in keep],
                "keys": [keys_list[i] for i in keep],
                "at": pa.array([times[i] for i in keep], pa.timestamp("us", tz="UTC")),
                "outcome": [truth[i] for i in keep],
                "name": [str(outcome)] * len(keep),
                "logged_at": pa.array([now] * len(keep), pa.timestamp("us", tz="UTC")),
            },
            schema=SCHEMA,
        )
        folder = outcome_folder(root, model)
        folder.mkdir(parents=True, exist_ok=True)
        publish_table(folder, table)
    return {
        "outcomes": len(keep),
        "already_recorded": n - len(keep),
        "matched": sum(1 for count in named.values() if count == 1),
    }


def _predictions_named(predictions: pa.Table, identities: dict[str, str], by_request_id: bool) -> dict[str, int]:
    """How many logged predictions each outcome identity (a request id, or ``keys@time``) names."""
    from collections import Counter

    if by_request_id:
        counts = Counter(predictions.column("request_id").to_pylist())
    else:
        stamps = [t.isoformat() for t in predictions.column("at").to_pylist()]
        texts = [canonical_keys(k) for k in predictions.column("keys").to_pylist()]
        counts = Counter(f"{k}@{t}" for k, t in zip(texts, stamps, strict=True))
    return {who: counts.get(who, 0) for who in identities}


def read_outcomes(root: Path, model: str) -> pa.Table:
    """Every outcome recorded for ``model``, each batch checked against its name."""
    tables = [t.cast(SCHEMA) for _, t in verified_batches(outcome_folder(root, model), "outcome batch")]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def _known(root: Path, model: str) -> dict[str, str]:
    table = read_outcomes(root, model)
    known: dict[str, str] = {}
    for rid, keys, at, value in zip(
        table["request_id"].to_pylist(),
        table["keys"].to_pylist(),
        table["at"].to_pylist(),
        table["outcome"].to_pylist(),
        strict=True,
    ):
        known[rid if rid is not None else f"{canonical_keys(keys)}@{at.isoformat()}"] = value
    return known


def join(predictions: pa.Table, outcomes: pa.Table) -> pd.DataFrame:
    """Logged predictions that have an outcome: request_id, at, model_version, prediction, score, outcome (JSON),
    and ``row``, the prediction's position in ``predictions``.

    By request id, or else by the same keys and event time. An outcome that
    names more than one prediction (a request id logged twice, the same keys
    twice at one time) is left out, since which of them it belongs to cannot
    be told; ``attrs["ambiguous"]`` counts those outcomes.
    """
    import pandas as pd

    preds = predictions.select(["request_id", "at", "model_version", "keys", "prediction", "score"]).to_pandas()
    preds["row"] = range(len(preds))
    preds["keys"] = [canonical_keys(k) for k in preds["keys"]]
    truth = outcomes.select(["request_id", "keys", "at", "outcome"]).to_pandas()
    truth["keys"] = [canonical_keys(k) for k in truth["keys"]]
    columns = ["request_id", "at", "model_version", "prediction", "score", "outcome", "row"]
    if truth.empty or preds.empty:
        empty = pd.DataFrame(columns=columns)
        empty.attrs["ambiguous"] = 0
        return empty
    by_id = truth[truth["request_id"].notna()][["request_id", "outcome"]]
    repeated = preds["request_id"][preds["request_id"].duplicated()]
    ambiguous = int(by_id["request_id"].isin(repeated).sum())
    matched = preds[~preds["request_id"].isin(repeated)].merge(by_id, on="request_id", how="inner")
    by_keys = truth[truth["request_id"].isna()][["keys", "at", "outcome"]]
    if not by_keys.empty:
        twice = preds.duplicated(["keys", "at"], keep=False)
        ambiguous += len(by_keys.merge(preds.loc[twice, ["keys", "at"]].drop_duplicates(), on=["keys", "at"]))
        also = preds[~twice].merge(by_keys, on=["keys", "at"], how="inner")
        matched = pd.concat([matched, also[~also["row"].isin(matched["row"])]], ignore_index=True)
    matched = matched[columns]
    matched.attrs["ambiguous"] = ambiguous
    return matched


def plain_value(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (anything else as it is)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    return value


__all__: Sequence[str] = [
    "SCHEMA",
    "canonical_keys",
    "join",
    "key_text",
    "log_outcomes",
    "plain_value",
    "read_outcomes",
]
