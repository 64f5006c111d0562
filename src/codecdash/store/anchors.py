"""Anchors (reference rate-distortion curves) and re-deriving BD-rates when they change."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.store import experiments, schema

A = schema.anchors
C = schema.counters
E = schema.experiments
BASIS = "bd_rate.basis"


def put(
    conn: Connection,
    name: str,
    description: str | None,
    points: list[dict[str, Any]],
    now: float,
) -> bool:
    """Create or replace an anchor; returns whether it was created.

    A replaced anchor keeps its creation time, so "the first imported anchor" (the one in
    force when none is configured) does not change when a file is imported again.
    """
    created = conn.execute(select(A.c.name).where(A.c.name == name)).first() is None
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(A)
    values = {
        "name": name,
        "description": description,
        "rd_points": orjson.dumps(points).decode(),
        "created_at": now,
    }
    conn.execute(
        insert.values(values).on_conflict_do_update(
            index_elements=[A.c.name],
            set_={
                "description": insert.excluded.description,
                "rd_points": insert.excluded.rd_points,
            },
        )
    )
    return created


def delete(conn: Connection, name: str) -> bool:
    return conn.execute(A.delete().where(A.c.name == name)).rowcount > 0


def list_all(conn: Connection) -> list[dict[str, Any]]:
    """Oldest first (then by name): the first is the one in force when none is configured."""
    rows = conn.execute(select(A).order_by(A.c.created_at, A.c.name)).mappings()
    return [{**r, "rd_points": orjson.loads(r["rd_points"])} for r in rows]


def read_basis(conn: Connection) -> int | None:
    """What the stored BD-rates were last derived on (see `codecdash.anchors.basis`)."""
    value = conn.execute(select(C.c.n).where(C.c.name == BASIS)).scalar()
    return None if value is None else int(value)


UNDER_WAY = -1
"""The basis while a re-derivation is under way (codecdash.anchors.basis never gives it):
an interrupted one is then redone by the next."""


def write_basis(conn: Connection, value: int) -> None:
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(C)
    conn.execute(
        insert.values(name=BASIS, n=value).on_conflict_do_update(
            index_elements=[C.c.name], set_={"n": insert.excluded.n}
        )
    )


Derived = tuple[float | None, str | None]
"""(bd_rate_pct, bd_rate_anchor) of one experiment."""


def curves_after(conn: Connection, after_id: str | None, limit: int) -> list[tuple[str, str]]:
    """(id, rd_points as stored) of the next `limit` experiments with rd_points, by id."""
    stmt = select(E.c.id, E.c.rd_points).where(E.c.rd_points.is_not(None))
    if after_id is not None:
        stmt = stmt.where(E.c.id > after_id)
    return [(str(i), str(p)) for i, p in conn.execute(stmt.order_by(E.c.id).limit(limit))]


def derive(points_json: str | None, bd_rate: experiments.BdRateFn | None) -> Derived:
    points = orjson.loads(points_json) if points_json else None
    derived = bd_rate(points) if bd_rate is not None and points else None
    return derived if derived is not None else (None, None)


def apply_derived(
    conn: Connection, derived: dict[str, tuple[str, Derived]], bd_rate: experiments.BdRateFn | None
) -> int:
    """Store figures derived outside the transaction; returns how many rows changed.

    `derived` maps id -> (rd_points the figures were derived from, figures). A row whose
    rd_points were rewritten meanwhile is derived again here. Changed rows go through
    `experiments.upsert`, so counters stay and the per-hour bests
    (progress_hourly.best_bd_rate_pct) follow, whether a value got better or worse.
    `updated_at` is left alone: the experiment did not report anything new.
    """
    changed = []
    for row in conn.execute(select(E).where(E.c.id.in_(list(derived)))).mappings():
        points_json, figures = derived[row["id"]]
        if row["rd_points"] != points_json:
            figures = derive(row["rd_points"], bd_rate)
        if figures != (row["bd_rate_pct"], row["bd_rate_anchor"]):
            changed.append({**row, "bd_rate_pct": figures[0], "bd_rate_anchor": figures[1]})
    experiments.upsert(conn, changed)
    return len(changed)
