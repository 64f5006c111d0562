"""Change notification: writes (here or in another process or replica) become stream events.

- writes made by this process call :meth:`ChangeFeed.notify` (any thread);
- SQLite: a watcher polls the store's data version twice a second, so writes by other
  processes (an importer, a second server) are seen too;
- PostgreSQL: every replica LISTENs on a channel that each write NOTIFYs.

Events are coalesced (at most one per `min_interval`), and each client has a small
bounded queue: a slow client misses intermediate versions, never grows memory. Streams are
capped in all (`max_clients`, 503 past it) and per client address (`max_per_address`, 429),
so that one client cannot hold every slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable

log = logging.getLogger("codecdash.events")

PG_CHANNEL = "codecdash_changes"
CLIENT_QUEUE = 4


class TooManyClients(Exception):
    """No stream slot: 503 when the server is full, 429 when this address holds its share."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


class ChangeFeed:
    def __init__(
        self, max_clients: int = 200, min_interval: float = 0.2, max_per_address: int = 10
    ) -> None:
        self.max_clients = max_clients
        self.max_per_address = max_per_address
        self.min_interval = min_interval
        self.generation = 0  # bumped on every change seen; part of the cache key
        self._clients: set[asyncio.Queue[int]] = set()
        self._per_address: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    # -- producers --------------------------------------------------------------------
    def notify(self) -> None:
        """Something changed. Safe to call from any thread."""
        self.generation += 1
        for listener in self._listeners:
            listener()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._pending.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._pending.set)

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def announce(self) -> None:
        """Send stream clients an event without a change (the snapshot cache, when a build
        finishes that some readers did not wait for). Call from the event loop."""
        if self._loop is not None and not self._loop.is_closed():
            self._pending.set()

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending = asyncio.Event()
        self._task = asyncio.create_task(self._broadcast())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(-1)

    async def _broadcast(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            for queue in list(self._clients):
                if queue.full():
                    continue  # the client still has an unread "changed": that suffices
                queue.put_nowait(self.generation)
            await asyncio.sleep(self.min_interval)

    # -- consumers --------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(self, address: str = "") -> AsyncIterator[asyncio.Queue[int]]:
        """A queue of change generations; `address` is the client's (its share is capped)."""
        if len(self._clients) >= self.max_clients:
            raise TooManyClients(
                f"the server has its maximum of {self.max_clients} event-stream clients; "
                "retry later (the page falls back to polling meanwhile)"
            )
        held = self._per_address.get(address, 0)
        if held >= self.max_per_address:
            raise TooManyClients(
                f"this address already holds {held} event streams, the most one address "
                "may hold; close some (tabs of the page) and retry",
                status=429,
            )
        queue: asyncio.Queue[int] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        self._per_address[address] = held + 1
        try:
            yield queue
        finally:
            self._clients.discard(queue)
            left = self._per_address.get(address, 1) - 1
            if left > 0:
                self._per_address[address] = left
            else:
                self._per_address.pop(address, None)

    @property
    def clients(self) -> int:
        return len(self._clients)


async def poll_version(
    feed: ChangeFeed, read_version: Callable[[], int], interval: float = 0.5
) -> None:
    """Notify when the store's data version moves (writes by other processes)."""
    last: int | None = None
    while True:
        try:
            version = await asyncio.to_thread(read_version)
        except Exception as exc:  # the store being down is reported elsewhere
            log.debug("version poll failed: %s", exc)
        else:
            if last is not None and version != last:
                feed.notify()
            last = version
        await asyncio.sleep(interval)


def listen_postgres(feed: ChangeFeed, url: str, stop: threading.Event) -> None:
    """Blocking: LISTEN on the change channel and notify the feed; reconnects on failure."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute("SELECT current_schema()").fetchone()
                mine = {"", row[0] if row else ""}  # "": writers older than 0.1.x
                conn.execute(f"LISTEN {PG_CHANNEL}")
                feed.notify()  # we may have missed changes while disconnected
                while not stop.is_set():
                    for note in conn.notifies(timeout=0.5, stop_after=1):
                        if note.payload in mine:  # another schema's writes are not ours
                            feed.notify()
        except Exception as exc:
            log.warning("PostgreSQL change listener: %s; retrying", str(exc).splitlines()[0])
            stop.wait(2.0)
