"""Cost records and the per-day, per-component sums the Monthly Cost card reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.store import schema
from codecdash.store.counters import bump_counters

R = schema.cost_records
D = schema.cost_daily
DAY = 86400.0


def add_daily(conn: Connection, at: float, component: str, usd: float) -> None:
    if usd <= 0:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(D)
    stmt = insert.on_conflict_do_update(
        index_elements=[D.c.day, D.c.component], set_={"usd": D.c.usd + insert.excluded.usd}
    )
    conn.execute(stmt, {"day": int(at // DAY), "component": component, "usd": usd})


def record_costs(conn: Connection, records: Sequence[dict[str, Any]]) -> None:
    if not records:
        return
    conn.execute(R.insert(), list(records))
    for record in records:
        add_daily(conn, record["at"], record["component"], record["amount_usd"])
    bump_counters(conn, {"rows.cost_records": len(records)})


def by_component(conn: Connection, since: float, until: float | None = None) -> dict[str, float]:
    first, last = int(since // DAY), None if until is None else int(until // DAY)
    stmt = select(D.c.component, func.sum(D.c.usd)).where(D.c.day >= first)
    if last is not None:
        stmt = stmt.where(D.c.day <= last)
    stmt = stmt.group_by(D.c.component)
    return {str(row[0]): float(row[1]) for row in conn.execute(stmt)}


def first_day(conn: Connection) -> int | None:
    value = conn.execute(select(func.min(D.c.day))).scalar()
    return int(value) if value is not None else None


def first_at(conn: Connection) -> float | None:
    """When the oldest cost record is dated (an index's first entry)."""
    value = conn.execute(select(func.min(R.c.at))).scalar()
    return float(value) if value is not None else None
