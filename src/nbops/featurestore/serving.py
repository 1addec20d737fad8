"""Serving features online: resolve what a lookup asks for, fetch it from the online store, build the frame.

Which group versions, output names and types a list of feature references
means is resolved once (:func:`plan`) and cached with the online store until
the catalog's versions change (on SQLite), so a one-key lookup is one indexed
query plus building the frame: one JSON parse of every row found, numpy
columns for float64 and complete int64 features, and the frame made from
its arrays.  The rows come from whichever
:class:`~nbops.featurestore.online.base.OnlineStore` the store is configured with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from nbops.core.repository import featurestore as records
from nbops.errors import CorruptDataError, InvalidInputError
from nbops.featurestore.groups import FeatureRef, plan_outputs
from nbops.featurestore.online import _KEY_JSON, _key_value_type, decoded, encodable, key_normaliser
from nbops.featurestore.online.base import GroupPlan, OnlineStore

if TYPE_CHECKING:
    import pandas as pd

    from nbops.store import Store


def _fingerprint(online: OnlineStore) -> Any:
    """Changes whenever a version is added or turned online (None: do not cache)."""
    if not online.store.catalog.is_sqlite:
        return None
    return records.group_versions_fingerprint(online.catalog_connection())


def plan(online: OnlineStore, refs: Sequence[str], key_names: frozenset[str]) -> list[GroupPlan]:
    """How to serve ``refs`` given values for the key columns ``key_names``: one plan per group version.

    Cached until the catalog's versions change. A group version that is not
    online, or whose key columns are not all given, is refused.
    """
    cache_key = (tuple(refs), key_names)
    fingerprint = _fingerprint(online)
    cached = online.plans.get(cache_key)
    if cached is not None and fingerprint is not None and cached[0] == fingerprint:
        return cached[1]
    plans = []
    for gv, group, outputs in plan_outputs(online.store, [FeatureRef.parse(r) for r in refs], taken=set(key_names)):
        if not gv.online:
            raise InvalidInputError(
                f"{group}:{gv.version} is not online; register it with online=True to serve its features"
            )
        missing = [k for k in gv.keys if k not in key_names]
        if missing:
            raise InvalidInputError(f"{group} is keyed by {gv.keys}; pass values for {missing} in keys=")
        feature_cols = [c for c in gv.schema.names if c not in gv.keys and c != gv.event_time]
        empty = pa.table({c: pa.array([], gv.schema.field(c).type) for c in feature_cols})
        stored = encodable(empty).schema
        plans.append(
            GroupPlan(
                version=gv,
                group=group,
                outputs=outputs,
                positions={c: i for i, c in enumerate(feature_cols)},
                stored_types={c: stored.field(c).type for c in feature_cols},
                types={c: gv.schema.field(c).type for c in feature_cols},
                key_types=tuple(gv.schema.field(k).type for k in gv.keys),
                normalisers=tuple(key_normaliser(gv.schema.field(k).type) for k in gv.keys),
            )
        )
    if fingerprint is not None:
        online.plans[cache_key] = (fingerprint, plans)
    return plans


def _to_series(array: pa.Array) -> pd.Series:
    """An Arrow column as pandas; integers and bools with missing values become nullable."""
    import pandas as pd

    if array.null_count and (pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)):
        return pd.Series(array.to_pandas(types_mapper=pd.ArrowDtype).astype(_nullable(array.type)))
    return array.to_pandas()


def _column(values: list[Any], stored: pa.DataType, typ: pa.DataType) -> Any:
    """One feature's values (None where missing) as the frame's column: numpy for float64 and complete int64.

    The shortcut gives exactly what the Arrow route gives for those two types
    (float64 with NaN where missing; int64 when nothing is missing, since a
    missing value makes the column a nullable ``Int64`` there), without its per-call cost.
    """
    if stored == typ:
        if typ == _FLOAT64:
            return np.array(values, dtype=np.float64)
        if typ == _INT64 and None not in values:
            return np.array(values, dtype=np.int64)
    return _to_series(decoded(pa.array(values, type=stored), typ))


_FLOAT64 = pa.float64()
_INT64 = pa.int64()


def _nullable(typ: pa.DataType) -> str:
    return "boolean" if pa.types.is_boolean(typ) else str(typ).replace("int", "Int").replace("uInt", "UInt")


def _entity_keys(plan: GroupPlan, key_lists: Mapping[str, list[Any]]) -> list[str]:
    """The entity key of each requested key tuple, with the group's types; a value it cannot hold is refused."""
    encode = _KEY_JSON.encode
    columns: list[list[Any]] = []
    for name, normalise in zip(plan.version.keys, plan.normalisers, strict=True):
        values = key_lists[name]
        try:
            columns.append([normalise(v) for v in values])
        except (ValueError, TypeError, ArithmeticError):  # _Refused, or a value too odd to compare
            for i, value in enumerate(values):  # find the first refused value, for the message
                try:
                    normalise(value)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    raise InvalidInputError(
                        f"keys[{name!r}][{i}] = {_shown(value)} cannot be looked up in {plan.group}:"
                        f"{plan.version.version}, whose key {name!r} is {plan.key_types[len(columns)]}: {exc}"
                    ) from None
            raise  # not reached: the value refused above is refused again
    if len(columns) == 1:
        if pa.types.is_integer(_key_value_type(plan.key_types[0])):
            return [f"[{v}]" for v in columns[0]]  # the JSON text of a one-int list, without the encoder
        return [encode([v]) for v in columns[0]]
    return [encode(list(t)) for t in zip(*columns, strict=True)]


