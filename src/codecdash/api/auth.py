"""Bearer tokens for writes (and reads in private mode), and a write rate limit."""

from __future__ import annotations

import threading
import time

from fastapi import Request

from codecdash.api.errors import ApiError
from codecdash.api.state import state


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "malformed Authorization header; send 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def require_write(request: Request) -> str:
    """A dependency: the name of a valid write token, else 401; then the rate limit."""
    token = bearer(request)
    if token is None:
        raise ApiError(
            401,
            "a write token is required: Authorization: Bearer <token> "
            "(make one with `codecdash token create NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    st = state(request)
    name = st.store.check_token(token, ("write",))
    if name is None:
        raise ApiError(
            401,
            "the token is not valid (unknown or revoked)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    client = request.client.host if request.client else "unknown"
    for key in (f"token:{name}", f"addr:{client}"):
        wait = st.limiter.take(key)
        if wait > 0:
            raise ApiError(
                429,
                f"too many write requests; retry in {wait:.0f} s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
    return name


def require_read(request: Request) -> None:
    """In private mode, reads need a read or write token (header, or ?token= for SSE)."""
    st = state(request)
    if not st.settings.private:
        return
    token = bearer(request) or request.query_params.get("token")
    if not token or st.store.check_token(token, ("read", "write")) is None:
        raise ApiError(
            401,
            "this dashboard is private: a read token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > 100_000:
                    self._buckets.clear()  # bounded memory under address spraying
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
