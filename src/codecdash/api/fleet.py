"""Heartbeats and costs: what workers and billing report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Discriminator, Tag
from starlette.responses import Response

from codecdash.api.auth import require_write
from codecdash.api.bodies import JsonBody
from codecdash.api.experiments import (
    CLOCK_RULE,
    WRITE_ERRORS,
    beyond_the_schema,
    json_response,
)
from codecdash.api.state import state
from codecdash.models import MAX_EXTRA_BYTES, Accepted, CostBatch, CostRecord, Heartbeat

router = APIRouter(prefix="/api/v1", tags=["fleet and costs"])


def _cost_shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "items" in value else "one"


# One record, or {"items": [...]}: chosen by the `items` key, so an error names the field
# at fault in the shape that was sent (not "component: Field required" for a batch).
CostBody = Annotated[
    Annotated[CostRecord, Tag("one")] | Annotated[CostBatch, Tag("batch")],
    Discriminator(_cost_shape),
]
HEARTBEAT: JsonBody[Heartbeat] = JsonBody(Heartbeat, "Heartbeat")
COSTS: JsonBody[CostRecord | CostBatch] = JsonBody(CostBody, "CostBody")


@router.post(
    "/heartbeats",
    status_code=202,
    response_model=Accepted,
    summary="A worker's heartbeat (orchestrator, training or inference)",
    description=beyond_the_schema(
        f"`extra` longer than {MAX_EXTRA_BYTES:,} bytes as JSON", CLOCK_RULE
    ),
    responses=WRITE_ERRORS,
    openapi_extra=HEARTBEAT.openapi,
)
def heartbeat(
    request: Request,
    beat: Annotated[Heartbeat, Depends(HEARTBEAT)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    state(request).store.heartbeat(beat.model_dump())
    return json_response({"accepted": 1}, 202)


@router.post(
    "/costs",
    status_code=201,
    response_model=Accepted,
    summary='One cost record, or {"items": [...]} of up to 1,000',
    description=beyond_the_schema(CLOCK_RULE),
    responses=WRITE_ERRORS,
    openapi_extra=COSTS.openapi,
)
def costs(
    request: Request,
    body: Annotated[CostRecord | CostBatch, Depends(COSTS)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    records = body.items if isinstance(body, CostBatch) else [body]
    accepted = state(request).store.add_costs([r.model_dump() for r in records])
    return json_response({"accepted": accepted}, 201)
