"""The Python SDK (`codecdash.Client`) against a real server on a free port."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from codecdash import Client, ClientError
from conftest import LiveServer


@pytest.fixture
def sdk(live_server: LiveServer) -> Any:
    with Client(live_server.url, live_server.token, backoff=0.01) as client:
        yield client


def test_create_get_update_and_list(sdk: Client, live_server: LiveServer) -> None:
    created = sdk.create_experiment(name="ssf λ=0.013", params={"lambda": 0.013}, tags=["uvg"])
    assert created["id"] and created["status"] == "queued"
    assert sdk.get_experiment(created["id"]) == created
    updated = sdk.update_experiment(
        created["id"], status="completed", psnr_db=35.2, bitrate_reduction_pct=41.0
    )
    assert updated["status"] == "completed" and updated["psnr_db"] == 35.2
    assert updated["name"] == "ssf λ=0.013"
    put = sdk.put_experiment("fixed-id", name="p", status="running")
    assert put["id"] == "fixed-id" and put["started_at"] is not None
    page = sdk.list_experiments(status="completed")
    assert page["total"] == 1 and [e["id"] for e in page["items"]] == [created["id"]]
    assert sdk.list_experiments(sort="-psnr_db", limit=1)["next_cursor"] is not None
    # a chosen id makes create safe to retry
    again = sdk.create_experiment(id="chosen", name="a")
    assert sdk.create_experiment(id="chosen", name="a")["id"] == again["id"]


def test_batch_heartbeat_and_costs_show_in_the_dashboard(sdk: Client) -> None:
    assert (
        sdk.batch([{"id": f"b{i}", "status": "completed", "psnr_db": 30 + i} for i in range(5)])
        == 5
    )
    sdk.heartbeat(worker_id="t1", role="training", spot=True, queue_depth=4)
    sdk.heartbeat(worker_id="orch", role="orchestrator", cpu_pct=3.0)
    sdk.cost("storage", 1.5, description="S3")
    sdk.costs(
        [{"component": "training", "amount_usd": 10}, {"component": "other", "amount_usd": 0.25}]
    )
    snap = sdk.dashboard()
    assert snap["summary"]["completed"] == 5
    assert snap["summary"]["best_quality"]["psnr_db"] == 34
    assert snap["summary"]["month_to_date_usd"] == 11.75
    assert snap["infrastructure"]["training_workers"]["active"] == 1
    assert snap["infrastructure"]["orchestrator"]["status"] == "ok"


def test_errors_are_client_errors_with_the_server_message(
    sdk: Client, live_server: LiveServer
) -> None:
    with pytest.raises(ClientError) as info:
        sdk.get_experiment("missing")
    assert info.value.status == 404 and info.value.code == "not_found"
    with pytest.raises(ClientError) as info:
        sdk.update_experiment("missing", name="x")
    assert info.value.status == 404
    with pytest.raises(ClientError) as info:
        sdk.create_experiment(psnr_db=float("nan"))
    assert info.value.status == 422 and "psnr_db" in info.value.message
    with Client(live_server.url, "cdt_wrong", retries=0) as bad:
        with pytest.raises(ClientError) as info:
            bad.heartbeat(worker_id="w", role="training")
        assert info.value.status == 401
    with Client("http://127.0.0.1:9", retries=1, backoff=0.01, timeout=1) as nowhere:
        with pytest.raises(ClientError) as info:
            nowhere.get_experiment("x")
        assert info.value.status is None and info.value.code == "unreachable"


def test_experiment_context_runs_then_completes_with_metrics(sdk: Client) -> None:
    with sdk.experiment("sweep", params={"lambda": 0.0067}, tags=["mse"]) as run:
        during = sdk.get_experiment(run.id)
        assert during["status"] == "running"
        assert during["started_at"] is not None and during["finished_at"] is None
        assert during["params"] == {"lambda": 0.0067} and during["name"] == "sweep"
        run.log(psnr_db=33.5)
        assert sdk.get_experiment(run.id)["psnr_db"] == 33.5
        assert sdk.get_experiment(run.id)["status"] == "running"
        run.log(bitrate_reduction_pct=44.0)
    done = sdk.get_experiment(run.id)
    assert done["status"] == "completed"
    assert done["psnr_db"] == 33.5 and done["bitrate_reduction_pct"] == 44.0
    assert done["finished_at"] is not None and done["duration_s"] is not None
    assert done["error"] is None


def test_experiment_context_fails_with_the_exception_text(sdk: Client) -> None:
    with pytest.raises(RuntimeError, match="loss is NaN"), sdk.experiment("diverged") as run:
        run.log(psnr_db=12.0)
        raise RuntimeError("loss is NaN at step 1200")
    failed = sdk.get_experiment(run.id)
    assert failed["status"] == "failed"
    assert "RuntimeError" in failed["error"] and "loss is NaN at step 1200" in failed["error"]
    assert failed["finished_at"] is not None


class Flaky(httpx.BaseTransport):
    """A real HTTP transport that fails some requests first: before sending them
    (`connect`), or after the server took them (`lost`, the answer never arrives)."""

    def __init__(self, failures: list[str]) -> None:
        self.inner = httpx.HTTPTransport()
        self.failures = failures
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if failure == "503":
            return httpx.Response(
                503,
                json={"error": {"code": "unavailable", "message": "busy"}},
                headers={"Retry-After": "0"},
                request=request,
            )
        response = self.inner.handle_request(request)
        response.read()
        self.sent.append(f"{request.method} {request.url.path}")
        if failure == "lost":
            raise httpx.ReadTimeout("no answer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_idempotent_calls_are_retried(live_server: LiveServer) -> None:
    flaky = Flaky(["connect", "lost", "503"])
    with Client(live_server.url, live_server.token, transport=flaky, backoff=0.01) as client:
        row = client.put_experiment("retried", name="r", status="completed", psnr_db=30.0)
    assert row["id"] == "retried"
    assert flaky.sent == ["PUT /api/v1/experiments/retried"] * 2  # taken twice, harmlessly
    assert live_server.store.get_experiment("retried") is not None
    flaky = Flaky(["lost"])
    with Client(live_server.url, live_server.token, transport=flaky, backoff=0.01) as client:
        client.heartbeat(worker_id="hb", role="inference")
        client.update_experiment("retried", psnr_db=31.0)
        assert client.batch([{"id": "x1"}]) == 1
    assert flaky.sent[:2] == ["POST /api/v1/heartbeats"] * 2


def test_costs_are_not_retried(live_server: LiveServer) -> None:
    flaky = Flaky(["lost"])
    with (
        Client(live_server.url, live_server.token, transport=flaky, backoff=0.01) as client,
        pytest.raises(ClientError),
    ):
        client.cost("training", 5.0)
    assert flaky.sent == ["POST /api/v1/costs"]  # once: a retry could count it twice
    with Client(live_server.url, live_server.token) as client:
        assert client.dashboard()["summary"]["month_to_date_usd"] == 5.0


def test_retries_give_up(live_server: LiveServer) -> None:
    flaky = Flaky(["connect"] * 10)
    with (
        Client(
            live_server.url, live_server.token, transport=flaky, retries=2, backoff=0.01
        ) as client,
        pytest.raises(ClientError) as info,
    ):
        client.get_experiment("x")
    assert info.value.code == "unreachable"
    assert len(flaky.failures) == 7  # 1 try + 2 retries
