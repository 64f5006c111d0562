"""The write rate limits: token buckets per client address and per token."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to that many.

    Memory is bounded: past `max_keys` buckets, the least recently used are dropped (a
    dropped bucket starts full again; under address spraying those are the idle ones)."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # insertion order = recency
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            return wait

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class WriteLimits:
    """The write rate limits: per client address and per token, each its own buckets."""

    addresses: RateLimiter
    tokens: RateLimiter

    @classmethod
    def per_minute(cls, n: int, max_keys: int = 100_000) -> WriteLimits:
        return cls(RateLimiter(n, max_keys), RateLimiter(n, max_keys))
