"""Several replicas on one PostgreSQL schema: exactly one evaluates and sends (the lease
holder); another takes over once it stops; a message is claimed by one sender only."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alert_fixtures import *  # noqa: F403
from alert_fixtures import Receiver, snapshot
from codecdash.alerts.service import AlertService
from codecdash.config import Settings
from codecdash.models import Heartbeat
from conftest import PgServer

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
DOWN = snapshot(infrastructure={"orchestrator": {"status": "down"}})


def shared_settings(settings: Settings, url: str, receiver: Receiver, **values: Any) -> Settings:
    return settings.model_copy(
        update={
            "database_url": url,
            "alert_webhook_url": SecretStr(receiver.url + "/hook"),
            "alert_rules": {"orchestrator_down": {"pending_seconds": 0}},
            **values,
        }
    )


async def test_two_replicas_send_once_and_one_takes_over(
    make_app: Any, settings: Settings, pg_server: PgServer, receiver: Receiver
) -> None:
    shared = shared_settings(settings, pg_server.new_schema(), receiver)
    a = await make_app(shared)
    b = await make_app(shared)
    sa: AlertService = a.state.codecdash.extras["alerts"]
    sb: AlertService = b.state.codecdash.extras["alerts"]
    now = time.time()
    # both evaluate at once, from two threads: one holds the lease
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def evaluate(name: str, service: AlertService) -> None:
        barrier.wait()
        results[name] = service.evaluate(DOWN, now)

    threads = [threading.Thread(target=evaluate, args=p) for p in (("a", sa), ("b", sb))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted([sa.leader, sb.leader]) == [False, True]
    leader, other = (sa, sb) if sa.leader else (sb, sa)
    assert [c.alert.state for c in results["a" if leader is sa else "b"]] == ["firing"]
    assert results["b" if leader is sa else "a"] == []
    assert leader.deliver(now) + other.deliver(now) == 1
    for t in (now + 10, now + 20):
        leader.evaluate(DOWN, t)
        other.evaluate(DOWN, t)
        assert leader.deliver(t) + other.deliver(t) == 0
    assert len(receiver.requests) == 1
    # the leader stops (its lease expires): the other takes over, and remembers
    later = now + 20 + leader.lease_ttl + 1
    assert other.evaluate(snapshot(), later)[0].alert.state == "resolved"
    assert other.leader and other.deliver(later) == 1
    assert [r.json()["status"] for r in receiver.requests] == ["firing", "resolved"]


async def test_a_message_is_claimed_by_one_sender(
    make_app: Any, settings: Settings, pg_server: PgServer, receiver: Receiver
) -> None:
    shared = shared_settings(settings, pg_server.new_schema(), receiver)
    a = await make_app(shared)
    b = await make_app(shared)
    sa: AlertService = a.state.codecdash.extras["alerts"]
    sb: AlertService = b.state.codecdash.extras["alerts"]
    now = time.time()
    sa.evaluate(DOWN, now)
    (message,) = sa.alerts.due(now)
    claims = [
        sa.alerts.claim(message["id"], now, now + 60),
        sb.alerts.claim(message["id"], now, now + 60),
    ]
    assert sum(c is not None for c in claims) == 1
    # even two senders that both think they lead send it once
    sb.leader = True
    assert sa.deliver(now + 61) + sb.deliver(now + 61) == 1


async def test_the_loop_in_two_live_replicas(
    make_app: Any, settings: Settings, pg_server: PgServer, receiver: Receiver
) -> None:
    """The lifespan's loop (alert_evaluate_seconds = 1) in both: one message goes out."""
    shared = shared_settings(settings, pg_server.new_schema(), receiver, alert_evaluate_seconds=1)
    a = await make_app(shared, background=True)
    b = await make_app(shared, background=True)
    a.state.codecdash.store.heartbeat(
        Heartbeat(worker_id="orch", role="orchestrator", status="down").model_dump()
    )
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
        for app in (a, b)
    ]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answers = [(await c.get("/api/v1/alerts")).json() for c in clients]
            firing = [
                [x["rule"] for x in body["alerts"] if x["state"] == "firing"] for body in answers
            ]
            if firing == [["orchestrator_down"]] * 2 and answers[0]["deliveries"]["sent"] == 1:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"not fired and sent within 20 s: {answers}")
    finally:
        for c in clients:
            await c.aclose()
    assert len(receiver.requests) == 1
    services = [app.state.codecdash.extras["alerts"] for app in (a, b)]
    assert sorted(s.leader for s in services) == [False, True]
