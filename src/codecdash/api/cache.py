"""The snapshot, built once per change (or per few seconds, as workers age) and reused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from codecdash.events import ChangeFeed
from codecdash.snapshot import SnapshotBuilder


@dataclass(frozen=True)
class CachedSnapshot:
    key: tuple[int, int]
    body: bytes
    etag: str
    data: dict[str, object]
    built_at: float = 0.0  # time.monotonic()


class SnapshotCache:
    """Valid while no write was seen and the time bucket is the same.

    The ETag is the store's data version plus the time bucket, so replicas sharing one
    database give the same ETag for the same data.
    """

    def __init__(
        self,
        builder: SnapshotBuilder,
        feed: ChangeFeed,
        version: Callable[[], int],
        ttl: float,
        max_stale: float = 1.0,
    ) -> None:
        self.builder = builder
        self.feed = feed
        self.read_version = version
        self.ttl = ttl
        self.max_stale = max_stale
        self._current: CachedSnapshot | None = None
        self._lock = asyncio.Lock()
        self._served_stale = False

    def _key(self) -> tuple[int, int]:
        return (self.feed.generation, int(time.time() // self.ttl))

    def fresh(self) -> CachedSnapshot | None:
        current = self._current
        return current if current is not None and current.key == self._key() else None

    async def get(self) -> CachedSnapshot:
        hit = self.fresh()
        if hit is not None:
            return hit
        current = self._current
        if (
            current is not None
            and self._lock.locked()
            and time.monotonic() - current.built_at < self.max_stale
        ):
            # A build is under way (writes keep coming): answer with the snapshot we have,
            # at most one build and `max_stale` old, rather than queue every reader behind
            # it. A reader alone after a write finds no build under way and waits for its
            # own, so it reads its write; those answered early get an event once the
            # build is done (below), so open pages fetch again.
            self._served_stale = True
            return current
        async with self._lock:  # one build at a time; the others wait and reuse it
            hit = self.fresh()
            if hit is not None:
                return hit
            key = self._key()
            # The version is read before the build: a write that lands during the build
            # then changes the next ETag, so no page keeps data older than its ETag says.
            try:
                version = str(await asyncio.to_thread(self.read_version))
            except Exception:  # the store is down: the snapshot (sources marked) still serves
                version = f"g{key[0]}"
            data = await self.builder.build()
            body = orjson.dumps(data)
            etag = f'"{version}-{key[1]}"'
            self._current = CachedSnapshot(key, body, etag, data, time.monotonic())
            if self._served_stale:
                self._served_stale = False
                self.feed.announce()
            return self._current

    async def snapshot_data(self) -> dict[str, object]:
        """The current snapshot's data (what the alert rules read)."""
        return (await self.get()).data

    def invalidate(self) -> None:
        self._current = None
