"""Receiving request bodies: a size cap, a time limit, a bound on the bytes held at once,
and no truncated body ever passed on.

The guard (api/guard.py) reads a write's body here only after the request has passed
authentication and the rate limits, then hands the whole body to the route.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.types import Receive

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass
class Refusal(Exception):
    """A body the server will not take: answered with this status, code and message."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class BodyBudget:
    """The bytes of request bodies held at once, across all requests, up to `limit`.

    A body declared by its Content-Length reserves that much before a byte is read; a chunked
    one reserves what arrives. The reservation lasts until the request is answered (its bytes
    are held until then). Used from the event loop only, so no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)


class Upload:
    """One request's body: what it reserved of the budget, given back by `release`."""

    def __init__(self, budget: BodyBudget, max_bytes: int, timeout: float) -> None:
        self.budget = budget
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.reserved = 0

    def hold(self, n: int) -> None:
        if not self.budget.reserve(n):
            raise Refusal(
                503,
                "unavailable",
                f"the server is receiving {self.budget.limit // (1024 * 1024)} MiB of request "
                "bodies already; retry shortly",
                {"Retry-After": "2"},
            )
        self.reserved += n

    def release(self) -> None:
        self.budget.release(self.reserved)
        self.reserved = 0

    def too_large(self) -> Refusal:
        return Refusal(413, "too_large", f"request body over {self.max_bytes} bytes")

    async def receive(self, receive: Receive, declared: int | None) -> bytes | None:
        """The whole body; None when the client left before sending all of it (nothing is
        then acted on). Raises Refusal: 413 over the cap, 408 past the time limit, 503 when
        the budget is spent, 400 when the body disagrees with its Content-Length."""
        if declared is not None:
            if declared > self.max_bytes:
                raise self.too_large()
            self.hold(declared)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self.too_large()
                    if declared is None:
                        self.hold(len(chunk))
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise Refusal(
                408,
                "request_timeout",
                f"the request body did not arrive within {self.timeout:g} s",
            ) from None
        if declared is not None and size != declared:
            raise Refusal(
                400,
                "bad_request",
                f"the body has {size} bytes but its Content-Length says {declared}",
            )
        return b"".join(chunks)
