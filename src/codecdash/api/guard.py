"""The ASGI guard in front of every route: security headers, Host allow-list,
body size cap (413 before parsing), JSON-only write bodies (415)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("codecdash.api")

MAX_BODY_BYTES = 4 * 1024 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
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


class Guard:
    def __init__(
        self, app: ASGIApp, hosts: frozenset[str] | None, max_body: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.max_body = max_body

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
            host = _host_name(headers.get("host", ""))
            if host not in self.hosts:
                await _reply(
                    send_with_headers,
                    400,
                    "bad_host",
                    f"Host {host!r} is not allowed; add it to CODECDASH_ALLOWED_HOSTS "
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
        self, scope: Scope, receive: Receive, send_with_headers: Send, headers: dict[str, str]
    ) -> None:
        method = scope["method"]
        if method not in WRITE_METHODS:
            await self.app(scope, receive, send_with_headers)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(
                send_with_headers, 413, "too_large", f"request body over {self.max_body} bytes"
            )
            return
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["path"].startswith("/api/") and ctype not in ("application/json", ""):
            await _reply(
                send_with_headers,
                415,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            )
            return
        body = await _read_body(receive, self.max_body)
        if body is None:
            await _reply(
                send_with_headers, 413, "too_large", f"request body over {self.max_body} bytes"
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _reply(send: Send, status: int, code: str, message: str, **_: Any) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
