"""What the AWS sources share: one client factory, and `Part`, one service's share of a source.

Every boto3 client is made by a :class:`ClientFactory`, so tests can count (or wrap) every
client and every call. Clients use short timeouts and at most two attempts: a slow service
must not hold a refresh for long.

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from codecdash import timefmt
from codecdash.sources.base import Facts, FieldInfo, SourceError

CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
)
# Cost Explorer bills every request, retries included: one attempt only.
SINGLE_ATTEMPT = Config(
    connect_timeout=2, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}
)

Wrap = Callable[[str, Any], Any]


class ClientFactory:
    """Makes (once) and hands out the boto3 client of each service.

    ``wrap(service, client)`` may replace a client (tests count calls with it). ``created``
    counts the clients made per service. boto3's own configuration applies unchanged:
    credentials chain, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``.
    """

    def __init__(self, region: str | None = None, wrap: Wrap | None = None) -> None:
        self.region = region
        self.wrap = wrap
        self.created: Counter[str] = Counter()
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()
        self._session: boto3.session.Session | None = None

    def __call__(
        self, service: str, *, region: str | None = None, config: Config | None = None
    ) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                client = self._session.client(
                    service,  # type: ignore[call-overload]
                    region_name=region or self.region,
                    config=config or CLIENT_CONFIG,
                )
                if self.wrap is not None:
                    client = self.wrap(service, client)
                self.created[service] += 1
                self._clients[key] = client
            return client


_DEFAULT: dict[str | None, ClientFactory] = {}


def default_factory(region: str | None) -> ClientFactory:
    """One factory per region for the life of the process (a warm Lambda reuses its clients)."""
    factory = _DEFAULT.get(region)
    if factory is None:
        factory = _DEFAULT[region] = ClientFactory(region)
    return factory


def describe_error(exc: BaseException) -> str:
    """One line that says what went wrong, with a hint for the usual causes."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run on a role)"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Error"))
        message = (
            str(error.get("Message", "")).splitlines()[0][:200] if error.get("Message") else ""
        )
        operation = exc.operation_name
        if code in (
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
            "AuthorizationError",
        ):
            return f"{operation}: permission denied ({code}): {message}"
        return f"{operation}: {code}: {message}".rstrip(": ")
    if isinstance(exc, BotoCoreError):
        return str(exc).splitlines()[0][:300]
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return text or type(exc).__name__


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
