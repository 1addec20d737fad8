"""The HTTP server behind ``nbops serve``: FastAPI on uvicorn, one model, loaded once.

Endpoints (the OpenAPI page is at ``/docs``):

- ``POST /predict`` with ``{"keys": {"cc_num": [1, 2]}, "values": {"amount": [9.5, 120.0]}}``:
  the model's features are looked up online for each key, the request's own
  inputs come from ``values``, and the answer carries one prediction per row,
  the request ids they were logged under and the model version. Optional:
  ``request_ids`` (one per row; otherwise made up) and ``event_time`` (one
  ISO time, or one per row; otherwise now).
- ``GET /health``, ``GET /metadata`` (model, version, inputs, features, keys),
  ``GET /metrics`` (Prometheus text: requests by status, predictions, the
  prediction log's logged, written, dropped and failed rows).

Bad input is a 4xx naming what is wrong, never a 500: a missing or mistyped
field is 422 (FastAPI's own validation, or the key type the feature group
holds), keys with no online row are 404 naming them (unless the server was
given defaults for them), a body over the limit is 413. Off 127.0.0.1 every
endpoint but ``/health`` needs the bearer token (compared in constant time).
On SIGTERM uvicorn stops taking requests and the lifespan's end writes the
prediction log's queue before the process exits.
"""

from __future__ import annotations

import errno
import gc
import hmac
import ipaddress
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from nbops.errors import InvalidInputError, NbopsError, NotFoundError, UnknownKeysError

if TYPE_CHECKING:
    from nbops.predictions.predictor import Predictor

#: The largest request body accepted, in bytes (``--max-body``).
MAX_BODY = 1 << 20

Scalar = StrictInt | StrictFloat | StrictStr | StrictBool | None


