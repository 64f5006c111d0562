"""Shared fixtures of the codecdash test suite.

The names below are stable: other test files (agent, codec metrics, browser) use them.

- ``anyio_backend`` — ``"asyncio"``; async tests are marked ``@pytest.mark.anyio``.
- ``settings`` — :class:`Settings` on a fresh temporary SQLite file, every other setting
  at its default (no TOML file and no ``CODECDASH_*`` variable is read).
- ``pg_server`` (session) — the local PostgreSQL server (127.0.0.1:5432, database
  ``test``): ``.url`` is a SQLAlchemy URL whose ``search_path`` is this session's own
  fresh schema (``CREATE SCHEMA`` at the start, ``DROP SCHEMA … CASCADE`` at the end);
  ``.new_schema()`` makes another one (dropped at the end too) and returns its URL.
  Skipped with the reason when the server is unreachable, unless ``CI`` is set: then
  the test fails.
- ``store_url`` — parametrized ``sqlite`` / ``postgres``: the URL of an empty database
  (a new SQLite file; the session's PostgreSQL schema, emptied).
- ``store`` — a :class:`Store` on ``store_url`` (so every test using it runs on both
  backends), closed afterwards.
- ``writes(store, settings=None)`` (a function, not a fixture) — the store's
  :class:`ExperimentService`, the write path the API uses: ``writes(store).batch([...])``
  takes ``ExperimentIn`` models (the store itself takes plain values).
- ``make_app`` — ``await make_app(settings=None, **create_app_kwargs)``: a FastAPI app with
  its lifespan entered (left at teardown), ``background=False`` unless given (no
  cross-process change watcher); ``app.state.codecdash`` holds its state.
- ``app`` — ``make_app()`` on ``settings`` (SQLite, no background watcher).
- ``client`` — ``httpx.AsyncClient`` over ``httpx.ASGITransport(app)``, base URL
  ``http://localhost``.
- ``write_token`` — a fresh write token of ``app``'s store; ``auth`` — the matching
  ``{"Authorization": "Bearer …"}`` headers.
- ``event_stream`` — ``async with event_stream(app, path="/api/v1/events", headers=None,
  client=("127.0.0.1", 12345)) as events:`` reads an SSE response in-process (httpx's ASGI
  transport buffers whole bodies, so it cannot); ``await events.next(within)`` gives the
  next ``SSEMessage`` (comments too), ``await events.next_event(within)`` the next real
  event; ``TimeoutError`` past ``within``.
- ``api_helpers.assert_error(response, status, code=None)`` (a module, not a fixture):
  checks the one error shape and returns the error object.
- ``make_live_server`` — ``make_live_server(settings=None, **create_app_kwargs)``: uvicorn
  serving the app in a thread on a free port; returns a ``LiveServer`` (``url``, ``token`` —
  a write token —, ``store``, ``settings``, ``app``), ready once ``/api/v1/health``
  answered 200 (polled, never a bare sleep); stopped at teardown.
- ``live_server`` — ``make_live_server()`` on ``settings``.

A free port and the health poll for servers a test starts itself: ``codecdash.net``
(``free_port()``, ``wait_healthy(url, timeout, proc=…)``), which the benchmarks use too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from codecdash.api.app import create_app
from codecdash.config import Settings
from codecdash.experiments.service import ExperimentService
from codecdash.net import free_port, wait_healthy
from codecdash.store import Store

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_SCHEMA_PREFIX = "codecdash_test_"


# -- async ------------------------------------------------------------------------------
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- settings ---------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=str(tmp_path / "codecdash.db"))


# -- PostgreSQL -------------------------------------------------------------------------
def _pg_reachable() -> str | None:
    """None when the server answers, else why not."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dev dependency
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(_libpq(PG_BASE), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def pg_schema_url(schema: str) -> str:
    return f"{PG_BASE}?options={quote(f'-csearch_path={schema}', safe='')}"


@dataclass
class PgServer:
    schema: str
    url: str
    _extra: list[str] = field(default_factory=list)

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(_libpq(PG_BASE), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def new_schema(self) -> str:
        """Another fresh schema (dropped at the session's end); returns its URL."""
        name = f"{self.schema}_{len(self._extra) + 1}"
        self._execute(f'CREATE SCHEMA "{name}"')
        self._extra.append(name)
        return pg_schema_url(name)

    def empty(self) -> None:
        """Remove every row of this session's schema (tables stay; schema_version too)."""
        import psycopg

        with psycopg.connect(_libpq(self.url), autocommit=True, connect_timeout=5) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s "
                    "AND tablename <> 'schema_version'",
                    (self.schema,),
                )
            ]
            # DELETE, not TRUNCATE: much cheaper on a handful of small tables.
            with conn.transaction():
                for table in tables:
                    conn.execute(f'DELETE FROM "{self.schema}"."{table}"')

    def drop_all(self) -> None:
        for name in [*self._extra, self.schema]:
            self._execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_schemas_of_dead_runs(server: PgServer) -> None:
    """A run killed before its teardown leaves its schema behind: drop those of dead pids."""
    import psycopg

    with psycopg.connect(_libpq(PG_BASE), autocommit=True, connect_timeout=5) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                (PG_SCHEMA_PREFIX.replace("_", r"\_") + "%",),
            )
        ]
    for name in names:
        pid = name.removeprefix(PG_SCHEMA_PREFIX).split("_", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            server._execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    problem = _pg_reachable()
    if problem is not None:
        message = f"PostgreSQL at 127.0.0.1:5432 (database 'test') is unreachable: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    schema = f"{PG_SCHEMA_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    server = PgServer(schema, pg_schema_url(schema))
    _drop_schemas_of_dead_runs(server)
    server._execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield server
    finally:
        server.drop_all()


# -- the store on both backends ---------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    server.empty()  # the Store made on this URL creates the tables on first use
    return server.url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    try:
        yield s
    finally:
        s.close()


def writes(store: Store, settings: Settings | None = None) -> ExperimentService:
    """The experiments' write path over `store` (default settings: no default_anchor)."""
    return ExperimentService(store, settings or Settings(database_url=store.db.url))


# -- the app in-process -----------------------------------------------------------------
MakeApp = Callable[..., Awaitable[FastAPI]]


@pytest.fixture
async def make_app(settings: Settings) -> AsyncIterator[MakeApp]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(app_settings: Settings | None = None, **kwargs: Any) -> FastAPI:
            kwargs.setdefault("background", False)
            app = create_app(app_settings or settings, **kwargs)
            stack.callback(app.state.codecdash.store.close)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return app

        yield make


@pytest.fixture
async def app(make_app: MakeApp) -> FastAPI:
    return await make_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


@pytest.fixture
def write_token(app: FastAPI) -> str:
    store: Store = app.state.codecdash.store
    return store.create_token("test-writer")


@pytest.fixture
def auth(write_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {write_token}"}


# -- server-sent events in-process ------------------------------------------------------
@dataclass
class SSEMessage:
    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


class EventReader:
    """Reads one SSE response that the ASGI app streams, message by message."""

    def __init__(self, status: int, headers: dict[str, str], chunks: asyncio.Queue[bytes | None]):
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._buffer = b""
        self.closed = False

    async def next(self, within: float = 1.0) -> SSEMessage:
        """The next message (blank-line terminated); TimeoutError when none comes in time."""
        async with asyncio.timeout(within):
            while b"\n\n" not in self._buffer:
                chunk = await self._chunks.get()
                if chunk is None:
                    self.closed = True
                    raise EOFError("the event stream ended")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        message = SSEMessage()
        for line in raw.decode().split("\n"):
            if line.startswith(":"):
                message.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                message.event = value
            elif key == "data":
                message.data = value if message.data is None else message.data + "\n" + value
            elif key == "id":
                message.id = value
            elif key == "retry":
                message.retry = int(value)
        return message

    async def next_event(self, within: float = 1.0) -> SSEMessage:
        """The next message that is an event (skips comments such as keep-alives)."""
        deadline = time.monotonic() + within
        while True:
            message = await self.next(max(0.0, deadline - time.monotonic()))
            if message.event is not None or message.data is not None:
                return message


@pytest.fixture
def event_stream() -> Callable[..., contextlib.AbstractAsyncContextManager[EventReader]]:
    @contextlib.asynccontextmanager
    async def open_stream(
        app: FastAPI,
        path: str = "/api/v1/events",
        headers: dict[str, str] | None = None,
        client: tuple[str, int] = ("127.0.0.1", 12345),
    ) -> AsyncIterator[EventReader]:
        path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"localhost")]
            + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": client,
            "server": ("localhost", 80),
            "state": {},
        }
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future[tuple[int, dict[str, str]]] = (
            asyncio.get_running_loop().create_future()
        )
        disconnect = asyncio.Event()
        request_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                hdrs = {k.decode().lower(): v.decode() for k, v in message["headers"]}
                started.set_result((message["status"], hdrs))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.put_nowait(message["body"])
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        task = asyncio.create_task(app(scope, receive, send))
        try:
            status, hdrs = await asyncio.wait_for(started, 5)
            yield EventReader(status, hdrs, chunks)
        finally:
            disconnect.set()
            try:
                await asyncio.wait_for(task, 5)
            except TimeoutError:  # pragma: no cover - a stream that ignores disconnects
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise AssertionError("the event stream did not end on disconnect") from None

    return open_stream


# -- a real server on a free port -------------------------------------------------------
@dataclass
class LiveServer:
    url: str
    token: str
    store: Store
    settings: Settings
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def make_live_server(settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(app_settings: Settings | None = None, **create_app_kwargs: Any) -> LiveServer:
        app_settings = app_settings or settings
        port = free_port()
        app = create_app(app_settings, **create_app_kwargs)
        store: Store = app.state.codecdash.store
        token = store.create_token(f"live-{port}")
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        live = LiveServer(
            f"http://127.0.0.1:{port}", token, store, app_settings, app, server, thread
        )
        servers.append(live)
        wait_healthy(live.url, 15)
        return live

    try:
        yield start
    finally:
        for live in servers:
            live.server.should_exit = True
        for live in servers:
            live.thread.join(10)
            live.store.close()
            assert not live.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def live_server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    return make_live_server()
