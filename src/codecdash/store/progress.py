"""Best results per hour of completion, kept current on write; best-so-far series in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, case, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.store import schema

P = schema.progress_hourly
E = schema.experiments
# progress column -> (experiment column, True when larger is better)
COLUMNS = {
    "best_compression_pct": ("bitrate_reduction_pct", True),
    "best_psnr_db": ("psnr_db", True),
    "best_ms_ssim": ("ms_ssim", True),
    "best_bd_rate_pct": ("bd_rate_pct", False),
}


def _better(current: Any, new: Any, larger: bool) -> Any:
    """SQL: the better of two nullable values (portable: no GREATEST/LEAST)."""
    wins = new > current if larger else new < current
    return case((new.is_(None), current), (current.is_(None), new), (wins, new), else_=current)


def merge_progress(conn: Connection, completed_rows: Iterable[Mapping[str, Any]]) -> None:
    best: dict[int, dict[str, Any]] = {}
    for row in completed_rows:
        if row["finished_at"] is None:
            continue
        hour = int(row["finished_at"] // 3600)
        slot = best.setdefault(hour, {"hour": hour, **{k: None for k in COLUMNS}})
        for target, (source, larger) in COLUMNS.items():
            value = row[source]
            if value is None:
                continue
            if slot[target] is None or (value > slot[target] if larger else value < slot[target]):
                slot[target] = value
    if not best:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(P)
    stmt = insert.on_conflict_do_update(
        index_elements=[P.c.hour],
        set_={
            target: _better(P.c[target], insert.excluded[target], larger)
            for target, (_source, larger) in COLUMNS.items()
        },
    )
    conn.execute(stmt, list(best.values()))


def recompute_hours(conn: Connection, hours: Iterable[int]) -> None:
    """Recompute hours whose best values may have dropped (rare: a result was replaced)."""
    for hour in sorted(set(hours)):
        start, end = hour * 3600.0, (hour + 1) * 3600.0
        aggregates = [
            (func.max if larger else func.min)(E.c[source]).label(target)
            for target, (source, larger) in COLUMNS.items()
        ]
        row = conn.execute(
            select(*aggregates).where(
                E.c.status == "completed", E.c.finished_at >= start, E.c.finished_at < end
            )
        ).mappings().one()
        conn.execute(P.delete().where(P.c.hour == hour))
        if any(v is not None for v in row.values()):
            conn.execute(P.insert(), {"hour": hour, **row})


def best_so_far(conn: Connection, column: str, bucket_hours: int) -> list[tuple[float, float]]:
    """(bucket start, best value up to and including that bucket), oldest first."""
    larger = COLUMNS[column][1]
    bucket = P.c.hour // bucket_hours
    per_bucket = (
        select(
            bucket.label("b"),
            (func.max if larger else func.min)(P.c[column]).label("v"),
        )
        .where(P.c[column].is_not(None))
        .group_by(literal_column("b"))
        .subquery()
    )
    running = (func.max if larger else func.min)(per_bucket.c.v).over(
        order_by=per_bucket.c.b, rows=(None, 0)
    )
    stmt = select(per_bucket.c.b, running).order_by(per_bucket.c.b)
    return [(float(b) * bucket_hours * 3600, float(v)) for b, v in conn.execute(stmt)]


def hour_span(conn: Connection) -> tuple[int, int] | None:
    row = conn.execute(select(func.min(P.c.hour), func.max(P.c.hour))).one()
    return None if row[0] is None else (int(row[0]), int(row[1]))
