"""``%snapshots``, ``%runs``, ``%lineage``, ``%monitor``: widget panels over the store (``%features`` and
``%drift`` without a cell body are panels too, in ``magics/features.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from nbops.errors import NbopsError
from nbops.magics.session import SessionMagics
from nbops.syntax import parse_line


def open_panel(make: Callable[[], Any]) -> Any:
    """Build a panel; if its first read of the store fails, fail the cell with the reason."""
    panel = make()
    error = panel.last_error
    if isinstance(error, NbopsError):
        raise UsageError(str(error))
    if error is not None:
        raise error
    return panel


@magics_class
class PanelMagics(SessionMagics):
    """``%snapshots``, ``%runs``, ``%lineage`` and ``%monitor``: widget panels on the kernel's store."""

    @no_var_expand
    @magic_arguments()
    @argument("name", nargs="?", help="dataset name (default: the first in the store)")
    @line_magic
    def snapshots(self, line: str) -> Any:
        """A panel of a dataset's versions: pick one to preview it, two to see their diff.

        ``%snapshots raw_tx`` shows version, digest, rows, time, message and
        author, newest first, 50 to a page.
        """
        args = parse_line(self.snapshots, line)
        from nbops.widgets.snapshots import SnapshotsPanel

        return open_panel(lambda: SnapshotsPanel(self.session.store, args.name))

    @no_var_expand
    @magic_arguments()
    @argument("experiment", nargs="?", help="experiment name (default: all experiments)")
    @line_magic
    def runs(self, line: str) -> Any:
        """A panel of MLflow runs with params, metrics, status and inputs; pick runs to chart them.

        ``%runs fraud`` shows that experiment's runs, newest first, 50 to a
        page, with a link to the MLflow UI (``nbops ui`` starts it).
        """
        args = parse_line(self.runs, line)
        from nbops.widgets.runs import RunsPanel

        return open_panel(lambda: RunsPanel(self.session.store, args.experiment))

    @no_var_expand
    @magic_arguments()
    @argument(
        "ref", help="an artifact: NAME@V (snapshot), GROUP:V@C (feature commit), run:ID, model:NAME@V, pipeline:STEM@V"
    )
    @line_magic
    def lineage(self, line: str) -> Any:
        """A drawn graph of where an artifact came from and what was made from it.

        ``%lineage raw_tx@2``; click a node to see its details.  ``NAME``
        alone means the latest version of a snapshot.
        """
        args = parse_line(self.lineage, line)
        ref = args.ref
        if "@" not in ref and ":" not in ref:
            from nbops.errors import NotFoundError

            try:
                ref = self.session.store.ref(ref).ref
            except NotFoundError as exc:
                raise UsageError(str(exc)) from None
        from nbops.widgets.lineage import LineagePanel

        return open_panel(lambda: LineagePanel(self.session.store, ref))

    @no_var_expand
    @magic_arguments()
    @argument("model", help="a registered model: MODEL (its latest version), MODEL/VERSION or MODEL@ALIAS")
    @argument("--window", default="1D", help="window length, e.g. 1D, 6h, 30min (default 1D)")
    @argument("--since", help="only predictions from this time on, e.g. 2026-03-01 or 2026-03-01T12:00 (naive is UTC)")
    @argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=WARN,ALERT",
        help="e.g. psi=0.2,0.3 or auc=0.8,0.7 (psi, ks, accuracy, auc, rmse, mae); repeat per measure",
    )
    @line_magic
    def monitor(self, line: str) -> Any:
        """A panel of a served model's predictions, drift and performance per time window, with a status.

        ``%monitor fraud@champion --window 6h --threshold psi=0.2,0.3`` shows the latest window's
        status (ok, warn, alert), charts of the prediction count, of feature
        and prediction PSI against their thresholds and of accuracy/AUC or
        RMSE/MAE where outcomes are logged, and the windows, newest first;
        pick one to see why it has its status.  The report is
        ``store.monitor(...)``; ``nbops monitor`` prints the same.
        """
        args = parse_line(self.monitor, line)
        since = None
        if args.since is not None:
            try:
                since = dt.datetime.fromisoformat(args.since)
            except ValueError:
                raise UsageError(
                    f"--since {args.since!r} is not a time; write 2026-03-01 or 2026-03-01T12:00 (UTC unless it says)"
                ) from None
        from nbops.predictions.monitor import parse_thresholds
        from nbops.widgets.monitor import MonitorPanel

        try:
            thresholds = parse_thresholds(args.threshold)
        except NbopsError as exc:
            raise UsageError(str(exc)) from None
        store = self.session.store
        return open_panel(
            lambda: MonitorPanel(store, args.model, window=args.window, since=since, thresholds=thresholds)
        )
