"""Anchor writes answer at once; the stored BD-rates follow in the background.

The re-derivation of every stored BD-rate used to run inside the anchor write, under a lock
without a time limit: concurrent anchor writes each held a worker thread, and unrelated
reads waited behind them. Here the re-derivation is made to hang, and everything else must
still answer; once it is let go, the figures are right.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from codecdash.config import Settings
from codecdash.experiments import rederive
from codecdash.store import Store
from test_anchors_api import VS_X264, X264, X265, curve, experiment_body, settled
from test_security import bearer, client_for

pytestmark = pytest.mark.anyio
API = "/api/v1"


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Every re-derivation of BD-rates hangs (in its first batch) until `release` is set;
    `started` is set once one is under way."""
    started, release = threading.Event(), threading.Event()
    original = rederive.rederive

    def hanging(*args: Any, **kwargs: Any) -> int:
        started.set()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(rederive, "rederive", hanging)
    yield started, release  # type: ignore[misc]
    release.set()


async def test_anchor_writes_answer_while_the_rederivation_runs(
    make_app: Callable[..., Any],
    tmp_path: Path,
    held: tuple[threading.Event, threading.Event],
) -> None:
    started, release = held
    app: FastAPI = await make_app(Settings(database_url=str(tmp_path / "a.db")))
    store: Store = app.state.codecdash.store
    auth = bearer(store.create_token("anchors"))
    async with client_for(app) as client:
        r = await client.put(f"{API}/experiments/{X265}", json=experiment_body(X265), headers=auth)
        assert r.status_code == 201
        # More concurrent anchor writes than the server has worker threads (40), each
        # changing the anchor in force, while the re-derivation they ask for hangs.
        bodies = [{"rd_points": curve(X264 if i % 2 == 0 else X265)} for i in range(60)]

        async def put(body: dict[str, Any]) -> httpx.Response:
            return await client.put(f"{API}/anchors/{X264}", json=body, headers=auth)

        answers = await asyncio.wait_for(asyncio.gather(*(put(b) for b in bodies)), 20)
        assert started.is_set()
        assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers[:3]]
        assert any(a.json()["recomputing"] for a in answers)
        # unrelated reads answer meanwhile
        for url in (f"{API}/experiments/{X265}", f"{API}/experiments", f"{API}/dashboard"):
            r = await asyncio.wait_for(client.get(url), 10)
            assert r.status_code == 200, url
        snap = (await client.get(f"{API}/dashboard")).json()
        assert snap["summary"]["bd_rate_recomputing"] is True
        assert (await client.get(f"{API}/anchors")).json()["recomputing"] is True

        release.set()
        await settled(client)
        # the stored figure follows whichever write came last: X264's own curve, or X265's
        # under the name X264 (X265 against itself: 0 %)
        last = (await client.get(f"{API}/anchors/{X264}")).json()["rd_points"]
        expected = 0.0 if last == curve(X265) else VS_X264[X265]
        one = (await client.get(f"{API}/experiments/{X265}")).json()
        assert one["bd_rate_pct"] == pytest.approx(expected, abs=0.005)
        assert one["bd_rate_anchor"] == X264
        snap = (await client.get(f"{API}/dashboard")).json()
        assert "bd_rate_recomputing" not in snap["summary"]


async def test_a_burst_of_anchor_writes_costs_one_more_run(
    make_app: Callable[..., Any],
    tmp_path: Path,
    held: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests made during a run are coalesced: the hung run, then one run for them all."""
    started, release = held
    runs: list[int] = []
    original = rederive.sync_bd_rates

    def counted(*args: Any, **kwargs: Any) -> int:
        runs.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(rederive, "sync_bd_rates", counted)
    app: FastAPI = await make_app(Settings(database_url=str(tmp_path / "b.db")))
    auth = bearer(app.state.codecdash.store.create_token("burst"))
    async with client_for(app) as client:
        r = await client.put(f"{API}/experiments/{X265}", json=experiment_body(X265), headers=auth)
        assert r.status_code == 201
        r = await client.put(f"{API}/anchors/{X264}", json={"rd_points": curve(X264)}, headers=auth)
        assert r.json()["recomputing"] is True
        assert await asyncio.to_thread(started.wait, 10)
        for i in range(10):
            points = curve(X265 if i % 2 == 0 else X264)
            r = await client.put(f"{API}/anchors/{X264}", json={"rd_points": points}, headers=auth)
            assert r.status_code == 200
        release.set()
        await settled(client)
    assert len(runs) == 2, runs
    bd = await _bd(app, X265)
    assert bd == pytest.approx(VS_X264[X265], abs=0.005)  # the last write: X264's own curve


async def _bd(app: FastAPI, experiment_id: str) -> float:
    async with client_for(app) as client:
        return float((await client.get(f"{API}/experiments/{experiment_id}")).json()["bd_rate_pct"])
