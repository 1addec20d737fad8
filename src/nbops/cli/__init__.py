"""The ``nbops`` command: inspect, check and clean a store; run the demo.

    nbops ls                 datasets in the store
    nbops show NAME          versions of one dataset
    nbops verify             re-hash every object; exit 1 on any mismatch
    nbops gc [--grace S]     remove orphan objects and stale temporary files
    nbops repair [--from S]  restore missing or damaged objects from a backup store
    nbops demo [--dir D]     run the quickstart notebook on a fresh store
    nbops ui [--port P]      the MLflow UI on the store's tracking backend, on 127.0.0.1
    nbops audit [NAME] [--since T]
                             who wrote or read what, and when
    nbops export NB [--out DIR] [--verify] [--history] [--target airflow] [--latest]
                             export a notebook into pipeline modules
    nbops migrate --to URL [--dry-run]
                             move the embedded catalog into an empty PostgreSQL database
    nbops publish GROUP[:VERSION] --to URI [--format delta]
                             write (or extend) a Delta Lake table, one version per commit
    nbops serve MODEL[@ALIAS|/VERSION] [--host H] [--port P] [--token-file F]
                             HTTP predictions with online features, every one logged
    nbops monitor MODEL [--window 1D] [--since T]
                             drift and performance per window; exit 1 on alert

Every command takes ``--store PATH``; without it the store is found as git
finds ``.git`` (``$NBOPS_HOME``, else the nearest ``.nbops/`` upward).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nbops._version import __version__
from nbops.core._logs import enable_console
from nbops.errors import NbopsError

if TYPE_CHECKING:
    from datetime import datetime


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"nbops {__version__}")
    parser.add_argument("--store", metavar="PATH", help="the store folder (default: found from here)")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verbs.add_parser("ls", help="list datasets: name, versions, latest rows and time")
    show = verbs.add_parser("show", help="list the versions of one dataset")
    show.add_argument("name", help="dataset name")
    verbs.add_parser("verify", help="re-hash every stored object and version; exit 1 on any problem")
    gc = verbs.add_parser("gc", help="remove orphan objects and stale temporary files")
    gc.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep files younger than this, which a running writer may still commit (default: 900)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    gc.add_argument(
        "--empty-catalog",
        action="store_true",
        help="collect even though the catalog refers to no object (only for a new store whose first writers "
        "were all killed before committing)",
    )
    repair = verbs.add_parser(
        "repair", help="restore missing or damaged objects from a backup store or data root; exit 1 if any remain"
    )
    repair.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        metavar="STORE_OR_URI",
        help="a store folder or data root URI to copy good objects from (repeatable; copies must hash right)",
    )
    repair.add_argument("--dry-run", action="store_true", help="list what would be restored, change nothing")
    export = verbs.add_parser("export", help="export a notebook into feature/training/inference pipeline modules")
    export.add_argument("notebook", help="the .ipynb file (read, never changed)")
    export.add_argument(
        "--out", default="pipelines", help="output folder; files go to OUT/<stem>/ (default: pipelines)"
    )
    export.add_argument(
        "--verify", action="store_true", help="run the modules on a scratch store and compare with the notebook"
    )
    export.add_argument("--history", action="store_true", help="list the export versions of the notebook instead")
    export.add_argument("--target", choices=["airflow"], help="also write an orchestrator file (an Airflow 3 DAG)")
    export.add_argument(
        "--latest",
        action="store_true",
        help="later stages read the latest version of what earlier stages stored, not the version the notebook names",
    )
    demo = verbs.add_parser("demo", help="run the quickstart notebook headless on a fresh store")
    demo.add_argument("--dir", metavar="DIR", help="work folder (default: a new temporary folder)")
    demo.add_argument("--timeout", type=int, default=600, help="seconds allowed per notebook cell (default: 600)")
    audit = verbs.add_parser("audit", help="who wrote or read which version of what, and when (UTC)")
    audit.add_argument("name", nargs="?", help="only this dataset, feature group, model, run id or pipeline")
    audit.add_argument(
        "--since",
        metavar="TIME",
        help="only events at or after TIME, e.g. 2026-11-01 or 2026-11-27T09:00+01:00 (naive means UTC)",
    )
    migrate = verbs.add_parser(
        "migrate",
        help="move the store's embedded catalog into an empty PostgreSQL database, "
        "and/or its MLflow runs to a team's tracking server, with their history",
    )
    migrate.add_argument(
        "--to",
        metavar="URL",
        help="the empty catalog database, e.g. postgresql://owner@db.internal:5432/nbops "
        "(the password from PGPASSWORD or ~/.pgpass; it is never printed or stored)",
    )
    migrate.add_argument(
        "--runs-to",
        metavar="URL",
        help="the tracking database of the team's `mlflow server` (its --backend-store-uri), "
        "e.g. postgresql://mlflow@db.internal:5432/mlflow; it must hold no runs",
    )
    migrate.add_argument(
        "--artifacts-to",
        metavar="DEST",
        help="with --runs-to: that server's --artifacts-destination, a folder or e.g. s3://bucket/mlflow",
    )
    migrate.add_argument("--dry-run", action="store_true", help="run the checks and count the rows; change nothing")
    publish = verbs.add_parser(
        "publish", help="write or extend a Delta Lake table of a feature group version, one version per commit"
    )
    publish.add_argument("group", help="GROUP, GROUP:VERSION (default: the latest version) or GROUP:VERSION@COMMIT")
    publish.add_argument("--to", required=True, metavar="URI", help="the table's folder or URI (s3://, ...)")
    publish.add_argument("--format", default="delta", choices=["delta"], help="the table format (default: delta)")
    from nbops.cli.serving import add_parsers

    add_parsers(verbs)
    ui = verbs.add_parser("ui", help="serve the MLflow UI on the store's tracking backend, on 127.0.0.1 only")
    ui.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: 5000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``nbops`` command (``argv`` defaults to the command line) and return its exit status.

    0 on success, 1 when ``verify``, ``repair`` or ``export --verify`` found a problem, 2 on an
    nbops error (printed on stderr without any credential the command was given).  nbops's log
    messages are shown on stderr as ``nbops: <message>``.
    """
    enable_console()
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except NbopsError as exc:
        print(f"nbops: error: {_shown(exc, args)}", file=sys.stderr)
        return 2


