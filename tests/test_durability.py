"""Durability under faults: kill -9, a locked database, a full disk, PostgreSQL going away.

- kill -9 of the real server during sustained batch ingest, 5 times (bench/soak.py runs
  the same code for hundreds): every acknowledged item is in the file afterwards, no
  batch is half-stored, ``PRAGMA integrity_check`` says ok, and the server restarts on it;
- a database locked by another process: writes answer 503 with Retry-After within the
  busy timeout (queued writers too), reads go on, nothing acknowledged is lost;
- a full disk (a 1 MiB tmpfs where mounting is allowed; SQLite's max_page_count
  everywhere): 503 with Retry-After, earlier data intact, writes resume when there is room;
- PostgreSQL behind a TCP proxy that this test cuts and restores: 503 while it is gone
  (refused, reset, or silent), never 500, and the app recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url

from codecdash.config import Settings
from codecdash.net import free_port, wait_healthy
from codecdash.store import Store

REPO = Path(__file__).resolve().parents[1]
API = "/api/v1"


def load_soak() -> Any:
    """bench/soak.py as a module, importing its neighbours as when it runs as a script
    (``bench/`` first on ``sys.path``, for the import only)."""
    spec = importlib.util.spec_from_file_location("codecdash_bench_soak", REPO / "bench/soak.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defined
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module


def stored_ids(db: Path) -> tuple[str, set[str]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return verdict, {row[0] for row in conn.execute("SELECT id FROM experiments")}
    finally:
        conn.close()


def experiment(i: int | str) -> dict[str, Any]:
    return {"id": f"e-{i}", "name": f"n{i}", "status": "completed", "psnr_db": 33.0}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers["retry-after"].isdigit(), r.headers
    assert r.json()["error"]["code"] in ("unavailable", "timeout"), r.text


# -- kill -9 ----------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_during_batch_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    soak = load_soak()
    db = tmp_path / "soak.db"
    result = soak.soak(db, kills=5, seed=7, writers=2, batch_size=100)
    assert result.kills == 5
    assert not result.problems, result.problems
    assert result.refused == 0
    # every round had acknowledged batches before its kill: the check is not vacuous
    assert all(r["acked_batches_this_round"] > 0 for r in result.rounds), result.rounds
    assert result.unacked, "no batch was ever cut off by a kill: the kills came too late"
    # Our own reading of the file, independent of the soak's.
    verdict, ids = stored_ids(db)
    assert verdict == "ok"
    acked = {i for batch in result.acked.values() for i in batch}
    assert acked <= ids, f"{len(acked - ids)} acknowledged items lost"
    for batch, items in result.unacked.items():
        present = sum(i in ids for i in items)
        assert present in (0, len(items)), f"batch {batch} half stored ({present})"
    # and the server starts on the file and serves it all
    port = free_port()
    proc = soak.start_server(db, port, tmp_path / "final.log")
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 60, proc=proc)
        r = httpx.get(f"http://127.0.0.1:{port}{API}/experiments", params={"limit": 1})
        assert r.status_code == 200 and r.json()["total"] == len(ids)
    finally:
        proc.kill()
        proc.wait(30)
    print(soak.summary(result))


# -- a locked database ------------------------------------------------------------------
@pytest.fixture
async def locked_app(make_app: Callable[..., Any], tmp_path: Path) -> FastAPI:
    settings = Settings(database_url=str(tmp_path / "locked.db"), sqlite_busy_timeout_ms=300)
    app: FastAPI = await make_app(settings)
    return app


@contextlib.contextmanager
def exclusive_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another process' writer holding the database: BEGIN EXCLUSIVE, never committed."""
    conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


WRITERS = 16


