"""Reads for the page: health, the snapshot (cached, ETag), the event stream, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from codecdash import __version__
from codecdash.api.auth import require_read
from codecdash.api.metrics import render_metrics
from codecdash.api.state import AppState, state
from codecdash.events import METRICS
from codecdash.models import ErrorResponse
from codecdash.redact import public_text
from codecdash.snapshot_models import Snapshot

router = APIRouter(tags=["dashboard"])
KEEPALIVE_SECONDS = 15.0


@router.get("/api/v1/health", summary="Liveness and the store's reachability")
async def health(request: Request) -> Response:
    st = state(request)
    try:
        version = await asyncio.to_thread(st.store.version)
    except Exception as exc:
        body: dict[str, object] = {
            "status": "degraded",
            "version": __version__,
            "store": "unavailable",
            "error": (public_text(str(exc)) or "")[:200],
        }
        return Response(
            orjson.dumps(body), 503, media_type="application/json", headers={"Retry-After": "2"}
        )
    ok: dict[str, object] = {
        "status": "ok",
        "version": __version__,
        "store": st.store.db.dialect,
        "data_version": version,
        "source": st.settings.source,
        "event_clients": st.feed.clients,
    }
    return Response(orjson.dumps(ok), media_type="application/json")


@router.get(
    "/api/v1/dashboard",
    response_model=Snapshot,
    dependencies=[Depends(require_read)],
    summary="The dashboard snapshot (ETag; If-None-Match answers 304)",
    responses={304: {"description": "Not modified"}, 401: {"model": ErrorResponse}},
)
async def dashboard(
    request: Request,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    status, headers, body = await snapshot_answer(state(request), if_none_match)
    if status == 304:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def snapshot_answer(
    st: AppState, if_none_match: str | None
) -> tuple[int, dict[str, str], bytes]:
    """The snapshot's answer: 200 with the body, or 304 when If-None-Match has its ETag."""
    cached = await st.cache.get()
    cache_control = (
        "private, no-cache" if st.settings.private else "public, max-age=0, must-revalidate"
    )
    headers = {"ETag": cached.etag, "Cache-Control": cache_control}
    if if_none_match and cached.etag in [t.strip() for t in if_none_match.split(",")]:
        return 304, headers, b""
    return 200, headers, cached.body


class SnapshotFastPath:
    """GET /api/v1/dashboard of a public dashboard, answered straight from the cache.

    The page and every open tab poll this one URL; FastAPI's routing and dependency
    resolution cost several times the answer itself, so this skips them (bench/load.py).
    Anything else, and any failure, goes the normal way (the route above: same answer,
    its errors as JSON). The guard still runs first: Host allow-list, headers.
    """

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/api/v1/dashboard"
            or scope["method"] != "GET"
            or self.state.settings.private
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for key, value in scope["headers"]:
            if key == b"if-none-match":
                if_none_match = value.decode("latin-1")
        if if_none_match is not None and len(if_none_match) > 200:
            await self.app(scope, receive, send)  # the route answers 422
            return
        try:
            status, headers, body = await snapshot_answer(self.state, if_none_match)
        except Exception:
            await self.app(scope, receive, send)  # the route answers the error
            return
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if status == 200:
            raw += [(b"content-type", b"application/json")]
        raw += [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


@router.get(
    "/api/v1/events",
    dependencies=[Depends(require_read)],
    summary="Server-sent events: a `snapshot` event each time the data changes, a `metrics` "
    "event when experiments log training steps",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        429: {"model": ErrorResponse, "description": "This address holds its most streams"},
        503: {"model": ErrorResponse, "description": "Too many stream clients"},
    },
)
async def events(request: Request) -> Response:
    st = state(request)
    subscription = st.feed.subscribe(request.client.host if request.client else "")
    queue = await subscription.__aenter__()  # TooManyClients → 503 or 429 before streaming

    async def stream() -> AsyncIterator[bytes]:
        try:
            retry_ms = int(st.settings.refresh_seconds * 1000 / 10)
            yield f"retry: {max(1000, retry_ms)}\n: connected\n\n".encode()
            yield _event(st.feed.generation)
            cursor = st.feed.metrics_cursor
            while True:
                try:
                    generation = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if generation == METRICS:
                    pass  # training steps only: below
                elif generation < 0:
                    return  # server shutting down
                else:
                    yield _event(generation)
                cursor, steps = st.feed.metrics_since(cursor)
                if steps:
                    yield b"event: metrics\ndata: %s\n\n" % orjson.dumps({"experiments": steps})
        finally:
            await subscription.__aexit__(None, None, None)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _alert_figures(st: AppState) -> Any:
    """The alerts' counts for /metrics; None (left out) when the store cannot say."""
    service = st.extras.get("alerts")
    if service is None:
        return None
    try:
        counts = await asyncio.to_thread(service.alerts.counts)
        deliveries = await asyncio.to_thread(service.alerts.delivery_counts)
    except Exception:  # the store is down: the snapshot's figures still serve
        return None
    return ([rule.name for rule in service.rules], counts, deliveries)


def _event(generation: int) -> bytes:
    return b"event: snapshot\nid: %d\ndata: %s\n\n" % (
        generation,
        orjson.dumps({"changed": True, "generation": generation}),
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(require_read)],
    summary="Prometheus text exposition of the headline figures",
)
async def metrics(request: Request) -> Response:
    st = state(request)
    cached = await st.cache.get()
    return PlainTextResponse(
        render_metrics(cached.data, st.feed.clients, await _alert_figures(st)),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
