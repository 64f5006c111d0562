"""One error shape for every failure: {"error": {"code", "message", "detail"?}}.

Validation errors list at most MAX_DETAIL fields, each message and location part clipped,
so that no answer grows with its input (a body of 300,000 unknown keys gets 20 lines)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from codecdash.events import TooManyClients
from codecdash.experiments.query import BadCursor, QueryNotSupported, Unavailable
from codecdash.redact import public_text
from codecdash.store import Conflict, InvalidData
from codecdash.store.trash import Exists, InTrash

log = logging.getLogger("codecdash.api")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code or CODES.get(status, "error"), "message": message}
    if detail is not None:
        body["detail"] = detail
    return Response(
        orjson.dumps({"error": body}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


MAX_DETAIL = 20
"""Field errors listed in one answer; the message counts the rest."""
MAX_LOC_PARTS = 12
MAX_TEXT = 200
"""Characters of one message, type or location part (a key may be megabytes long)."""


class BodyValidationError(RequestValidationError):
    """A body's validation errors: the first MAX_DETAIL of `total` (counted, not listed)."""

    def __init__(self, errors: list[dict[str, Any]], total: int) -> None:
        super().__init__(errors)
        self.total = total


def _clip(value: object, limit: int = MAX_TEXT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in list(exc.errors()[:MAX_DETAIL]):
        loc = [_clip(p, 100) for p in list(err.get("loc", ()))[:MAX_LOC_PARTS]]
        out.append(
            {"loc": loc, "msg": _clip(err.get("msg", "")), "type": _clip(err.get("type", ""))}
        )
    return out


# The errors of the layers below whose message is the answer's: their status and code.
PLAIN_ERRORS: dict[type[Exception], tuple[int, str | None]] = {
    Conflict: (409, None),
    InTrash: (409, None),
    Exists: (409, None),
    InvalidData: (400, None),
    BadCursor: (400, "bad_cursor"),
    QueryNotSupported: (400, None),
}


def _plain(status: int, code: str | None) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(_request: Request, exc: Exception) -> Response:
        return error_response(status, str(exc), code)

    return handler


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        detail = _field_errors(exc)
        total = exc.total if isinstance(exc, BodyValidationError) else len(exc.errors())
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        message = f"{_clip(where)}: {first['msg']}"
        if total > 1:
            message += f" (and {total - 1:,} more"
            message += f"; the first {len(detail)} are listed)" if total > len(detail) else ")"
        return error_response(422, message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "")
        return error_response(exc.status_code, message, headers=dict(exc.headers or {}))

    @app.exception_handler(Unavailable)  # the store's StoreUnavailable, or DynamoDB's
    async def _unavailable(_request: Request, exc: Unavailable) -> Response:
        log.warning("store unavailable: %s", exc)
        return error_response(503, public_text(str(exc)) or "", headers={"Retry-After": "2"})

    for kind, (status, code) in PLAIN_ERRORS.items():
        app.add_exception_handler(kind, _plain(status, code))

    @app.exception_handler(TooManyClients)
    async def _busy(_request: Request, exc: TooManyClients) -> Response:
        return error_response(exc.status, str(exc), headers={"Retry-After": "10"})

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal error; see the server log")
