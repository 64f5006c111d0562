"""The ASGI application: routes, error handling, the guard, and the background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Route, compile_path
from starlette.types import Scope

from codecdash import __version__
from codecdash.alerts.service import AlertService
from codecdash.api import (
    alerts,
    anchors,
    bdrates,
    curation,
    dashboard,
    docs,
    document,
    errors,
    experiments,
    fleet,
    metrics_history,
    vocabulary,
)
from codecdash.api.auth import install_log_redaction
from codecdash.api.bodies import document_bodies
from codecdash.api.cache import SnapshotCache
from codecdash.api.guard import Guard, allowed_hosts
from codecdash.api.ratelimit import WriteLimits
from codecdash.api.state import AppState
from codecdash.api.static import InlineSnapshot, StaticPage
from codecdash.api.timeout import RequestTimeout
from codecdash.backup.schedule import start_beside_server
from codecdash.config import Settings
from codecdash.events import ChangeFeed, listen_postgres, poll_version
from codecdash.experiments.curation import CurationService, purge_periodically
from codecdash.experiments.readmodel import ExperimentsBackend, ExperimentsReadModel
from codecdash.experiments.rederive import recomputing
from codecdash.experiments.service import ExperimentService
from codecdash.snapshot import SnapshotBuilder
from codecdash.sources.artifacts import ArtifactsScanner
from codecdash.sources.base import Source
from codecdash.store import Store
from codecdash.store.reads import SqlExperiments

log = logging.getLogger("codecdash")

DESCRIPTION = """
The codecdash API: experiments and their rate-distortion results, worker heartbeats and
costs go in (with a write token, `Authorization: Bearer <token>`); the dashboard snapshot,
the experiment table and a server-sent event stream come out.

