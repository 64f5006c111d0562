"""Heartbeats: the raw history, the newest state per worker, and accrued worker cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from codecdash.store import schema
from codecdash.store.costs import add_daily
from codecdash.store.counters import bump_counters

H = schema.heartbeats
W = schema.workers
FIGURES = (
    "status",
    "instance_type",
    "spot",
    "hourly_cost_usd",
    "cpu_pct",
    "mem_pct",
    "gpu_util_pct",
    "gpu_mem_pct",
    "fps",
    "queue_depth",
)


def record_heartbeat(
    conn: Connection, beat: Mapping[str, Any], active_window_s: float, now: float | None = None
) -> None:
    """Store one heartbeat; update the worker's newest state and accrue its cost.

    Accrual: the time since the worker's previous heartbeat, capped at the active window
    (a silent worker is not billed beyond it), at the previous heartbeat's hourly cost.
    A heartbeat older than the worker's newest is history only; a newest one dated after
    `now` (the server's receive time; heartbeats are never dated later since the API
    clamps them, so only a row written before that can be) is a ghost and is replaced.
    """
    at = float(beat["at"])
    extra = orjson.dumps(beat["extra"]).decode() if beat.get("extra") is not None else None
    row = {"worker_id": beat["worker_id"], "role": beat["role"], "at": at, "extra": extra}
    row.update({name: beat.get(name) for name in FIGURES})
    conn.execute(H.insert(), row)
    bump_counters(conn, {"rows.heartbeats": 1})

    current = conn.execute(
        select(W.c.last_seen, W.c.hourly_cost_usd, W.c.role).where(
            W.c.worker_id == beat["worker_id"]
        )
    ).first()
    shutdown = bool(beat.get("extra") and beat["extra"].get("shutdown"))
    state = {name: beat.get(name) for name in FIGURES}
    state.update(role=beat["role"], last_seen=at, extra=extra, clean_shutdown=shutdown)
    if current is None:
        conn.execute(W.insert(), {"worker_id": beat["worker_id"], "first_seen": at, **state})
        return
    last_seen, hourly, role = float(current[0]), current[1], str(current[2])
    ghost = now is not None and last_seen > now
    if at < last_seen and not ghost:
        return  # a late, out-of-order heartbeat: history only
    if hourly and not ghost:
        seconds = min(at - last_seen, active_window_s)
        add_daily(conn, at, _component(role), hourly * seconds / 3600.0)
    conn.execute(W.update().where(W.c.worker_id == beat["worker_id"]).values(**state))


def _component(role: str) -> str:
    return role if role in ("training", "inference", "orchestrator") else "other"


def workers_by_role(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(select(W)).mappings():
        out.setdefault(row["role"], []).append(dict(row))
    return out


def newest_queue_depth(conn: Connection, role: str, not_after: float) -> int | None:
    """The newest reported queue depth of a role, of heartbeats dated `not_after` at the
    latest (a ghost from the future, stored before times were checked, never wins)."""
    value = conn.execute(
        select(H.c.queue_depth)
        .where(H.c.role == role, H.c.queue_depth.is_not(None), H.c.at <= not_after)
        .order_by(H.c.at.desc())
        .limit(1)
    ).scalar()
    return int(value) if value is not None else None


def prune_heartbeats(conn: Connection, before: float) -> int:
    deleted = conn.execute(H.delete().where(H.c.at < before)).rowcount or 0
    if deleted:
        bump_counters(conn, {"rows.heartbeats": -deleted})
    return deleted


def heartbeat_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(H)).scalar_one())
