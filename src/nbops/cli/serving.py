"""``nbops serve`` and ``nbops monitor``: the production loop's two commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nbops.errors import NbopsError


def add_parsers(verbs: Any) -> None:
    """Add ``serve`` and ``monitor`` to the ``nbops`` command's verbs."""
    serve = verbs.add_parser(
        "serve", help="serve a registered model over HTTP with its online features; every prediction is logged"
    )
    serve.add_argument("model", help="MODEL, MODEL@ALIAS or MODEL/VERSION (default: the latest version)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token-file)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--token-file", type=Path, help="a file holding the bearer token every request must carry")
    serve.add_argument(
        "--features",
        metavar="REFS",
        help="comma-separated feature references to serve (default: the model's lineage tells)",
    )
    serve.add_argument(
        "--features-in-request",
        action="store_true",
        help="look nothing up: every model input comes in the request's values",
    )
    serve.add_argument(
        "--default",
        action="append",
        default=[],
        metavar="INPUT=VALUE",
        help="a value for a looked-up input when a key has no online row (else 404); repeat per input",
    )
    serve.add_argument("--no-log", action="store_true", help="do not log predictions (for benchmarks)")
    serve.add_argument(
        "--log-capacity",
        type=int,
        default=10_000,
        help="the most predictions the log holds unwritten; more are dropped and counted (default 10000)",
    )
    serve.add_argument(
        "--max-body", type=int, default=1 << 20, help="the largest request body in bytes (default 1 MiB)"
    )
    monitor = verbs.add_parser(
        "monitor", help="a served model's drift and performance per window; exit 1 if the latest window is alert"
    )
    monitor.add_argument(
        "model", help="MODEL (its newest version with logged predictions), MODEL/VERSION or MODEL@ALIAS"
    )
    monitor.add_argument("--window", default="1D", help="window length, e.g. 1D, 6h, 30min (default 1D)")
    monitor.add_argument("--since", help="only predictions from this time on (ISO; naive is UTC)")
    monitor.add_argument("--any", action="store_true", help="exit 1 if any window is alert, not only the latest")
    monitor.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=WARN,ALERT",
        help="e.g. psi=0.1,0.25 or auc=0.75,0.7 (psi, ks, accuracy, auc, rmse, mae); repeat per measure",
    )


def serve(store: Any, args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; the prediction log is written before exiting."""
    from nbops.server.app import bind, is_loopback, run

    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise NbopsError(f"--token-file {args.token_file}: {exc.strerror}") from None
        if len(token) < 16:
            raise NbopsError(f"the token in {args.token_file} is shorter than 16 characters; use a long random one")
    if not is_loopback(args.host) and token is None:
        raise NbopsError(
            f"--host {args.host} is reachable from other machines: give --token-file with a bearer token "
            "(or bind 127.0.0.1, the default)"
        )
    defaults = dict(_pair(text) for text in args.default)
    options = {"capacity": args.log_capacity}
    if args.features_in_request:
        if args.features or defaults:
            raise NbopsError("--features-in-request looks nothing up: --features and --default do not apply")
        predictor = store.request_predictor(args.model, log=not args.no_log, **options)
    else:
        features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
        predictor = store.predictor(args.model, features=features, defaults=defaults, log=not args.no_log, **options)
    spec = predictor.spec
    try:
        sock = bind(args.host, args.port)  # before saying "serving": a busy port is an error, not a log line
    except NbopsError:
        predictor.close()
        raise
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    where = f"http://{host}:{port}"
    print(f"nbops: serving {spec.name} v{spec.version} on {where} (API page: {where}/docs)", file=sys.stderr)
    print(
        f"nbops: features {', '.join(spec.feature_refs) or 'none (all in the request)'}; keys {spec.keys}; "
        f"request values {spec.request_inputs}; predictions logged: {'no' if args.no_log else 'yes'}",
        file=sys.stderr,
    )
    if token is not None:
        print("nbops: every request but /health needs the bearer token from --token-file", file=sys.stderr)
    sys.stderr.flush()
    run(predictor, args.host, port, token, args.max_body, sock)
    if predictor.log is None:
        return 0
    text, complete = stop_line(predictor.log.stats)
    print(text, file=sys.stderr)
    return 0 if complete else 1


def stop_line(stats: dict[str, int]) -> tuple[str, bool]:
    """What the server prints when it stops, and whether every kept prediction reached the log.

    Rows still pending after close() are rows the writer did not finish in time
    (a stalled disk): the process is about to end, so they are lost, and said so.
    """
    text = (
        f"nbops: stopped; {stats['written']} predictions written to the log, {stats['dropped']} dropped, "
        f"{stats['failed']} lost to write errors"
    )
    pending = stats.get("pending", 0)
    if pending:
        text += f", {pending} not written: the log's writer did not finish in time"
    return text, not pending


def _pair(text: str) -> tuple[str, Any]:
    import json

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise NbopsError(f"--default {text!r}: write INPUT=VALUE, e.g. n_tx=0")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def monitor(store: Any, args: argparse.Namespace) -> int:
    """Print the report; 1 when the latest window (or, with --any, any window) is alert."""
    import pandas as pd

    from nbops.store import parse_model_ref

    name, version, alias = parse_model_ref(args.model)
    if alias is not None:
        _, version = store._load_model(name, None, alias, record=False)
    from nbops.predictions.monitor import deciding_window, parse_thresholds

    thresholds = parse_thresholds(args.threshold)
    report = store.monitor(name, window=args.window, version=version, since=args.since, thresholds=thresholds)
    attrs = report.attrs
    shown_version = version if version is not None else attrs.get("reference_version")
    print(f"model: {name}" + (f" v{shown_version}" if shown_version is not None else "") + f"   window: {args.window}")
    if not attrs.get("has_training_data"):
        print("no saved training data in the model's lineage: no drift figures (save it with training_data(save_as=))")
    print(
        f"prediction log: {attrs.get('dropped', 0)} dropped (queue full), {attrs.get('failed', 0)} lost to write errors"
    )
    if attrs.get("ambiguous_outcomes"):
        print(
            f"outcomes left out: {attrs['ambiguous_outcomes']} each name more than one logged prediction "
            "(a request id used twice, or the same keys twice at one event time)"
        )
    if report.empty:
        print("no predictions logged yet")
        return 0
    shown = report.drop(columns=[c for c in report.columns if c.startswith(("psi.", "ks."))])
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 80):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    statuses = list(report["status"])
    row, note = deciding_window(report)
    assert row is not None
    latest = statuses[row]
    which = (
        "latest window"
        if row == len(report) - 1
        else f"latest window with drift figures, {report['window_start'].iloc[row]}"
    )
    if note:
        print(f"note: {note}")
    if args.any:
        alerts = statuses.count("alert")
        print(f"status: {'alert' if alerts else latest} ({alerts} of {len(statuses)} windows alert; {which}: {latest})")
        return 1 if alerts else 0
    print(f"status: {latest} ({which})")
    return 1 if latest == "alert" else 0
