"""Ingest in-process: write tokens, body limits, rate limits, heartbeats and costs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.store import Store

pytestmark = pytest.mark.anyio

WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/experiments", {"name": "x"}),
    ("PUT", "/api/v1/experiments/e1", {"name": "x"}),
    ("PATCH", "/api/v1/experiments/e1", {"name": "x"}),
    ("POST", "/api/v1/experiments/batch", {"items": [{"id": "e2"}]}),
    ("POST", "/api/v1/heartbeats", {"worker_id": "w", "role": "training"}),
    ("POST", "/api/v1/costs", {"component": "other", "amount_usd": 1}),
]


def store_of(app: FastAPI) -> Store:
    st: Store = app.state.codecdash.store
    return st


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/v1/dashboard")
    assert r.status_code == 200
    return dict(r.json())


# -- write tokens --------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), WRITES)
async def test_writes_need_a_valid_write_token(
    app: FastAPI,
    client: httpx.AsyncClient,
    write_token: str,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    version = store_of(app).version()
    for authorization in (
        None,
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "token",
        "Bearer cdt_not-a-real-token",
        f"Bearer {write_token}x",
    ):
        headers = {} if authorization is None else {"Authorization": authorization}
        r = await client.request(method, path, json=body, headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    assert store_of(app).version() == version


async def test_a_valid_token_writes_everywhere(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    expected = [201, 201, 200, 200, 202, 201]
    for (method, path, body), status in zip(WRITES, expected, strict=True):
        r = await client.request(method, path, json=body, headers=auth)
        assert r.status_code == status, (method, path, r.text)
    # the scheme is case-insensitive
    r = await client.post(
        "/api/v1/costs",
        json={"component": "other", "amount_usd": 1},
        headers={"Authorization": auth["Authorization"].replace("Bearer", "bearer")},
    )
    assert r.status_code == 201


async def test_revoked_and_read_tokens_cannot_write(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    store = store_of(app)
    token = store.create_token("soon-revoked")
    reader = store.create_token("reader", "read")
    body = {"worker_id": "w", "role": "training"}
    r = await client.post(
        "/api/v1/heartbeats", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 202
    assert store.revoke_token("soon-revoked")
    r = await client.post(
        "/api/v1/heartbeats", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert_error(r, 401)
    r = await client.post(
        "/api/v1/heartbeats", json=body, headers={"Authorization": f"Bearer {reader}"}
    )
    assert_error(r, 401)


async def test_tokens_are_never_logged_or_echoed(
    client: httpx.AsyncClient, write_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bogus = "cdt_" + "A" * 43
    for token in (write_token, bogus):
        headers = {"Authorization": f"Bearer {token}"}
        responses = [
            await client.post("/api/v1/experiments", json={"name": "x"}, headers=headers),
            await client.post("/api/v1/experiments", json={"psnr_db": "x"}, headers=headers),
            await client.post("/api/v1/heartbeats", json={}, headers=headers),
            await client.get("/api/v1/dashboard", headers=headers),
        ]
        for r in responses:
            assert token not in r.text
            assert all(token not in v for v in r.headers.values())
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    assert write_token not in logged and bogus not in logged
    assert write_token.removeprefix("cdt_") not in logged


async def test_write_rate_limit_answers_429_with_retry_after(
    make_app: Any, settings: Settings
) -> None:
    app = await make_app(settings.model_copy(update={"rate_limit_per_minute": 3}))
    token = store_of(app).create_token("busy")
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        body = {"worker_id": "w", "role": "training"}
        for _ in range(3):
            r = await client.post("/api/v1/heartbeats", json=body, headers=headers)
            assert r.status_code == 202
        version = store_of(app).version()
        r = await client.post("/api/v1/heartbeats", json=body, headers=headers)
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert store_of(app).version() == version
        # reads are not limited
        for _ in range(5):
            assert (await client.get("/api/v1/experiments")).status_code == 200


# -- body limits and content types ---------------------------------------------------------
MIB = 1024 * 1024


async def test_a_body_over_4_mib_is_413_before_parsing(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    version = store_of(app).version()
    # not even JSON: the size is refused before anything looks at the content
    big = b"{" + b"x" * (4 * MIB)
    for path in ("/api/v1/experiments", "/api/v1/experiments/batch", "/api/v1/costs"):
        r = await client.post(
            path, content=big, headers={**auth, "content-type": "application/json"}
        )
        assert_error(r, 413, "too_large")

    # the same without a Content-Length (chunked): counted as it arrives
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b" " * MIB

    r = await client.post(
        "/api/v1/experiments/batch",
        content=chunks(),
        headers={**auth, "content-type": "application/json"},
    )
    assert_error(r, 413, "too_large")
    assert store_of(app).version() == version


async def test_a_body_just_under_4_mib_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    items = [{"id": f"big{i}", "error": "e" * 4000} for i in range(1000)]
    body = httpx.Request("POST", "/", json={"items": items}).content
    assert 4 * MIB - 200_000 < len(body) <= 4 * MIB
    r = await client.post(
        "/api/v1/experiments/batch",
        content=body,
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json() == {"accepted": 1000}


async def test_write_bodies_must_be_json(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    version = store_of(app).version()
    r = await client.post(
        "/api/v1/experiments",
        content=b"name=x",
        headers={**auth, "content-type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 415, "unsupported_media_type")
    r = await client.post(
        "/api/v1/experiments",
        content=b"{nope",
        headers={**auth, "content-type": "application/json"},
    )
    assert_error(r, 422)
    r = await client.post(
        "/api/v1/heartbeats",
        content=b"[1, 2]",
        headers={**auth, "content-type": "application/json"},
    )
    assert_error(r, 422)
    assert store_of(app).version() == version


async def test_non_finite_numbers_are_422(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    version = store_of(app).version()
    bodies = [
        ("/api/v1/experiments", b'{"psnr_db": %s}'),
        ("/api/v1/experiments/batch", b'{"items": [{"id": "a", "cost_usd": %s}]}'),
        ("/api/v1/heartbeats", b'{"worker_id": "w", "role": "training", "fps": %s}'),
        ("/api/v1/costs", b'{"component": "other", "amount_usd": %s}'),
        ("/api/v1/experiments", b'{"rd_points": [{"bitrate_kbps": %s, "psnr_db": 30}]}'),
    ]
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        for path, template in bodies:
            r = await client.post(
                path,
                content=template.replace(b"%s", literal),
                headers={**auth, "content-type": "application/json"},
            )
            assert_error(r, 422)
    assert store_of(app).version() == version


# -- heartbeats ----------------------------------------------------------------------------
async def test_heartbeat_is_accepted_and_shows_in_the_snapshot(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = await snapshot(client)
    assert before["infrastructure"]["orchestrator"]["status"] == "unknown"
    beats = [
        {"worker_id": "orch", "role": "orchestrator", "cpu_pct": 12.5, "mem_pct": 40.0},
        {
            "worker_id": "t1",
            "role": "training",
            "spot": True,
            "queue_depth": 9,
            "instance_type": "g5.xlarge",
            "hourly_cost_usd": 1.006,
            "gpu_util_pct": 97.0,
        },
        {"worker_id": "t2", "role": "training", "spot": False, "at": ago(60)},
        {"worker_id": "t3", "role": "training", "spot": True, "at": ago(100)},
        {
            "worker_id": "i1",
            "role": "inference",
            "fps": 41.5,
            "queue_depth": 2,
            "extra": {"gpus": [{"util": 50}]},
        },
    ]
    for beat in beats:
        r = await client.post("/api/v1/heartbeats", json=beat, headers=auth)
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": 1}
    infra = (await snapshot(client))["infrastructure"]
    orch = infra["orchestrator"]
    assert orch["status"] == "ok" and orch["cpu_pct"] == 12.5 and orch["mem_pct"] == 40.0
    seen = datetime.fromisoformat(orch["last_seen"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - seen).total_seconds()) < 30  # `at` defaults to now
    assert infra["training_workers"]["active"] == 2
    assert infra["training_workers"]["spot_pct"] == 50.0
    assert infra["training_workers"]["queue_depth"] == 9
    assert infra["inference_workers"] == {
        **infra["inference_workers"],
        "active": 1,
        "queue_depth": 2,
        "fps": 41.5,
    }


async def test_orchestrator_goes_down_when_silent(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        "/api/v1/heartbeats",
        headers=auth,
        json={"worker_id": "o", "role": "orchestrator", "at": ago(120)},
    )
    assert r.status_code == 202
    assert (await snapshot(client))["infrastructure"]["orchestrator"]["status"] == "down"
    r = await client.post(
        "/api/v1/heartbeats",
        headers=auth,
        json={"worker_id": "o", "role": "orchestrator", "status": "degraded"},
    )
    assert (await snapshot(client))["infrastructure"]["orchestrator"]["status"] == "degraded"


BAD_HEARTBEATS: list[dict[str, Any]] = [
    {},
    {"role": "training"},
    {"worker_id": "w"},
    {"worker_id": "w", "role": "janitor"},
    {"worker_id": "w w", "role": "training"},
    {"worker_id": "w" * 129, "role": "training"},
    {"worker_id": "w", "role": "training", "status": "fine"},
    {"worker_id": "w", "role": "training", "cpu_pct": 101},
    {"worker_id": "w", "role": "training", "queue_depth": -1},
    {"worker_id": "w", "role": "training", "queue_depth": 1.5},
    {"worker_id": "w", "role": "training", "hourly_cost_usd": -0.1},
    {"worker_id": "w", "role": "training", "spot": "perhaps"},
    {"worker_id": "w", "role": "training", "at": "yesterday"},
    {"worker_id": "w", "role": "training", "surprise": 1},
    {"worker_id": "w", "role": "training", "extra": {"blob": "x" * 20_000}},
]


async def test_bad_heartbeats_are_422_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    version = store_of(app).version()
    for body in BAD_HEARTBEATS:
        r = await client.post("/api/v1/heartbeats", json=body, headers=auth)
        assert_error(r, 422)
    assert store_of(app).version() == version


# -- costs ---------------------------------------------------------------------------------
async def test_costs_one_or_many_add_to_month_to_date(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    s = (await snapshot(client))["summary"]
    assert s["month_to_date_usd"] == 0
    r = await client.post(
        "/api/v1/costs",
        headers=auth,
        json={"component": "storage", "amount_usd": 12.5, "description": "S3", "source": "aws-cur"},
    )
    assert r.status_code == 201 and r.json() == {"accepted": 1}
    r = await client.post(
        "/api/v1/costs",
        headers=auth,
        json={
            "items": [
                {"component": "training", "amount_usd": 100},
                {"component": "training", "amount_usd": 20.25},
                {"component": "inference", "amount_usd": 0},
            ]
        },
    )
    assert r.status_code == 201 and r.json() == {"accepted": 3}
    snap = await snapshot(client)
    assert snap["summary"]["month_to_date_usd"] == 132.75
    assert snap["summary"]["forecast_month_usd"] >= 132.75
    assert snap["cost_breakdown"] == [
        {"component": "training", "usd": 120.25},
        {"component": "storage", "usd": 12.5},
    ]


async def test_worker_time_accrues_as_cost(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for seconds in (60, 0):
        r = await client.post(
            "/api/v1/heartbeats",
            headers=auth,
            json={
                "worker_id": "gpu",
                "role": "inference",
                "hourly_cost_usd": 3.6,
                "at": ago(seconds),
            },
        )
        assert r.status_code == 202
    snap = await snapshot(client)
    by = {c["component"]: c["usd"] for c in snap["cost_breakdown"]}
    assert by["inference"] == pytest.approx(0.06, abs=0.01)


BAD_COSTS: list[dict[str, Any]] = [
    {},
    {"component": "gpus", "amount_usd": 1},
    {"component": "training"},
    {"component": "training", "amount_usd": -1},
    {"component": "training", "amount_usd": "ten"},
    {"component": "training", "amount_usd": 1, "at": "later"},
    {"component": "training", "amount_usd": 1, "description": "d" * 501},
    {"component": "training", "amount_usd": 1, "bonus": True},
    {"items": [{"component": "training", "amount_usd": 1}, {"component": "x"}]},
    {"items": [{"component": "other", "amount_usd": 1}] * 1001},
    {"items": "all"},
]


async def test_bad_costs_are_422_and_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    version = store_of(app).version()
    for body in BAD_COSTS:
        assert_error(await client.post("/api/v1/costs", json=body, headers=auth), 422)
    assert store_of(app).version() == version
