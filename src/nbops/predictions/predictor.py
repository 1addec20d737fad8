"""A registered model ready to predict: its inputs, where each comes from, and its prediction log.

A :class:`ModelSpec` says what a model version takes: its input columns in
order, which of them are online features (and under which column the lookup
returns each), which are entity key columns, and which the request must
carry itself (request-time values such as a transaction's amount).
:meth:`nbops.Store.predictor` builds it from the model's signature and its
lineage; this module knows neither MLflow nor the feature store: the feature
lookup is a function it is given.

:meth:`Predictor.predict` checks the request, looks the features up, builds
the model's input frame, predicts, and puts one record per row on the
model's :class:`~nbops.predictions.log.PredictionLog` (off the request path).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbops.errors import InvalidInputError, UnknownKeysError
from nbops.predictions.log import PredictionLog, PredictionRows

if TYPE_CHECKING:
    import pandas as pd

#: ``lookup(keys, missing)``: the online features of ``keys``, a column (array, Series or list) per key and
#: per feature output; ``missing[output]`` gets the positions of keys that output's group has no row for.
Lookup = Callable[[Mapping[str, list[Any]], dict[str, set[int]]], Mapping[str, Any]]

#: Requests larger than this many rows are refused (the server also bounds the body's bytes).
MAX_ROWS = 10_000


@dataclass(frozen=True)
class ModelSpec:
    """What one model version takes and where each input comes from."""

    name: str
    version: str
    inputs: list[str]  # the model's input columns, in the order it was fitted on
    feature_refs: list[str]  # online features to look up ("group:2.feature")
    outputs: dict[str, str]  # lookup column -> the input it fills
    keys: list[str]  # entity key columns a request carries
    task: str  # "classifier" or "regressor"
    defaults: dict[str, Any] = field(default_factory=dict)  # input -> value for a key with no online row
    #: Entity key columns logged with each row of a frame that has them (a batch pipeline's frame), so its
    #: outcomes can be joined by keys + event time: the keys of the feature groups in the model's lineage.
    logged_keys: list[str] = field(default_factory=list)
    #: Inputs the model's signature types as numbers: a request's true/false there is refused, not read as 1/0.
    numeric: list[str] = field(default_factory=list)

    @property
    def request_inputs(self) -> list[str]:
        """Inputs neither looked up nor keys: the request carries them (``values``)."""
        looked_up = set(self.outputs.values())
        return [i for i in self.inputs if i not in looked_up and i not in self.keys]

    def metadata(self) -> dict[str, Any]:
        """The spec as plain data (``GET /metadata``)."""
        return {
            "model": self.name,
            "version": self.version,
            "task": self.task,
            "inputs": list(self.inputs),
            "features": list(self.feature_refs),
            "keys": list(self.keys),
            "request_values": self.request_inputs,
            "defaults": dict(self.defaults),
        }


@dataclass
class Predictions:
    """What one call predicted: one entry per row, in the order asked."""

    model: str
    version: str
    request_ids: list[str]
    predictions: list[Any]
    scores: list[float] | None
    logged: int  # rows put on the prediction log (the rest were dropped, or logging is off)

    def as_dict(self) -> dict[str, Any]:
        """The answer of ``POST /predict``."""
        body: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "request_ids": self.request_ids,
            "predictions": self.predictions,
        }
        if self.scores is not None:
            body["scores"] = self.scores
        return body

    def frame(self) -> pd.DataFrame:
        """What ``store.predict`` returns: request_id, prediction (and score)."""
        import pandas as pd

        columns: dict[str, Any] = {"request_id": self.request_ids, "prediction": self.predictions}
        if self.scores is not None:
            columns["score"] = self.scores
        frame = pd.DataFrame(columns)
        frame.attrs["model"] = f"{self.model}@{self.version}"
        return frame


class Predictor:
    """A loaded model, its :class:`ModelSpec`, a feature lookup and (optionally) a prediction log."""

    def __init__(self, spec: ModelSpec, model: Any, lookup: Lookup | None, log: PredictionLog | None) -> None:
        if spec.feature_refs and lookup is None:
            raise InvalidInputError(f"{spec.name} v{spec.version} needs online features but was given no lookup")
        self.spec, self.model, self.lookup, self.log = spec, model, lookup, log
        self._scores = spec.task == "classifier" and _binary(model)
        self._arrays = False

    def use_arrays(self) -> bool:
        """Hand a plain scikit-learn estimator NumPy arrays instead of frames, where that is the same input.

        scikit-learn turns a numeric frame into the array ``frame.to_numpy()``
        gives, after checking the column names (most of a one-row call's time).
        Done only for estimators of scikit-learn's own model modules (not
        pipelines, which may pick columns by name) fitted on exactly the
        model's inputs in order, and per request only when every column is a
        NumPy number. Installs a warning filter for scikit-learn's "X does not
        have valid feature names", process-wide: for a server process, not a notebook.
        """
        import warnings

        kind = type(self.model).__module__
        fitted = [str(n) for n in getattr(self.model, "feature_names_in_", [])]
        if not kind.startswith(_ARRAY_MODULES) or fitted != self.spec.inputs:
            return False
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        self._arrays = True
        return True

    # -- requests ------------------------------------------------------------------------------
    def predict(
        self,
        keys: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        request_ids: Sequence[str] | None = None,
        event_time: Any = None,
    ) -> Predictions:
        """Predict for each row of ``keys`` (entity key columns), with ``values`` (the request's own inputs)."""

        spec = self.spec
        keys = _columns(keys or {}, "keys")
        values = _columns(values or {}, "values")
        missing_keys = [k for k in spec.keys if k not in keys]
        if missing_keys:
            raise InvalidInputError(
                f"{spec.name} v{spec.version} looks its features up by {spec.keys}; keys has no {missing_keys}"
            )
        unknown = [k for k in keys if k not in spec.keys]
        if unknown:
            raise InvalidInputError(
                f"{unknown} are not key columns of {spec.name} v{spec.version}; they are {spec.keys}"
            )
        missing_values = [c for c in spec.request_inputs if c not in values]
        if missing_values:
            raise InvalidInputError(
                f"{spec.name} v{spec.version} takes {missing_values} from the request; pass them in values"
            )
        extra = [c for c in values if c not in spec.request_inputs]
        if extra:
            raise InvalidInputError(
                f"values {extra} are not request inputs of {spec.name} v{spec.version} "
                f"(it takes {spec.request_inputs or 'none'}; its features are looked up)"
            )
        flags = [c for c in spec.numeric if c in values and any(isinstance(v, bool) for v in values[c])]
        if flags:
            raise InvalidInputError(f"values {flags} hold true/false; {spec.name} v{spec.version} takes numbers there")
        lengths = {f"keys[{k!r}]": len(v) for k, v in keys.items()} | {
            f"values[{k!r}]": len(v) for k, v in values.items()
        }
        if len(set(lengths.values())) > 1:
            raise InvalidInputError(f"every key and value column needs the same number of entries; got {lengths}")
        rows = next(iter(lengths.values()), 0)
        if rows == 0:
            raise InvalidInputError("nothing to predict: give at least one row of keys (or values)")
        if rows > MAX_ROWS:
            raise InvalidInputError(f"{rows} rows in one request; the limit is {MAX_ROWS}")

        columns: dict[str, Any] = {}
        if spec.feature_refs:
            assert self.lookup is not None
            missing: dict[str, set[int]] = {}
            found = self.lookup(keys, missing)
            for output, name in spec.outputs.items():
                columns[name] = found[output]
            if any(missing.values()):
                self._fill_defaults(columns, keys, missing)
        columns.update(keys)
        columns.update(values)
        inputs = {name: columns[name] for name in spec.inputs}
        return self._predict(self._model_input(inputs, rows), inputs, keys, request_ids, event_time, rows)

    def predict_frame(
        self, frame: pd.DataFrame, request_ids: Sequence[str] | None = None, event_time: Any = None
    ) -> Predictions:
        """Predict for a frame that already holds every input (a batch pipeline's features); logged too."""
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(f"frame must be a pandas DataFrame, not {type(frame).__name__}")
        absent = [c for c in self.spec.inputs if c not in frame.columns]
        if absent:
            raise InvalidInputError(
                f"{self.spec.name} v{self.spec.version} needs columns {absent}; the frame lacks them"
            )
        if len(frame) == 0:
            raise InvalidInputError("nothing to predict: the frame has no rows")
        named = self.spec.keys + [k for k in self.spec.logged_keys if k not in self.spec.keys]
        keys = {k: frame[k].tolist() for k in named if k in frame.columns}
        x = frame[self.spec.inputs].reset_index(drop=True)
        inputs = {name: x[name] for name in self.spec.inputs}
        return self._predict(x, inputs, keys, request_ids, event_time, len(frame))

    # -- the model and the log ---------------------------------------------------------------------
    def _fill_defaults(
        self, columns: dict[str, Any], keys: Mapping[str, list[Any]], missing: Mapping[str, set[int]]
    ) -> None:
        """Give each looked-up input its default where *its own* group has no row for the key (a key may be in
        one group and not another: the other group's real values stay); no default for one: UnknownKeysError."""
        spec = self.spec
        absent = {spec.outputs[output]: sorted(at) for output, at in missing.items() if at}
        undefaulted = sorted({i for name, at in absent.items() if name not in spec.defaults for i in at})
        if undefaulted:
            shown = [{k: keys[k][i] for k in spec.keys} for i in undefaulted[:20]]
            more = f" and {len(undefaulted) - 20} more" if len(undefaulted) > 20 else ""
            raise UnknownKeysError(
                f"no online features for {shown}{more} in {', '.join(_groups(spec.feature_refs))}",
                [{k: keys[k][i] for k in spec.keys} for i in undefaulted],
            )
        import pandas as pd

        for name, at in absent.items():
            column = pd.Series(columns[name]).copy()
            column.iloc[at] = spec.defaults[name]
            columns[name] = column

    def _model_input(self, inputs: dict[str, Any], rows: int) -> Any:
        """The model's input: a frame, or (see :meth:`use_arrays`) the array a numeric frame would become."""
        import numpy as np
        import pandas as pd

        if self._arrays:
            arrays = [np.asarray(column) for column in inputs.values()]
            if all(a.dtype.kind in "iuf" and a.shape == (rows,) for a in arrays):
                # What DataFrame.to_numpy() gives: one common dtype, and column-major (Fortran) order, since the
                # BLAS product sums a row in another order for a row-major array (a last-bit difference).
                return np.vstack(arrays).T
        frame = pd.DataFrame(inputs)
        frame.index = pd.RangeIndex(rows)
        return frame

    def _predict(
        self,
        x: Any,
        inputs: Mapping[str, Any],
        keys: Mapping[str, list[Any]],
        request_ids: Sequence[str] | None,
        event_time: Any,
        rows: int,
    ) -> Predictions:
        ids = _request_ids(request_ids, rows)
        at = _event_times(event_time, rows)
        try:
            predicted = _plain(self.model.predict(x))
            scores = self.model.predict_proba(x)[:, 1].tolist() if self._scores else None
        except (ValueError, TypeError, ArithmeticError) as exc:  # ill-typed or out-of-range inputs: the request's fault
            raise InvalidInputError(
                f"{self.spec.name} v{self.spec.version} cannot predict these inputs: {exc}"
            ) from None
        if len(predicted) != rows:
            raise InvalidInputError(f"the model returned {len(predicted)} predictions for {rows} rows")
        logged = 0
        if self.log is not None:
            # By column, as the request has them: the writer thread makes each row's JSON text.
            record = PredictionRows(
                request_ids=ids,
                keys={k: [_jsonable(v) for v in values] for k, values in keys.items()},
                features={
                    name: column.tolist() if hasattr(column, "tolist") else list(column)
                    for name, column in inputs.items()
                },
                predictions=predicted,
                at=at,
                scores=scores,
            )
            logged = rows if self.log.log(record) else 0
        return Predictions(self.spec.name, self.spec.version, ids, predicted, scores, logged)

    def close(self) -> None:
        """Write the prediction log's queue and stop its writer."""
        if self.log is not None:
            self.log.close()


def _columns(given: Mapping[str, Any], what: str) -> dict[str, list[Any]]:
    if not isinstance(given, Mapping):
        raise InvalidInputError(f"{what} must be a mapping of column -> list of values, e.g. {{'cc_num': [1, 2]}}")
    out = {}
    for name, value in given.items():
        if not isinstance(name, str):
            raise InvalidInputError(f"{what} column names are strings, not {name!r}")
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            out[name] = [value]
        else:
            out[name] = list(value)
    return out


#: scikit-learn modules whose estimators take a NumPy array as they take a numeric frame.
_ARRAY_MODULES = tuple(
    f"sklearn.{m}."
    for m in ("linear_model", "ensemble", "tree", "neighbors", "naive_bayes", "svm", "discriminant_analysis")
)


def _groups(refs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(r.split(".", 1)[0] for r in refs))


def _binary(model: Any) -> bool:
    classes = getattr(model, "classes_", None)
    return classes is not None and len(classes) == 2 and hasattr(model, "predict_proba")


def _request_ids(given: Sequence[str] | None, rows: int) -> list[str]:
    if given is None:
        return [uuid.uuid4().hex for _ in range(rows)]
    ids = [given] if isinstance(given, str) else list(given)
    if len(ids) != rows or any(not isinstance(i, str) or not i or len(i) > 200 for i in ids):
        raise InvalidInputError(f"request_ids must be {rows} non-empty strings (at most 200 characters), one per row")
    if len(set(ids)) != len(ids):
        raise InvalidInputError("request_ids repeat within one request; each row needs its own")
    return ids


def _event_times(given: Any, rows: int) -> list[dt.datetime]:
    """One UTC time per row: now, one time for all rows, or one per row; a naive time is UTC."""
    import pandas as pd

    if given is None:
        now = dt.datetime.now(dt.UTC)
        return [now] * rows
    many = not isinstance(given, str | dt.datetime) and hasattr(given, "__iter__")
    texts = list(given) if many else [given] * rows
    if len(texts) != rows:
        raise InvalidInputError(f"event_time has {len(texts)} entries for {rows} rows")
    words = {t.strip().lower() for t in texts if isinstance(t, str)} & {"now", "today"}
    if words:  # pandas reads "now" and "today" as this machine's local time, which would then be labelled UTC
        raise InvalidInputError(
            f"event_time {sorted(words)[0]!r} is not a time; leave event_time out for the time of the request, "
            "or give an ISO time such as 2026-12-01T09:30:00Z"
        )
    try:
        stamps = [pd.Timestamp(t) for t in texts]
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"event_time is not a time: {exc}") from None
    if any(pd.isna(s) for s in stamps):
        raise InvalidInputError("event_time has a missing value")
    return [(s.tz_localize("UTC") if s.tzinfo is None else s.tz_convert("UTC")).to_pydatetime() for s in stamps]


def _plain(values: Any) -> list[Any]:
    """Predictions as JSON-ready Python values (numpy scalars become ints, floats, bools, strings)."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    if getattr(values, "ndim", 1) == 2 and values.shape[1] == 1:
        values = values[:, 0]
    listed = values.tolist() if hasattr(values, "tolist") else list(values)
    return [_jsonable(v) for v in listed]


def _jsonable(value: Any) -> Any:
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
