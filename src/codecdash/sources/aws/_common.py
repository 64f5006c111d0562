"""What the AWS sources share besides their clients (:mod:`codecdash.aws_clients`): `Part`.

A :class:`Part` is one service call (or a few calls to one service) behind a source:

- it is asked at most once per refresh (the sources of one refresh share the answer),
- at most once per ``ttl_s`` (the answer is reused until then, whatever the page traffic),
- never twice at once (a call still running from an earlier refresh is not started again),
- and its last good answer is kept, so a failing service leaves its figures as they were.

A source that merges several parts also offers one :class:`ServiceRow` per part, so the
snapshot's ``sources`` list says which service is failing, not just that something is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codecdash import timefmt
from codecdash.aws_clients import describe_error
from codecdash.sources.base import Facts, FieldInfo, Source, SourceError


@dataclass(frozen=True)
class Outcome:
    value: Any  # the newest good answer, or None before the first
    error: str | None  # why this refresh's call failed, or None
    as_of: float | None  # when `value` was fetched


class Part:
    """One service's share of a source: asked at most once per refresh and per `ttl_s`."""

    def __init__(
        self, name: str, fetch: Callable[[float], Any], *, ttl_s: float, timeout_s: float = 4.0
    ) -> None:
        self.name = name
        self.fetch = fetch  # blocking: runs in a worker thread
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.calls = 0
        self.retry_s = min(ttl_s, 30.0)  # after a failure, wait this long before asking again
        self._value: Any = None
        self._ok_at: float | None = None
        self._error: str | None = None
        self._error_at: float | None = None
        self._running = threading.Lock()
        self._pending: tuple[float, asyncio.Future[Outcome]] | None = None

    def outcome(self) -> Outcome:
        return Outcome(self._value, self._error, self._ok_at)

    async def get(self, now: float) -> Outcome:
        if self._ok_at is not None and 0 <= now - self._ok_at < self.ttl_s:
            return Outcome(self._value, None, self._ok_at)
        if self._error_at is not None and 0 <= now - self._error_at < self.retry_s:
            return self.outcome()
        pending = self._pending
        if pending is not None and pending[0] == now and not pending[1].done():
            return await asyncio.shield(pending[1])
        if pending is not None and pending[0] == now and pending[1].done():
            return pending[1].result()
        future: asyncio.Future[Outcome] = asyncio.ensure_future(self._refresh(now))
        self._pending = (now, future)
        return await asyncio.shield(future)

    async def _refresh(self, now: float) -> Outcome:
        if not self._running.acquire(blocking=False):
            return Outcome(
                self._value, f"{self.name}: the previous call is still running", self._ok_at
            )
        try:
            worker = asyncio.ensure_future(asyncio.to_thread(self._run, now))
        except BaseException:
            self._running.release()
            raise
        try:
            await asyncio.wait_for(asyncio.shield(worker), self.timeout_s)
        except TimeoutError:
            # The thread finishes on its own (and stores its answer for the next refresh).
            return Outcome(
                self._value, f"{self.name}: no answer within {self.timeout_s:g} s", self._ok_at
            )
        return self.outcome()

    def _run(self, now: float) -> None:
        try:
            self.calls += 1
            value = self.fetch(now)
        except Exception as exc:  # any failure of the service is reported, never raised
            self._error, self._error_at = describe_error(exc), now
        else:
            self._value, self._ok_at, self._error, self._error_at = value, now, None, None
        finally:
            self._running.release()


class ServiceRow:
    """A section-less source: its row in `sources` tells how one service of a part is doing."""

    sections: tuple[str, ...] = ()
    fields: dict[str, FieldInfo] = {}  # noqa: RUF012 - never filled

    def __init__(self, part: Part, timeout_s: float) -> None:
        self.name = part.name
        self.part = part
        self.timeout_s = timeout_s

    async def collect(self, now: float) -> Facts:
        outcome = await self.part.get(now)
        if outcome.error:
            raise SourceError(outcome.error)
        return {}


class PartedSource:
    """A source that merges several parts: each part also has its own row in `sources`."""

    timeout_s: float
    parts: list[Part]

    def rows(self) -> list[Source]:
        return [ServiceRow(p, self.timeout_s) for p in self.parts]


async def gather_values(parts: list[Part], now: float) -> dict[str, Any]:
    """Every part's newest value by name (None where it has none yet).

    Raises the parts' errors together when no part has ever answered and this refresh
    failed too: the source's row then says why, rather than showing an empty card.
    """
    outcomes = await asyncio.gather(*(p.get(now) for p in parts))
    if outcomes and all(o.value is None and o.error for o in outcomes):
        raise SourceError("; ".join(str(o.error) for o in outcomes))
    return {p.name: o.value for p, o in zip(parts, outcomes, strict=True)}


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds (`codecdash.timefmt`), None for no time."""
    return None if ts is None else timefmt.iso(ts)