Errors are JSON: `{"error": {"code": "...", "message": "...", "detail": [...]}}`
(`detail` lists at most 20 fields; the message counts them all).
Writes are authenticated and rate-limited before their body is read (401, 429). Request
bodies are capped at 4 MiB (413) and must arrive within `body_timeout_seconds` (408);
batches hold at most 1,000 items; reported times may be at most `max_future_seconds`
ahead of the server's clock (422).
The schemas state every
bound the server checks; the few rules they cannot express are in the operations'
descriptions, with the status they answer. One holds for every time (`format: date-time`):
it must fall within the years 1-9999 once converted to UTC and have no leap second (422).
"""


def build_sources(
    settings: Settings, store: Store, artifacts: ArtifactsScanner | None = None
) -> list[Source]:
    if settings.source == "aws":
        from codecdash.sources.aws import aws_sources  # boto3 only when asked for

        return list(aws_sources(settings))
    from codecdash.sources.local import local_sources

    return list(local_sources(store, settings, artifacts.totals if artifacts else None))


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    sources: Sequence[Source] | None = None,
    bind_host: str = "127.0.0.1",
    static_root: Path | None = None,
    background: bool = True,
    experiments_backend: ExperimentsBackend | None = None,
) -> FastAPI:
    """The app. `background=False` skips the cross-process change watcher (tests, Lambda);
    `experiments_backend`: where the experiments routes read (default: the store; on AWS
    the store is the read replica's copy, or without a replica bucket a backend that says
    what to set)."""
    store = store or Store(settings.database_url, active_window_s=settings.active_window_seconds)
    if store.db.is_sqlite and store.db.busy_timeout_ms != settings.sqlite_busy_timeout_ms:
        store.db.busy_timeout_ms = settings.sqlite_busy_timeout_ms
    feed = ChangeFeed(
        max_clients=settings.max_event_clients,
        max_per_address=settings.max_event_clients_per_address,
    )
    store.on_change(feed.notify)
    artifacts = (
        ArtifactsScanner(settings.artifacts_dir, settings.artifacts_scan_seconds)
        if settings.artifacts_dir and background
        else None
    )
    if sources is None:
        sources = build_sources(settings, store, artifacts)
    builder = SnapshotBuilder(settings, sources)
    ttl = max(1.0, min(5.0, settings.refresh_seconds / 3))
    cache = SnapshotCache(builder, feed, store.version, ttl)
    st = AppState(
        settings,
        store,
        builder,
        feed,
        WriteLimits.per_minute(settings.rate_limit_per_minute),
        cache,
        experiments=ExperimentsReadModel(
            experiments_backend or SqlExperiments(store),
            settings,
            recomputing=lambda: recomputing(store),
        ),
        writes=ExperimentService(store, settings),
    )
    if static_root is None and settings.page_dir:
        static_root = Path(settings.page_dir)
    st.extras["alerts"] = alert_service = AlertService(settings, store)
    st.extras["curation"] = curation_service = CurationService(store, settings)
    page = StaticPage(static_root, inline=True)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        backups = start_beside_server(settings, store, schedule=background)  # docs/backups.md
        await feed.start()
        tasks: list[asyncio.Task[None]] = []
        stop = threading.Event()
        listener: threading.Thread | None = None
        if background:
            tasks.append(asyncio.create_task(_prune_heartbeats(store, settings)))
            tasks.append(asyncio.create_task(purge_periodically(curation_service, settings)))
            tasks.append(asyncio.create_task(alert_service.run(cache.snapshot_data)))
            tasks += [asyncio.create_task(c) for c in metrics_history.background(st)]
            if artifacts is not None:
                artifacts.start()
            if store.db.is_sqlite:
                tasks.append(asyncio.create_task(poll_version(feed, store.version)))
            elif store.db.dialect == "postgresql":
                listener = threading.Thread(
                    target=listen_postgres,
                    args=(feed, store.db.url, stop),
                    daemon=True,
                    name="codecdash-pg-listen",
                )
                listener.start()
        try:
            yield
        finally:
            stop.set()
            if artifacts is not None:
                artifacts.stop()
            for task in tasks:
                task.cancel()
            await feed.stop()
            builder.close()
            if listener is not None:
                listener.join(timeout=2)
            await backups.stop()

    app = FastAPI(
        title="codecdash",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py, with its own Content-Security-Policy
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.codecdash = st
    errors.install(app)
    app.include_router(dashboard.router)
    app.include_router(experiments.router)
    app.include_router(curation.router)
    app.include_router(fleet.router)
    app.include_router(anchors.router)
    app.include_router(bdrates.router)
    app.include_router(alerts.router)
    app.include_router(vocabulary.router)
    metrics_history.install(app, st)
    app.include_router(docs.router)

    @app.api_route("/{name:path}", methods=list(ANY_METHOD), include_in_schema=False)
    async def static(request: Request, name: str) -> Response:
        # Every method lands here when no route takes it: a path that routes serve with
        # other methods answers 405 listing all of them (not the first route's, not 404).
        allowed = _methods_at(app, request.url.path)
        if not allowed and (name == "" or name in page.assets):
            allowed = ["GET", "HEAD"]
        if allowed and request.method not in allowed:
            raise errors.ApiError(
                405,
                f"{request.method} is not allowed on /{name}; use {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        snapshot = None
        if name in ("", "index.html") and not settings.private:
            snapshot = await _inline_snapshot(st)
        response = page.response(request, name, snapshot)
        if response is None:
            raise errors.ApiError(404, f"no such page: /{name}")
        return response

    _document_raw_bodies(app)
    app.add_middleware(dashboard.SnapshotFastPath, state=st)
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_seconds)
    app.add_middleware(
        Guard,
        hosts=allowed_hosts(bind_host, settings.allowed_hosts),
        state=st,
        takes_write_token=_write_routes(app),
    )
    if settings.forwarded_allow_ips:  # outermost: the client address the guard limits
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    install_log_redaction()
    return app


async def _inline_snapshot(st: AppState) -> InlineSnapshot | None:
    """The snapshot that goes into index.html (the headline figures in the first response),
    with the current alerts; None when it cannot be had, and the page then asks the API."""
    try:
        cached = await st.cache.get()
    except Exception as exc:
        log.warning("index.html without the snapshot: %s", exc)
        return None
    try:
        alerts_json: bytes | None = await asyncio.to_thread(alerts.page_alerts_json, st)
    except Exception as exc:  # the strip then asks the API, as it does after each change
        log.warning("index.html without the alerts: %s", exc)
        alerts_json = None
    return InlineSnapshot(cached.body, cached.etag, alerts_json)


def _write_routes(app: FastAPI) -> Callable[[Scope], bool]:
    """Whether a request goes to an operation that takes a write token (those declaring the
    bearer scheme for a write: `require_write`); the guard authenticates them before
    reading their body."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = None

    def takes_write_token(scope: Scope) -> bool:
        nonlocal table
        if table is None:
            table = [
                (
                    compile_path(template)[0],
                    {m.upper() for m, op in operations.items() if op.get("security")},
                )
                for template, operations in app.openapi().get("paths", {}).items()
            ]
        method, path = scope["method"], scope["path"]
        return any(method in methods and regex.match(path) for regex, methods in table)

    return takes_write_token


