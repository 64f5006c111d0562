"""Sources that hang, raise or return garbage: timed out, marked in `sources`, and the rest
of the snapshot served (the section keeps its last known values); the page says which part
is missing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI

from codecdash.config import Settings
from codecdash.sources.base import SourceError
from codecdash.sources.local import local_sources
from codecdash.store import Store

API = "/api/v1"
GOOD_STORAGE = {"objects": 7, "bytes": 4096, "db_items": 3}


class Scripted:
    """A storage source whose next answers are scripted: facts, an exception, a hang."""

    sections: tuple[str, ...] = ("storage",)
    fields: dict[str, Any] = {}
    timeout_s = 0.3  # its own limit; the real local sources keep the default (5 s)

    def __init__(self, name: str, *behaviours: Any) -> None:
        self.name = name
        self.behaviours = list(behaviours)
        self.calls = 0
        self.running = 0  # calls in progress now
        self.most_running = 0
        self.release = threading.Event()

    async def collect(self, now: float) -> Any:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            step = self.behaviours.pop(0) if len(self.behaviours) > 1 else self.behaviours[0]
            if step == "hang":
                await asyncio.sleep(3600)
            if step == "hang-in-thread":  # a blocking call in a worker thread, as local.* do
                await anyio.to_thread.run_sync(self.release.wait, 60)
                return {"storage": GOOD_STORAGE}
            if isinstance(step, BaseException):
                raise step
            return step
        finally:
            self.running -= 1


async def make(
    make_app: Callable[..., Any], tmp_path: Path, *extra: Any, **settings: Any
) -> FastAPI:
    config = Settings(database_url=str(tmp_path / "s.db"), **settings)
    store = Store(config.database_url)
    sources = [s for s in local_sources(store, config) if s.name != "local.storage"]
    app: FastAPI = await make_app(config, store=store, sources=[*sources, *extra])
    return app


async def snapshot(app: FastAPI) -> dict[str, Any]:
    app.state.codecdash.cache.invalidate()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        r = await c.get(f"{API}/dashboard")
        assert r.status_code == 200, r.text
        metrics = await c.get("/metrics")
        assert metrics.status_code == 200, metrics.text  # metrics read the same snapshot
        data: dict[str, Any] = r.json()
        return data


def row(snap: dict[str, Any], name: str) -> dict[str, Any]:
    rows = {s["name"]: s for s in snap["sources"]}
    return rows[name]


def assert_rest_served(snap: dict[str, Any], faulty: str) -> None:
    others = [s for s in snap["sources"] if s["name"] != faulty]
    assert others and all(s["ok"] for s in others), others
    assert snap["summary"]["total_experiments"] == 0  # the experiments source answered
    assert snap["infrastructure"]["orchestrator"]["status"] == "unknown"


@pytest.mark.anyio
async def test_a_hanging_source_is_timed_out_and_marked(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    source = Scripted("slow.storage", "hang")
    app = await make(make_app, tmp_path, source)
    started = time.monotonic()
    snap = await snapshot(app)
    assert time.monotonic() - started < 3
    r = row(snap, "slow.storage")
    assert r["ok"] is False and r["error"] == "timed out after 0.3 s" and r["as_of"] is None
    assert r["sections"] == ["storage"]
    assert_rest_served(snap, "slow.storage")
    assert snap["infrastructure"]["storage"] == {"objects": None, "bytes": None, "db_items": None}
    # later snapshots wait on the same stuck call; they never pile up new ones
    for _ in range(3):
        assert row(await snapshot(app), "slow.storage")["ok"] is False
    assert source.calls == 1 and source.most_running == 1


@pytest.mark.anyio
async def test_a_source_stuck_in_a_thread_does_not_hold_the_snapshot(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    source = Scripted("blocking.storage", "hang-in-thread")
    app = await make(make_app, tmp_path, source)
    try:
        for _ in range(3):
            started = time.monotonic()
            snap = await snapshot(app)
            assert time.monotonic() - started < 3  # the thread is not waited for
            assert row(snap, "blocking.storage")["ok"] is False
        assert source.calls == 1 and source.running == 1  # one stuck thread, not three
        source.release.set()  # the backend answers again
        deadline = time.monotonic() + 10
        while not row(snap := await snapshot(app), "blocking.storage")["ok"]:
            assert time.monotonic() < deadline, snap["sources"]
            await asyncio.sleep(0.05)
        assert snap["infrastructure"]["storage"] == GOOD_STORAGE
    finally:
        source.release.set()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (SourceError("S3 answered 503 SlowDown"), "S3 answered 503 SlowDown"),
        (RuntimeError("first line\nTraceback noise"), "first line"),
        (KeyError("Buckets"), "'Buckets'"),
        (ValueError(""), "ValueError"),
        (ZeroDivisionError("division by zero"), "division by zero"),
    ],
)
async def test_a_raising_source_is_marked_and_keeps_its_last_values(
    make_app: Callable[..., Any], tmp_path: Path, failure: Exception, message: str
) -> None:
    source = Scripted("flaky.storage", {"storage": GOOD_STORAGE}, failure)
    app = await make(make_app, tmp_path, source)
    first = await snapshot(app)
    assert row(first, "flaky.storage")["ok"] is True
    as_of = row(first, "flaky.storage")["as_of"]
    second = await snapshot(app)
    r = row(second, "flaky.storage")
    assert r["ok"] is False and r["error"] == message
    assert r["as_of"] == as_of  # when it last answered
    assert second["infrastructure"]["storage"] == GOOD_STORAGE  # last known values
    assert_rest_served(second, "flaky.storage")


GARBAGE: list[tuple[str, Any, str]] = [
    ("none", None, "returned NoneType, not a mapping of sections"),
    ("list", [1, 2], "returned list, not a mapping of sections"),
    ("text", "storage", "returned str, not a mapping of sections"),
    ("unknown section", {"weather": {}}, "unknown section 'weather'"),
    ("another source's section", {"costs": {}}, "unknown section 'costs'"),
    ("section not a mapping", {"storage": [1]}, "section 'storage' is list, not a mapping"),
    (
        "wrong type",
        {"storage": {"objects": "lots", "bytes": 1, "db_items": 1}},
        "section 'storage': objects: ",
    ),
    ("missing field", {"storage": {"objects": 1}}, "section 'storage': bytes: Field required"),
    (
        "not JSON",
        {"storage": {"objects": object(), "bytes": 1, "db_items": 1}},
        "section 'storage' is not JSON",
    ),
    (
        "nested garbage",
        {"storage": {"objects": {"a": 1}, "bytes": 1, "db_items": 1}},
        "section 'storage': objects: ",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("label", "garbage", "message"), GARBAGE, ids=[g[0] for g in GARBAGE])
async def test_a_source_returning_garbage_is_refused(
    make_app: Callable[..., Any], tmp_path: Path, label: str, garbage: Any, message: str
) -> None:
    source = Scripted("odd.storage", {"storage": GOOD_STORAGE}, garbage)
    app = await make(make_app, tmp_path, source)
    await snapshot(app)
    snap = await snapshot(app)
    r = row(snap, "odd.storage")
    assert r["ok"] is False, label
    assert message in r["error"], (label, r["error"])
    assert snap["infrastructure"]["storage"] == GOOD_STORAGE  # the garbage never got in
    assert_rest_served(snap, "odd.storage")


@pytest.mark.anyio
async def test_a_source_that_recovers_is_marked_ok_again(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    fresh = {"objects": 9, "bytes": 9, "db_items": 9}
    source = Scripted("wobbly.storage", SourceError("down"), "hang", {"storage": fresh})
    app = await make(make_app, tmp_path, source)
    assert row(await snapshot(app), "wobbly.storage")["error"] == "down"
    assert row(await snapshot(app), "wobbly.storage")["error"] == "timed out after 0.3 s"
    # a call hung for 10 timeouts (3 s here) is given up and a new one made
    deadline = time.monotonic() + 15
    while not row(snap := await snapshot(app), "wobbly.storage")["ok"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert snap["infrastructure"]["storage"] == fresh


@pytest.mark.anyio
async def test_every_section_failing_still_serves_a_snapshot(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    class Broken:
        fields: dict[str, Any] = {}

        def __init__(self, name: str, sections: tuple[str, ...]) -> None:
            self.name, self.sections = name, sections

        async def collect(self, now: float) -> Any:
            raise SourceError(f"{self.name} is down")

    sources = [
        Broken("b.experiments", ("experiments",)),
        Broken("b.fleet", ("orchestrator", "training_workers", "inference_workers")),
        Broken("b.costs", ("costs",)),
        Broken("b.storage", ("storage",)),
    ]
    config = Settings(database_url=str(tmp_path / "b.db"))
    app = await make_app(config, sources=sources)
    snap = await snapshot(app)
    assert [s["ok"] for s in snap["sources"]] == [False] * 4
    assert snap["summary"]["total_experiments"] is None
    assert snap["recent_experiments"] == [] and snap["cost_breakdown"] == []


# -- the page ---------------------------------------------------------------------------
@pytest.mark.browser
def test_the_page_shows_which_part_is_missing(
    make_live_server: Callable[..., Any], settings: Settings
) -> None:
    from playwright.sync_api import sync_playwright

    store = Store(settings.database_url)
    sources = [
        *(s for s in local_sources(store, settings) if s.name != "local.storage"),
        Scripted("s3.storage", SourceError("S3 is unreachable: AccessDenied")),
    ]
    live = make_live_server(settings, store=store, sources=sources)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(live.url + "/")
            page.wait_for_selector("#storage.has-source-error", timeout=15000)
            note = page.locator("#storage .source-error")  # said in the card it concerns
            note.wait_for(state="visible", timeout=15000)
            text = note.inner_text()
            assert "S3 is unreachable: AccessDenied" in text and "s3.storage" in text, text
            # the healthy parts are not marked
            assert page.locator("#total-experiments.has-source-error").count() == 0
            assert page.locator("#orchestrator.has-source-error").count() == 0
        finally:
            browser.close()


# -- a slow build does not hold readers ------------------------------------------------------
@pytest.mark.anyio
async def test_readers_during_a_slow_build_get_the_last_snapshot_then_an_event(
    make_app: Callable[..., Any], tmp_path: Path, event_stream: Any
) -> None:
    """While one reader waits for a rebuild (a write came in), others are answered at once
    with the previous snapshot, and stream clients get an event when the build is done."""

    class Slow(Scripted):
        async def collect(self, now: float) -> Any:
            self.calls += 1
            await asyncio.sleep(0.8)
            return {"storage": {**GOOD_STORAGE, "objects": self.calls}}

    source = Slow("slow.storage", None)
    source.timeout_s = 5.0
    app = await make(make_app, tmp_path, source)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as c,
        event_stream(app) as events,
    ):
        first = (await c.get(f"{API}/dashboard")).json()  # the first build: everyone waits
        app.state.codecdash.feed.notify()  # a write
        while (await events.next_event(2)).data is None:
            pass

        async def timed() -> tuple[float, dict[str, Any]]:
            started = time.monotonic()
            r = await c.get(f"{API}/dashboard")
            return time.monotonic() - started, r.json()

        builder = asyncio.create_task(timed())
        await asyncio.sleep(0.2)  # the build is under way
        quick, early = await timed()
        waited, fresh = await builder
        assert quick < 0.5 < waited, (quick, waited)
        assert early == first  # the previous snapshot, whole
        seen = first["infrastructure"]["storage"]["objects"]
        assert fresh["infrastructure"]["storage"]["objects"] > seen  # a newer build
        event = await events.next_event(3)  # those answered early are told to fetch again
        assert event.event == "snapshot"
        r = await c.get(f"{API}/dashboard")
        assert r.json()["infrastructure"]["storage"]["objects"] > seen


class Costs:
    """A costs source answering figures as of `age_s` before the build, or failing."""

    name = "costs"
    sections: tuple[str, ...] = ("costs",)
    fields: dict[str, Any] = {}

    def __init__(self) -> None:
        self.age_s: float | None = 0.0  # None: the backend is down

    async def collect(self, now: float) -> dict[str, Any]:
        if self.age_s is None:
            raise SourceError("Cost Explorer: throttled")
        from codecdash.timefmt import iso

        return {"costs": {"month_to_date_usd": 10.0, "as_of": iso(now - self.age_s)}}


@pytest.mark.anyio
async def test_costs_live_says_whether_the_cost_figures_are_of_now(settings: Settings) -> None:
    """`costs_live`: true only when the costs source answered for this snapshot with figures
    no older than refresh_seconds; the page shows `costs_as_of` whenever it is false."""
    from codecdash.snapshot import SnapshotBuilder

    costs = Costs()
    builder = SnapshotBuilder(settings, [costs])
    now = time.time()
    live = await builder.build(now)
    assert live["costs_live"] is True and live["summary"]["month_to_date_usd"] == 10.0
    costs.age_s = 3 * 3600.0  # a cache hours old (Cost Explorer's)
    cached = await builder.build(now + 1)
    assert cached["costs_live"] is False
    costs.age_s = None  # down: the last figures stay, not live, with their time
    down = await builder.build(now + 2)
    assert down["costs_live"] is False
    assert down["summary"]["month_to_date_usd"] == 10.0
    assert down["costs_as_of"] == cached["costs_as_of"]
