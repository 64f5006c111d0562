"""The ASGI guard in front of every route: security headers, a strict Host allow-list, and
the gate of writes.

A write to a route that takes a write token is checked in this order, each step before any
work of the next: the declared size (413) and type (415) of the body; the token and the
rate limits (401, 429: `auth.authorize_write`); only then is the body received, within
`body_timeout_seconds` (408) and the budget of bytes held at once (503), and passed on only
when whole (api/uploads.py). An anonymous flood therefore costs the server a header parse.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codecdash.api.auth import WRITER, authorize_write
from codecdash.api.csp import CSP
from codecdash.api.errors import ApiError
from codecdash.api.state import AppState
from codecdash.api.uploads import MAX_BODY_BYTES, BodyBudget, Refusal, Upload
from codecdash.store import StoreUnavailable

log = logging.getLogger("codecdash.api")

__all__ = ["CSP", "MAX_BODY_BYTES", "Guard", "allowed_hosts", "host_name"]

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# RFC 3986's host (an IP literal in brackets, or a name/IPv4 of letters, digits, dots and
# hyphens) and an optional numeric port: nothing else may follow or precede.
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str, configured: Iterable[str]) -> frozenset[str] | None:
    """The Host names accepted, or None for any. Loopback names are always accepted."""
    configured = [h.lower() for h in configured]
    if "*" in configured:
        return None
    names = {*LOOPBACK_NAMES, *configured}
    # a comparison, not a bind: "any address" is not a name clients send
    if not is_loopback(bind_host) and bind_host not in ("0.0.0.0", "::"):  # noqa: S104 # nosec B104
        names.add(bind_host.lower())
    return frozenset(names)


def host_name(header: str) -> str | None:
    """The name of a Host header (lower case, port dropped); None unless the whole header is
    a host and an optional port of 0-65535 (`localhost:abc`, `localhost@evil` are None)."""
    found = _HOST.fullmatch(header.strip().lower())
    if found is None or (found.group(2) is not None and int(found.group(2)) > 65535):
        return None
    return found.group(1)


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        hosts: frozenset[str] | None,
        state: AppState | None = None,
        takes_write_token: Callable[[Scope], bool] = lambda _scope: True,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.state = state
        self.takes_write_token = takes_write_token
        self.max_body = max_body
        limit = state.settings.max_body_bytes_in_flight if state else 16 * max_body
        self.budget = BodyBudget(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0] != b"server"]
                present = {k for k, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        headers = _headers(scope)
        if self.hosts is not None:
            raw = headers.get("host", "")
            if host_name(raw) not in self.hosts:
                shown = raw if len(raw) <= 100 else raw[:99] + "…"
                await _reply(
                    send_with_headers,
                    400,
                    "bad_host",
                    f"Host {shown!r} is not allowed: send one of the allowed names, with an "
                    "optional numeric port; add names to CODECDASH_ALLOWED_HOSTS "
                    "(or --allowed-hosts)",
                )
                return
        try:
            await self._checked(scope, receive, send_with_headers, headers)
        except Exception:
            # Here, not in Starlette's outer error middleware: that one answers 500 with
            # the server's own `send`, without the security headers.
            log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if not started:
                await _reply(send_with_headers, 500, "internal", "internal error; see the log")

    async def _checked(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        method = scope["method"]
        if method not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(
                send, 413, "too_large", f"request body over {self.max_body} bytes", close=True
            )
            return
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["path"].startswith("/api/") and ctype not in ("application/json", ""):
            await _reply(
                send,
                415,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
                close=True,
            )
            return
        if not self.takes_write_token(scope):
            # No route takes a write here (404, 405): answered without reading the body.
            await self.app(scope, _without_body(receive), send)
            return
        if self.state is not None:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            try:
                scope[WRITER] = await authorize_write(
                    self.state, headers.get("authorization"), address
                )
            except ApiError as exc:
                await _reply(send, exc.status, exc.code, exc.message, exc.headers, close=True)
                return
            except StoreUnavailable as exc:
                await _reply(send, 503, "unavailable", str(exc), {"Retry-After": "2"}, close=True)
                return
        timeout = self.state.settings.body_timeout_seconds if self.state else 15.0
        upload = Upload(self.budget, self.max_body, timeout)
        try:
            try:
                body = await upload.receive(receive, int(length) if length is not None else None)
            except Refusal as refused:
                await _reply(
                    send, refused.status, refused.code, refused.message, refused.headers, close=True
                )
                return
            if body is None:
                return  # the client left mid-body: nothing to act on, no one to answer
            await self.app(scope, _replay(body, receive), send)
        finally:
            upload.release()


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _without_body(receive: Receive) -> Receive:
    return _replay(b"", receive)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _reply(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    close: bool = False,
) -> None:
    """A JSON error. `close`: the request's body was not read, so the connection is not
    kept (the server would otherwise go on receiving what the client still sends)."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
