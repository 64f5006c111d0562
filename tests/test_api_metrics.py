"""Training curves over HTTP in-process: logging points (one experiment and many), the
downsampled curves and the raw CSV, validation, and the event stream's `metrics` events."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.curve_rules import MAX_POINTS_PER_REQUEST, MAX_STEP
from codecdash.store import Store
from conftest import writes

pytestmark = pytest.mark.anyio
URL = "/api/v1/experiments/run/metrics"


@pytest.fixture
async def run(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    r = await client.put("/api/v1/experiments/run", json={"status": "running"}, headers=auth)
    assert r.status_code == 201
    return "run"


def steps(first: int, n: int, **values: Any) -> list[dict[str, Any]]:
    return [
        {"step": s, "values": values or {"loss": 1.0 / (s + 1)}} for s in range(first, first + n)
    ]


async def test_logged_points_come_back_as_curves(
    client: httpx.AsyncClient, auth: dict[str, str], run: str
) -> None:
    body = {
        "points": [
            {"step": 0, "at": "2026-01-01T00:00:00Z", "values": {"loss": 2.5, "lr": 0.001}},
            {"step": 1, "at": "2026-01-01T00:00:01.5Z", "values": {"loss": "NaN"}},
            {"step": 2, "values": {"loss": "Infinity", "bpp": "-Infinity"}},
            {"step": 3.0, "values": {"loss": 7}},  # JSON integers: 3.0 is 3, 7 is 7.0
        ]
    }
    r = await client.post(URL, json=body, headers=auth)
    assert (r.status_code, r.json()) == (202, {"accepted": 6})
    r = await client.get(URL)
    assert r.status_code == 200
    curves = r.json()
    assert curves["names"] == ["loss", "bpp", "lr"] and curves["total_points"] == 6
    loss = curves["series"]["loss"]
    assert loss["step"] == [0, 1, 2, 3] and loss["value"] == [2.5, "NaN", "Infinity", 7.0]
    assert loss["time"][:2] == [1767225600.0, 1767225601.5]
    assert (loss["bucket_steps"], loss["points"]) == (1, 4) and "min" not in loss
    assert curves["series"]["bpp"]["value"] == ["-Infinity"]
    # downsampled: buckets, with min and max
    r = await client.get(URL, params={"names": "loss", "max_points": 2})
    loss = r.json()["series"]["loss"]
    assert loss == {
        "step": [1, 3],
        "value": ["NaN", 7.0],
        "time": loss["time"],
        "min": [2.5, 7.0],
        "max": [2.5, "Infinity"],
        "bucket_steps": 2,
        "points": 4,
    }
    # live updates: only what is new
    r = await client.get(URL, params={"after_step": 2})
    assert r.json()["series"]["loss"]["step"] == [3] and r.json()["series"]["lr"]["step"] == []


async def test_the_raw_points_as_csv(
    client: httpx.AsyncClient, auth: dict[str, str], run: str
) -> None:
    points = [*steps(0, 1500, loss=0.5), {"step": 7, "values": {"loss": "NaN", "lr": 0.1}}]
    assert (await client.post(URL, json={"points": points}, headers=auth)).status_code == 202
    for request in (
        client.get(URL, params={"format": "csv"}),
        client.get(URL, headers={"Accept": "text/csv"}),
    ):
        r = await request
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == 'attachment; filename="run-metrics.csv"'
        lines = r.text.splitlines()
        assert lines[0] == "metric,step,time,value" and len(lines) == 1 + 1500 + 1
        assert lines[8].startswith("loss,7,") and lines[8].endswith(",NaN")
        assert lines[-1].startswith("lr,7,20") and lines[-1].endswith("Z,0.1")
    r = await client.get(URL, params={"format": "csv", "names": "lr"})
    assert len(r.text.splitlines()) == 2
    assert_error(await client.get("/api/v1/experiments/nope/metrics?format=csv"), 404)


async def test_several_experiments_in_one_request(
    client: httpx.AsyncClient, auth: dict[str, str], run: str
) -> None:
    await client.put("/api/v1/experiments/other", json={"status": "running"}, headers=auth)
    body = {
        "items": [
            {"experiment_id": "run", "points": steps(0, 10)},
            {"experiment_id": "other", "points": steps(0, 5, psnr_db=30.5)},
        ]
    }
    r = await client.post("/api/v1/metrics", json=body, headers=auth)
    assert (r.status_code, r.json()) == (202, {"accepted": 15})
    assert (await client.get(URL)).json()["total_points"] == 10
    other = (await client.get("/api/v1/experiments/other/metrics")).json()
    assert other["series"]["psnr_db"]["value"] == [30.5] * 5
    # all or nothing: one unknown experiment and nothing is stored
    body["items"].append({"experiment_id": "ghost", "points": steps(100, 1)})
    body["items"][0]["points"] = steps(50, 3)
    error = assert_error(await client.post("/api/v1/metrics", json=body, headers=auth), 404)
    assert "ghost" in error["message"]
    assert (await client.get(URL)).json()["total_points"] == 10


@pytest.mark.parametrize(
    ("point", "where"),
    [
        ({"step": -1, "values": {"loss": 1}}, "points.0.step"),
        ({"step": MAX_STEP + 1, "values": {"loss": 1}}, "points.0.step"),
        ({"step": 1.5, "values": {"loss": 1}}, "points.0.step"),
        ({"step": "1", "values": {"loss": 1}}, "points.0.step"),
        ({"step": 1, "values": {}}, "points.0.values"),
        ({"step": 1, "values": {"bad name": 1}}, "points.0.values.bad name.[key]"),
        ({"step": 1, "values": {"/loss": 1}}, "points.0.values./loss.[key]"),
        ({"step": 1, "values": {"x" * 101: 1}}, "points.0.values"),
        ({"step": 1, "values": {"loss": "nan"}}, "points.0.values.loss"),
        ({"step": 1, "values": {"loss": True}}, "points.0.values.loss"),
        ({"step": 1, "values": {"loss": None}}, "points.0.values.loss"),
        ({"step": 1, "values": {f"m{i}": 1 for i in range(101)}}, "points.0.values"),
        ({"step": 1, "at": "yesterday", "values": {"loss": 1}}, "points.0.at"),
        ({"step": 1, "values": {"loss": 1}, "epoch": 3}, "points.0.epoch"),
    ],
)
async def test_invalid_points_are_422_and_store_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], run: str, point: dict[str, Any], where: str
) -> None:
    good = {"step": 0, "values": {"loss": 1.0}}
    error = assert_error(
        await client.post(URL, json={"points": [good, point]}, headers=auth), 422, "invalid"
    )
    assert error["message"].startswith(where.replace("0", "1", 1)), error["message"]
    assert (await client.get(URL)).json()["total_points"] == 0


async def test_request_bounds(client: httpx.AsyncClient, auth: dict[str, str], run: str) -> None:
    too_many = {"points": steps(0, MAX_POINTS_PER_REQUEST + 1)}
    error = assert_error(await client.post(URL, json=too_many, headers=auth), 422)
    assert "at most 10000 items" in error["message"]
    assert_error(await client.post(URL, content=b"{", headers=auth), 422)
    assert_error(await client.post(URL, json={"points": steps(0, 1)}), 401)
    r = await client.post(
        "/api/v1/experiments/ghost/metrics", json={"points": steps(0, 1)}, headers=auth
    )
    assert "no experiment 'ghost'" in assert_error(r, 404)["message"]
    # an empty list is a no-op
    r = await client.post(URL, json={"points": []}, headers=auth)
    assert (r.status_code, r.json()) == (202, {"accepted": 0})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("names=bad%20name", "names: 'bad name' is not a metric name"),
        ("names=loss,,bpp", "names: '' is not a metric name"),
        ("names=" + ",".join(f"m{i}" for i in range(21)), "names: at most 20 metric names"),
        ("max_points=0", "query.max_points:"),
        ("max_points=5001", "query.max_points:"),
        ("after_step=-1", "query.after_step:"),
        ("format=xml", "query.format:"),
    ],
)
async def test_invalid_reads_are_422(
    client: httpx.AsyncClient, run: str, query: str, message: str
) -> None:
    error = assert_error(await client.get(f"{URL}?{query}"), 422)
    assert error["message"].startswith(message), error["message"]


async def test_reads_of_an_unknown_experiment_are_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/experiments/nope/metrics"), 404, "not_found")


async def test_the_experiment_answer_carries_its_training_summary(
    client: httpx.AsyncClient, auth: dict[str, str], run: str
) -> None:
    assert (await client.get("/api/v1/experiments/run")).json()["training"] is None
    await client.post(
        URL, json={"points": [*steps(0, 20), {"step": 20, "values": {"loss": "NaN"}}]}, headers=auth
    )
    training = (await client.get("/api/v1/experiments/run")).json()["training"]
    assert training == {
        "step": 20,
        "at": training["at"],
        "loss_metric": "loss",
        "loss": "NaN",
        "non_finite_step": 20,
        "alert": "non_finite_loss",
    }
    listed = (await client.get("/api/v1/experiments")).json()["items"][0]
    assert listed["training"] == training
    recent = (await client.get("/api/v1/dashboard")).json()["recent_experiments"][0]
    assert recent["training"]["alert"] == "non_finite_loss"
    # a fetched experiment sent back as is: its derived fields are ignored
    fetched = (await client.get("/api/v1/experiments/run")).json()
    r = await client.put("/api/v1/experiments/run", json=fetched, headers=auth)
    assert r.status_code == 200 and r.json()["training"] == training
    r = await client.patch("/api/v1/experiments/run", json={"name": "renamed"}, headers=auth)
    assert r.status_code == 200 and r.json()["training"] == training


async def test_metrics_events_and_an_untouched_snapshot(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], run: str, event_stream: Any
) -> None:
    async def data_version() -> str:
        # The ETag is the data version and a time bucket (a few seconds): only the first
        # part says whether the data changed, whatever the machine's speed.
        etag = (await client.get("/api/v1/dashboard")).headers["etag"]
        return str(etag).strip('"').rpartition("-")[0]

    version = await data_version()
    async with event_stream(app) as events:
        assert (await events.next_event(1.0)).event == "snapshot"
        for first in (0, 10, 20):
            r = await client.post(URL, json={"points": steps(first, 10)}, headers=auth)
            assert r.status_code == 202
            message = await events.next_event(1.0)
            assert message.event == "metrics"
            assert orjson.loads(message.data or "") == {"experiments": {"run": first + 9}}
        # a metrics write leaves the snapshot (and its ETag) alone
        assert await data_version() == version
        # ...unless the table's mark changes: then a snapshot event too
        await client.post(
            URL, json={"points": [{"step": 30, "values": {"loss": "NaN"}}]}, headers=auth
        )
        kinds = {(await events.next_event(1.0)).event, (await events.next_event(1.0)).event}
        assert kinds == {"metrics", "snapshot"}
        assert await data_version() != version


async def test_writes_by_another_process_reach_the_stream_as_metrics_events(
    make_app: Any, settings: Settings, event_stream: Any
) -> None:
    app = await make_app(background=True)
    other = Store(settings.database_url)
    try:
        from codecdash.curve_models import MetricPoint
        from codecdash.models import ExperimentIn

        writes(other).create(ExperimentIn(id="elsewhere", status="running"))
        async with event_stream(app) as events:
            assert (await events.next_event(2.0)).event == "snapshot"
            # The poller starts from the newest write it finds: write until it reports one.
            for step in range(41, 81):
                point = MetricPoint.model_validate({"step": step, "values": {"loss": 0.5}})
                await asyncio.to_thread(other.log_metrics, [("elsewhere", [point])])
                try:
                    while (message := await events.next_event(1.0)).event == "snapshot":
                        pass  # creating the experiment changed the snapshot
                except TimeoutError:
                    continue
                assert message.event == "metrics"
                assert orjson.loads(message.data or "") == {"experiments": {"elsewhere": step}}
                break
            else:
                raise AssertionError("no metrics event for another process' writes")
    finally:
        other.close()
