"""Two app instances on one PostgreSQL schema: a write through one reaches the other's
snapshot cache and event stream (LISTEN/NOTIFY) within about a second."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from codecdash.config import Settings
from conftest import PgServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


async def wait_for(condition: Any, within: float) -> float:
    """Seconds until `await condition()` is true; fails after `within` seconds."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_write_through_one_replica_reaches_the_other(
    make_app: Any, settings: Settings, pg_server: PgServer, event_stream: Any
) -> None:
    url = pg_server.new_schema()
    shared = settings.model_copy(update={"database_url": url})
    a = await make_app(shared, background=True)
    b = await make_app(shared, background=True)
    # Without a change notice, B's cached snapshot would stay for its whole life.
    b.state.codecdash.cache.ttl = 3600.0
    token = a.state.codecdash.store.create_token("replica-writer")
    auth = {"Authorization": f"Bearer {token}"}
    async with client_for(a) as ca, client_for(b) as cb:
        # each listener notifies its feed once it is LISTENing
        async def both_listening() -> bool:
            return bool(a.state.codecdash.feed.generation and b.state.codecdash.feed.generation)

        await wait_for(both_listening, 5.0)

        first = await cb.get("/api/v1/dashboard")
        etag = first.headers["etag"]
        assert first.json()["summary"]["total_experiments"] == 0
        async with event_stream(b) as events:
            await events.next_event(1.0)  # the current state
            w = await ca.put(
                "/api/v1/experiments/from-a",
                headers=auth,
                json={"status": "completed", "psnr_db": 36.5},
            )
            assert w.status_code == 201  # committed through A: B hears of it within ~1 s
            message = await events.next_event(1.5)
            assert message.event == "snapshot"

            async def b_shows_it() -> bool:
                r = await cb.get("/api/v1/dashboard", headers={"If-None-Match": etag})
                if r.status_code == 304:
                    return False
                return bool(r.json()["summary"]["total_experiments"] == 1)

            await wait_for(b_shows_it, 1.5)
            snap = (await cb.get("/api/v1/dashboard")).json()
            assert snap["summary"]["best_quality"]["experiment_id"] == "from-a"
            assert [e["id"] for e in snap["recent_experiments"]] == ["from-a"]
            # both replicas show the same data
            ra = await ca.get("/api/v1/dashboard")
            rb = await cb.get("/api/v1/dashboard")
            assert ra.json()["summary"] == rb.json()["summary"]


async def test_without_the_listener_the_other_replica_stays_stale(
    make_app: Any, settings: Settings, pg_server: PgServer
) -> None:
    """The control: the test above fails when the change notice does not arrive."""
    url = pg_server.new_schema()
    shared = settings.model_copy(update={"database_url": url})
    a = await make_app(shared)
    b = await make_app(shared)  # background=False: no LISTEN
    b.state.codecdash.cache.ttl = 3600.0
    token = a.state.codecdash.store.create_token("w")
    async with client_for(a) as ca, client_for(b) as cb:
        assert (await cb.get("/api/v1/dashboard")).json()["summary"]["total_experiments"] == 0
        r = await ca.put(
            "/api/v1/experiments/x", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 201
        await asyncio.sleep(0.5)
        assert (await cb.get("/api/v1/dashboard")).json()["summary"]["total_experiments"] == 0


def test_writes_in_another_schema_do_not_wake_this_one(pg_server: PgServer) -> None:
    """Deployments sharing a database (one schema each) hear only their own changes."""
    import threading

    import psycopg

    from codecdash.events import ChangeFeed, listen_postgres
    from conftest import _libpq

    url = pg_server.new_schema()
    other = pg_server.new_schema()
    feed = ChangeFeed()
    stop = threading.Event()
    thread = threading.Thread(target=listen_postgres, args=(feed, url, stop), daemon=True)
    thread.start()
    try:

        def generation_becomes(n: int, within: float) -> bool:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                if feed.generation >= n:
                    return True
                time.sleep(0.02)
            return False

        assert generation_becomes(1, 10)  # connected (and told the feed to look once)
        for target in (other, url):
            with psycopg.connect(_libpq(target), autocommit=True) as conn:
                conn.execute("SELECT pg_notify('codecdash_changes', current_schema())")
        assert generation_becomes(2, 5)
        time.sleep(1.0)  # the other schema's notice, sent first, was not counted
        assert feed.generation == 2
    finally:
        stop.set()
        thread.join(5)