@pytest.mark.anyio
async def test_a_locked_database_answers_503_and_loses_nothing(
    locked_app: FastAPI, tmp_path: Path
) -> None:
    store: Store = locked_app.state.codecdash.store
    token = store.create_token("w")
    transport = httpx.ASGITransport(app=locked_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        r = await c.post(
            f"{API}/experiments/batch",
            headers=bearer(token),
            json={"items": [experiment(i) for i in range(50)]},
        )
        assert r.status_code == 200
        with exclusive_lock(tmp_path / "locked.db"):
            started = time.monotonic()
            # several writers at once: each gives up within the busy timeout, none queues
            answers = await asyncio.gather(
                *(
                    c.post(f"{API}/experiments", json=experiment(f"x{i}"), headers=bearer(token))
                    for i in range(WRITERS)
                )
            )
            elapsed = time.monotonic() - started
            for answer in answers:
                assert_unavailable(answer)
                assert "locked" in answer.json()["error"]["message"] or "busy" in answer.text
            # each gives up after ~0.3 s; queued one behind the other they would take
            # WRITERS x 0.3 s = 4.8 s
            assert elapsed < 3.5, elapsed
            # reads go on (WAL)
            r = await c.get(f"{API}/experiments", params={"limit": 1})
            assert r.status_code == 200 and r.json()["total"] == 50
        # the lock is gone: writes work again, and everything acknowledged is there
        r = await c.post(f"{API}/experiments", json=experiment("after"), headers=bearer(token))
        assert r.status_code == 201
        r = await c.get(f"{API}/experiments", params={"limit": 1})
        assert r.json()["total"] == 51
    verdict, ids = stored_ids(tmp_path / "locked.db")
    assert (
        verdict == "ok"
        and {f"e-{i}" for i in range(50)} <= ids
        and not any(i.startswith("e-x") for i in ids)
    )


# -- a full disk ------------------------------------------------------------------------
@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(client: Any, token: str, prefix: str, limit: int = 400) -> tuple[int, httpx.Response]:
    """Write batches until one is refused; the count acknowledged and the refusal."""
    filler = "x" * 4000
    for n in range(limit):
        items = [{**experiment(f"{prefix}{n}-{i}"), "error": filler} for i in range(20)]
        r = client.post(f"{API}/experiments/batch", json={"items": items}, headers=bearer(token))
        if r.status_code != 200:
            return n, r
    raise AssertionError("the disk never filled up")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_answers_503_and_loses_nothing(
    make_live_server: Callable[..., Any], tmp_path: Path
) -> None:
    with tiny_tmpfs(tmp_path / "disk") as disk:
        db = disk / "full.db"
        live = make_live_server(Settings(database_url=str(db)))
        with httpx.Client(base_url=live.url, timeout=30) as c:
            acked, refusal = _fill(c, live.token, "f")
            assert acked > 0
            assert_unavailable(refusal)
            assert "full" in refusal.json()["error"]["message"]
            # reads still answer; the data acknowledged is all there
            r = c.get(f"{API}/experiments", params={"limit": 1})
            assert r.status_code == 200 and r.json()["total"] == acked * 20
            # room again: writes resume without a restart
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            r = c.post(
                f"{API}/experiments/batch",
                headers=bearer(live.token),
                json={"items": [experiment("after")]},
            )
            assert r.status_code == 200, r.text
        verdict, ids = stored_ids(db)
        assert verdict == "ok" and len(ids) == acked * 20 + 1


@pytest.mark.anyio
async def test_a_full_database_file_answers_503(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    """The same without root: SQLite's max_page_count makes the file 'full'."""
    app = await make_app(Settings(database_url=str(tmp_path / "capped.db")))
    store: Store = app.state.codecdash.store
    token = store.create_token("w")
    pages = {"max": 0}

    @event.listens_for(store.db.engine, "connect")
    def _cap(dbapi_conn: Any, _record: Any) -> None:
        if pages["max"]:
            dbapi_conn.execute(f"PRAGMA max_page_count={pages['max']}")

    current = sqlite3.connect(tmp_path / "capped.db").execute("PRAGMA page_count").fetchone()[0]
    pages["max"] = current + 40
    store.db.engine.dispose()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        acked = 0
        for n in range(200):
            items = [{**experiment(f"c{n}-{i}"), "error": "y" * 4000} for i in range(5)]
            r = await c.post(
                f"{API}/experiments/batch", json={"items": items}, headers=bearer(token)
            )
            if r.status_code != 200:
                break
            acked += 5
        else:
            raise AssertionError("the capped file never filled")
        assert acked > 0
        assert_unavailable(r)
        assert "full" in r.json()["error"]["message"]
        pages["max"] = 0
        store.db.engine.dispose()
        r = await c.post(f"{API}/experiments", json=experiment("later"), headers=bearer(token))
        assert r.status_code == 201
    verdict, ids = stored_ids(tmp_path / "capped.db")
    assert verdict == "ok" and len(ids) == acked + 1


# -- PostgreSQL going away --------------------------------------------------------------
class TcpProxy:
    """127.0.0.1:port -> target, in its own thread; `cut()` closes every connection and
    stops listening (refused), `silence()` accepts and never answers, `restore()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.mode = "up"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> TcpProxy:
        self.thread.start()
        self._run(self._listen())
        return self

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.links.add(writer)
        if self.mode == "silent":
            return  # hold the connection, say nothing
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _cut(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse" and self.server is not None:
            self.server.close()
            self.server = None
        for link in list(self.links):
            transport = link.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # RST: as when the server dies
        self.links.clear()

    def cut(self) -> None:
        self._run(self._cut("refuse"))

    def silence(self) -> None:
        self._run(self._cut("silent"))

    def restore(self) -> None:
        async def up() -> None:
            self.mode = "up"
            if self.server is None:
                await self._listen()

        self._run(up())

    def stop(self) -> None:
        self._run(self._cut("refuse"))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def pg_proxy(pg_server: Any) -> Iterator[tuple[TcpProxy, str]]:
    url = make_url(pg_server.new_schema())
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    try:
        yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.stop()


@contextlib.asynccontextmanager
async def pg_client(
    make_app: Callable[..., Any], url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    settings = Settings(database_url=url, **overrides)
    app = await make_app(settings, background=True)  # with the LISTEN thread, as served
    store: Store = app.state.codecdash.store
    token = store.create_token("pg-writer")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c, token


async def _recovers(c: httpx.AsyncClient, token: str, seconds: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        r = await c.post(
            f"{API}/experiments", json=experiment(f"r{time.monotonic_ns()}"), headers=bearer(token)
        )
        assert r.status_code in (201, 503), (r.status_code, r.text[:300])
        if r.status_code == 201:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"not recovered within {seconds} s")


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_going_away_answers_503_then_recovers(
    make_app: Callable[..., Any], pg_proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    proxy, url = pg_proxy
    async with pg_client(make_app, url, tmp_path) as (c, token):
        r = await c.post(
            f"{API}/experiments/batch",
            headers=bearer(token),
            json={"items": [experiment(i) for i in range(20)]},
        )
        assert r.status_code == 200
        proxy.cut()  # the server is gone: resets, then refused connections
        for _ in range(3):
            assert_unavailable(
                await c.post(f"{API}/experiments", json=experiment("lost"), headers=bearer(token))
            )
            assert_unavailable(
                await c.post(
                    f"{API}/experiments/batch",
                    headers=bearer(token),
                    json={"items": [experiment("lost2")]},
                )
            )
            assert_unavailable(await c.get(f"{API}/experiments"))
            assert_unavailable(await c.get(f"{API}/experiments/e-1"))
            health = await c.get(f"{API}/health")  # a status document, not an error
            assert health.status_code == 503 and health.headers["retry-after"].isdigit()
            assert health.json()["status"] == "degraded"
        # the page still gets a snapshot, with the store's sources marked down
        r = await c.get(f"{API}/dashboard")
        assert r.status_code == 200
        assert r.json()["sources"] and not all(s["ok"] for s in r.json()["sources"])
        proxy.restore()
        took = await _recovers(c, token)
        assert took < 30
        print(f"recovered {took:.2f} s after PostgreSQL came back")
        r = await c.get(f"{API}/experiments", params={"limit": 1000})
        ids = {e["id"] for e in r.json()["items"]}
        assert {f"e-{i}" for i in range(20)} <= ids and "e-lost" not in ids
        assert (await c.get(f"{API}/health")).status_code == 200


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.anyio
async def test_postgres_that_stops_answering_is_503_not_a_hang(
    make_app: Callable[..., Any], pg_proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    """A network partition: connections accepted, nothing ever answered."""
    proxy, url = pg_proxy
    async with pg_client(make_app, url, tmp_path, request_timeout_seconds=8) as (c, token):
        assert (
            await c.post(f"{API}/experiments", json=experiment(1), headers=bearer(token))
        ).status_code == 201
        proxy.silence()
        started = time.monotonic()
        assert_unavailable(
            await c.post(f"{API}/experiments", json=experiment(2), headers=bearer(token))
        )
        assert time.monotonic() - started < 12
        proxy.restore()
        assert await _recovers(c, token, seconds=40) < 40
