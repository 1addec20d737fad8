"""`nbops serve` over HTTP against `mlflow models serve` on the same model, in the same run.

Run (from the repository root)::

    PYTHONPATH=src python benchmarks/serve_http.py                          # 16 clients, 3 rounds, 16 x 500 load run (~3 min)
    PYTHONPATH=src python benchmarks/serve_http.py --clients 4 --requests 100 --rounds 1 \\
        --load-clients 4 --load-requests 100 --pieces-calls 200            # smoke test (~1 min)
    PYTHONPATH=src python benchmarks/serve_http.py --profile               # also a cProfile of a served run

A fresh store is built by ``tests/helpers/served.py`` (``fraud_store``: online
group ``card`` keyed by ``cc_num``, a LogisticRegression on ``n_tx``,
``amount_mean`` (looked up) and ``amount`` (in the request), registered as
``fraud`` v1, alias ``champion``). Four servers run as subprocesses on
127.0.0.1, each started once and hit in turn, round by round (the order
rotates each round, so load drifts hit all alike):

- ``nbops serve fraud@champion``: ``POST /predict`` with ``{"keys": {"cc_num": [k]},
  "values": {"amount": [a]}}``; looks ``n_tx`` and ``amount_mean`` up, predicts, logs;
- the same with ``--no-log``;
- ``nbops serve fraud@champion --features-in-request`` (info: every input in the request, no lookup);
- ``mlflow models serve -m models:/fraud/1 --env-manager local`` with ``MLFLOW_TRACKING_URI``
  on the store's backend: ``POST /invocations`` with ``{"dataframe_split": ...}`` holding
  the three inputs (the key's latest online features and the same ``amount``).

Clients: ``--clients`` threads in this process, each with one keep-alive
``http.client`` connection, ``--warmup`` requests each (discarded), then all
start together and each sends ``--requests`` timed requests. Latency is per
request (send to body read); throughput is the requests answered / the wall
time of the phase. The serving process's CPU ms per request (``psutil``) is
printed too, the figure least moved by other load on the machine, and its
context switches per request (``/proc/<pid>/task/*/status``, all threads).

| # | measured | target |
|---|----------|--------|
| 1 | p50 and p99 latency, nbops serve (lookup + log) / mlflow models serve (all inputs sent) | p99 ratio <= 1.0 |
| 2 | throughput, log on / ``--no-log`` | >= 0.95 |
| 3 | load run: ``--load-clients`` x ``--load-requests`` on a fresh server, SIGTERM, then the log's rows = answered - dropped (``/metrics``), errors 0, exit 0 | must hold |

Also printed: the answers of nbops and MLflow agree for every key (untimed);
each server's RSS when ready and peak RSS (``VmHWM`` of the serving process);
a breakdown of one request's work in-process, without HTTP (``--pieces-calls``);
with ``--profile``, a cProfile of a server (this script in ``--child-profile`` mode)
under the same clients, own time by package and the top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _harness import fmt_bytes, git_state, loadavg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TESTS = REPO / "tests"
HOST = "127.0.0.1"
MODEL = "fraud"
INPUTS = ["n_tx", "amount_mean", "amount"]
LABELS = {
    "log": "nbops serve fraud@champion (lookup, log)",
    "nolog": "nbops serve --no-log",
    "values": "nbops serve --features-in-request (info)",
    "mlflow": "mlflow models serve (3 inputs sent)",
}
EXIT_LINE = re.compile(r"(\d+) predictions written to the log, (\d+) dropped")


# -- servers -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(tracking_uri: str | None = None) -> dict[str, str]:
    """This interpreter's environment for a server: no user MLflow/nbops setting, this checkout's ``src``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBOPS_HOME")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))  # mlflow execs uvicorn
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


