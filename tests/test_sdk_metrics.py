"""The SDK's `log_step` against a real server: buffered, sent in the background in
batches, flushed when a run ends, on close and at interpreter exit; network failures are
retried until they pass, and a full buffer drops the oldest steps with one warning."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import httpx
import numpy as np
import pytest

from codecdash import Client
from conftest import LiveServer


class Recording(httpx.HTTPTransport):
    """Passes requests through, noting their paths; `fail` makes the next N fail."""

    def __init__(self, fail: int = 0, status: int | None = None) -> None:
        super().__init__()
        self.paths: list[str] = []
        self.fail = fail
        self.status = status  # answer this instead of a connection error
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.paths.append(request.url.path)
            failing = self.fail > 0
            self.fail -= 1
        if failing:
            if self.status is not None:
                return httpx.Response(self.status, json={"error": {"code": "x", "message": "x"}})
            raise httpx.ConnectError("connection refused", request=request)
        return super().handle_request(request)


def curve(live: LiveServer, experiment_id: str, name: str = "loss") -> dict[str, Any]:
    r = httpx.get(
        f"{live.url}/api/v1/experiments/{experiment_id}/metrics",
        params={"names": name, "max_points": 5000},
    )
    assert r.status_code == 200, r.text
    series: dict[str, Any] = r.json()["series"].get(name, {"step": [], "value": []})
    return series


def test_a_training_loop_logs_its_curves(live_server: LiveServer) -> None:
    with Client(live_server.url, live_server.token) as client:
        with client.experiment(name="ssf", id="run-1") as exp:
            for step in range(300):
                exp.log_step(step, loss=1.0 / (step + 1), lr=1e-4)
            exp.log_step(300, loss=float("nan"), bpp=float("inf"))
            exp.log_step(np.int64(301), loss=np.float32(0.5))  # numpy scalars, as training has
        # the run's end sent every step before marking it completed
        loss = curve(live_server, "run-1")
        assert loss["step"] == list(range(302))
        assert loss["value"][300:] == ["NaN", 0.5]
        assert curve(live_server, "run-1", "bpp")["value"] == ["Infinity"]
        got = client.get_experiment("run-1")
        assert got["status"] == "completed" and got["training"]["step"] == 301
        assert client.dropped_steps == 0


def test_a_history_logged_at_once_keeps_its_times(live_server: LiveServer) -> None:
    """`log_steps`: steps logged earlier (an import), each with its own time."""
    from datetime import UTC, datetime

    with Client(live_server.url, live_server.token) as client:
        client.put_experiment("imported", status="completed")
        client.log_steps(
            "imported",
            [
                {"step": 0, "at": datetime(2026, 1, 1, tzinfo=UTC), "values": {"loss": 2.0}},
                {"step": 10, "at": 1767225610.5, "values": {"loss": 1.0}},
                {"step": 20, "values": {"loss": float("nan")}},
            ],
        )
        assert client.flush(10)
    loss = curve(live_server, "imported")
    assert loss["step"] == [0, 10, 20] and loss["value"] == [2.0, 1.0, "NaN"]
    assert loss["time"][:2] == [1767225600.0, 1767225610.5]


def test_several_runs_in_one_process_share_the_batch_endpoint(live_server: LiveServer) -> None:
    transport = Recording()
    client = Client(live_server.url, live_server.token, transport=transport, metrics_interval=60)
    for i in range(3):
        client.put_experiment(f"r{i}", status="running")
    for step in range(50):
        for i in range(3):
            client.log_step(f"r{i}", step, loss=step + i)
    assert client.flush(10)
    assert transport.paths.count("/api/v1/metrics") == 1  # one request for all three
    for i in range(3):
        assert curve(live_server, f"r{i}")["value"] == [float(s + i) for s in range(50)]
    # one of them unknown: the others still arrive, the unknown one's steps are dropped
    for step in range(50, 60):
        client.log_step("r0", step, loss=1.0)
        client.log_step("ghost", step, loss=1.0)
    assert client.flush(10)
    assert curve(live_server, "r0")["step"][-1] == 59
    assert client.dropped_steps == 10
    client.close()


def test_exit_without_close_still_sends_the_steps(live_server: LiveServer) -> None:
    """A script that logs and ends (no close, no `with`): atexit sends what is buffered."""
    script = textwrap.dedent(
        f"""
        from codecdash import Client
        client = Client({live_server.url!r}, {live_server.token!r}, metrics_interval=3600)
        client.put_experiment("from-a-script", status="running")
        for step in range(2000):
            client.log_step("from-a-script", step, loss=1.0 / (step + 1))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert curve(live_server, "from-a-script")["step"] == list(range(2000))


@pytest.mark.parametrize("failure", [{}, {"status": 503}], ids=["unreachable", "503"])
def test_network_failures_are_retried_until_they_pass(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture, failure: dict[str, Any]
) -> None:
    live = Client(live_server.url, live_server.token)
    live.put_experiment("flaky", status="running")
    live.close()
    transport = Recording(fail=3, **failure)
    with caplog.at_level(logging.WARNING, "codecdash.client"):
        client = Client(live_server.url, live_server.token, transport=transport, backoff=0.01)
        for step in range(100):
            client.log_step("flaky", step, loss=float(step))
        assert client.flush(20)
    assert curve(live_server, "flaky")["step"] == list(range(100))
    assert client.dropped_steps == 0
    assert len(transport.paths) == 4  # three failures, then the batch went through
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 1  # one warning, not one per attempt
    client.close()


def test_a_full_buffer_drops_the_oldest_with_one_warning(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    live = Client(live_server.url, live_server.token)
    live.put_experiment("offline", status="running")
    live.close()
    transport = Recording(fail=10**9)  # the network is down
    with caplog.at_level(logging.WARNING, "codecdash.client"):
        client = Client(
            live_server.url,
            live_server.token,
            transport=transport,
            backoff=0.01,
            metrics_interval=3600,
            metrics_buffer=100,
        )
        for step in range(250):
            client.log_step("offline", step, loss=float(step))  # never blocks, never raises
        assert client.dropped_steps == 150
        assert not client.flush(0.3)  # it cannot reach the server
        dropping = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
        assert len(dropping) == 1
        # The network comes back: the newest 100 steps arrive, the oldest were dropped.
        transport.fail = 0
        assert client.flush(20)
    assert curve(live_server, "offline")["step"] == list(range(150, 250))
    client.close()


def test_refused_steps_are_dropped_with_a_warning(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, "codecdash.client"),
        Client(live_server.url, live_server.token) as client,
    ):
        client.log_step("never-created", 0, loss=1.0)
        assert client.flush(10)
        assert client.dropped_steps == 1
    assert any("refused" in r.getMessage() and "404" in r.getMessage() for r in caplog.records)


def test_bad_calls_raise_at_once(live_server: LiveServer) -> None:
    with Client(live_server.url, live_server.token) as client:
        with pytest.raises(ValueError, match="not a metric name"):
            client.log_step("x", 0, **{"bad name": 1.0})
        with pytest.raises(ValueError, match="step must be an integer"):
            client.log_step("x", -1, loss=1.0)
        with pytest.raises(TypeError):
            client.log_step("x", 1.5, loss=1.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least one metric"):
            client.log_step("x", 0)
        with pytest.raises((TypeError, ValueError)):
            client.log_step("x", 0, loss="high")  # type: ignore[arg-type]
        assert client.flush(1)  # nothing was buffered
    with pytest.raises(RuntimeError, match="closed"):
        client.log_step("x", 0, loss=1.0)