ANY_METHOD = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _methods_at(app: FastAPI, path: str) -> list[str]:
    """The methods served at this path: its OpenAPI operations, or the document's own routes."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "methods_at", None)
    if table is None:
        table = [
            (compile_path(template)[0], {m.upper() for m in operations})
            for template, operations in app.openapi().get("paths", {}).items()
        ]
        table += [
            (route.path_regex, set(route.methods))
            for route in app.router.routes
            if isinstance(route, Route) and route.methods and route.path != "/{name:path}"
        ]
        app.state.methods_at = table
    matches = [(regex, served) for regex, served in table if regex.match(path)]
    # As in OpenAPI, a concrete path (…/batch) wins over a template (…/{experiment_id}).
    concrete = [served for regex, served in matches if "(?P<" not in regex.pattern]
    methods = set().union(*(concrete or [served for _, served in matches]))
    return sorted(methods, key=lambda m: ANY_METHOD.index(m) if m in ANY_METHOD else 99)


async def _prune_heartbeats(store: Store, settings: Settings) -> None:
    """Hourly: drop raw heartbeats past retention (workers' newest state is kept)."""
    while True:
        cutoff = time.time() - settings.heartbeat_retention_days * 86400
        try:
            deleted = await asyncio.to_thread(store.prune_heartbeats, cutoff)
            await asyncio.to_thread(store.analyze)
            if deleted:
                log.info(
                    "pruned %d heartbeats older than %g days",
                    deleted,
                    settings.heartbeat_retention_days,
                )
        except Exception as exc:  # the store may be briefly unavailable; try next hour
            log.warning("heartbeat pruning failed: %s", exc)
        await asyncio.sleep(3600)


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that validate raw bytes themselves (api/bodies.py) still get their body
    schemas documented."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_bodies(schema.setdefault("components", {}).setdefault("schemas", {}))
            _document_rules(schema, private=app.state.codecdash.settings.private)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


PUBLIC_READS = frozenset({"/api/v1/health"})


def _document_rules(schema: dict[str, Any], *, private: bool) -> None:
    """Rules enforced in code, stated in the document too (clients and fuzzers read it)."""
    document.complete(schema)

    def given(name: str) -> dict[str, Any]:
        return {"required": [name], "properties": {name: {"type": "number"}}}

    point = schema.get("components", {}).get("schemas", {}).get("RDPoint")
    if point is not None:  # RDPoint's validator: a rate and a quality
        point["allOf"] = [
            {"anyOf": [given("bitrate_kbps"), given("bpp")]},
            {"anyOf": [given("psnr_db"), given("ms_ssim")]},
        ]
    if private:  # require_read: every read but health needs a token
        for path, operations in schema.get("paths", {}).items():
            read = operations.get("get")
            if read is None or path in PUBLIC_READS:
                continue
            read.setdefault("security", [{"bearer": []}])
            read.setdefault("responses", {}).setdefault(
                "401",
                {
                    "description": "Private dashboard: a read token is required",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                        }
                    },
                },
            )
    # Validation errors answer the one error shape (errors.py), not FastAPI's default.
    error_shape = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            invalid = operation.get("responses", {}).get("422")
            if invalid is not None:
                invalid["content"] = error_shape
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"/{unused}" not in repr(schema.get("paths", {})) + repr(schemas):
            schemas.pop(unused, None)