def _shown(value: Any) -> str:
    """A requested key value and its type, bounded for a one-line message."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    kind = type(value)
    package = kind.__module__.split(".")[0]
    return f"{text} ({kind.__name__ if package == 'builtins' else f'{package}.{kind.__name__}'})"


def online_features(
    store: Store, refs: Sequence[str], keys: Mapping[str, Sequence[Any]], missing: set[int] | None = None
) -> pd.DataFrame:
    """The latest values of the features ``refs`` for each key in ``keys``, one row per key in the order asked.

    What ``store.online_features`` returns: the key columns, then one column
    per feature; a key with no row gets missing values (and, when ``missing``
    is given, its position is added to it). A key value the group's key type
    cannot hold is refused with :class:`~nbops.errors.InvalidInputError`.
    """
    import pandas as pd

    columns = online_columns(store, refs, keys, missing)
    index = pd.RangeIndex(len(next(iter(columns.values()))))
    for column in columns.values():
        if isinstance(column, pd.Series):
            column.index = index  # the frame's own index object: no alignment when it is built
    return _frame(store.online_reader(), columns, index)


def online_columns(
    store: Store,
    refs: Sequence[str],
    keys: Mapping[str, Sequence[Any]],
    missing: set[int] | None = None,
    missing_by_column: dict[str, set[int]] | None = None,
) -> dict[str, Any]:
    """:func:`online_features` before the frame is built: each key column as the list given, each feature as
    a NumPy array (float64, complete int64) or a pandas Series (any other type). A server's path.

    ``missing_by_column`` gets, per feature column, the positions of keys its group has no row for
    (a key can be in one group and not another)."""
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(keys, Mapping) or not keys:
        raise InvalidInputError("keys must be a dict of key column -> values, e.g. keys={'cc_num': [1, 2]}")
    key_lists = {
        k: list(v) if not isinstance(v, (str, bytes)) and hasattr(v, "__iter__") else [v] for k, v in keys.items()
    }
    lengths = {k: len(v) for k, v in key_lists.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidInputError(f"every key column needs the same number of values; got {lengths}")
    reader: OnlineStore = store.online_reader()
    columns: dict[str, Any] = dict(key_lists)
    for group_plan in plan(reader, list(refs), frozenset(key_lists)):
        entity_keys = _entity_keys(group_plan, key_lists)
        found = reader.fetch(group_plan, entity_keys)
        if len(found) < len(set(entity_keys)) and (missing is not None or missing_by_column is not None):
            absent_at = {i for i, e in enumerate(entity_keys) if e not in found}
            if missing is not None:
                missing.update(absent_at)
            if missing_by_column is not None:
                for output in group_plan.outputs.values():
                    missing_by_column.setdefault(output, set()).update(absent_at)
        # One parse of all rows; a key with no row reads as a row of nulls.
        absent = "[" + ",".join(["null"] * len(group_plan.positions)) + "]"
        width = len(group_plan.positions)
        try:
            rows = json.loads("[" + ",".join([found.get(e, absent) for e in entity_keys]) + "]")
        except ValueError:
            rows = None
        if (
            rows is None
            or len(rows) != len(entity_keys)
            or any(not isinstance(r, list) or len(r) != width for r in rows)
        ):
            # A damaged stored row would shift every row after it: refuse rather than mislabel.
            raise CorruptDataError(
                f"the online rows of {group_plan.group}:{group_plan.version.version} are damaged (a stored value is "
                f"not a list of {width} values); rebuild them by registering the group's latest data again"
            )
        for feature, output in group_plan.outputs.items():
            values = list(map(itemgetter(group_plan.positions[feature]), rows))
            columns[output] = _column(values, group_plan.stored_types[feature], group_plan.types[feature])
    return columns


def _frame(reader: OnlineStore, columns: dict[str, Any], index: pd.RangeIndex) -> pd.DataFrame:
    """``pd.DataFrame(columns)``, with the column labels made once per set of names and the arrays not copied.

    ``DataFrame._from_arrays`` is what the dict constructor ends in (same
    inference for the key lists, same blocks); building the labels, a string
    index, is most of the cost of a one-key lookup.  Each frame gets its own
    copy of the cached labels, since a frame's ``columns.name`` can be set in place.
    """
    import pandas as pd

    names = tuple(columns)
    labels = reader.frame_labels.get(names)
    if labels is None:
        if len(reader.frame_labels) >= _MAX_LABELS:
            reader.frame_labels.clear()
        labels = reader.frame_labels[names] = pd.Index(list(names))
    build = getattr(pd.DataFrame, "_from_arrays", None)  # pandas' own, not public: fall back if it goes
    if build is None:
        return pd.DataFrame(dict(zip(labels, columns.values(), strict=True)), index=index, copy=False)
    return build(list(columns.values()), columns=labels.copy(), index=index)


_MAX_LABELS = 256  # distinct column sets kept per online store


def features_for_inputs(
    store: Store, commits: Sequence[str], inputs: Sequence[str], named: Sequence[str] | None = None
) -> tuple[list[str], list[str], dict[str, str]]:
    """Which online features give a model's ``inputs``, among the group versions of ``commits`` (its lineage).

    ``commits`` are feature commit references (``"group:2@5"``) found among
    the model's ancestors. An input is a feature of one of their group
    versions, by its own name or as ``group__feature`` (the name
    ``training_data`` gives a feature two groups provide). Returns the
    feature references (``"group:2.feature"``), the key columns of their
    groups (in order), and a map from each column :func:`online_features`
    returns for them to the input it fills.
    An input two group versions could fill is refused: which one the model
    was trained on cannot be told, and guessing could serve the wrong values.

    ``named`` (feature references, e.g. ``["tx:2.amount_mean"]``) replaces
    ``commits``: only those features are served, and each must fill an input.
    """
    from nbops.featurestore.groups import parse_group_ref

    # The keys and features of each group version the model descends from.
    versions: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
    if named is not None:
        for gv, group, mapping in plan_outputs(store, [FeatureRef.parse(r) for r in named]):
            known = versions.setdefault((group, gv.version), (list(gv.keys), []))[1]
            known.extend(f for f in mapping if f not in known)
    for commit in commits:
        group, version, _ = parse_group_ref(commit)
        if version is not None and (group, version) not in versions:
            (gv, _, every), *_ = plan_outputs(store, [FeatureRef(group, version, "*")])
            versions[(group, version)] = (list(gv.keys), list(every))
    refs: list[str] = []
    filled: dict[str, str] = {}  # reference -> input
    keys: list[str] = []
    for name in inputs:
        found = [
            (group, version, feature, group_keys)
            for (group, version), (group_keys, features) in versions.items()
            for feature in features
            if name in (feature, f"{group}__{feature}")
        ]
        if not found:
            continue
        if len({(g, v) for g, v, _, _ in found}) > 1:
            options = ", ".join(f"{g}:{v}.{f}" for g, v, f, _ in found)
            raise InvalidInputError(
                f"the model's input {name!r} could come from {options}; name the features to serve (features=[...])"
            )
        group, version, feature, group_keys = found[0]
        ref = f"{group}:{version}.{feature}"
        refs.append(ref)
        filled[ref] = name
        keys.extend(k for k in group_keys if k not in keys)
    if named is not None:
        unused = [f"{g}:{v}.{f}" for (g, v), (_, fs) in versions.items() for f in fs if f"{g}:{v}.{f}" not in filled]
        if unused:
            raise InvalidInputError(f"features {unused} fill none of the model's inputs {list(inputs)}")
    outputs = {}
    for gv, group, mapping in plan_outputs(store, [FeatureRef.parse(r) for r in refs], taken=set(keys)):
        for feature, output in mapping.items():
            outputs[output] = filled[f"{group}:{gv.version}.{feature}"]
    return refs, keys, outputs