class PredictRequest(BaseModel):
    """The body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")

    keys: dict[str, list[StrictInt | StrictFloat | StrictStr]] | None = Field(
        default=None, description="Entity key columns, one list of values per column", examples=[{"cc_num": [1, 2]}]
    )
    values: dict[str, list[Scalar]] | None = Field(
        default=None, description="The request's own inputs (not looked up), one list per input"
    )
    request_ids: list[StrictStr] | None = Field(default=None, description="One id per row, to join outcomes by")
    event_time: StrictStr | list[StrictStr] | None = Field(default=None, description="ISO time(s); default now")


class Metrics:
    """Counters for ``/metrics``; a lock, since FastAPI may answer from more than one thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[int, int] = {}
        self.predictions = 0
        self.seconds = 0.0

    def count(self, status: int, rows: int, seconds: float) -> None:
        """Count one answered request."""
        with self.lock:
            self.requests[status] = self.requests.get(status, 0) + 1
            self.predictions += rows
            self.seconds += seconds


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: the bearer token (when set), the body size limit and JSON, before FastAPI reads a byte.

    A plain ASGI wrapper rather than ``@app.middleware("http")``, which runs
    each request through an extra task and stream and costs a tenth of a
    one-row prediction's time.
    """

    def __init__(self, app: Any, token: str | None, max_body: int) -> None:
        self.app, self.max_body = app, max_body
        self.expected = f"Bearer {token}".encode() if token is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answer 401, 413 or 415 itself, or pass the request on (a chunked body read once and replayed)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        guarded = self.expected is not None and scope["path"] != "/health"
        if guarded and not hmac.compare_digest(headers.get(b"authorization", b""), self.expected or b""):
            await _answer(send, 401, "a missing or wrong bearer token (Authorization: Bearer ...)")
            return
        if scope["method"] == "POST" and not headers.get(b"content-type", b"").lower().startswith(b"application/json"):
            await _answer(send, 415, "send the body as JSON, with the header Content-Type: application/json")
            return
        length = headers.get(b"content-length")
        too_big = f"the body is over the limit of {self.max_body} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _answer(send, 413, too_big)
            return
        if length is None and scope["method"] == "POST":  # chunked: count as it arrives
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if len(body) > self.max_body:
                    await _answer(send, 413, too_big)
                    return
                if not message.get("more_body", False):
                    break
            sent = False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    message: dict[str, Any] = await receive()
                    return message
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(predictor: Predictor, token: str | None = None, max_body: int = MAX_BODY) -> FastAPI:
    """The app serving ``predictor``; ``token`` set: every endpoint but /health needs ``Bearer <token>``."""
    spec = predictor.spec
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        predictor.close()  # SIGTERM: write what the prediction log holds before the process ends

    app = FastAPI(
        title=f"nbops: {spec.name} v{spec.version}",
        description=f"Predictions of {spec.name} v{spec.version} with its online features; every one is logged.",
        lifespan=lifespan,
    )
    app.add_middleware(Guard, token=token, max_body=max_body)

    @app.post("/predict")
    async def predict(body: PredictRequest) -> JSONResponse:
        started = time.perf_counter()
        status, rows = 200, 0
        try:
            result = predictor.predict(body.keys, body.values, body.request_ids, body.event_time)
            rows = len(result.predictions)
            return JSONResponse(result.as_dict())
        except UnknownKeysError as exc:
            status = 404
            return JSONResponse({"detail": str(exc), "unknown_keys": exc.keys[:100]}, status)
        except InvalidInputError as exc:
            status = 422
            return JSONResponse({"detail": str(exc)}, status)
        except NotFoundError as exc:
            status = 404
            return JSONResponse({"detail": str(exc)}, status)
        except NbopsError as exc:  # the online store unreachable or damaged: the server's fault, said plainly
            status = 503
            return JSONResponse({"detail": str(exc)}, status)
        finally:
            metrics.count(status, rows, time.perf_counter() - started)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": spec.name, "version": spec.version}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return spec.metadata()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> str:
        return render_metrics(predictor, metrics)

    return app


def render_metrics(predictor: Predictor, metrics: Metrics) -> str:
    """The Prometheus text exposition of the server's counters."""
    labels = f'model="{predictor.spec.name}",version="{predictor.spec.version}"'
    log = predictor.log.stats if predictor.log is not None else {}
    lines = [
        "# HELP nbops_requests_total Requests to /predict, by HTTP status.",
        "# TYPE nbops_requests_total counter",
    ]
    with metrics.lock:
        requests, predictions, seconds = dict(metrics.requests), metrics.predictions, metrics.seconds
    for status, n in sorted(requests.items()):
        lines.append(f'nbops_requests_total{{{labels},status="{status}"}} {n}')
    lines += [
        "# HELP nbops_predictions_total Rows predicted.",
        "# TYPE nbops_predictions_total counter",
        f"nbops_predictions_total{{{labels}}} {predictions}",
        "# HELP nbops_predict_seconds_total Time spent answering /predict.",
        "# TYPE nbops_predict_seconds_total counter",
        f"nbops_predict_seconds_total{{{labels}}} {seconds:.6f}",
    ]
    for name, help_text in (
        ("logged", "Predictions put on the prediction log's queue."),
        ("dropped", "Predictions not logged because the queue was full."),
        ("written", "Predictions written to the prediction log."),
        ("failed", "Predictions a failed write lost (a full disk)."),
    ):
        lines += [
            f"# HELP nbops_prediction_log_{name}_total {help_text}",
            f"# TYPE nbops_prediction_log_{name}_total counter",
            f"nbops_prediction_log_{name}_total{{{labels}}} {log.get(name, 0)}",
        ]
    lines += [
        "# HELP nbops_prediction_log_pending Predictions queued, not yet written.",
        "# TYPE nbops_prediction_log_pending gauge",
        f"nbops_prediction_log_pending{{{labels}}} {log.get('pending', 0)}",
    ]
    return "\n".join(lines) + "\n"


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (0: any free port), or an error that says why it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise NbopsError(f"--host {host!r} is not an address this machine can listen on ({exc})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        busy = " (another process listens there: pick another --port)" if exc.errno == errno.EADDRINUSE else ""
        raise NbopsError(f"cannot listen on {host}:{port}: {exc.strerror}{busy}") from None
    return sock


def run(
    predictor: Predictor,
    host: str,
    port: int,
    token: str | None,
    max_body: int = MAX_BODY,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (on ``sock`` when given, see :func:`bind`); the log is written before this returns."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again once it has stopped, ending the process by it; a stop asked
            # for is a clean exit here, after the prediction log is written and the counts are printed.
            getattr(self, "_captured_signals", []).clear()

    predictor.use_arrays()
    app = create_app(predictor, token, max_body)
    # The model, MLflow, pandas and scikit-learn are loaded and live as long as the process: moved out
    # of the collector's generations, they are not walked again by every collection on the request path.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    try:
        Server(config).run(sockets=[sock] if sock is not None else None)
    finally:
        predictor.close()
