"""The audit log: who deleted, restored, purged or edited which experiments, and when.

One row per operation, written in the operation's own transaction (an operation that
rolls back leaves no entry). `actor` is the write token's name (``local:<user>`` for the
command line, which needs no token; null for serve's hourly purge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, insert, select

from codecdash.store import schema

A = schema.audit_log
AUDIT_IDS = 1000
"""Ids kept per entry; `count` says how many the operation touched."""
Action = Literal["delete", "restore", "purge", "edit"]
ACTIONS: tuple[Action, ...] = ("delete", "restore", "purge", "edit")


def record(
    conn: Connection,
    action: Action,
    ids: Sequence[str],
    actor: str | None,
    at: float,
    details: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(A).values(
            at=at,
            actor=actor,
            action=action,
            count=len(ids),
            ids=orjson.dumps(list(ids[:AUDIT_IDS])).decode(),
            details=orjson.dumps(details).decode() if details else None,
        )
    )


def entries(
    conn: Connection,
    limit: int,
    before: int | None = None,
    action: str | None = None,
    actor: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """The newest entries first (those before sequence number `before`), and the `before`
    of the next page (None on the last)."""
    stmt = select(A).order_by(A.c.seq.desc()).limit(limit + 1)
    if before is not None:
        stmt = stmt.where(A.c.seq < before)
    if action is not None:
        stmt = stmt.where(A.c.action == action)
    if actor is not None:
        stmt = stmt.where(A.c.actor == actor)
    found = [dict(r) for r in conn.execute(stmt).mappings()]
    more = len(found) > limit
    found = found[:limit]
    out = [
        {
            "seq": int(r["seq"]),
            "at": float(r["at"]),
            "actor": r["actor"],
            "action": r["action"],
            "count": int(r["count"]),
            "ids": orjson.loads(r["ids"]),
            "details": orjson.loads(r["details"]) if r["details"] else None,
        }
        for r in found
    ]
    return out, (out[-1]["seq"] if more and out else None)
