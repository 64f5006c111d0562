"""Change notification: writes (here or in another process or replica) become stream events.

- writes made by this process call :meth:`ChangeFeed.notify` (any thread);
- SQLite: a watcher polls the store's data version twice a second, so writes by other
  processes (an importer, a second server) are seen too;
- PostgreSQL: every replica LISTENs on a channel that each write NOTIFYs.

Events are coalesced (at most one per `min_interval`), and each client has a small
bounded queue: a slow client misses intermediate versions, never grows memory. Streams are
capped in all (`max_clients`, 503 past it) and per client address (`max_per_address`, 429),
so that one client cannot hold every slot.

Training-curve writes do not change the snapshot: they call :meth:`ChangeFeed.notify_metrics`
with each experiment's newest step, and stream clients get a small ``metrics`` event
(coalesced the same way) instead of a ``snapshot`` one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping

log = logging.getLogger("codecdash.events")

PG_CHANNEL = "codecdash_changes"
CLIENT_QUEUE = 4
METRICS = -2  # a client queue item: new training-curve steps (see metrics_since)
MAX_STEPS_KEPT = 10_000  # experiments whose newest step the feed remembers


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
        # Snapshot events asked for (notify, announce) and sent: counters, not a flag that
        # the broadcaster's reset could race with another thread's set.
        self._snapshot_asked = 0
        self._snapshot_sent = 0
        self._steps: OrderedDict[str, tuple[int, int]] = OrderedDict()  # id → (seq, step)
        self._steps_seq = 0
        self._steps_lock = threading.Lock()

    # -- producers --------------------------------------------------------------------
    def notify(self) -> None:
        """Something changed. Safe to call from any thread."""
        self.generation += 1
        self._snapshot_asked += 1
        for listener in self._listeners:
            listener()
        self._wake()

    def notify_metrics(self, newest: Mapping[str, int]) -> None:
        """Experiments logged steps (`newest`: id → newest step). Safe from any thread;
        a step already announced (this process' write, seen again by the poller) is not
        announced twice."""
        with self._steps_lock:
            fresh = False
            for experiment_id, step in newest.items():
                known = self._steps.get(experiment_id)
                if known is not None and known[1] == step:
                    continue
                self._steps_seq += 1
                self._steps[experiment_id] = (self._steps_seq, step)
                self._steps.move_to_end(experiment_id)
                fresh = True
            while len(self._steps) > MAX_STEPS_KEPT:
                self._steps.popitem(last=False)
        if fresh:
            self._wake()

    def metrics_since(self, cursor: int) -> tuple[int, dict[str, int]]:
        """(new cursor, {experiment id: newest step}) of the steps announced after `cursor`
        (0: from the start of the stream's subscription, see `metrics_cursor`)."""
        found: dict[str, int] = {}
        with self._steps_lock:
            for experiment_id, (seq, step) in reversed(self._steps.items()):
                if seq <= cursor:
                    break
                found[experiment_id] = step
            return self._steps_seq, found

    @property
    def metrics_cursor(self) -> int:
        return self._steps_seq

    def _wake(self) -> None:
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
            self._snapshot_asked += 1
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
            asked = self._snapshot_asked
            snapshot = asked != self._snapshot_sent
            self._snapshot_sent = asked
            for queue in list(self._clients):
                if snapshot and not queue.full():
                    queue.put_nowait(self.generation)
                elif not snapshot and queue.empty():
                    # Metrics only. Any unread item makes the client read metrics_since
                    # anyway; a full queue always holds a snapshot event to answer.
                    queue.put_nowait(METRICS)
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
