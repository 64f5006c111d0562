"""Anchors (reference rate-distortion curves), and the primitives that re-derive BD-rates:
read the curves in batches, write the derived figures (the deriving is done above)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.store import experiments, schema

A = schema.anchors
C = schema.counters
E = schema.experiments
BASIS = "bd_rate.basis"


UNSPECIFIED = ""
"""The stored `dataset` of the anchors of the unspecified set (null in the API)."""


def _key(dataset: str | None) -> str:
    return UNSPECIFIED if dataset is None else dataset


def put(
    conn: Connection,
    name: str,
    description: str | None,
    points: list[dict[str, Any]],
    now: float,
    dataset: str | None = None,
) -> bool:
    """Create or replace an anchor of a test set (None: the unspecified set); returns
    whether it was created.

    A replaced anchor keeps its creation time, so "the first imported anchor" (the one in
    force when none is configured) does not change when a file is imported again.
    """
    key = _key(dataset)
    found = select(A.c.name).where(A.c.dataset == key, A.c.name == name)
    created = conn.execute(found).first() is None
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(A)
    values = {
        "dataset": key,
        "name": name,
        "description": description,
        "rd_points": orjson.dumps(points).decode(),
        "created_at": now,
    }
    conn.execute(
        insert.values(values).on_conflict_do_update(
            index_elements=[A.c.dataset, A.c.name],
            set_={
                "description": insert.excluded.description,
                "rd_points": insert.excluded.rd_points,
            },
        )
    )
    return created


def delete(conn: Connection, name: str, dataset: str | None = None) -> bool:
    where = A.delete().where(A.c.dataset == _key(dataset), A.c.name == name)
    return conn.execute(where).rowcount > 0


def list_all(conn: Connection) -> list[dict[str, Any]]:
    """Oldest first (then by set and name): the first of a set is the one in force there
    when none is configured. `dataset` is None for the unspecified set."""
    rows = conn.execute(select(A).order_by(A.c.created_at, A.c.dataset, A.c.name)).mappings()
    return [
        {
            **r,
            "dataset": r["dataset"] or None,
            "rd_points": orjson.loads(r["rd_points"]),
        }
        for r in rows
    ]


def read_basis(conn: Connection) -> int | None:
    """What the stored BD-rates were last derived on (`codecdash.experiments.rederive.basis`)."""
    value = conn.execute(select(C.c.n).where(C.c.name == BASIS)).scalar()
    return None if value is None else int(value)


UNDER_WAY = -1
"""The basis while a re-derivation is under way (`rederive.basis` never gives it): an
interrupted one is then redone by the next."""


def write_basis(conn: Connection, value: int) -> None:
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(C)
    conn.execute(
        insert.values(name=BASIS, n=value).on_conflict_do_update(
            index_elements=[C.c.name], set_={"n": insert.excluded.n}
        )
    )


Curve = tuple[str, str | None]
"""(rd_points as stored, dataset): what a derived BD-rate depends on of its experiment."""


def curves_after(
    conn: Connection, after_id: str | None, limit: int
) -> list[tuple[str, str, str | None]]:
    """(id, rd_points as stored, dataset) of the next `limit` experiments with rd_points,
    by id."""
    stmt = select(E.c.id, E.c.rd_points, E.c.dataset).where(E.c.rd_points.is_not(None))
    if after_id is not None:
        stmt = stmt.where(E.c.id > after_id)
    found = conn.execute(stmt.order_by(E.c.id).limit(limit))
    return [(str(i), str(p), None if d is None else str(d)) for i, p, d in found]


Derived = tuple[Curve, float | None, str | None]
"""((rd_points as stored, dataset), bd_rate_pct, bd_rate_anchor): figures derived from
that curve on that set."""


def write_derived(conn: Connection, derived: Mapping[str, Derived]) -> tuple[int, dict[str, Curve]]:
    """Store BD-rates derived outside the transaction, by experiment id.

    Returns how many rows changed, and the rows whose rd_points or set were rewritten since
    the figures were derived (id -> (rd_points, dataset) as stored now), which are left as
    they are: the caller derives those again. Changed rows go through `experiments.upsert`,
    so the summaries follow (the leaderboards, the per-hour bests), whether a value got
    better or worse. `updated_at` is left alone: the experiment did not report anything new.
    """
    changed, moved = [], {}
    for row in conn.execute(select(E).where(E.c.id.in_(list(derived)))).mappings():
        curve, pct, anchor = derived[row["id"]]
        if (row["rd_points"], row["dataset"]) != curve:
            moved[str(row["id"])] = (row["rd_points"], row["dataset"])
        elif (pct, anchor) != (row["bd_rate_pct"], row["bd_rate_anchor"]):
            changed.append({**row, "bd_rate_pct": pct, "bd_rate_anchor": anchor})
    experiments.upsert(conn, changed)
    return len(changed), moved