def _shown(exc: BaseException, args: argparse.Namespace) -> str:
    """An error's message without any credential this command was given (arguments or environment)."""
    from nbops.core.redact import env_secrets, redact_text, url_secrets

    given = [getattr(args, name, None) for name in ("to", "runs_to", "artifacts_to")]
    given += list(getattr(args, "sources", None) or [])
    return redact_text(str(exc), *env_secrets(), *(s for url in given for s in url_secrets(url)))


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from nbops.cli.demo import run_demo

        return run_demo(args.dir, timeout=args.timeout)

    import pandas as pd

    from nbops.store import open as open_store

    if args.command == "export":
        return _export(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command in ("serve", "monitor"):
        from nbops.core.paths import find_store_root

        root = Path(args.store).expanduser() if args.store else find_store_root()
        if not root.is_dir():  # nothing to serve or monitor: say where it looked, and make no store there
            raise NbopsError(
                f"no nbops store at {root}: run this where the notebook's .nbops/ is, or give --store (or NBOPS_HOME)"
            )
    store = open_store(args.store)
    if args.command == "ui":
        return _ui(store, args.port)
    if args.command in ("serve", "monitor"):
        from nbops.cli import serving

        return serving.serve(store, args) if args.command == "serve" else serving.monitor(store, args)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        if args.command == "ls":
            table = store.datasets()
            print(f"store: {store.root}")
            print(table.to_string(index=False) if len(table) else "no datasets yet")
        elif args.command == "audit":
            since = _parse_time(args.since) if args.since else None
            table = store.audit(args.name, since)
            print(table.to_string(index=False) if len(table) else "no audit events match")
        elif args.command == "show":
            print(store.history(args.name).to_string(index=False))
        elif args.command == "verify":
            report = store.verify()
            print(report.text())
            return 0 if report.ok else 1
        elif args.command == "gc":
            from nbops.store import DEFAULT_GC_GRACE_SECONDS

            grace = args.grace if args.grace is not None else DEFAULT_GC_GRACE_SECONDS
            print(store.gc(grace_seconds=grace, dry_run=args.dry_run, empty_catalog=args.empty_catalog).text())
        elif args.command == "publish":
            print(store.publish(args.group, args.to, format=args.format))
        elif args.command == "repair":
            repaired = store.repair(args.sources, dry_run=args.dry_run)
            print(repaired.text())
            return 0 if repaired.ok else 1
    return 0


def _parse_time(text: str) -> datetime:
    import pandas as pd

    try:
        stamp: datetime = pd.Timestamp(text)  # a datetime subclass
        return stamp
    except ValueError:
        raise NbopsError(f"--since {text!r} is not a time; write e.g. 2026-11-01 or 2026-11-27T09:00+01:00") from None


def _ui(store: object, port: int) -> int:
    """Run ``mlflow server`` on the store's backend until interrupted (loopback only)."""

    from nbops.core.paths import user_set_uri
    from nbops.tracking import experiments as tracking

    mlflow = tracking.ensure_backend(store)  # type: ignore[arg-type]
    uri = mlflow.get_tracking_uri()
    if user_set_uri() and uri.startswith(("http://", "https://")):
        from nbops.core.paths import without_password

        print(f"MLFLOW_TRACKING_URI points at a tracking server; its UI is at {without_password(uri)}")
        return 0
    artifacts = (store.root / tracking.ARTIFACT_DIR).as_uri()  # type: ignore[attr-defined]
    # The backend goes in the server's environment, not its command line, which
    # any user of the machine can read (``ps``) and which may hold a password.
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--default-artifact-root",
        artifacts,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    print(f"MLflow UI for {store.root} at http://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)  # type: ignore[attr-defined]
    import signal

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a terminated `nbops ui` takes its server with it
    # Its own process group: `mlflow server` starts uvicorn and job workers that
    # outlive a signal sent to it alone, so the whole group is stopped together.
    server = subprocess.Popen(command, start_new_session=True, env={**os.environ, "MLFLOW_BACKEND_STORE_URI": uri})
    try:
        return server.wait()
    except KeyboardInterrupt:
        _stop_group(server)
        return 0


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    import os
    import signal
    import subprocess

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _migrate(args: argparse.Namespace) -> int:
    """Not through ``nbops.open``: opening would upgrade an old catalog, or refuse the store under a catalog setting."""
    from pathlib import Path

    from nbops.admin.migrate import migrate
    from nbops.core.paths import find_store_root
    from nbops.errors import InvalidInputError

    if args.to is None and args.runs_to is None:
        raise InvalidInputError(
            "say what to move: --to URL (the catalog), --runs-to URL --artifacts-to DEST (the MLflow runs), or both"
        )
    if (args.runs_to is None) != (args.artifacts_to is None):
        raise InvalidInputError(
            "--runs-to and --artifacts-to go together: the server's database and its artifact destination"
        )
    root = Path(args.store) if args.store else find_store_root()
    if args.to is not None:
        print(migrate(root, args.to, dry_run=args.dry_run).text())
    if args.runs_to is not None:
        from nbops.admin.migrate_runs import migrate_runs

        print(migrate_runs(root, args.runs_to, args.artifacts_to, dry_run=args.dry_run).text())
    return 0


def _export(args: argparse.Namespace) -> int:
    from nbops import exporting
    from nbops.store import open as open_store

    store = open_store(args.store)
    try:
        if args.history:
            table = exporting.history(args.notebook, store=store)
            print(table.to_string(index=False) if len(table) else f"no exports of {args.notebook} yet")
            return 0
        result = exporting.export(
            args.notebook, out=args.out, store=store, target=args.target, verify=args.verify, latest=args.latest
        )
    except exporting.ExportError as exc:
        print(f"nbops: cannot export: {_shown(exc, args)}", file=sys.stderr)
        return 2
    print(result.summary())
    verification = getattr(result, "verification", None)
    if verification is not None:
        print(verification.text())
        return 0 if verification.ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
