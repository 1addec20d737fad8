"""The store: a folder holding a catalog and immutable data objects.

Found the way git finds ``.git``::

    store = nbops.open()                 # NBOPS_HOME, else nearest .nbops/ upward, else ./.nbops
    store = nbops.open("path/to/.nbops") # this folder (created if missing)
    store = nbops.open(catalog="postgresql://etl@db.internal/nbops")   # a shared catalog

A store folder holds ``objects/`` (content-addressed Parquet files), ``tmp/``
(files being written) and its catalog: ``catalog.db`` (embedded SQLite, the
default), or ``store.json`` naming the PostgreSQL catalog it was created
with (without the password). A store whose objects live on object storage
(``nbops.open(data="s3://bucket/prefix")``) has ``data.json`` naming that
data root instead of ``objects/`` and ``tmp/`` (see ``nbops.core.objects.remote``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbops.core import catalog as cat
from nbops.core import markers
from nbops.core.catalog import Catalog
from nbops.core.objects import ObjectFiles, open_objects
from nbops.core.paths import (
    HOME_ENV,
    STORE_DIRNAME,
    CatalogSetting,
    configured_catalog,
    find_store_root,
    point_mlflow_at,
    store_tracking_uri,
)
from nbops.errors import InvalidInputError, NbopsError, NotFoundError, StoreError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from nbops.core.refs import SnapshotDiff, SnapshotRef
    from nbops.featurestore.groups import FeatureGroupRef
    from nbops.featurestore.publish import PublishReport
    from nbops.maintenance.gc import GcReport
    from nbops.maintenance.repair import RepairReport
    from nbops.maintenance.verify import VerifyReport
    from nbops.predictions.predictor import Predictor

CATALOG_FILE = cat.CATALOG_FILE
#: In a store whose catalog is on a server: which catalog (URL without password).
MARKER_FILE = "store.json"
DEFAULT_GC_GRACE_SECONDS = 15 * 60


__all__ = ["HOME_ENV", "STORE_DIRNAME", "Store", "current", "find_store_root", "open"]


def open(
    path: str | os.PathLike[str] | None = None,
    catalog: str | None = None,
    online: str | None = None,
    data: str | os.PathLike[str] | None = None,
) -> Store:
    """Open (creating if needed) the store at ``path``, or the one found from here.

    ``catalog`` is a ``postgresql://user@host:port/dbname`` URL, or
    ``"embedded"``; without it, ``$NBOPS_CATALOG_URL``, else ``[tool.nbops]
    catalog`` in the nearest ``pyproject.toml``, else the catalog the store
    was created with (a new store: the embedded SQLite file).

    Opening also points MLflow at the store's tracking database (unless
    ``MLFLOW_TRACKING_URI`` is set) and marks KILLED any run of this host whose
    process died.

    ``online`` is where online features are served from: ``"redis://host:6379/0"``
    or ``"embedded"`` (the catalog's own table); without it, ``$NBOPS_ONLINE_URL``,
    else embedded.

    ``data`` is where the objects live: any pyarrow filesystem URI
    (``"s3://bucket/prefix?endpoint_override=host:9000&scheme=http"``) or a
    local folder; without it, ``$NBOPS_DATA_URL``, else the root the store was
    created with (a new store: its own folder). See docs/team.md.
    """
    root = Path(path).expanduser().resolve() if path is not None else find_store_root()
    return Store(root, catalog=catalog, online=online, data=data)


def current() -> Store:
    """The store most recently opened in this process (opened from here if none).

    ``nbops.track()`` without a store uses it.
    """
    from nbops.core import session

    newest = session.newest()
    return newest if newest is not None else open()


class Store:
    """Snapshots (and, as nbops grows, features, runs and pipelines) in one folder."""

    def __init__(
        self,
        root: Path,
        catalog: str | None = None,
        online: str | None = None,
        data: str | os.PathLike[str] | None = None,
    ) -> None:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root} is a file, not a store folder")
        # One listing decides, read before the marker: another process creating
        # this store at the same moment makes catalog.db (or a temporary marker)
        # first, so a listing with anything of ours in it is a store being made.
        present = set(os.listdir(root)) if root.is_dir() else set()
        recorded = read_catalog_marker(root)
        embedded = CATALOG_FILE in present
        being_made = any(
            n in (CATALOG_FILE, MARKER_FILE) or n.startswith((f".{MARKER_FILE}.", f".{CATALOG_FILE}.")) for n in present
        )
        if present and not being_made and recorded is None:
            raise StoreError(
                f"{root} is not an nbops store (it has no {CATALOG_FILE}) and is not empty (nor has it the "
                f"{MARKER_FILE} of a store on a PostgreSQL catalog); "
                "pass a new or empty folder, or the .nbops folder of an existing store"
            )
        url = _catalog_for(root, configured_catalog(catalog), recorded, embedded)
        # A server catalog is reached (and migrated) before anything is written
        # here, so that a wrong URL or password leaves no half-made store behind.
        server_catalog = cat.open_catalog(url) if url is not None else None
        try:
            root.mkdir(parents=True, exist_ok=True)
            if server_catalog is not None and recorded is None:
                write_catalog_marker(root, server_catalog.url)
            self.root = root
            self.catalog = server_catalog or Catalog.for_store_root(root)
            self.objects: ObjectFiles[Any] = open_objects(root, data, self._committed)
        except BaseException:
            if server_catalog is not None:
                server_catalog.dispose()
            elif hasattr(self, "catalog"):
                self.catalog.dispose()
            raise
        self._online: Any = None
        self.online_url = online  # None: $NBOPS_ONLINE_URL, read on first online use (nbops.featurestore.online)
        self._closed = False
        from nbops.core import session

        session.remember(self)
        from nbops.tracking.experiments import prepare_database_file, reap_dead_runs

        if point_mlflow_at(root) == store_tracking_uri(root):
            prepare_database_file(root)
        reap_dead_runs(self)

    def __repr__(self) -> str:
        return f"<nbops.Store {self.root}>"

    def _committed(self, digest: str) -> bool:
        """Whether the catalog has a row for object ``digest`` (else it is an orphan)."""
        from nbops.core import repository

        return repository.has_object(self.catalog, digest)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def context(self) -> dict[str, Any]:
        """Facts about the code that is writing (notebook, cell id, cell hash), set by
        the kernel layer for the whole process; recorded with each write's lineage."""
        from nbops.core import session

        return session.context()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Release the catalog's connections and the online store's; :func:`current` no longer returns this store.

        A ``with`` block closes the store on leaving it:

            >>> with nbops.open("path/to/.nbops") as store:     # doctest: +SKIP
            ...     store.snapshot(df, "raw_tx")
        """
        self._closed = True
        for predictor in self.__dict__.pop("_predictors", {}).values():
            predictor.close()
        if self._online is not None:
            self._online.close()
            self._online = None
        self.catalog.dispose()

    # -- lineage bookkeeping -----------------------------------------------
    def record_read(self, kind: str, ref: str) -> None:
        """Note that an artifact was read; the next write names it as a parent."""
        from nbops.core import session

        session.note_read(self.root, kind, ref)
        from nbops.core import audit

        audit.record_read(self, kind, ref)
        # Runs record what the process reads, from any store object.
        for run in session.active_runs():
            run._on_read(self, kind, ref)

    def record_write(self, kind: str, ref: str) -> None:
        """Note that an artifact was written (active runs log it as an output)."""
        from nbops.core import session

        for run in session.active_runs():
            run._on_write(self, kind, ref)

    def take_reads(self) -> list[tuple[str, str]]:
        """The artifacts read since the last write (or cell start), and forget them."""
        from nbops.core import session

        return session.take_reads(self.root)

    # -- audit -------------------------------------------------------------
    def audit(self, name: str | None = None, since: dt.datetime | str | None = None) -> pd.DataFrame:
        """Who wrote or read what, and when (UTC), oldest first; one name and/or events since a time."""
        from nbops.governance import audit

        return audit.events(self, name, since)

    # -- snapshots ---------------------------------------------------------
    def snapshot(self, df: pd.DataFrame | pa.Table, name: str, message: str | None = None) -> SnapshotRef:
        """Store ``df`` as the next version of dataset ``name`` (or return the latest if unchanged)."""
        from nbops.core.audit import check_writable
        from nbops.datasets import snapshots

        check_writable(f"snapshot {name!r}")

        return snapshots.snapshot(self, df, name, message)

    def load(self, name: str, version: int | str | None = None) -> pd.DataFrame:
        """A version of a dataset as a DataFrame: latest, ``load(name, 3)`` or ``load("name@3")``."""
        from nbops.datasets import snapshots

        return snapshots.load(self, name, version)

    def load_table(self, name: str, version: int | str | None = None) -> pa.Table:
        """Like :meth:`load`, as a ``pyarrow.Table`` (no pandas conversion)."""
        from nbops.datasets import snapshots

        return snapshots.load_table(self, name, version)

    def ref(self, name: str, version: int | str | None = None) -> SnapshotRef:
        """The reference (digest, rows, columns, ...) of a version, without loading data."""
        from nbops.datasets import snapshots

        return snapshots.get_ref(self, name, version)

    def history(self, name: str) -> pd.DataFrame:
        """Every version of a dataset, oldest first."""
        from nbops.datasets import snapshots

        return snapshots.history(self, name)

    def diff(
        self,
        name: str,
        a: int | None = None,
        b: int | None = None,
        keys: str | Sequence[str] | None = None,
    ) -> SnapshotDiff:
        """Schema and row changes from version ``a`` to ``b`` (default: previous to latest)."""
        from nbops.datasets import snapshots

        return snapshots.diff(self, name, a, b, keys)

    def datasets(self) -> pd.DataFrame:
        """One row per dataset: name, versions, latest version, its rows and time."""
        from nbops.datasets import snapshots

        return snapshots.datasets(self)

    # -- features ----------------------------------------------------------
    def register_features(
        self,
        df: pd.DataFrame | pa.Table | Any,
        group: str,
        keys: str | Sequence[str],
        event_time: str,
        description: str | None = None,
        online: bool | None = None,
        expectations: object = None,
        version: int | None = None,
    ) -> FeatureGroupRef:
        """Add a data commit to a feature group (creating it, or a new ``version=``).

        Rows upsert on (keys, event time). A frame whose columns differ from
        the latest version needs an explicit ``version=`` (the error lists the
        changed columns). ``expectations`` (rules from ``nbops.expect`` and/or
        a pandera schema) are checked first; a failure writes nothing.
        ``online=True`` also keeps the latest row per key for
        :meth:`online_features`. A Spark DataFrame is written by Spark's
        executors, never collected (see :mod:`nbops.featurestore.spark_commit`).
        """
        from nbops.core.audit import check_writable
        from nbops.featurestore import groups as features

        check_writable(f"register features in {group!r}")
        return features.register_features(self, df, group, keys, event_time, description, online, expectations, version)

    def features(
        self,
        group: str,
        version: int | None = None,
        as_of: int | str | dt.datetime | None = None,
        engine: str = "pandas",
        spark: Any = None,
    ) -> Any:
        """A group version's rows as of a commit number or a time (default: latest).

        A pandas DataFrame, or with ``engine="spark"`` a Spark DataFrame (``spark=`` or the active session).
        """
        from nbops.featurestore import groups as features

        return features.features(self, group, version, as_of, engine, spark)

    def feature_groups(self) -> pd.DataFrame:
        """The catalog: one row per group version."""
        from nbops.featurestore import groups as features

        return features.feature_groups(self)

    def feature_commits(self, group: str, version: int | None = None) -> pd.DataFrame:
        """Every data commit of a group version."""
        from nbops.featurestore import groups as features

        return features.commits(self, group, version)

    def feature_statistics(self, group: str, version: int | None = None, commit: int | None = None) -> dict[str, Any]:
        """Statistics stored with a commit (default: the latest)."""
        from nbops.featurestore import groups as features

        return features.statistics(self, group, version, commit)

    def training_data(
        self,
        spine: pd.DataFrame,
        features: Sequence[str],
        event_time: str,
        label: str | None = None,
        ttl: dt.timedelta | str | None = None,
        save_as: str | None = None,
        dtype_backend: str | None = None,
        engine: str = "duckdb",
        spark: Any = None,
    ) -> Any:
        """Point-in-time correct features for each spine row (one row out per row in).

        Columns have NumPy dtypes, missing numbers are NaN (ready for scikit-learn
        and MLflow); ``dtype_backend="numpy_nullable"`` keeps ``Int64``/``boolean``.

        ``engine="spark"`` runs the join in Spark (the active session, or ``spark=``) and
        returns a Spark DataFrame; the spine may then be a Spark or a pandas DataFrame
        (:mod:`nbops.featurestore.spark`).
        """
        from nbops.featurestore import groups as feature_store

        if save_as is not None:
            from nbops.core.audit import check_writable

            check_writable(f"save training data as {save_as!r}")
        from nbops.datasets import snapshots

        return feature_store.training_data(
            self,
            spine,
            features,
            event_time,
            label,
            ttl,
            save_as,
            dtype_backend,
            save=snapshots.snapshot,
            engine=engine,
            spark=spark,
        )

    def online_features(self, features: Sequence[str], keys: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """The latest feature values of the given keys, in the order asked."""

        from nbops.featurestore import serving

        return serving.online_features(self, features, keys)

    def online_reader(self) -> Any:
        """The reader behind :meth:`online_features`: the catalog's online table or a Redis, made on first use."""
        if self._online is None:
            from nbops.featurestore.online import reader_for

            self._online = reader_for(self, self.online_url)
        return self._online

    def sync_online(self) -> dict[str, int]:
        """Copy to a shared online store (Redis) what it misses; ``{"group:version": rows sent}``."""
        from nbops.featurestore import online

        return online.sync(self)

    def drift(
        self,
        group: str,
        a: object = None,
        b: object = None,
        version: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """PSI and KS per feature between two commits or versions, or a frame and a version."""
        from nbops.featurestore import groups as features

        return features.drift(self, group, a, b, version, columns)

    def publish(
        self, group: str, to: str, format: str = "delta", storage_options: dict[str, str] | None = None
    ) -> PublishReport:
        """Write (or extend) a Delta Lake table at ``to`` holding ``group``, one Delta version per commit.

        Delta version *k* equals ``features(group, as_of=k)``; a later call adds the commits made since.
        Needs ``pip install "nbops[delta]"``.

            >>> store.publish("tx_features", "/lake/tx_features")    # doctest: +SKIP
            >>> import polars; polars.read_delta("/lake/tx_features", version=2)  # doctest: +SKIP
        """
        from nbops.featurestore import publish

        return publish.publish(self, group, to, format, storage_options)

    # -- tracking ------------------------------------------------------------
    def runs(self, experiment: str | None = None) -> pd.DataFrame:
        """MLflow runs (of one experiment, or all) with params, metrics, status and data inputs."""
        from nbops.tracking import experiments as tracking

        return tracking.runs(self, experiment)

    def load_model(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """A registered model, in its own library's type (a scikit-learn estimator, ...): the latest
        version, ``version=3`` or ``alias="champion"``; the next write names it as a lineage parent.

            >>> model = store.load_model("fraud")                # doctest: +SKIP
            >>> model.predict_proba(X)                           # doctest: +SKIP
        """
        model, _ = self._load_model(name, version, alias, record=True)
        return model

    def _load_model(self, name: str, version: int | None, alias: str | None, record: bool) -> tuple[Any, int]:
        """(the model in its own library's type, its version number)."""
        import importlib

        from nbops.core.names import validate_name
        from nbops.tracking.experiments import ensure_backend

        validate_name(name, "model")
        if version is not None and alias is not None:
            raise InvalidInputError(f"load_model({name!r}): give version= or alias=, not both")
        mlflow = ensure_backend(self)
        client = mlflow.MlflowClient()
        try:
            if alias is not None:
                found = client.get_model_version_by_alias(name, alias)
            elif version is not None:
                found = client.get_model_version(name, str(version))
            else:
                versions = client.search_model_versions(f"name = '{name}'")
                if not versions:
                    raise NotFoundError(f"no registered model {name!r}; register one (%%track --register-model)")
                found = max(versions, key=lambda v: int(v.version))
        except mlflow.exceptions.MlflowException as exc:
            wanted = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise NotFoundError(f"registered model {name!r} has no {wanted}: {exc.message}") from None
        uri = f"models:/{name}/{found.version}"
        flavors = mlflow.models.get_model_info(uri).flavors
        native = next((f for f in flavors if f != "python_function"), None)
        try:
            loader = importlib.import_module(f"mlflow.{native}") if native else mlflow.pyfunc
        except ImportError:
            loader = mlflow.pyfunc
        model = loader.load_model(uri)
        if record:
            self.record_read("model", f"{name}@{found.version}")
        return model, int(found.version)

    # -- serving and monitoring ----------------------------------------------
    def predictor(
        self,
        model: str,
        features: Sequence[str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        log: bool = True,
        **log_options: Any,
    ) -> Predictor:
        """A registered model ready to predict from entity keys: ``"fraud"``, ``"fraud@champion"`` or ``"fraud/3"``.

        The model's inputs are its MLflow signature (else the columns it was
        fitted on). Those that are features of a group version in the model's
        lineage (the feature commits its training data came from) are looked
        up online by the group's keys; the rest the request carries. Give
        ``features=["group:1.feature", ...]`` to name them yourself.
        ``defaults={input: value}`` fill the looked-up inputs of a key with no
        online row (otherwise :class:`~nbops.errors.UnknownKeysError`).
        Each prediction goes to the model version's prediction log unless
        ``log=False`` (``log_options``: ``batch_rows``, ``flush_seconds``, ``capacity``).
        """
        from nbops.featurestore import serving
        from nbops.predictions.predictor import ModelSpec
        from nbops.predictions.predictor import Predictor as _Predictor

        name, loaded, found, (inputs, numeric), task = self._served_model(model)
        if features is not None:
            refs, keys, outputs = serving.features_for_inputs(self, [], inputs, named=features)
        else:
            refs, keys, outputs = serving.features_for_inputs(self, self._ancestor_commits(f"{name}@{found}"), inputs)
        if not refs:
            raise NotFoundError(
                f"{name} v{found} has no feature in its lineage among its inputs {inputs}: its training data "
                "did not come from store.training_data. Name the features (features=[...]), or send every "
                "input with the request (nbops serve --features-in-request)"
                if features is None
                else f"none of the features given are inputs of {name} v{found}"
            )
        spec = ModelSpec(
            name,
            str(found),
            inputs,
            refs,
            outputs,
            keys,
            task,
            dict(defaults or {}),
            numeric=numeric,
        )
        unknown_defaults = set(spec.defaults) - set(outputs.values())
        if unknown_defaults:
            raise InvalidInputError(f"defaults {sorted(unknown_defaults)} are not looked-up inputs of {name} v{found}")

        def lookup(key_lists: Mapping[str, list[Any]], missing: dict[str, set[int]]) -> dict[str, Any]:
            return serving.online_columns(self, refs, key_lists, missing_by_column=missing)

        return _Predictor(spec, loaded, lookup, self._prediction_log(name, found, log, log_options))

    def request_predictor(self, model: str, log: bool = True, **log_options: Any) -> Predictor:
        """A predictor whose requests carry every input (``values``); no online lookup. See :meth:`predictor`."""
        from nbops.featurestore import serving
        from nbops.predictions.predictor import ModelSpec
        from nbops.predictions.predictor import Predictor as _Predictor

        name, loaded, found, (inputs, numeric), task = self._served_model(model)
        try:  # the lineage's key columns, logged with a frame's rows that have them (for outcomes by keys)
            _, lineage_keys, _ = serving.features_for_inputs(self, self._ancestor_commits(f"{name}@{found}"), inputs)
        except NbopsError:
            lineage_keys = []  # an ambiguous lineage: no keys logged, and outcomes join by request id
        spec = ModelSpec(name, str(found), inputs, [], {}, [], task, logged_keys=lineage_keys, numeric=numeric)
        return _Predictor(spec, loaded, None, self._prediction_log(name, found, log, log_options))

    def _served_model(self, model: str) -> tuple[str, Any, int, tuple[list[str], list[str]], str]:
        """(name, the loaded model, its version, (its inputs, the numeric ones), "classifier" or "regressor")."""
        name, version, alias = parse_model_ref(model)
        loaded, found = self._load_model(name, version, alias, record=False)
        task = "classifier" if getattr(loaded, "classes_", None) is not None else "regressor"
        return name, loaded, found, _model_inputs(loaded, name, found), task

    def _prediction_log(self, name: str, version: int, log: bool, options: Mapping[str, Any]) -> Any:
        """The model version's prediction log, or None; refused (before any work) in read-only mode."""
        from nbops.core.audit import check_writable
        from nbops.predictions.log import PredictionLog

        if not log:
            return None
        check_writable(f"log the predictions of {name} v{version} (log=False, or nbops serve --no-log, does not)")
        return PredictionLog(self.root, name, version, **options)

    def predict(
        self,
        model: str,
        keys: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        frame: pd.DataFrame | None = None,
        request_ids: Sequence[str] | None = None,
        event_time: Any = None,
    ) -> pd.DataFrame:
        """Predict with a registered model, and log each prediction; a frame of ``request_id``, ``prediction``
        (and ``score``, a binary classifier's probability of its positive class).

            >>> store.predict("fraud@champion", keys={"cc_num": [1, 2]})   # online features -> model  # doctest: +SKIP
            >>> store.predict("fraud@champion", frame=batch)   # a batch pipeline's own inputs          # doctest: +SKIP

        With ``keys``, the model's features are looked up online (see
        :meth:`predictor`); ``values`` carries its other inputs. With
        ``frame``, every input is a column of it. The predictor is made once
        per model reference and kept until :meth:`close`, which writes its log.
        """
        if (frame is None) == (keys is None and values is None):
            raise InvalidInputError("predict: give keys= (and values=), or frame=")
        cache = self.__dict__.setdefault("_predictors", {})
        kind = "frame" if frame is not None else "keys"
        predictor = cache.get((model, kind))
        if predictor is None:
            predictor = self.request_predictor(model) if kind == "frame" else self.predictor(model)
            cache[(model, kind)] = predictor
        if frame is not None:
            result = predictor.predict_frame(frame, request_ids, event_time)
        else:
            result = predictor.predict(keys, values, request_ids, event_time)
        return result.frame()

    def predictions(self, model: str, version: int | None = None) -> pd.DataFrame:
        """Every logged prediction of ``model`` (one version, or all), oldest first; keys, features and
        prediction decoded from their JSON text."""
        from nbops.predictions import monitor

        self._flush_predictions()
        return monitor.predictions_frame(self.root, _model_name(model), version)

    def log_outcomes(
        self, model: str, outcomes: pd.DataFrame, outcome: str = "outcome", event_time: str | None = None
    ) -> dict[str, int]:
        """Record ground truth for a model's predictions: by ``request_id``, or by key columns + ``event_time``.

        ``outcomes`` has a ``request_id`` column, or the model's key columns and
        an event time column (matched to the prediction logged for the same keys
        at that same time); ``outcome`` names the column with the truth. Returns
        ``{"outcomes": n, "matched": m}``: how many were stored, and how many
        match a logged prediction now (the others may match later).
        """
        from nbops.core.audit import check_writable
        from nbops.predictions import outcomes as truth

        check_writable(f"log outcomes of {model}")
        self._flush_predictions()
        return truth.log_outcomes(self.root, _model_name(model), outcomes, outcome, event_time)

    def monitor(
        self,
        model: str,
        window: str = "1D",
        version: int | None = None,
        thresholds: Mapping[str, Any] | None = None,
        since: dt.datetime | str | None = None,
    ) -> pd.DataFrame:
        """Per time window of a model's logged predictions: count, feature and prediction drift against its
        training data, performance where outcomes exist, and a status (ok, warn, alert).

        ``model`` is ``"fraud"`` (the newest version with logged predictions), ``"fraud/2"`` or
        ``"fraud@champion"``. See :mod:`nbops.predictions.monitor` for the measures and ``thresholds``.
        """
        from nbops.featurestore.drift import drift
        from nbops.predictions import monitor as monitoring
        from nbops.predictions.log import logged_versions

        self._flush_predictions()
        name, asked, alias = parse_model_ref(model)
        if version is None and asked is None and alias is None:
            # The newest version that served: a version registered since has no predictions yet.
            version = max(logged_versions(self.root, name), default=None)
        elif version is None:
            version = asked if asked is not None else self._load_model(name, None, alias, record=False)[1]
        reference = self._training_reference(name, version)
        return monitoring.monitor(
            self.root,
            name,
            window=window,
            version=version,
            reference=reference,
            thresholds=thresholds,
            since=since,
            drift=drift,
        )

    def _flush_predictions(self) -> None:
        for predictor in self.__dict__.get("_predictors", {}).values():
            if predictor.log is not None:
                predictor.log.flush()

    def _training_reference(self, name: str, version: int | None) -> Any:
        """The inputs (and predictions, and labels where known) of the model version's training data."""
        from nbops.predictions.monitor import Reference

        loaded, found = self._load_model(name, version, None, record=False)
        inputs, _ = _model_inputs(loaded, name, found)
        frame = None
        for kind, ref in self._ancestors(f"{name}@{found}"):
            if kind == "snapshot":
                candidate = self.load(*ref.rsplit("@", 1))
                if all(i in candidate.columns for i in inputs):
                    frame = candidate
                    break
        return Reference.from_training(loaded, str(found), inputs, frame)

    def _ancestors(self, model_ref: str) -> list[tuple[str, str]]:
        """Every ancestor of ``model:<model_ref>`` in the lineage graph, nearest first."""
        from nbops.core import lineage

        seen: dict[tuple[str, str], None] = {}
        frontier = [("model", model_ref)]
        while frontier:
            for parent in lineage.parents(self.catalog, frontier.pop(0)):
                if parent not in seen:
                    seen[parent] = None
                    frontier.append(parent)
        return list(seen)

    def _ancestor_commits(self, model_ref: str) -> list[str]:
        return [ref for kind, ref in self._ancestors(model_ref) if kind == "feature_commit"]

    def lineage(self, ref: str) -> dict[str, Any]:
        """Parents and children of ``raw_tx@2``, ``tx:1@3``, ``run:<id>`` or ``model:<name>@<v>``."""
        from nbops.lineage.graph import lineage_graph

        return lineage_graph(self, ref)

    # -- housekeeping ------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Where the store is and what it holds, as plain data."""
        from nbops.core import repository

        return {"root": str(self.root), "catalog": self.catalog.url, **repository.counts(self.catalog)}

    def verify(self) -> VerifyReport:
        """Re-hash every object and every version; report what does not match."""
        from nbops.maintenance.verify import verify

        return verify(self)

    def repair(self, sources: Sequence[str | os.PathLike[str]] = (), dry_run: bool = False) -> RepairReport:
        """Restore missing or damaged objects from other stores or data roots (``sources``) whose copies hash right.

        Lists what no source holds; never deletes anything. See :mod:`nbops.maintenance.repair`.
        """
        from nbops.maintenance.repair import repair

        if not dry_run:
            from nbops.core.audit import check_writable

            check_writable("repair objects")
        return repair(self, [os.fspath(s) for s in sources], dry_run)

    def gc(
        self, grace_seconds: float = DEFAULT_GC_GRACE_SECONDS, dry_run: bool = False, empty_catalog: bool = False
    ) -> GcReport:
        """Remove objects no stored version refers to, and stale temporary files.

        Only files older than ``grace_seconds`` go. gc refuses, removing
        nothing, when the catalog fails its integrity check or refers to no
        object while objects exist, and never deletes through a symlink
        (see :mod:`nbops.maintenance.gc`). ``empty_catalog=True`` is for a new store whose
        first writers were all killed before committing: it lets gc collect
        beside a catalog that refers to no object.
        """
        if not dry_run:
            from nbops.core.audit import check_writable

            check_writable("remove orphan files (gc)")
        from nbops.maintenance.gc import collect

        return collect(self, grace_seconds, dry_run, empty_catalog)


def parse_model_ref(text: str) -> tuple[str, int | None, str | None]:
    """``"fraud"``, ``"fraud@champion"`` (an alias), ``"fraud/3"`` (a version) or ``"model:fraud@3"`` (lineage's form)."""
    from nbops.core.names import validate_name

    if not isinstance(text, str) or not text:
        raise InvalidInputError(f"{text!r} is not a model reference; write name, name@alias or name/3")
    ref = text.removeprefix("model:")
    version: int | None = None
    alias: str | None = None
    if "/" in ref:
        ref, number = ref.split("/", 1)
        if not number.isdigit():
            raise InvalidInputError(f"{text!r}: a model version is a number (name/3)")
        version = int(number)
    elif "@" in ref:
        ref, alias = ref.split("@", 1)
        if text.startswith("model:") and alias.isdigit():
            version, alias = int(alias), None
        elif not alias:
            raise InvalidInputError(f"{text!r}: an alias follows @ (name@champion)")
    validate_name(ref, "model")
    return ref, version, alias


def _model_name(text: str) -> str:
    return parse_model_ref(text)[0]


def _model_inputs(model: Any, name: str, version: int) -> tuple[list[str], list[str]]:
    """A model's input columns, in order (its MLflow signature, else the columns it was fitted on), and those
    the signature types as numbers (none without a signature); the signature is read once."""
    import mlflow  # pointed at the store's backend by Store._load_model

    try:
        signature = mlflow.models.get_model_info(f"models:/{name}/{version}").signature
    except mlflow.exceptions.MlflowException:
        signature = None
    if signature is not None and signature.inputs is not None and signature.inputs.has_input_names():
        numbers = {"double", "float", "long", "integer"}
        columns = signature.inputs.inputs
        numeric = [str(c.name) for c in columns if getattr(getattr(c, "type", None), "name", None) in numbers]
        return [str(n) for n in signature.inputs.input_names()], numeric
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        return [str(n) for n in fitted], []
    raise InvalidInputError(
        f"{name} v{version} has no signature with column names and was not fitted on named columns; log it with "
        "an input example (mlflow.sklearn.log_model(model, name=..., input_example=X.head())) to serve it"
    )


def read_catalog_marker(root: Path) -> str | None:
    """The catalog URL (no password) recorded in ``store.json``, if the store has one."""
    return markers.read(root, MARKER_FILE, "catalog", "postgresql+psycopg://user@host:5432/dbname")


def write_catalog_marker(root: Path, public: str) -> None:
    """Record the catalog of a new store (racing openers agree or fail)."""
    markers.write(root, MARKER_FILE, "catalog", public, cat.same_catalog)


def _catalog_for(root: Path, setting: CatalogSetting | None, recorded: str | None, embedded: bool) -> str | None:
    """The catalog URL to connect to (None: the embedded file); refuses a store opened against another catalog."""
    if setting is not None and not setting.embedded:
        url = cat.catalog_url(setting.url)
        if url.get_backend_name() != "postgresql":
            raise StoreError(f"{setting.source} must be a postgresql:// URL or 'embedded'")
        if url.password and setting.source.startswith("[tool.nbops]"):
            raise StoreError(
                f"{setting.source} holds a password, and pyproject.toml is usually committed; "
                "remove it and put the password in PGPASSWORD or ~/.pgpass"
            )
    if recorded is not None:
        if setting is None:
            # No password was stored: libpq finds it in PGPASSWORD or ~/.pgpass.
            return recorded
        if setting.embedded or not cat.same_catalog(setting.url, recorded):
            asked = "the embedded catalog" if setting.embedded else cat.public_url(setting.url)
            raise StoreError(
                f"the store {root} was created with the catalog {recorded} ({MARKER_FILE}), but {setting.source} "
                f"asks for {asked}; open it with that catalog, or use another folder for a store on {asked}"
            )
        return setting.url
    if embedded:
        if setting is not None and not setting.embedded:
            raise StoreError(
                f"the store {root} has its embedded catalog ({CATALOG_FILE}), but {setting.source} asks for "
                f"{cat.public_url(setting.url)}; open it with catalog='embedded' (or without the setting), "
                "or use a new folder for a store on that catalog"
            )
        return None
    return None if setting is None or setting.embedded else setting.url


def __getattr__(name: str) -> Any:
    """``nbops.store.VerifyReport`` and ``GcReport``: their home is :mod:`nbops.maintenance` now."""
    if name == "VerifyReport":
        from nbops.maintenance.verify import VerifyReport

        return VerifyReport
    if name == "GcReport":
        from nbops.maintenance.gc import GcReport

        return GcReport
    raise AttributeError(f"module 'nbops.store' has no attribute {name!r}")
