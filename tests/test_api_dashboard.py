"""The read side in-process: the snapshot (shape, ETag, invalidation), events, metrics,
health, OpenAPI, private mode and a failing source."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.api import dashboard as dashboard_api
from codecdash.config import Settings
from codecdash.models import ExperimentIn
from codecdash.snapshot_models import Snapshot
from codecdash.sources.base import FieldInfo
from codecdash.sources.local import local_sources
from codecdash.store import Store
from conftest import writes

pytestmark = pytest.mark.anyio

# The Snapshot of docs/api.md, key by key. A dict is an object with at least these keys; a
# one-element list is a list of such objects.
EXPERIMENT = {
    "id": None,
    "name": None,
    "status": None,
    "created_at": None,
    "started_at": None,
    "finished_at": None,
    "duration_s": None,
    "bitrate_reduction_pct": None,
    "psnr_db": None,
    "ms_ssim": None,
    "bpp": None,
    "bitrate_kbps": None,
    "cost_usd": None,
    "worker_id": None,
    "params": None,
    "tags": None,
    "error": None,
    "rd_points": None,
    "bd_rate_pct": None,
    "bd_rate_anchor": None,
}
SNAPSHOT_SHAPE: dict[str, Any] = {
    "generated_at": None,
    "demo": None,
    "targets": {"compression_pct": None, "psnr_db": None, "monthly_budget_usd": None},
    "summary": {
        "total_experiments": None,
        "running": None,
        "completed": None,
        "failed": None,
        "success_rate": None,
        "experiments_24h": None,
        "best_compression": {"value_pct": None, "experiment_id": None},
        "best_quality": {"psnr_db": None, "experiment_id": None},
        "month_to_date_usd": None,
        "forecast_month_usd": None,
    },
    "infrastructure": {
        "orchestrator": {"status": None, "cpu_pct": None, "mem_pct": None, "last_seen": None},
        "training_workers": {"active": None, "queue_depth": None, "spot_pct": None},
        "inference_workers": {"active": None, "queue_depth": None, "fps": None},
        "storage": {"objects": None, "bytes": None, "db_items": None},
    },
    "recent_experiments": [EXPERIMENT],
    "cost_breakdown": [{"component": None, "usd": None}],
    "progress": {
        "compression": [{"t": None, "best_pct": None}],
        "quality": [{"t": None, "best_psnr_db": None}],
    },
    "sources": [{"name": None, "ok": None, "error": None, "as_of": None}],
}


def missing_keys(spec: Any, data: Any, where: str = "") -> list[str]:
    """Paths of the keys the spec names that the data lacks (null objects are allowed)."""
    out: list[str] = []
    if isinstance(spec, dict):
        if data is None and where.rsplit(".", 1)[-1] in ("best_compression", "best_quality"):
            return out
        if not isinstance(data, dict):
            return [f"{where or '.'} (not an object)"]
        for key, sub in spec.items():
            if key not in data:
                out.append(f"{where}.{key}")
            else:
                out += missing_keys(sub, data[key], f"{where}.{key}")
    elif isinstance(spec, list):
        if not isinstance(data, list):
            return [f"{where} (not a list)"]
        for i, item in enumerate(data):
            out += missing_keys(spec[0], item, f"{where}[{i}]")
    return out


def store_of(app: FastAPI) -> Store:
    st: Store = app.state.codecdash.store
    return st


async def fill(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    """One of everything, so every list in the snapshot has items."""
    now = datetime.now(UTC)
    items = [
        {
            "id": "done-1",
            "name": "ssf",
            "status": "completed",
            "psnr_db": 34.2,
            "bitrate_reduction_pct": 61.5,
            "created_at": (now - timedelta(hours=2)).isoformat(),
            "finished_at": (now - timedelta(hours=1)).isoformat(),
            "rd_points": [{"bitrate_kbps": 500.0, "psnr_db": 33.0}],
        },
        {"id": "failed-1", "status": "failed", "error": "CUDA out of memory"},
        {"id": "run-1", "status": "running", "psnr_db": 30.0, "worker_id": "t1"},
    ]
    r = await client.post("/api/v1/experiments/batch", json={"items": items}, headers=auth)
    assert r.status_code == 200
    for beat in (
        {"worker_id": "orch", "role": "orchestrator", "cpu_pct": 20.0, "mem_pct": 50.0},
        {
            "worker_id": "t1",
            "role": "training",
            "spot": True,
            "queue_depth": 3,
            "hourly_cost_usd": 1.2,
        },
        {"worker_id": "i1", "role": "inference", "fps": 30.0, "queue_depth": 1},
    ):
        assert (await client.post("/api/v1/heartbeats", json=beat, headers=auth)).status_code == 202
    r = await client.post(
        "/api/v1/costs", json={"component": "storage", "amount_usd": 4.2}, headers=auth
    )
    assert r.status_code == 201


# -- the snapshot ---------------------------------------------------------------------
async def test_empty_snapshot_has_every_contract_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    snap = r.json()
    assert missing_keys(SNAPSHOT_SHAPE, snap) == []
    Snapshot.model_validate(snap)
    assert snap["demo"] is False
    assert snap["targets"] == {
        **snap["targets"],
        "compression_pct": 90.0,
        "psnr_db": 35.0,
        "monthly_budget_usd": 5000.0,
    }
    s = snap["summary"]
    assert (s["total_experiments"], s["running"], s["completed"], s["failed"]) == (0, 0, 0, 0)
    assert s["success_rate"] is None
    assert s["best_compression"] is None and s["best_quality"] is None
    assert snap["infrastructure"]["orchestrator"]["status"] == "unknown"
    assert snap["recent_experiments"] == [] and snap["cost_breakdown"] == []
    assert snap["progress"] == {**snap["progress"], "compression": [], "quality": []}
    assert {row["name"] for row in snap["sources"]} and all(row["ok"] for row in snap["sources"])
    generated = datetime.fromisoformat(snap["generated_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - generated).total_seconds()) < 60


async def test_full_snapshot_has_every_contract_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await fill(client, auth)
    snap = (await client.get("/api/v1/dashboard")).json()
    assert missing_keys(SNAPSHOT_SHAPE, snap) == []
    Snapshot.model_validate(snap)
    for name in ("recent_experiments", "cost_breakdown"):
        assert snap[name], name
    assert snap["progress"]["compression"] and snap["progress"]["quality"]
    s = snap["summary"]
    assert s["success_rate"] == 0.5
    assert s["best_compression"] == {
        **s["best_compression"],
        "value_pct": 61.5,
        "experiment_id": "done-1",
        "per": "experiment",
    }
    assert s["best_quality"] == {**s["best_quality"], "psnr_db": 34.2, "experiment_id": "done-1"}
    done = next(e for e in snap["recent_experiments"] if e["id"] == "done-1")
    assert done["rd_points"][0]["bitrate_kbps"] == 500.0
    assert snap["infrastructure"]["orchestrator"]["status"] == "ok"
    assert snap["infrastructure"]["training_workers"]["spot_pct"] == 100.0


async def test_demo_and_targets_follow_the_settings(make_app: Any, settings: Settings) -> None:
    app = await make_app(
        settings.model_copy(
            update={
                "demo": True,
                "target_compression_pct": 80.0,
                "target_psnr_db": 37.5,
                "monthly_budget_usd": 1234.0,
            }
        )
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        snap = (await client.get("/api/v1/dashboard")).json()
    assert snap["demo"] is True
    assert (
        snap["targets"]["compression_pct"],
        snap["targets"]["psnr_db"],
        snap["targets"]["monthly_budget_usd"],
    ) == (80.0, 37.5, 1234.0)


async def test_etag_and_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/api/v1/dashboard")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert "max-age=0" in first.headers["cache-control"]
    again = await client.get("/api/v1/dashboard", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    listed = await client.get("/api/v1/dashboard", headers={"If-None-Match": f'"nope", {etag}'})
    assert listed.status_code == 304
    other = await client.get("/api/v1/dashboard", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.json()["summary"] == first.json()["summary"]


async def test_a_write_during_a_build_changes_the_next_etag() -> None:
    """A build that read the data before a write landed must not carry the write's version:
    otherwise the next, correct build has the same ETag and open pages keep the old data."""
    from codecdash.api.cache import SnapshotCache
    from codecdash.events import ChangeFeed

    version = 1
    feed = ChangeFeed()

    class Builder:
        async def build(self) -> dict[str, object]:
            nonlocal version
            seen = version
            if version == 1:  # a write lands after the data was read, before the build ends
                version += 1
                feed.generation += 1
            return {"seen": seen}

    cache = SnapshotCache(Builder(), feed, lambda: version, ttl=3600)  # type: ignore[arg-type]
    first = await cache.get()
    second = await cache.get()
    assert first.data != second.data
    assert first.etag != second.etag, "two snapshots with different data share one ETag"


async def test_every_write_invalidates_the_snapshot(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    writes = [
        ("POST", "/api/v1/experiments", {"id": "w1", "status": "completed", "psnr_db": 30.0}),
        ("PUT", "/api/v1/experiments/w1", {"status": "completed", "psnr_db": 31.0}),
        ("PATCH", "/api/v1/experiments/w1", {"psnr_db": 32.0}),
        (
            "POST",
            "/api/v1/experiments/batch",
            {"items": [{"id": "w1", "status": "completed", "psnr_db": 33.0}]},
        ),
        (
            "POST",
            "/api/v1/heartbeats",
            {"worker_id": "o", "role": "orchestrator", "status": "degraded"},
        ),
        ("POST", "/api/v1/costs", {"component": "other", "amount_usd": 2.5}),
    ]
    r = await client.get("/api/v1/dashboard")
    etag = r.headers["etag"]
    for method, path, body in writes:
        w = await client.request(method, path, json=body, headers=auth)
        assert w.status_code < 300, w.text
        r = await client.get("/api/v1/dashboard", headers={"If-None-Match": etag})
        assert r.status_code == 200, f"{method} {path} left the cached snapshot in place"
        assert r.headers["etag"] != etag
        etag = r.headers["etag"]
    snap = r.json()
    assert snap["summary"]["best_quality"]["psnr_db"] == 33.0
    assert snap["infrastructure"]["orchestrator"]["status"] == "degraded"
    assert snap["summary"]["month_to_date_usd"] == 2.5


async def test_recent_experiments_newest_first_at_most_twenty(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    items = [
        {"id": f"r{i:02d}", "created_at": (now - timedelta(minutes=i)).isoformat()}
        for i in range(25)
    ]
    await client.post("/api/v1/experiments/batch", json={"items": items}, headers=auth)
    recent = (await client.get("/api/v1/dashboard")).json()["recent_experiments"]
    assert [e["id"] for e in recent] == [f"r{i:02d}" for i in range(20)]


# -- events ------------------------------------------------------------------------------
async def test_events_within_a_second_of_each_change(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], event_stream: Any
) -> None:
    async with event_stream(app) as events:
        assert events.status == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        assert events.headers["cache-control"] == "no-cache"
        hello = await events.next(1.0)
        assert hello.retry is not None and hello.retry >= 1000
        first = await events.next_event(1.0)  # the current state, at once
        assert first.event == "snapshot"
        for i in range(3):
            r = await client.put(f"/api/v1/experiments/ev{i}", json={"name": "x"}, headers=auth)
            assert r.status_code == 201  # committed: the event is due within a second
            message = await events.next_event(1.0)
            assert message.event == "snapshot"
            assert orjson.loads(message.data or "")["changed"] is True
            assert int(message.id or 0) > int(first.id or 0)
    assert app.state.codecdash.feed.clients == 0  # the subscription ended with the client


async def test_events_send_keep_alives(
    app: FastAPI, event_stream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard_api, "KEEPALIVE_SECONDS", 0.2)
    async with event_stream(app) as events:
        await events.next_event(1.0)
        comment = await events.next(1.0)
        assert comment.event is None and comment.data is None
        assert "keep-alive" in comment.comments
        assert "keep-alive" in (await events.next(1.0)).comments


async def test_too_many_event_clients_is_503(
    make_app: Any, settings: Settings, event_stream: Any
) -> None:
    app = await make_app(settings.model_copy(update={"max_event_clients": 1}))
    async with event_stream(app) as first:
        assert first.status == 200
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            r = await c.get("/api/v1/events")
        assert_error(r, 503)
        assert "retry-after" in r.headers


async def test_writes_by_another_process_reach_the_stream(
    make_app: Any, settings: Settings, event_stream: Any
) -> None:
    """SQLite: the app polls the data version, so another writer's change is seen."""
    app = await make_app(background=True)
    other = Store(settings.database_url)
    try:
        async with event_stream(app) as events:
            await events.next_event(1.0)
            await asyncio.to_thread(writes(other).create, ExperimentIn(id="o1"))
            await events.next_event(2.0)  # polled twice a second
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            snap = (await c.get("/api/v1/dashboard")).json()
        assert [e["id"] for e in snap["recent_experiments"]] == ["o1"]
    finally:
        other.close()


