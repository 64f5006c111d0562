"""Bearer tokens for writes (and reads in private mode), and the write rate limits' 429."""

from __future__ import annotations

import logging
import math
import re
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from codecdash.api.errors import ApiError
from codecdash.api.ratelimit import RateLimiter
from codecdash.api.state import AppState, state

# Declares the scheme in the OpenAPI document (writes, and reads in private mode); the
# header itself is parsed by `bearer` below so that every failure is our JSON 401.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="A token from `codecdash token create NAME` (write) or `--scope read`.",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


WRITER = "codecdash.writer"
"""Scope key: the name of the write token the guard accepted for this request."""


def bearer(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
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


def _limit(limiter: RateLimiter, key: str) -> None:
    wait = limiter.take(key)
    if wait > 0:
        raise ApiError(
            429,
            f"too many write requests; retry in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )


async def authorize_write(st: AppState, authorization: str | None, address: str) -> str:
    """The rule for every write: the name of a valid write token, else 401; rate-limited per
    client address (before the token is even looked at, so floods of bad tokens are limited
    too) and per token, in buckets of their own (429).

    The guard applies it before a byte of the body is read (api/guard.py); the token check,
    which may read the database, runs in a worker thread."""
    _limit(st.limits.addresses, address)
    token = bearer_token(authorization)
    if token is None:
        raise ApiError(
            401,
            "a write token is required: Authorization: Bearer <token> "
            "(make one with `codecdash token create NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    name = await run_in_threadpool(st.store.check_token, token, ("write",))
    if name is None:
        raise ApiError(
            401,
            "the token is not valid (unknown or revoked)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    _limit(st.limits.tokens, name)
    return name


async def require_write(request: Request, _declared: Credentials = None) -> str:
    """A dependency: the name of the request's valid write token (see `authorize_write`).

    The guard has applied the rule before reading the body and left the name in the scope;
    a request it did not see (an app without the guard) is checked here, the same way."""
    name = request.scope.get(WRITER)
    if isinstance(name, str):
        return name
    address = request.client.host if request.client else "unknown"
    return await authorize_write(state(request), request.headers.get("authorization"), address)


async def require_read(request: Request) -> None:
    """In private mode, reads need a read or write token (header, or ?token= for SSE).

    Async: a public read then costs no hop to the thread pool (the dashboard's hot path);
    only the token check, which may read the database, runs in a thread."""
    st = state(request)
    if not st.settings.private:
        return
    token = bearer(request) or request.query_params.get("token")
    if not token or await run_in_threadpool(st.store.check_token, token, ("read", "write")) is None:
        raise ApiError(
            401,
            "this dashboard is private: a read token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


class RedactTokens(logging.Filter):
    """Takes tokens out of log records: `?token=` (the event stream's, in uvicorn's access
    log) and anything shaped like a codecdash token."""

    PATTERNS = (
        (re.compile(r"([?&]token=)[^&\s\"']*"), r"\1[redacted]"),
        (re.compile(r"cdt_[A-Za-z0-9_\-]{8,}"), "cdt_[redacted]"),
    )

    def _clean(self, value: object) -> object:
        if isinstance(value, str) and ("token=" in value or "cdt_" in value):
            for pattern, replacement in self.PATTERNS:
                value = pattern.sub(replacement, value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._clean(v) for k, v in record.args.items()}
        return True


def install_log_redaction(names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")) -> None:
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
