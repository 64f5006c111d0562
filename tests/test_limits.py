"""What one write can do to everyone else, and what reaches the database raw.

- every stored JSON field is capped by list length and total bytes; times far in the future
  are refused (experiments, heartbeats, costs);
- the snapshot stays under 256 KB and a list page under 4 MiB whatever is written;
- a heartbeat from the future cannot pin a worker, nor hide its later real heartbeats
  (rows stored before times were checked included);
- forged cursors, LIKE wildcards and NUL bytes are 4xx on both databases, never 500.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.models import ExperimentIn
from codecdash.store import Store
from conftest import writes
from test_security import bearer, client_for

pytestmark = pytest.mark.anyio
API = "/api/v1"
MakeApp = Callable[..., Any]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# -- 3. caps on stored fields, and times from the future -----------------------------------
async def test_params_and_tags_are_capped_by_bytes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # strings of at most 10,000 characters each (the per-string limit); their sum is the cap
    fits = {"a": "x" * 8000, "b": "x" * (16 * 1024 - 8000 - 20)}
    r = await client.put(f"{API}/experiments/p1", json={"params": fits}, headers=auth)
    assert r.status_code == 201, r.text[:300]
    over = {"a": "x" * 8000, "b": "x" * (16 * 1024 - 8000)}
    error = assert_error(
        await client.put(f"{API}/experiments/p2", json={"params": over}, headers=auth), 422
    )
    assert "16 KiB" in error["message"]
    # 50 tags are fine; 50 tags of escaped control characters are not (bytes, not count)
    ok = [f"tag-{i}" for i in range(50)]
    assert (
        await client.put(f"{API}/experiments/t1", json={"tags": ok}, headers=auth)
    ).status_code == 201
    heavy = ["\x01" * 64 for _ in range(50)]
    error = assert_error(
        await client.put(f"{API}/experiments/t2", json={"tags": heavy}, headers=auth), 422
    )
    assert "4 KiB" in error["message"]
    # in batches and patches too
    r = await client.post(
        f"{API}/experiments/batch", json={"items": [{"id": "b", "params": over}]}, headers=auth
    )
    assert_error(r, 422)
    r = await client.patch(f"{API}/experiments/p1", json={"params": over}, headers=auth)
    assert_error(r, 422)
    assert (await client.get(f"{API}/experiments")).json()["total"] == 2


async def test_times_far_in_the_future_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    future = iso(time.time() + 3600)
    cases = [
        ("PUT", f"{API}/experiments/f1", {"created_at": future}),
        ("PUT", f"{API}/experiments/f1", {"status": "running", "started_at": future}),
        ("POST", f"{API}/experiments", {"status": "completed", "finished_at": future}),
        ("POST", f"{API}/experiments/batch", {"items": [{"created_at": "9999-12-31T00:00:00Z"}]}),
        ("POST", f"{API}/heartbeats", {"worker_id": "w", "role": "training", "at": future}),
        ("POST", f"{API}/costs", {"component": "training", "amount_usd": 1, "at": future}),
        (
            "POST",
            f"{API}/costs",
            {"items": [{"component": "other", "amount_usd": 1, "at": future}]},
        ),
    ]
    for method, url, body in cases:
        error = assert_error(await client.request(method, url, json=body, headers=auth), 422)
        assert "ahead of the server's clock" in error["message"], (url, error)
        assert "clock" in error["detail"][0]["msg"]
    r = await client.patch(f"{API}/experiments/none", json={"created_at": future}, headers=auth)
    assert_error(r, 422)
    # within the allowed skew (15 minutes by default) they pass
    soon = iso(time.time() + 120)
    r = await client.put(f"{API}/experiments/f2", json={"created_at": soon}, headers=auth)
    assert r.status_code == 201, r.text[:300]


async def test_the_allowed_skew_is_a_setting(make_app: MakeApp, tmp_path: Path) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "s.db"), max_future_seconds=0))
    token = app.state.codecdash.store.create_token("w")
    async with client_for(app) as c:
        r = await c.put(
            f"{API}/experiments/x",
            json={"created_at": iso(time.time() + 60)},
            headers=bearer(token),
        )
        assert_error(r, 422)


def worst_experiment(i: int, now: float) -> dict[str, Any]:
    """An experiment at every cap, in its most expensive spelling (escaped characters)."""
    return {
        "id": f"w{i:03d}-" + "x" * 120,
        "name": "\x01" * 200,
        "status": "completed",
        "created_at": iso(now - i),
        "finished_at": iso(now - i),
        "worker_id": "\x02" * 128,
        "params": {"k": "\x03" * 2700},  # 16 KiB of JSON, escaped
        "tags": ["\x04" * 10 for _ in range(10)],
        "error": "\x05" * 10_000,
        "rd_points": [
            {
                "bitrate_kbps": 1000.123456789 + j,
                "bpp": 0.123456789012345 + j,
                "psnr_db": 30.123456789 + j / 100,
                "ms_ssim": 0.912345678901234,
            }
            for j in range(64)
        ],
        "bitrate_reduction_pct": 10.123456789,
        "psnr_db": 33.0,
    }


async def test_the_snapshot_stays_small_whatever_is_written(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    now = time.time()
    items = [worst_experiment(i, now) for i in range(40)]
    assert all(len(orjson.dumps(e["params"])) <= 16 * 1024 for e in items)
    r = await client.post(f"{API}/experiments/batch", json={"items": items}, headers=auth)
    assert r.status_code == 200, r.text[:300]
    # ...and a progress history of 3,000 days, each better than the one before
    history = [
        {
            "id": f"h{d}",
            "status": "completed",
            "created_at": iso(now - 86400 * (3000 - d)),
            "finished_at": iso(now - 86400 * (3000 - d)),
            "bitrate_reduction_pct": d / 100,
            "psnr_db": 20 + d / 1000,
        }
        for d in range(3000)
    ]
    for start in range(0, 3000, 1000):
        r = await client.post(
            f"{API}/experiments/batch", json={"items": history[start : start + 1000]}, headers=auth
        )
        assert r.status_code == 200
    # an experiment dated far ahead, stored before such times were refused, does not
    # hold the top of the recent list
    store: Store = app.state.codecdash.store
    writes(store).put("ghost", ExperimentIn.model_validate({"created_at": "9999-01-01T00:00:00Z"}))

    r = await client.get(f"{API}/dashboard")
    size = len(r.content)
    assert size <= 256 * 1024, f"the snapshot is {size:,} bytes"
    snap = r.json()
    recent = snap["recent_experiments"]
    assert [e["id"] for e in recent] == [e["id"] for e in items[:20]]  # not the ghost
    assert all(set(e["omitted"]) >= {"params", "error"} for e in recent)
    assert all(len(e["error"] or "") <= 300 for e in recent)
    assert len(snap["progress"]["compression"]) <= 400
    assert snap["progress"]["compression"][-1]["best_pct"] == 29.99  # the last point is kept
    # the whole experiment is one request away
    whole = (await client.get(f"{API}/experiments/{recent[0]['id']}")).json()
    assert whole["params"] == items[0]["params"] and "omitted" not in whole


async def test_small_experiments_are_carried_whole(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"name": "small", "params": {"lr": 0.001}, "tags": ["a"], "error": "e" * 500}
    assert (await client.put(f"{API}/experiments/s", json=body, headers=auth)).status_code == 201
    shown = (await client.get(f"{API}/dashboard")).json()["recent_experiments"][0]
    assert shown["params"] == {"lr": 0.001} and shown["error"] == "e" * 500
    assert "omitted" not in shown


async def test_a_list_page_stops_before_4_mib_and_the_cursor_goes_on(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    now = time.time()
    items = [worst_experiment(i, now) for i in range(120)]
    for start in range(0, 120, 40):
        r = await client.post(
            f"{API}/experiments/batch", json={"items": items[start : start + 40]}, headers=auth
        )
        assert r.status_code == 200
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 1000, "sort": "-created_at"}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"{API}/experiments", params=params)
        assert r.status_code == 200
        assert len(r.content) <= 4 * 1024 * 1024, len(r.content)
        page = r.json()
        assert page["total"] == 120
        seen += [e["id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages > 1
    assert seen == [e["id"] for e in items]  # every one, once, in order


# -- 5. ghost workers ----------------------------------------------------------------------
def _ghost(store: Store, worker_id: str, role: str, **figures: Any) -> None:
    """A heartbeat dated in the year 9999, as stored before such times were refused."""
    from codecdash.store import fleet
    from codecdash.store.counters import bump_data_version

    beat = {"worker_id": worker_id, "role": role, "status": "ok", "extra": None, **figures}
    beat["at"] = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
    with store.db.write() as conn:
        fleet.record_heartbeat(conn, beat, store.active_window_s)
        bump_data_version(conn)
    store.changed()


async def test_heartbeats_from_the_future_cannot_pin_a_worker(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    store: Store = app.state.codecdash.store
    _ghost(store, "ghost-1", "training", queue_depth=999)
    _ghost(store, "real-1", "training", cpu_pct=1.0)
    pool = (await client.get(f"{API}/dashboard")).json()["infrastructure"]["training_workers"]
    assert pool["active"] == 0  # neither counts: both are dated after now
    assert pool["queue_depth"] is None  # nor does the ghost's queue depth

    beat = {
        "worker_id": "real-1",
        "role": "training",
        "status": "degraded",
        "cpu_pct": 42.0,
        "queue_depth": 5,
    }
    assert (await client.post(f"{API}/heartbeats", json=beat, headers=auth)).status_code == 202
    with store.db.read() as conn:
        from codecdash.store import fleet

        workers = {w["worker_id"]: w for w in fleet.workers_by_role(conn)["training"]}
    assert workers["real-1"]["status"] == "degraded" and workers["real-1"]["cpu_pct"] == 42.0
    assert workers["real-1"]["last_seen"] <= time.time()
    pool = (await client.get(f"{API}/dashboard")).json()["infrastructure"]["training_workers"]
    assert pool["active"] == 1 and pool["queue_depth"] == 5

    # a clock a little ahead (within the allowed skew) counts as received now
    ahead = {"worker_id": "fast-clock", "role": "inference", "at": iso(time.time() + 300)}
    assert (await client.post(f"{API}/heartbeats", json=ahead, headers=auth)).status_code == 202
    with store.db.read() as conn:
        fast = next(
            w for w in fleet.workers_by_role(conn)["inference"] if w["worker_id"] == "fast-clock"
        )
    assert fast["last_seen"] <= time.time()
    # and a later real heartbeat is never hidden behind it
    later = {"worker_id": "fast-clock", "role": "inference", "status": "down"}
    assert (await client.post(f"{API}/heartbeats", json=later, headers=auth)).status_code == 202
    with store.db.read() as conn:
        fast = next(
            w for w in fleet.workers_by_role(conn)["inference"] if w["worker_id"] == "fast-clock"
        )
    assert fast["status"] == "down"


# -- 6. inputs that reach the database raw (both databases) --------------------------------
@pytest.fixture
async def both(
    make_app: MakeApp, store_url: str
) -> tuple[FastAPI, httpx.AsyncClient, dict[str, str]]:
    app = await make_app(Settings(database_url=store_url))
    token = app.state.codecdash.store.create_token("both")
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://localhost")
    return app, client, bearer(token)


def forged(value: Any, experiment_id: Any = "x") -> str:
    """A cursor as this server spells them, around any value (json: integers of any size)."""
    return raw_cursor(json.dumps([value, experiment_id]))


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


FORGED = [
    ("-psnr_db", forged(2**63)),  # beyond 64 bits
    ("-psnr_db", forged(-(2**63) - 1)),
    ("-created_at", forged(18446744073709551615)),
    ("-psnr_db", forged("thirty")),  # text for a number column
    ("name", forged(5)),  # a number for a text column
    ("-psnr_db", forged(True)),
    ("-created_at", forged(None)),  # null where the column never is
    ("id", forged("a", "b\x00c")),  # NUL: PostgreSQL text cannot hold it
    ("name", forged("a\x00b")),
    ("-psnr_db", forged(1.0, 7)),
    ("-psnr_db", forged([1.0], "x")),
    ("-psnr_db", raw_cursor('[1e999, "x"]')),  # infinity
    ("-psnr_db", raw_cursor('[NaN, "x"]')),
]


async def test_forged_cursors_are_400_on_both_databases(
    both: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, auth = both
    async with client:
        items = [{"id": f"c{i}", "name": f"n{i}", "psnr_db": 30.0 + i} for i in range(3)]
        r = await client.post(f"{API}/experiments/batch", json={"items": items}, headers=auth)
        assert r.status_code == 200
        for sort, cursor in FORGED:
            r = await client.get(f"{API}/experiments", params={"sort": sort, "cursor": cursor})
            assert_error(r, 400, "bad_cursor")
        # the cursors the server makes still work, for every kind of column
        for sort in ("-psnr_db", "name", "id", "-created_at", "status"):
            page = (
                await client.get(f"{API}/experiments", params={"sort": sort, "limit": 1})
            ).json()
            r = await client.get(
                f"{API}/experiments",
                params={"sort": sort, "limit": 5, "cursor": page["next_cursor"]},
            )
            assert r.status_code == 200 and len(r.json()["items"]) == 2, (sort, r.text[:200])


async def test_like_wildcards_match_themselves_on_both_databases(
    both: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, auth = both
    async with client:
        items = [
            {"id": "plain", "name": "plain", "tags": ["uvg", "mse"]},
            {"id": "pct", "name": "50% off", "tags": ["50%"]},
            {"id": "under", "name": "a_b", "tags": ["a_b"]},
            {"id": "slash", "name": "a\\b", "tags": ["a\\b"]},
        ]
        r = await client.post(f"{API}/experiments/batch", json={"items": items}, headers=auth)
        assert r.status_code == 200

        async def ids(**params: str) -> set[str]:
            r = await client.get(f"{API}/experiments", params=params)
            assert r.status_code == 200, r.text
            return {e["id"] for e in r.json()["items"]}

        assert await ids(tag="%") == set()
        assert await ids(tag="_") == set()
        assert await ids(tag="\\") == set()
        assert await ids(tag="50%") == {"pct"}
        assert await ids(tag="a_b") == {"under"}
        assert await ids(tag="a\\b") == {"slash"}
        assert await ids(tag="uvg") == {"plain"}
        assert await ids(q="%") == {"pct"}
        assert await ids(q="_") == {"under"}


async def test_nul_bytes_in_query_text_are_4xx_on_both_databases(
    both: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, _auth = both
    async with client:
        for name in ("q", "worker_id", "tag"):
            r = await client.get(f"{API}/experiments", params={name: "a\x00b"})
            assert_error(r, 422)


def test_database_refusals_are_client_errors(store: Store) -> None:
    """Whatever still reaches a driver and is refused as data (DataError) is InvalidData,
    answered 400 by the API; never an unmapped driver error (500)."""
    from codecdash.store import InvalidData

    if store.db.dialect != "postgresql":
        pytest.skip("SQLite stores NUL in text; PostgreSQL refuses it")
    with pytest.raises(InvalidData, match="NUL"):
        store.get_experiment("a\x00b")