# -- metrics -------------------------------------------------------------------------------
async def test_metrics_pass_promtool(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await fill(client, auth)
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for name in (
        "codecdash_experiments",
        "codecdash_cost_month_to_date_dollars",
        "codecdash_workers_active",
        "codecdash_orchestrator_up",
        "codecdash_best_psnr_decibels",
        "codecdash_budget_month_dollars",
    ):
        assert f"\n{name}" in "\n" + text, name
    assert 'codecdash_experiments{status="completed"} 1' in text
    await promtool_accepts(r.content)


async def test_metrics_of_an_empty_store_pass_promtool(client: httpx.AsyncClient) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    await promtool_accepts(r.content)


async def promtool_accepts(exposition: bytes) -> None:
    """`promtool check metrics` exits 0 and says nothing (no lint complaint either)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (scripts/bootstrap installs it)")
        pytest.skip("promtool is not installed")
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=30,
    )
    said = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0 and not said.strip(), said


# -- health, page, OpenAPI -----------------------------------------------------------------
async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_the_page_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert_error(await client.get("/no-such-page"), 404)


# The public endpoints (docs/api.md's table).
PUBLIC_OPERATIONS = {
    ("get", "/api/v1/health"),
    ("get", "/api/v1/dashboard"),
    ("get", "/api/v1/experiments"),
    ("get", "/api/v1/experiments/{experiment_id}"),
    ("post", "/api/v1/experiments"),
    ("put", "/api/v1/experiments/{experiment_id}"),
    ("patch", "/api/v1/experiments/{experiment_id}"),
    ("post", "/api/v1/experiments/batch"),
    ("post", "/api/v1/heartbeats"),
    ("post", "/api/v1/costs"),
    ("get", "/api/v1/events"),
    ("get", "/metrics"),
}


async def test_openapi_documents_every_endpoint_with_examples(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    operations = {(m, p) for p, methods in doc["paths"].items() for m in methods}
    assert operations >= PUBLIC_OPERATIONS, PUBLIC_OPERATIONS - operations
    schemas = doc["components"]["schemas"]
    for name in (
        "Experiment",
        "ExperimentIn",
        "ExperimentBatch",
        "Heartbeat",
        "CostRecord",
        "Snapshot",
        "ErrorResponse",
    ):
        assert name in schemas, name

    def has_examples(schema: dict[str, Any], depth: int = 0) -> bool:
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        if "example" in schema or "examples" in schema:
            return True
        children = [
            *schema.get("anyOf", []),
            *schema.get("oneOf", []),
            *schema.get("properties", {}).values(),
        ]
        if "items" in schema:
            children.append(schema["items"])
        return depth < 4 and any(has_examples(c, depth + 1) for c in children)

    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            assert any(code.startswith("2") for code in op["responses"]), where
            if method in ("post", "put", "patch"):
                if "requestBody" in op:  # an action without a body (acknowledging) has none
                    body = op["requestBody"]["content"]["application/json"]
                    assert has_examples(body.get("schema", {})) or "examples" in body, where
                assert "401" in op["responses"] and "413" in op["responses"], where
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"].get("$ref", "")
                    assert ref.endswith("/ErrorResponse"), f"{where} {code} documents {ref}"


# -- private mode --------------------------------------------------------------------------
async def test_private_mode_needs_a_token_to_read(
    make_app: Any, settings: Settings, event_stream: Any
) -> None:
    app = await make_app(settings.model_copy(update={"private": True}))
    reader = store_of(app).create_token("reader", "read")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        for path in ("/api/v1/dashboard", "/api/v1/experiments", "/metrics", "/api/v1/events"):
            assert_error(await c.get(path), 401)
        r = await c.get("/api/v1/dashboard", headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 200
        assert "private" in r.headers["cache-control"]
        assert (await c.get("/api/v1/health")).status_code == 200
    async with event_stream(app, f"/api/v1/events?token={reader}") as events:
        assert events.status == 200
        assert (await events.next_event(1.0)).event == "snapshot"


# -- a failing source ------------------------------------------------------------------------
class FlakySource:
    name = "flaky.costs"
    sections = ("costs",)
    fields = {"month_to_date_usd": FieldInfo("test", "USD")}

    # Its own short timeout (the builder honours `timeout_s`), so the local sources keep
    # the default one and stay ok however loaded the machine is.
    timeout_s = 0.3

    def __init__(self) -> None:
        self.fail: str | None = None

    async def collect(self, now: float) -> dict[str, Any]:
        if self.fail == "hang":
            await asyncio.sleep(60)
        if self.fail:
            raise RuntimeError(self.fail)
        return {
            "costs": {
                "month_to_date_usd": 42.0,
                "forecast_month_usd": 99.0,
                "cost_breakdown": [{"component": "other", "usd": 42.0}],
            }
        }


async def test_a_failing_source_keeps_its_last_values(make_app: Any, settings: Settings) -> None:
    flaky = FlakySource()
    store = Store(settings.database_url)
    sources = [s for s in local_sources(store, settings) if s.name != "local.costs"]
    app = await make_app(settings, store=store, sources=[*sources, flaky])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:

        async def fresh() -> dict[str, Any]:
            app.state.codecdash.cache.invalidate()
            r = await c.get("/api/v1/dashboard")
            assert r.status_code == 200
            return dict(r.json())

        snap = await fresh()
        assert snap["summary"]["month_to_date_usd"] == 42.0
        for failure, error in (
            ("Cost Explorer throttled", "Cost Explorer throttled"),
            ("hang", "timed out"),
        ):
            flaky.fail = failure
            snap = await fresh()
            row = next(s for s in snap["sources"] if s["name"] == "flaky.costs")
            assert row["ok"] is False and error in row["error"]
            assert row["as_of"] is not None  # when it last answered
            assert snap["summary"]["month_to_date_usd"] == 42.0
            assert snap["cost_breakdown"] == [{"component": "other", "usd": 42.0}]
            assert all(s["ok"] for s in snap["sources"] if s["name"] != "flaky.costs")
            assert missing_keys(SNAPSHOT_SHAPE, snap) == []


# -- the guard in front of every route -----------------------------------------------------
async def test_unknown_host_names_are_refused(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/dashboard", headers={"Host": "evil.example"})
    assert_error(r, 400, "bad_host")
    for host in ("localhost", "127.0.0.1:8050", "[::1]:8050"):
        r = await client.get("/api/v1/health", headers={"Host": host})
        assert r.status_code == 200, host


async def test_security_headers_on_every_answer(client: httpx.AsyncClient) -> None:
    for path in ("/", "/api/v1/dashboard", "/api/v1/experiments/nope", "/metrics"):
        r = await client.get(path)
        assert "default-src 'self'" in r.headers["content-security-policy"], path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "server" not in r.headers, path


async def test_the_api_docs_page_runs_only_files_of_this_origin(client: httpx.AsyncClient) -> None:
    """Swagger UI is vendored and pinned: every script and style of /api/docs is a file this
    server serves (version in its name, licence beside it), nothing inline, no CDN, and the
    page has the site's one strict policy."""
    from codecdash.api.docs import SWAGGER_UI_VERSION, swagger_dir
    from codecdash.api.guard import CSP

    r = await client.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == CSP
    assert "//" not in r.text.replace("<!doctype", ""), "a URL of another origin"
    scripts = re.findall(r"<script(?:\s+src=\"([^\"]+)\")?\s*>(.*?)</script>", r.text, re.S)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', r.text)
    assert len(scripts) == 2 and styles
    for src, inline in scripts:
        assert src and not inline.strip(), "an inline script"
    for ref in [src for src, _ in scripts] + styles:
        asset = await client.get("/api/" + ref)  # relative to /api/docs
        assert asset.status_code == 200, ref
        assert "immutable" in asset.headers["cache-control"]
    assert SWAGGER_UI_VERSION in r.text
    shipped = {p.name for p in swagger_dir().iterdir()}
    assert f"swagger-ui-{SWAGGER_UI_VERSION}.LICENSE" in shipped
    assert f"swagger-ui-{SWAGGER_UI_VERSION}-bundle.js" in shipped
    assert (await client.get("/api/docs/../../etc/passwd")).status_code == 404
    assert (await client.get("/api/docs/nope.js")).status_code == 404