@dataclass
class Server:
    """One server subprocess (its own session), the requests it gets, and what it reported."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    path: str
    bodies: list[bytes]
    stderr_path: Path
    logs: bool = False
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # the process that serves (mlflow's uvicorn child)
    ready_rss: int | None = None
    peak_rss: int | None = None
    peak_tree: int | None = None
    exit_code: int | None = None
    phases: list[Phase] = field(default_factory=list)

    def start(self) -> None:
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, cwd=REPO
            )

    def wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.stderr_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if get(self.port, "/health")[0] == 200:
                    self.pid = serving_pid(self.proc.pid)
                    self.ready_rss = psutil.Process(self.pid).memory_info().rss
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.stderr_tail()}")

    def read_peaks(self) -> None:
        """VmHWM of the serving process and the sum over the process tree (mlflow's CLI parent included)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = [self.proc.pid] + [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        marks = {pid: vm_hwm(pid) for pid in pids}
        self.peak_rss = marks.get(self.pid or self.proc.pid)
        self.peak_tree = sum(v for v in marks.values() if v is not None)

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def switches(self) -> int:
        """Context switches of the serving process so far (voluntary + involuntary, all its threads)."""
        process = psutil.Process(self.pid)
        total = 0
        for thread in process.threads():
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{self.pid}/task/{thread.id}/status").read_text()
                total += sum(int(v) for v in re.findall(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", status, re.M))
        return total

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to the server's process group, then wait; SIGKILL if it does not end in ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.exit_code = self.proc.returncode
        return self.exit_code

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def serving_pid(pid: int) -> int:
    """The process that listens: ``pid`` itself, or (mlflow) its uvicorn descendant."""
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("uvicorn" in part for part in child.cmdline()):
                return int(child.pid)
    return pid


def vm_hwm(pid: int) -> int | None:
    try:
        m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def post(port: int, path: str, body: bytes) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def metrics(port: int) -> dict[str, float]:
    """``/metrics`` summed by name (``nbops_requests_total`` also by status, as ``..._total:200``)."""
    status, text = get(port, "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out: dict[str, float] = {}
    for line in text.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
        status_label = re.search(r'status="(\d+)"', name_labels)
        if status_label:
            out[f"{name}:{status_label.group(1)}"] = float(value)
    return out


def wait_log_idle(server: Server, timeout: float = 20.0) -> None:
    """Until the writer has written (or lost) everything queued, so it does not run into the next phase."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = metrics(server.port)
        if m.get("nbops_prediction_log_pending", 0) == 0 and m.get("nbops_prediction_log_written_total", 0) + m.get(
            "nbops_prediction_log_failed_total", 0
        ) >= m.get("nbops_prediction_log_logged_total", 0):
            return
        time.sleep(0.1)


# -- clients -------------------------------------------------------------------------------------
@dataclass
class Phase:
    """What one server answered to one set of concurrent clients."""

    latencies_ns: list[int]
    answered: int
    errors: int
    error_samples: list[str]
    wall: float
    client_cpu: float
    server_cpu: float | None
    server_switches: int | None = None
    stopped_early: bool = False

    @property
    def rate(self) -> float:
        return self.answered / self.wall if self.wall > 0 else 0.0


def run_clients(server: Server, clients: int, requests: int, warmup: int, time_limit: float | None = None) -> Phase:
    """``clients`` threads, one keep-alive connection each: ``warmup`` untimed requests, then ``requests`` timed."""
    barrier = threading.Barrier(clients + 1)
    results: list[dict[str, Any]] = [{} for _ in range(clients)]
    deadline = [float("inf")]

    def client(i: int) -> None:
        res = results[i]
        res.update(lat=[], ok=0, errors=0, samples=[], start=None, end=None, early=False)
        bodies = server.bodies[i::clients] or server.bodies
        headers = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection(HOST, server.port, timeout=60)

        def one(body: bytes) -> bool:
            nonlocal conn
            try:
                conn.request("POST", server.path, body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return True
                err = f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as exc:
                err = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
            res["errors"] += 1
            if len(res["samples"]) < 3:
                res["samples"].append(err)
            return False

        try:
            for j in range(warmup):
                one(bodies[j % len(bodies)])
            res["errors"], res["samples"] = 0, []  # warm-up errors would show in the timed part too
        finally:
            barrier.wait()
        res["start"] = time.perf_counter()
        lat = res["lat"]
        for j in range(requests):
            if time.perf_counter() > deadline[0]:
                res["early"] = True
                break
            body = bodies[(warmup + j) % len(bodies)]
            t0 = time.perf_counter_ns()
            ok = one(body)
            if ok:
                lat.append(time.perf_counter_ns() - t0)
                res["ok"] += 1
        res["end"] = time.perf_counter()
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()  # every client has warmed up
    cpu0, switches0 = server.cpu_seconds(), server.switches()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if time_limit is not None:
        deadline[0] = start + time_limit
    for t in threads:
        t.join()
    wall = max(r["end"] for r in results) - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu, switches = server.cpu_seconds() - cpu0, server.switches() - switches0
    client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return Phase(
        latencies_ns=[x for r in results for x in r["lat"]],
        answered=sum(r["ok"] for r in results),
        errors=sum(r["errors"] for r in results),
        error_samples=[s for r in results for s in r["samples"]][:5],
        wall=wall,
        client_cpu=client_cpu,
        server_cpu=cpu,
        server_switches=switches,
        stopped_early=any(r["early"] for r in results),
    )


def pct(ns: list[int]) -> dict[str, float]:
    if not ns:
        return {"p50": float("nan"), "p99": float("nan")}
    ms = np.asarray(ns, dtype=float) / 1e6
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def pooled(phases: list[Phase]) -> dict[str, Any]:
    lat = [x for p in phases for x in p.latencies_ns]
    answered = sum(p.answered for p in phases)
    wall = sum(p.wall for p in phases)
    cpu = sum(p.server_cpu or 0.0 for p in phases)
    switches = sum(p.server_switches or 0 for p in phases)
    return {
        **pct(lat),
        "rate": answered / wall if wall else 0.0,
        "answered": answered,
        "errors": sum(p.errors for p in phases),
        "cpu_ms_per_req": 1000 * cpu / answered if answered else float("nan"),
        "switches_per_req": switches / answered if answered else float("nan"),
        "client_cores": sum(p.client_cpu for p in phases) / wall if wall else 0.0,
    }


# -- the store and the requests ------------------------------------------------------------------
def build_store(root: Path) -> tuple[Any, dict[int, tuple[int, float]]]:
    """``fraud_store(root)``; and each key's latest online features (n_tx, amount_mean)."""
    sys.path.insert(0, str(TESTS))
    from helpers.served import fraud_store

    fraud = fraud_store(root)
    latest = fraud.features.sort_values("ts").groupby("cc_num").last()
    online = {int(k): (int(r.n_tx), float(r.amount_mean)) for k, r in latest.iterrows()}
    return fraud, online


def requests_for(online: dict[int, tuple[int, float]], n: int, seed: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    keys = np.array(sorted(online))
    return [(int(k), float(a)) for k, a in zip(rng.choice(keys, n), rng.gamma(2.0, 40.0, n).round(2), strict=True)]


def nbops_body(key: int, amount: float) -> bytes:
    return json.dumps({"keys": {"cc_num": [key]}, "values": {"amount": [amount]}}).encode()


def values_body(online: dict[int, tuple[int, float]], key: int, amount: float) -> bytes:
    n_tx, mean = online[key]
    return json.dumps({"values": {"n_tx": [n_tx], "amount_mean": [mean], "amount": [amount]}}).encode()


def mlflow_body(online: dict[int, tuple[int, float]], key: int, amount: float) -> bytes:
    n_tx, mean = online[key]
    return json.dumps({"dataframe_split": {"columns": INPUTS, "data": [[n_tx, mean, amount]]}}).encode()


def check_answers(servers: dict[str, Server], online: dict[int, tuple[int, float]]) -> int:
    """Every key once, untimed: nbops (both ways) and MLflow must predict the same. Returns the mismatches."""
    bad = 0
    for key in sorted(online):
        amount = 50.0 + key
        answers = {}
        for name, server in servers.items():
            if name == "mlflow":
                status, out = post(server.port, "/invocations", mlflow_body(online, key, amount))
            elif name == "values":
                status, out = post(server.port, "/predict", values_body(online, key, amount))
            else:
                status, out = post(server.port, "/predict", nbops_body(key, amount))
            if status != 200:
                raise RuntimeError(f"{server.name} answered {status} for key {key}: {out}")
            answers[name] = bool(out["predictions"][0])
        bad += len(set(answers.values())) > 1
    return bad


# -- the figures ---------------------------------------------------------------------------------
def figures_1_2(args: argparse.Namespace, servers: dict[str, Server]) -> dict[str, Any]:
    order = list(servers)
    print(
        f"\nfigures 1-2: {args.clients} clients, {args.rounds} round(s) x {args.clients} x {args.requests} timed "
        f"requests per server (warm-up {args.warmup} per client, discarded), 1 key per request"
    )
    for r in range(args.rounds):
        turn = order[r % len(order) :] + order[: r % len(order)]
        for name in turn:
            server = servers[name]
            phase = run_clients(server, args.clients, args.requests, args.warmup)
            server.phases.append(phase)
            if server.logs:
                wait_log_idle(server)
            p = pct(phase.latencies_ns)
            print(
                f"  round {r + 1} {name:<8} p50 {p['p50']:7.2f} ms  p99 {p['p99']:7.2f} ms  {phase.rate:7.0f} req/s"
                f"  errors {phase.errors}  load {loadavg()}"
            )
    stats = {name: pooled(s.phases) for name, s in servers.items()}
    print(f"\n{'server':<44}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'CPU ms/req':>12}{'cs/req':>8}{'errors':>8}")
    for name, s in stats.items():
        print(
            f"{LABELS[name]:<44}{s['p50']:>9.2f}{s['p99']:>9.2f}{s['rate']:>9.0f}"
            f"{s['cpu_ms_per_req']:>12.2f}{s['switches_per_req']:>8.1f}{s['errors']:>8}"
        )
    client_cores = max(s["client_cores"] for s in stats.values())
    print(
        f"(CPU ms/req and cs/req: CPU time and context switches of the serving process per answered request; "
        f"the clients used up to {client_cores:.2f} of the {os.cpu_count()} cores)"
    )
    results: dict[str, Any] = {"servers": stats}
    if "mlflow" in stats:
        ours, theirs = stats["log"], stats["mlflow"]
        ratio = {p: ours[p] / theirs[p] for p in ("p50", "p99")}
        rounds = [
            pct(a.latencies_ns)["p99"] / pct(b.latencies_ns)["p99"]
            for a, b in zip(servers["log"].phases, servers["mlflow"].phases, strict=True)
        ]
        met = ratio["p99"] <= 1.0
        print(
            f"\n1. nbops / mlflow: p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x (median of rounds "
            f"{float(np.median(rounds)):.2f}x), throughput {ours['rate'] / theirs['rate']:.2f}x, "
            f"CPU per request {ours['cpu_ms_per_req'] / theirs['cpu_ms_per_req']:.2f}x; "
            f"target p99 <= 1.0: {'met' if met else 'MISSED'}"
        )
        results["fig1"] = {"ratio": ratio, "p99_median_of_rounds": float(np.median(rounds)), "target_met": met}
        if "values" in stats:
            v = stats["values"]
            print(
                f"   info: --features-in-request / mlflow p50 {v['p50'] / theirs['p50']:.2f}x, "
                f"p99 {v['p99'] / theirs['p99']:.2f}x (the same request work minus the lookup)"
            )
    on, off = stats["log"], stats["nolog"]
    ratio2 = on["rate"] / off["rate"]
    rounds2 = [
        a.rate / b.rate for a, b in zip(servers["log"].phases, servers["nolog"].phases, strict=True) if b.rate > 0
    ]
    met2 = ratio2 >= 0.95
    print(
        f"2. throughput log on / off: {ratio2:.3f} (median of rounds {float(np.median(rounds2)):.3f}; "
        f"CPU per request {on['cpu_ms_per_req'] / off['cpu_ms_per_req']:.2f}x); "
        f"target >= 0.95: {'met' if met2 else 'MISSED'}"
    )
    results["fig2"] = {"ratio": ratio2, "median_of_rounds": float(np.median(rounds2)), "target_met": met2}
    return results


def figure_3(args: argparse.Namespace, server: Server, root: Path, rows_before: int) -> dict[str, Any]:
    from nbops.predictions.log import read_predictions

    print(
        f"\nfigure 3: load run, {args.load_clients} clients x {args.load_requests} requests "
        f"(at most {args.load_timeout:.0f} s), then SIGTERM"
    )
    phase = run_clients(server, args.load_clients, args.load_requests, 0, time_limit=args.load_timeout)
    m = metrics(server.port)
    server.read_peaks()
    t0 = time.perf_counter()
    code = server.stop()
    stop_s = time.perf_counter() - t0
    line = EXIT_LINE.search(server.stderr_path.read_text(errors="replace"))
    written_exit = int(line.group(1)) if line else None
    dropped_exit = int(line.group(2)) if line else None
    table = read_predictions(root, MODEL)
    rows = table.num_rows - rows_before
    unique = len(set(table.column("request_id").to_pylist())) == table.num_rows
    dropped = int(m.get("nbops_prediction_log_dropped_total", 0))
    expected = phase.answered - dropped
    p = pct(phase.latencies_ns)
    ok = phase.errors == 0 and code == 0 and rows == expected and written_exit == rows and dropped_exit == dropped
    print(
        f"  sent {args.load_clients * args.load_requests:,}, answered {phase.answered:,}, errors {phase.errors}"
        f"{' ' + str(phase.error_samples) if phase.error_samples else ''}"
        f"{', STOPPED AT THE TIME LIMIT' if phase.stopped_early else ''}; {phase.rate:.0f} req/s, "
        f"p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms; load {loadavg()}"
    )
    print(
        f"  /metrics before SIGTERM: requests 200 {int(m.get('nbops_requests_total:200', 0)):,}, "
        f"logged {int(m.get('nbops_prediction_log_logged_total', 0)):,}, dropped {dropped:,}, "
        f"written {int(m.get('nbops_prediction_log_written_total', 0)):,}, "
        f"pending {int(m.get('nbops_prediction_log_pending', 0)):,}, "
        f"failed {int(m.get('nbops_prediction_log_failed_total', 0)):,}"
    )
    print(f"  exit code {code} after {stop_s:.2f} s; stderr: {line.group(0) if line else 'NO EXIT LINE'}")
    print(
        f"  log rows added {rows:,}; answered - dropped = {expected:,}: {'equal' if rows == expected else 'DIFFERENT'}; "
        f"request ids unique over the whole log ({table.num_rows:,} rows): {'yes' if unique else 'NO'}"
    )
    print(f"3. load run: {'holds' if ok and unique else 'FAILED'}")
    return {
        "clients": args.load_clients,
        "requests": args.load_requests,
        "answered": phase.answered,
        "errors": phase.errors,
        "rate": phase.rate,
        **p,
        "metrics": m,
        "exit_code": code,
        "exit_written": written_exit,
        "exit_dropped": dropped_exit,
        "log_rows": rows,
        "expected_rows": expected,
        "ids_unique": unique,
        "stopped_early": phase.stopped_early,
        "target_met": bool(ok and unique),
    }


# -- where the time goes, without HTTP -----------------------------------------------------------
def pieces(store: Any, online: dict[int, tuple[int, float]], scratch: Path, calls: int) -> dict[str, float]:
    """Median microseconds of each step of one request, in this process, each step in a loop of its own.

    Steps that wake the prediction log's writer thread come last: a woken writer takes the GIL
    from whatever runs next, which the last line shows.
    """
    import mlflow
    import pandas as pd
    from fastapi.responses import JSONResponse
    from mlflow.pyfunc.scoring_server import invocations

    from nbops.predictions.log import Prediction, PredictionLog
    from nbops.predictions.predictor import Predictor
    from nbops.server.app import PredictRequest

    quiet = store.predictor(f"{MODEL}@champion", log=False)
    log = PredictionLog(scratch, MODEL, quiet.spec.version)  # not the store's log: the load run counts that one
    logged = Predictor(quiet.spec, quiet.model, quiet.lookup, log)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    schema = pyfunc.metadata.get_input_schema()
    model = quiet.model
    reqs = requests_for(online, calls, seed=99)
    frames = {k: pd.DataFrame({"n_tx": [v[0]], "amount_mean": [v[1]], "amount": [50.0]}) for k, v in online.items()}
    arrays = {k: frame.to_numpy(dtype=float) for k, frame in frames.items()}
    record = Prediction("bench", {"cc_num": 1}, {"n_tx": 1, "amount_mean": 1.0, "amount": 1.0}, False, score=0.5)
    answer = quiet.predict({"cc_num": [reqs[0][0]]}, {"amount": [reqs[0][1]]})

    def lookup_after_log(k: int, a: float) -> int:
        log.log(record)
        t0 = time.perf_counter_ns()
        quiet.lookup({"cc_num": [k]}, {})
        return time.perf_counter_ns() - t0

    steps: dict[str, Callable[[int, float], Any]] = {
        "json.loads + PredictRequest validation": lambda k, a: PredictRequest.model_validate(
            json.loads(nbops_body(k, a))
        ),
        "online lookup (1 key, 2 features)": lambda k, a: quiet.lookup({"cc_num": [k]}, {}),
        "input frame (pd.DataFrame of 3 columns)": lambda k, a: pd.DataFrame(
            {"n_tx": [online[k][0]], "amount_mean": [online[k][1]], "amount": [a]}
        ),
        "model.predict (sklearn, a frame)": lambda k, a: model.predict(frames[k]),
        "model.predict_proba (sklearn, a frame)": lambda k, a: model.predict_proba(frames[k]),
        "alternative: model.predict_proba of an ndarray": lambda k, a: model.predict_proba(arrays[k]),
        "Predictor.predict, log off (lookup, frame, both model calls)": lambda k, a: quiet.predict(
            {"cc_num": [k]}, {"amount": [a]}
        ),
        "JSONResponse(result.as_dict())": lambda k, a: JSONResponse(answer.as_dict()),
        "mlflow: invocations() (parse, schema, predict, JSON)": lambda k, a: invocations(
            mlflow_body(online, k, a), "application/json", pyfunc, schema
        ),
        "mlflow: pyfunc.predict of a frame": lambda k, a: pyfunc.predict(frames[k]),
        "log: frame.to_dict('list') (the record's features)": lambda k, a: frames[k].to_dict("list"),
        "log: PredictionLog.log(record) (queue put, wakes the writer)": lambda k, a: log.log(record),
        "Predictor.predict, log on": lambda k, a: logged.predict({"cc_num": [k]}, {"amount": [a]}),
        "online lookup right after a PredictionLog.log": lookup_after_log,
    }
    out: dict[str, float] = {}
    with warnings.catch_warnings():  # an ndarray to a model fitted on named columns: sklearn warns at every call
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        for name, step in steps.items():
            ns = []
            for k, a in reqs:
                t0 = time.perf_counter_ns()
                inner = step(k, a)
                ns.append(inner if step is lookup_after_log else time.perf_counter_ns() - t0)
            out[name] = float(np.median(ns[50:])) / 1000  # the first 50: warm-up
            log.flush()  # the writer idle before the next step
    log.close()
    quiet.close()
    print(f"\nwhere one request's time goes, in-process, no HTTP (median of {calls - 50} calls per step, us):")
    for name, us in out.items():
        print(f"  {name:<64}{us:>9.1f}")
    return out


# -- a cProfile of a served run --------------------------------------------------------------------
def child_profile(store_path: Path, port: int, out: Path) -> int:
    """``nbops serve fraud@champion`` under cProfile (the event loop thread); stats written on SIGTERM."""
    import cProfile

    import nbops
    from nbops.server.app import run

    store = nbops.open(store_path)
    predictor = store.predictor(f"{MODEL}@champion")
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run(predictor, HOST, port, None)
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))
    return 0


def profile_served(args: argparse.Namespace, work: Path, store_path: Path, bodies: list[bytes]) -> None:
    import pstats

    out = work / "serve.prof"
    port = free_port()
    server = Server(
        "nbops serve under cProfile",
        [sys.executable, str(Path(__file__).resolve()), "--child-profile", str(store_path), str(port), str(out)],
        server_env(),
        port,
        "/predict",
        bodies,
        work / "profile.stderr",
        logs=True,
    )
    try:
        server.start()
        server.wait_ready(args.start_timeout)
        phase = run_clients(server, args.clients, args.requests, args.warmup)
    finally:
        server.stop()
    stats = pstats.Stats(str(out))
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    for (path, _, _), v in stats.stats.items():  # type: ignore[attr-defined]
        groups[package_of(path)] = groups.get(package_of(path), 0.0) + v[2]
    print(
        f"\ncProfile of the event loop thread of nbops serve under {args.clients} clients, "
        f"{phase.answered:,} timed + {args.clients * args.warmup:,} warm-up requests "
        f"(idle waits in select/epoll included; the log writer thread is not profiled):"
    )
    for name, secs in sorted(groups.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {name:<28}{secs:>8.2f} s {100 * secs / total:>5.1f}%")
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(r"nbops|fastapi/routing|sklearn/linear_model|pandas/core/frame", 20)


def package_of(path: str) -> str:
    if path == "~":
        return "builtins (C)"
    for marker in ("site-packages/", "/src/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    m = re.search(r"python3\.\d+/(\w+)", path)
    return f"stdlib {m.group(1)}" if m else path


# -- main ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-profile"]:
        return child_profile(Path(argv[1]), int(argv[2]), Path(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients, figures 1-2 (default 16)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per client per round (200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per client before each phase (20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each server once per round (default 3)")
    parser.add_argument("--no-values-server", action="store_true", help="skip the --features-in-request server")
    parser.add_argument("--load-clients", type=int, default=16, help="figure 3 clients (default 16)")
    parser.add_argument("--load-requests", type=int, default=500, help="figure 3 requests per client (default 500)")
    parser.add_argument("--load-timeout", type=float, default=300.0, help="figure 3 time limit in s (default 300)")
    parser.add_argument("--load-log-capacity", type=int, help="figure 3 server's --log-capacity (default: its own)")
    parser.add_argument("--pieces-calls", type=int, default=2000, help="in-process breakdown calls (0 skips)")
    parser.add_argument("--profile", action="store_true", help="also a cProfile of a served run")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for a server to answer /health")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmpdir", default=None, help="where the store goes (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    for name in ("clients", "requests", "rounds", "load_clients", "load_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    print(f"serve_http: code {git_state()}, load average {loadavg()}, {os.cpu_count()} CPUs")
    for var in ("MLFLOW_TRACKING_URI", "NBOPS_HOME"):
        os.environ.pop(var, None)

    work_dir = tempfile.mkdtemp(prefix="nbops-serve-http-", dir=args.tmpdir)
    work = Path(work_dir)
    results: dict[str, Any] = {"load_start": loadavg(), "code": git_state()}
    servers: dict[str, Server] = {}
    load_server: Server | None = None
    try:
        root = work / "store"
        t0 = time.perf_counter()
        fraud, online = build_store(root)
        fraud.store.close()
        print(f"store built by fraud_store in {time.perf_counter() - t0:.1f} s (untimed); {len(online)} keys")
        from nbops.core.paths import store_tracking_uri

        reqs = requests_for(online, 4096, args.seed)
        nbops_cmd = [sys.executable, "-c", "import sys; from nbops.cli import main; sys.exit(main())"]
        serve = [*nbops_cmd, "--store", str(root), "serve", f"{MODEL}@champion", "--port"]
        specs: list[tuple[str, Callable[[int], list[str]], str, list[bytes], str | None, bool]] = [
            ("log", lambda p: [*serve, str(p)], "/predict", [nbops_body(k, a) for k, a in reqs], None, True),
            (
                "nolog",
                lambda p: [*serve, str(p), "--no-log"],
                "/predict",
                [nbops_body(k, a) for k, a in reqs],
                None,
                False,
            ),
        ]
        if not args.no_values_server:
            specs.append(
                (
                    "values",
                    lambda p: [*serve, str(p), "--no-log", "--features-in-request"],
                    "/predict",
                    [values_body(online, k, a) for k, a in reqs],
                    None,
                    False,
                )
            )
        mlflow_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}/1"]
        specs.append(
            (
                "mlflow",
                lambda p: [*mlflow_cmd, "--env-manager", "local", "--host", HOST, "--port", str(p)],
                "/invocations",
                [mlflow_body(online, k, a) for k, a in reqs],
                store_tracking_uri(root),
                False,
            )
        )
        for name, cmd, path, bodies, uri, logs in specs:
            port = free_port()
            servers[name] = Server(
                name, cmd(port), server_env(uri), port, path, bodies, work / f"{name}.stderr", logs=logs
            )
        t0 = time.perf_counter()
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready(args.start_timeout)
        print(f"{len(servers)} servers ready in {time.perf_counter() - t0:.1f} s; load average {loadavg()}")
        mismatches = check_answers(servers, online)
        print(f"answers checked for all {len(online)} keys: {mismatches} differ between servers")
        results["mismatches"] = mismatches

        results.update(figures_1_2(args, servers))

        print(f"\n{'peak RSS (VmHWM)':<44}{'ready':>12}{'peak':>12}{'tree':>12}")
        for server in servers.values():
            server.read_peaks()
            code = server.stop()
            tree = fmt_bytes(server.peak_tree) if server.peak_tree != server.peak_rss else ""
            print(
                f"{LABELS[server.name]:<44}{fmt_bytes(server.ready_rss):>12}{fmt_bytes(server.peak_rss):>12}{tree:>12}"
                + (f"   EXIT {code}" if code != 0 and server.name != "mlflow" else "")
            )
        print("(tree: the whole process tree, mlflow's CLI parent included; SIGTERM ends that parent by the signal)")
        results["rss"] = {
            n: {"ready": s.ready_rss, "peak": s.peak_rss, "tree": s.peak_tree} for n, s in servers.items()
        }
        log_exit = EXIT_LINE.search(servers["log"].stderr_path.read_text(errors="replace"))
        print(
            f"log-on server: exit {servers['log'].exit_code}, "
            f"{log_exit.group(0) if log_exit else 'NO EXIT LINE'} (warm-up and check requests included)"
        )

        from nbops.predictions.log import read_predictions

        rows_before = read_predictions(root, MODEL).num_rows
        port = free_port()
        cmd = [*serve, str(port)]
        if args.load_log_capacity is not None:
            cmd += ["--log-capacity", str(args.load_log_capacity)]
        bodies = [nbops_body(k, a) for k, a in requests_for(online, 4096, args.seed + 1)]
        load_server = Server("load", cmd, server_env(), port, "/predict", bodies, work / "load.stderr", logs=True)
        load_server.start()
        load_server.wait_ready(args.start_timeout)
        results["fig3"] = figure_3(args, load_server, root, rows_before)
        print(f"  load-run server RSS ready {fmt_bytes(load_server.ready_rss)}, peak {fmt_bytes(load_server.peak_rss)}")

        if args.pieces_calls > 50:
            import nbops

            with nbops.open(root) as store:
                results["pieces_us"] = pieces(store, online, work / "scratch", args.pieces_calls)
        if args.profile:
            profile_served(args, work, root, [nbops_body(k, a) for k, a in reqs])
    finally:
        for server in [*servers.values(), *([load_server] if load_server else [])]:
            server.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    results["load_end"] = loadavg()
    print(f"\nload average at the end {results['load_end']}; figures taken at load {results['load_start']} at start")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    missed = [k for k, v in results.items() if isinstance(v, dict) and v.get("target_met") is False]
    if results.get("mismatches"):
        missed.append("mismatches")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
