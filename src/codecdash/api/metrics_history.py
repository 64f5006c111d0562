"""Training curves over HTTP: per-step metrics in (one experiment or many), downsampled
curves and CSV of the raw points out, and the background tasks that go with them.

(api/metrics.py is the Prometheus exporter; this module is the experiments' own metrics.)
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from codecdash.api.auth import require_read, require_write
from codecdash.api.bodies import JsonBody
from codecdash.api.errors import ApiError
from codecdash.api.experiments import (
    CLOCK_RULE,
    WRITE_ERRORS,
    IdPath,
    beyond_the_schema,
    json_response,
)
from codecdash.api.state import AppState, state
from codecdash.curve_models import Curves, MetricPoint, MetricPoints, MetricsBatch
from codecdash.curve_rules import (
    DEFAULT_POINTS_PER_SERIES,
    MAX_NAMES_PER_QUERY,
    MAX_POINTS_PER_SERIES,
    MAX_STEP,
    METRIC_NAME_PATTERN,
    METRIC_NAME_RULE,
)
from codecdash.events import ChangeFeed
from codecdash.models import Accepted, ErrorResponse
from codecdash.store import Store
from codecdash.store.curves import TooManyMetrics, UnknownExperiments

log = logging.getLogger("codecdash")
router = APIRouter(prefix="/api/v1", tags=["training curves"])

_NAME = METRIC_NAME_PATTERN.removeprefix("^").removesuffix("$")
NAMES_PATTERN = rf"^{_NAME}(?:,{_NAME}){{0,{MAX_NAMES_PER_QUERY - 1}}}$"
_ONE_NAME = re.compile(METRIC_NAME_PATTERN)
POLL_SECONDS = 0.5
PRUNE_SECONDS = 3600.0


# The bodies, validated off the event loop with the server's clock (api/bodies.py).
METRIC_POINTS: JsonBody[MetricPoints] = JsonBody(MetricPoints, "MetricPoints")
METRICS_BATCH: JsonBody[MetricsBatch] = JsonBody(MetricsBatch, "MetricsBatch")


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such experiment (nothing is stored)"}
}


def _log(store: Store, items: Sequence[tuple[str, Sequence[MetricPoint]]]) -> int:
    """In a worker thread, as the parsing: a request of 10,000 steps costs tens of
    milliseconds of CPU, which the event loop (the dashboard's reads) must not wait for."""
    try:
        return store.log_metrics(items)
    except UnknownExperiments as exc:
        raise ApiError(404, str(exc)) from None
    except TooManyMetrics as exc:
        raise ApiError(422, str(exc)) from None


@router.post(
    "/experiments/{experiment_id}/metrics",
    status_code=202,
    response_model=Accepted,
    summary="Log training steps of one experiment: up to 10,000 points per request",
    responses={**NOT_FOUND, **WRITE_ERRORS},
    description=beyond_the_schema(CLOCK_RULE),
    openapi_extra=METRIC_POINTS.openapi,
)
async def log_points(
    request: Request,
    experiment_id: IdPath,
    body: Annotated[MetricPoints, Depends(METRIC_POINTS)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    items = [(experiment_id, body.points)]
    accepted = await run_in_threadpool(_log, state(request).store, items)
    return json_response({"accepted": accepted}, 202)


@router.post(
    "/metrics",
    status_code=202,
    response_model=Accepted,
    summary="Log training steps of several experiments in one transaction (all or nothing)",
    responses={**NOT_FOUND, **WRITE_ERRORS},
    description=beyond_the_schema(CLOCK_RULE + " (in any item)"),
    openapi_extra=METRICS_BATCH.openapi,
)
async def log_batch(
    request: Request,
    body: Annotated[MetricsBatch, Depends(METRICS_BATCH)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    items = [(item.experiment_id, item.points) for item in body.items]
    accepted = await run_in_threadpool(_log, state(request).store, items)
    return json_response({"accepted": accepted}, 202)


@router.get(
    "/experiments/{experiment_id}/metrics",
    response_model=Curves,
    dependencies=[Depends(require_read)],
    summary="An experiment's training curves, downsampled (or its raw points as CSV)",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **NOT_FOUND,
        422: {"model": ErrorResponse, "description": "Invalid parameters"},
    },
)
def curves(
    request: Request,
    experiment_id: IdPath,
    names: Annotated[
        str | None,
        Query(
            description=f"Metric names, comma-separated (up to {MAX_NAMES_PER_QUERY}); default: "
            f"the first {MAX_NAMES_PER_QUERY}, the loss first",
            examples=["loss,bpp"],
            max_length=MAX_NAMES_PER_QUERY * 101,
            json_schema_extra={"pattern": NAMES_PATTERN},
        ),
    ] = None,
    max_points: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_POINTS_PER_SERIES,
            description="At most this many points per series (buckets when downsampled)",
        ),
    ] = DEFAULT_POINTS_PER_SERIES,
    after_step: Annotated[
        int | None,
        Query(ge=0, le=MAX_STEP, description="Only steps after this one (live updates)"),
    ] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="csv: every raw point, as metric,step,time,value (also Accept)"),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    chosen = _names(names)
    store = state(request).store
    if format == "csv" or (format is None and "text/csv" in (accept or "")):
        pieces = store.metric_csv(experiment_id, chosen)
        if pieces is None:
            raise ApiError(404, f"no experiment {experiment_id!r}")
        return StreamingResponse(
            pieces,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{experiment_id}-metrics.csv"'},
        )
    answer = store.metric_history(experiment_id, chosen, max_points, after_step)
    if answer is None:
        raise ApiError(404, f"no experiment {experiment_id!r}")
    return json_response(answer)


def _names(names: str | None) -> list[str] | None:
    if names is None:
        return None
    parts = names.split(",")
    if len(parts) > MAX_NAMES_PER_QUERY:
        raise ApiError(422, f"names: at most {MAX_NAMES_PER_QUERY} metric names")
    for part in parts:
        if not _ONE_NAME.fullmatch(part):
            raise ApiError(422, f"names: {part[:100]!r} is not a metric name ({METRIC_NAME_RULE})")
    return parts


# -- wiring -----------------------------------------------------------------------------
def install(app: FastAPI, st: AppState) -> None:
    """The routes; the loss rule's setting; metrics writes announced on the event stream."""
    app.include_router(router)
    st.store.loss_rise = st.settings.training_loss_rise_pct / 100
    st.store.on_metrics(st.feed.notify_metrics)


def background(st: AppState) -> list[Coroutine[Any, Any, None]]:
    """The tasks a serving app runs: other processes' metrics writes onto the event
    stream, and raw-point retention."""
    return [follow_writes(st.store, st.feed), prune_raw_points(st)]


async def follow_writes(store: Store, feed: ChangeFeed, interval: float = POLL_SECONDS) -> None:
    """Steps written by other processes or replicas (this one's are announced directly)."""
    seq: int | None = None
    while True:
        try:
            if seq is None:
                seq = await asyncio.to_thread(store.metrics_seq)
            else:
                rows = await asyncio.to_thread(store.metrics_written_since, seq)
                if rows:
                    seq = rows[-1][2]
                    feed.notify_metrics({experiment_id: step for experiment_id, step, _ in rows})
        except Exception as exc:  # the store being down is reported elsewhere
            log.debug("metrics poll failed: %s", exc)
        await asyncio.sleep(interval)


async def prune_raw_points(st: AppState) -> None:
    """Hourly: raw points of quiet metrics past retention are dropped (tiers stay)."""
    days = st.settings.metrics_raw_retention_days
    if days <= 0:
        return
    while True:
        try:
            pruned = await asyncio.to_thread(st.store.prune_metrics, time.time() - days * 86400)
            if pruned:
                log.info(
                    "dropped the raw points of %d quiet metrics (older than %g days)", pruned, days
                )
        except Exception as exc:  # the store may be briefly unavailable; try next hour
            log.warning("metrics retention failed: %s", exc)
        await asyncio.sleep(PRUNE_SECONDS)
