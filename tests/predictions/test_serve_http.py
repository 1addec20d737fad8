"""``nbops serve`` as a user runs it: a real uvicorn process, real HTTP clients, the log read back after it stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from helpers.redisserver import RedisServer, redis_server_fixture  # noqa: F401  (fixture)
from helpers.served import INPUTS, Fraud, fraud_store
from helpers.servers import free_port, stop, wait_until_answering
from nbops.predictions.log import read_predictions

START_SECONDS = 120


class Served:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NBOPS_ONLINE_URL")}
    return {**env, **(extra or {})}


@contextmanager
def serving(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    port = free_port()
    log = root.parent / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nbops.cli", "--store", str(root), "serve", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(env),
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    try:
        wait_until_answering(process, answers, "nbops serve", log, START_SECONDS)
        yield Served(process, url, log)
    finally:
        stop(process)


def start_fails(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbops.cli", "--store", str(root), "serve", *args, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=START_SECONDS,
        env=_env(),
    )


def test_predictions_over_http_equal_the_models_and_every_one_is_in_the_log_after_sigterm(fraud: Fraud) -> None:
    root = fraud.store.root
    before = read_predictions(root, "fraud").num_rows
    with serving(root, "fraud@champion") as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/health").json() == {"status": "ok", "model": "fraud", "version": "1"}
        meta = http.get("/metadata").json()
        assert (meta["features"], meta["keys"], meta["request_values"]) == (
            ["card:1.n_tx", "card:1.amount_mean"],
            ["cc_num"],
            ["amount"],
        )
        assert "/predict" in http.get("/openapi.json").json()["paths"] and http.get("/docs").status_code == 200
        answered = 0
        for cards, amounts in (([4], [20.0]), ([1, 2, 3], [10.0, 250.0, 99.5])):
            body = http.post("/predict", json={"keys": {"cc_num": cards}, "values": {"amount": amounts}}).json()
            online = fraud.store.online_features(["card.n_tx", "card.amount_mean"], keys={"cc_num": cards})
            x = online.assign(amount=amounts)[INPUTS]
            assert body["model"] == "fraud" and body["version"] == "1"
            assert body["predictions"] == fraud.model.predict(x).tolist()  # type: ignore[attr-defined]
            np.testing.assert_allclose(body["scores"], fraud.model.predict_proba(x)[:, 1], atol=1e-12)  # type: ignore[attr-defined]
            answered += len(cards)
        given = http.post(
            "/predict",
            json={
                "keys": {"cc_num": [5]},
                "values": {"amount": [1.0]},
                "request_ids": ["tx-77"],
                "event_time": "2026-11-30T08:00:00",
            },
        ).json()
        assert given["request_ids"] == ["tx-77"]
        answered += 1
        metrics = http.get("/metrics").text
        assert 'nbops_requests_total{model="fraud",version="1",status="200"} 3' in metrics
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
    assert f"{answered} predictions written to the log, 0 dropped" in server.stderr()
    log = read_predictions(root, "fraud").to_pylist()
    assert len(log) == before + answered
    mine = next(r for r in log if r["request_id"] == "tx-77")
    assert mine["at"].isoformat() == "2026-11-30T08:00:00+00:00" and json.loads(mine["keys"]) == {"cc_num": 5}
    assert json.loads(mine["features"])["amount"] == 1.0


def test_bad_requests_get_a_4xx_naming_the_problem_never_a_500(fraud: Fraud) -> None:
    with (
        serving(fraud.store.root, "fraud@champion", "--max-body", "4096") as server,
        httpx.Client(base_url=server.url) as http,
    ):

        def post(body: object) -> httpx.Response:
            return http.post("/predict", json=body)

        unknown = post({"keys": {"cc_num": [1, 4242]}, "values": {"amount": [1.0, 2.0]}})
        assert unknown.status_code == 404 and unknown.json()["unknown_keys"] == [{"cc_num": 4242}]
        cases = [
            ({"keys": {"cc_num": [1]}}, "takes ['amount'] from the request"),
            ({"keys": {"card": [1]}, "values": {"amount": [1.0]}}, "keys has no ['cc_num']"),
            ({"keys": {"cc_num": ["1x"]}, "values": {"amount": [1.0]}}, "whose key 'cc_num' is int64"),
            ({"keys": {"cc_num": [1.5]}, "values": {"amount": [1.0]}}, "cc_num"),
            ({"keys": {"cc_num": [1]}, "values": {"amount": ["big"]}}, "cannot predict these inputs"),
            ({"keys": {"cc_num": [1]}, "values": {"amount": [True]}}, "hold true/false; fraud v1 takes numbers"),
            ({"keys": {"cc_num": [1]}, "values": {"amount": [10**400]}}, "cannot predict these inputs"),
            ({"keys": {"cc_num": [1]}, "values": {"amount": [1.0]}, "model": "other"}, "model"),
            ({"keys": {"cc_num": [1]}, "values": {"amount": [1.0]}, "event_time": "soon"}, "not a time"),
            ({"keys": {"cc_num": [1]}, "values": {"amount": [1.0]}, "event_time": "now"}, "leave event_time out"),
            ([1, 2, 3], "body"),
        ]
        for body, named in cases:
            answer = post(body)
            assert answer.status_code == 422, (body, answer.text)
            assert named in answer.text, (body, answer.text)
        broken = http.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422
        # A whole float is the same key as the int (the key error's own advice); curl -d without its header is a 415.
        whole = post({"keys": {"cc_num": [1.0]}, "values": {"amount": [1.0]}})
        assert whole.status_code == 200, whole.text
        assert (
            whole.json()["predictions"]
            == post({"keys": {"cc_num": [1]}, "values": {"amount": [1.0]}}).json()["predictions"]
        )
        form = http.post("/predict", content=b'{"keys": {"cc_num": [1]}, "values": {"amount": [1.0]}}')
        assert form.status_code == 415 and "Content-Type: application/json" in form.text
        big = {"keys": {"cc_num": list(range(2000))}, "values": {"amount": [1.0] * 2000}}
        assert post(big).status_code == 413
        chunked = http.post(
            "/predict", content=iter([json.dumps(big).encode()]), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        metrics = http.get("/metrics").text
        assert 'status="500"' not in metrics and 'status="404"} 1' in metrics


def test_off_loopback_the_server_needs_a_token_and_compares_it(fraud: Fraud, tmp_path: Path) -> None:
    root = fraud.store.root
    refused = start_fails(root, "fraud@champion", "--host", "0.0.0.0")
    assert refused.returncode == 2 and "--token-file" in refused.stderr
    short = tmp_path / "short"
    short.write_text("abc\n")
    assert "shorter than 16" in start_fails(root, "fraud@champion", "--token-file", str(short)).stderr
    token = tmp_path / "token"
    token.write_text("s3cret-token-of-some-length\n")
    with serving(root, "fraud@champion", "--token-file", str(token)) as server:
        assert "needs the bearer token" in server.stderr()
        body = {"keys": {"cc_num": [1]}, "values": {"amount": [1.0]}}
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.post(f"{server.url}/predict", json=body).status_code == 401
        wrong = {"authorization": "Bearer s3cret-token-of-some-lengtX"}
        assert httpx.post(f"{server.url}/predict", json=body, headers=wrong).status_code == 401
        assert httpx.get(f"{server.url}/metadata").status_code == 401
        right = {"authorization": "Bearer s3cret-token-of-some-length"}
        assert httpx.post(f"{server.url}/predict", json=body, headers=right).status_code == 200


def test_a_missing_alias_or_a_model_without_feature_lineage_fails_at_start_up(fraud: Fraud) -> None:
    root = fraud.store.root
    alias = start_fails(root, "fraud@staging")
    assert alias.returncode == 2 and "has no alias 'staging'" in alias.stderr
    ghost = start_fails(root, "ghost")
    assert ghost.returncode == 2 and "no registered model 'ghost'" in ghost.stderr
    both = start_fails(root, "fraud", "--features-in-request", "--default", "n_tx=0")
    assert both.returncode == 2 and "--features-in-request looks nothing up" in both.stderr


def test_a_busy_port_or_a_missing_store_fails_before_serving_and_says_so(fraud: Fraud, tmp_path: Path) -> None:
    def serve(store: Path, port: int) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nbops.cli", "--store", str(store), "serve", "fraud", "--port", str(port)]
        return subprocess.run(command, capture_output=True, text=True, timeout=START_SECONDS, env=_env(None))

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = serve(fraud.store.root, taken.getsockname()[1])
    assert busy.returncode == 2, busy.stderr
    assert "cannot listen on 127.0.0.1" in busy.stderr and "pick another --port" in busy.stderr
    assert "serving" not in busy.stderr
    nowhere = tmp_path / "no-store-here"
    missing = serve(nowhere, free_port())
    assert missing.returncode == 2 and f"no nbops store at {nowhere}" in missing.stderr
    assert not nowhere.exists()  # nothing made where no store was


def test_features_in_the_request_serve_a_model_without_lookups(fraud: Fraud) -> None:
    with serving(fraud.store.root, "fraud/1", "--features-in-request", "--no-log") as server:
        body = {"values": {"n_tx": [3], "amount_mean": [40.0], "amount": [300.0]}}
        answer = httpx.post(f"{server.url}/predict", json=body)
        assert answer.status_code == 200
        x = [[3, 40.0, 300.0]]
        import pandas as pd

        expected = fraud.model.predict_proba(pd.DataFrame(x, columns=INPUTS))[0, 1]  # type: ignore[attr-defined]
        assert answer.json()["scores"][0] == pytest.approx(expected, abs=1e-12)
        assert httpx.post(f"{server.url}/predict", json={"keys": {"cc_num": [1]}}).status_code == 422


def test_load_every_answer_is_logged_or_counted_as_dropped(fraud: Fraud) -> None:
    """N clients x M requests on loopback; a tiny queue forces drops, and log rows = answered - dropped."""
    root = fraud.store.root
    before = read_predictions(root, "fraud").num_rows
    clients, requests = 8, 40
    with serving(root, "fraud@champion", "--log-capacity", "2") as server:
        errors: list[str] = []
        answered = [0] * clients

        def client(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for i in range(requests):
                    answer = http.post(
                        "/predict",
                        json={"keys": {"cc_num": [1 + (n * requests + i) % 50]}, "values": {"amount": [float(i)]}},
                    )
                    if answer.status_code == 200:
                        answered[n] += 1
                    else:
                        errors.append(answer.text)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        metrics = httpx.get(f"{server.url}/metrics").text
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
    assert errors == []
    total = sum(answered)
    assert total == clients * requests
    dropped = int(
        next(line for line in metrics.splitlines() if line.startswith("nbops_prediction_log_dropped_total")).split()[-1]
    )
    written = read_predictions(root, "fraud").num_rows - before
    assert written == total - dropped
    assert f"{written} predictions written to the log, {dropped} dropped" in server.stderr()


def test_kill_9_under_load_leaves_a_readable_log_with_no_more_rows_than_answers(fraud: Fraud) -> None:
    root = fraud.store.root
    before = read_predictions(root, "fraud").num_rows
    answered = 0
    with serving(root, "fraud@champion") as server, httpx.Client(base_url=server.url) as http:
        for i in range(150):
            if (
                http.post("/predict", json={"keys": {"cc_num": [1 + i % 50]}, "values": {"amount": [1.0]}}).status_code
                == 200
            ):
                answered += 1
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
    after = read_predictions(root, "fraud").num_rows - before  # every batch verified against its name
    assert answered == 150 and 0 <= after <= answered


def test_served_from_redis_the_answers_are_the_same(fraud: Fraud, tmp_path: Path, redis_server: RedisServer) -> None:
    import nbops

    copy = fraud_store(tmp_path / ".nbops", online=redis_server.url)
    copy.store.close()
    with serving(copy.store.root, "fraud@champion", env={"NBOPS_ONLINE_URL": redis_server.url}) as server:
        body = {"keys": {"cc_num": [1, 2, 3]}, "values": {"amount": [5.0, 50.0, 500.0]}}
        answer = httpx.post(f"{server.url}/predict", json=body).json()
        with nbops.open(copy.store.root, online=redis_server.url) as again:
            online = again.online_features(["card.n_tx", "card.amount_mean"], keys={"cc_num": [1, 2, 3]})
        x = online.assign(amount=[5.0, 50.0, 500.0])[INPUTS]
        np.testing.assert_allclose(answer["scores"], copy.model.predict_proba(x)[:, 1], atol=1e-12)  # type: ignore[attr-defined]
        socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))).close()


def test_the_stop_line_says_when_rows_were_kept_but_never_written() -> None:
    from nbops.cli.serving import stop_line

    counts = {"logged": 10, "dropped": 2, "written": 10, "batches": 1, "failed": 0}
    assert stop_line({**counts, "pending": 0}) == (
        "nbops: stopped; 10 predictions written to the log, 2 dropped, 0 lost to write errors",
        True,
    )
    # A writer stalled past close()'s timeout: the process ends without them, and says how many.
    text, complete = stop_line({**counts, "written": 6, "pending": 4})
    assert not complete and text.endswith("4 not written: the log's writer did not finish in time")
