"""Heartbeats and costs: what workers and billing report."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from codecdash.api.auth import require_write
from codecdash.api.experiments import WRITE_ERRORS
from codecdash.api.state import state
from codecdash.models import Accepted, CostBatch, CostRecord, Heartbeat

router = APIRouter(prefix="/api/v1", tags=["fleet and costs"])


@router.post(
    "/heartbeats",
    status_code=202,
    response_model=Accepted,
    summary="A worker's heartbeat (orchestrator, training or inference)",
    responses=WRITE_ERRORS,
)
def heartbeat(
    request: Request, beat: Heartbeat, _token: Annotated[str, Depends(require_write)]
) -> Response:
    state(request).store.heartbeat(beat)
    return Response(orjson.dumps({"accepted": 1}), status_code=202, media_type="application/json")


@router.post(
    "/costs",
    status_code=201,
    response_model=Accepted,
    summary='One cost record, or {"items": [...]} of up to 1,000',
    responses=WRITE_ERRORS,
)
def costs(
    request: Request,
    body: CostRecord | CostBatch,
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    records = body.items if isinstance(body, CostBatch) else [body]
    accepted = state(request).store.add_costs(records)
    return Response(
        orjson.dumps({"accepted": accepted}), status_code=201, media_type="application/json"
    )
