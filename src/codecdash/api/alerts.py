"""Alerts: the current ones, their history, the notifications' deliveries, acknowledging."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from codecdash.alerts.model import SHOWN_STATES, Alert, payload_item
from codecdash.alerts.rules import BY_NAME
from codecdash.api.auth import require_read, require_write
from codecdash.api.errors import ApiError
from codecdash.api.experiments import WRITE_ERRORS, json_response
from codecdash.api.state import AppState, state
from codecdash.models import ErrorResponse
from codecdash.store.alerts import AlertStore, NotActive, NotFound
from codecdash.timefmt import iso

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
_ONE_STATE = "(?:" + "|".join(SHOWN_STATES) + ")"
STATE_PATTERN = rf"^,*(?:{_ONE_STATE}(?:,+{_ONE_STATE})*,*)?$"
DELIVERY_STATES = ("pending", "sent", "failed")
_ONE_DELIVERY = "(?:" + "|".join(DELIVERY_STATES) + ")"
DELIVERY_PATTERN = rf"^,*(?:{_ONE_DELIVERY}(?:,+{_ONE_DELIVERY})*,*)?$"


class AlertView(BaseModel):
    id: int
    rule: str
    severity: Literal["info", "warning", "critical"]
    state: Literal["pending", "firing", "resolved"]
    since: datetime
    summary: str
    labels: dict[str, str]
    value: float | None
    fired_at: datetime | None
    resolved_at: datetime | None
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    description: str


class AlertList(BaseModel):
    alerts: list[AlertView]
    channels: list[str]
    deliveries: dict[str, int]


class HistoryItem(BaseModel):
    seq: int
    alert_id: int
    rule: str
    labels: dict[str, str]
    severity: str
    state: Literal["pending", "firing", "resolved", "acknowledged"]
    at: datetime
    summary: str
    notified: bool
    actor: str | None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class Delivery(BaseModel):
    id: int
    channel: str
    state: Literal["pending", "sent", "failed"]
    created_at: datetime
    attempts: int
    next_try_at: datetime | None
    last_try_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    alerts: int


class DeliveryList(BaseModel):
    items: list[Delivery]


def alert_store(st: AppState) -> AlertStore:
    service = st.extras.get("alerts")
    return service.alerts if service is not None else AlertStore(st.store)


def _time(value: float | None) -> str | None:
    return iso(value) if value is not None else None


def alert_view(alert: Alert) -> dict[str, Any]:
    rule = BY_NAME.get(alert.rule)
    return {
        **payload_item(alert),
        "fired_at": _time(alert.fired_at),
        "resolved_at": _time(alert.resolved_at),
        "acknowledged": alert.acknowledged_at is not None,
        "acknowledged_at": _time(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "description": rule.description if rule is not None else "",
    }


def _state_query(names: str, pattern: str) -> Any:
    """The `state` filter of a list: some of `names`, comma-separated (read by _states)."""
    return Query(
        alias="state",
        max_length=100,
        description=f"Comma-separated: {names} (default all three)",
        json_schema_extra={"pattern": pattern},
    )


def _states(text: str, known: tuple[str, ...]) -> list[str]:
    states = [s for s in text.split(",") if s]
    unknown = [s for s in states if s not in known]
    if unknown:
        raise ApiError(400, f"unknown state {unknown[0]!r}; one of {', '.join(known)}")
    return states or list(known)


@router.get(
    "",
    response_model=AlertList,
    dependencies=[Depends(require_read)],
    summary="Current alerts: firing, pending, and those resolved in the last `resolved_hours`",
    responses={400: {"model": ErrorResponse}},
)
def list_alerts(
    request: Request,
    state_: Annotated[str, _state_query("pending, firing, resolved", STATE_PATTERN)] = "",
    resolved_hours: Annotated[
        float, Query(ge=0, le=720, allow_inf_nan=False, description="Resolved ones this recent")
    ] = 24.0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    states = _states(state_, SHOWN_STATES)
    return json_response(current_alerts(state(request), states, resolved_hours, limit))


def current_alerts(
    st: AppState, states: Sequence[str], resolved_hours: float = 24.0, limit: int = 200
) -> dict[str, Any]:
    """The answer of `GET /api/v1/alerts` (an AlertList) for these states."""
    store = alert_store(st)
    alerts = store.current(states, resolved_since=time.time() - resolved_hours * 3600)
    counts: dict[str, int] = {s: 0 for s in DELIVERY_STATES}
    for (_channel, delivery_state), n in store.delivery_counts().items():
        counts[delivery_state] = counts.get(delivery_state, 0) + n
    service = st.extras.get("alerts")
    channels = sorted(service.channels) if service is not None else []
    return {
        "alerts": [alert_view(a) for a in alerts[:limit]],
        "channels": channels,
        "deliveries": counts,
    }


def page_alerts_json(st: AppState) -> bytes:
    """What the page's alert strip asks first (`?state=pending,firing`), as JSON: put in
    index.html beside the snapshot, so that the strip is drawn with the first figures
    (it would otherwise push them down when it arrives)."""
    return orjson.dumps(current_alerts(st, ("pending", "firing")))


@router.get(
    "/history",
    response_model=HistoryPage,
    dependencies=[Depends(require_read)],
    summary="What happened to alerts (pending, firing, resolved, acknowledged), newest first",
    responses={400: {"model": ErrorResponse}},
)
def alert_history(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=18,
            description="next_cursor of the previous page",
            json_schema_extra={"pattern": r"^[0-9]+$"},
        ),
    ] = None,
    rule: Annotated[str | None, Query(max_length=64, description="One rule's history")] = None,
) -> Response:
    rows, next_cursor = alert_store(state(request)).history(limit, cursor, rule)
    for row in rows:
        row["at"] = iso(row["at"])
    return json_response({"items": rows, "next_cursor": next_cursor})


@router.get(
    "/deliveries",
    response_model=DeliveryList,
    dependencies=[Depends(require_read)],
    summary="Notification messages and their delivery: attempts, next try, last error",
    responses={400: {"model": ErrorResponse}},
)
def deliveries(
    request: Request,
    state_: Annotated[str, _state_query("pending, sent, failed", DELIVERY_PATTERN)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    states = _states(state_, DELIVERY_STATES)
    rows = alert_store(state(request)).deliveries(states, limit)
    for row in rows:
        for key in ("created_at", "next_try_at", "last_try_at", "sent_at"):
            row[key] = _time(row[key])
        if row["state"] != "pending":
            row["next_try_at"] = None
    return json_response({"items": rows})


@router.post(
    "/{alert_id}/ack",
    response_model=AlertView,
    summary="Acknowledge a pending or firing alert (someone is on it)",
    responses={
        **WRITE_ERRORS,
        404: {"model": ErrorResponse, "description": "No such alert"},
        409: {"model": ErrorResponse, "description": "The alert is resolved"},
    },
)
def acknowledge(
    request: Request,
    alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    token: Annotated[str, Depends(require_write)],
) -> Response:
    try:
        alert = alert_store(state(request)).acknowledge(alert_id, token)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except NotActive as exc:
        raise ApiError(409, str(exc)) from None
    return json_response(alert_view(alert))
