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


class SnapshotCache:
    """Valid while no write was seen and the time bucket is the same.

    The ETag is the store's data version plus the time bucket, so replicas sharing one
    database give the same ETag for the same data.
    """

    def __init__(
        self, builder: SnapshotBuilder, feed: ChangeFeed, version: Callable[[], int], ttl: float
    ) -> None:
        self.builder = builder
        self.feed = feed
        self.read_version = version
        self.ttl = ttl
        self._current: CachedSnapshot | None = None
        self._lock = asyncio.Lock()

    def _key(self) -> tuple[int, int]:
        return (self.feed.generation, int(time.time() // self.ttl))

    def fresh(self) -> CachedSnapshot | None:
        current = self._current
        return current if current is not None and current.key == self._key() else None

    async def get(self) -> CachedSnapshot:
        hit = self.fresh()
        if hit is not None:
            return hit
        async with self._lock:  # one build at a time; the others wait and reuse it
            hit = self.fresh()
            if hit is not None:
                return hit
            key = self._key()
            data = await self.builder.build()
            version = await asyncio.to_thread(self.read_version)
            body = orjson.dumps(data)
            etag = f'"{version}-{key[1]}"'
            self._current = CachedSnapshot(key, body, etag, data)
            return self._current

    def invalidate(self) -> None:
        self._current = None
