"""Best results per hour of completion, kept current on write; read per hour or per day."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Integer, cast, func, literal_column, select

from codecdash.experiments.vocabulary import LARGER_IS_BETTER
from codecdash.store import schema

P = schema.progress_hourly
E = schema.experiments
# progress column -> (experiment column, True when larger is better)
COLUMNS = {
    "best_compression_pct": ("bitrate_reduction_pct", LARGER_IS_BETTER["bitrate_reduction_pct"]),
    "best_psnr_db": ("psnr_db", LARGER_IS_BETTER["psnr_db"]),
    "best_ms_ssim": ("ms_ssim", LARGER_IS_BETTER["ms_ssim"]),
    "best_bd_rate_pct": ("bd_rate_pct", LARGER_IS_BETTER["bd_rate_pct"]),
}
COLUMN_OF = {source: column for column, (source, _larger) in COLUMNS.items()}
"""The progress column of each ranked metric."""


@functools.cache
def _merge_sql(dialect: str) -> str:
    """Upsert one hour, keeping the better of the stored and new value of each column.

    Hand-written (see experiments._upsert_sql); CASE rather than GREATEST/LEAST, which
    SQLite lacks and which treat NULL differently on each database.
    """
    mark = schema.marker(dialect)
    sets = []
    for name, (_source, larger) in COLUMNS.items():
        op = ">" if larger else "<"
        old, new = f"progress_hourly.{name}", f"excluded.{name}"
        sets.append(
            f"{name} = CASE WHEN {new} IS NULL THEN {old} WHEN {old} IS NULL OR {new} {op} {old} "
            f"THEN {new} ELSE {old} END"
        )
    marks = ", ".join([mark] * (len(COLUMNS) + 1))
    return " ".join(
        (
            "INSERT INTO progress_hourly",
            f"(hour, {', '.join(COLUMNS)}) VALUES ({marks})",
            "ON CONFLICT (hour) DO UPDATE SET",
            ", ".join(sets),
        )
    )


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
    columns = ["hour", *COLUMNS]
    conn.exec_driver_sql(
        _merge_sql(conn.dialect.name), [tuple(slot[c] for c in columns) for slot in best.values()]
    )


def hours_to_recompute(
    rows: Iterable[Mapping[str, Any]], old: Mapping[str, Mapping[str, Any]]
) -> set[int]:
    """Hours whose best values may have dropped because a completed row changed."""
    hours: set[int] = set()
    for row in rows:
        previous = old.get(row["id"])
        if previous is None or previous["status"] != "completed":
            continue
        if previous["finished_at"] is None:
            continue
        hour = int(previous["finished_at"] // 3600)
        same_hour = row["finished_at"] is not None and int(row["finished_at"] // 3600) == hour
        if row["status"] != "completed" or not same_hour:
            hours.add(hour)
            continue
        for source, larger in COLUMNS.values():
            before, after = previous[source], row[source]
            if before is not None and (
                after is None or (after < before if larger else after > before)
            ):
                hours.add(hour)
    return hours


def recompute_hours(conn: Connection, hours: Iterable[int]) -> None:
    """Recompute hours whose best values may have dropped (rare: a result was replaced).

    One grouped scan for all the hours of a write, whatever their number.
    """
    wanted = sorted(set(hours))
    if not wanted:
        return
    # Truncation is floor for positive times; SQLite builds may lack floor().
    hour = (
        cast(E.c.finished_at / 3600, Integer)
        if conn.dialect.name == "sqlite"
        else func.floor(E.c.finished_at / 3600)
    ).label("hour")
    aggregates = [
        (func.max if larger else func.min)(E.c[source]).label(target)
        for target, (source, larger) in COLUMNS.items()
    ]
    found = {
        int(row["hour"]): dict(row)
        for row in conn.execute(
            select(hour, *aggregates)
            .where(
                E.c.status == "completed",
                E.c.finished_at >= wanted[0] * 3600.0,
                E.c.finished_at < (wanted[-1] + 1) * 3600.0,
            )
            .group_by(hour)
        ).mappings()
    }
    conn.execute(P.delete().where(P.c.hour.in_(wanted)))
    rows = [{**found[h], "hour": h} for h in wanted if h in found]
    if rows:
        conn.execute(P.insert(), rows)


def best_per_bucket(
    conn: Connection, columns: Sequence[str], bucket_hours: int
) -> dict[str, list[tuple[float, float]]]:
    """Each column's (bucket start, best value in that bucket), oldest first: one grouped
    read of the hourly table (a few thousand rows a year) for all of them."""
    bucket = (P.c.hour // bucket_hours).label("b")
    best = [
        (func.max if COLUMNS[column][1] else func.min)(P.c[column]).label(column)
        for column in columns
    ]
    stmt = select(bucket, *best).group_by(literal_column("b")).order_by(literal_column("b"))
    found: dict[str, list[tuple[float, float]]] = {column: [] for column in columns}
    for row in conn.execute(stmt):
        start = float(row[0]) * bucket_hours * 3600
        for column, value in zip(columns, row[1:], strict=True):
            if value is not None:
                found[column].append((start, float(value)))
    return found


def hour_span(conn: Connection) -> tuple[int, int] | None:
    row = conn.execute(select(func.min(P.c.hour), func.max(P.c.hour))).one()
    return None if row[0] is None else (int(row[0]), int(row[1]))
