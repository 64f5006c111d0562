"""What the BD-rate table reads: the experiments' curves with their set and method, and
the anchors, in one read transaction (``experiments/table.py`` assembles the table).

A first reading takes every counted curve; later ones only the experiments written since
a time (``updated_at``, which every experiment write sets), plus the number of counted
curves and a checksum of their ``updated_at``, so that the table can tell when it missed
a write (one that committed late, a clock that lags) and read everything again.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from sqlalchemy import Connection

from codecdash.store import anchors, schema
from codecdash.store.counters import data_version

COUNTED_OUT = ("failed", "cancelled")
"""Statuses whose points stay out of the table: a failed run's figures are not a result."""


class CurveRow(NamedTuple):
    """An experiment as the table reads it; `params` and `tags` as stored JSON text, read
    only when a `method_from` setting needs them (else None); `rd_points` None when it has
    none (a delta's row that left the table)."""

    id: str
    name: str | None
    dataset: str | None
    method: str | None
    rd_points: str | None
    params: str | None
    tags: str | None
    status: str
    updated_at: float | None

    @property
    def counted(self) -> bool:
        return self.rd_points is not None and self.status not in COUNTED_OUT


class CurveReading(NamedTuple):
    version: int
    """The data version the reading was made at."""
    rows: list[CurveRow]
    """Every counted curve (`since` None), or every experiment written since `since`."""
    anchors: list[dict[str, Any]]
    counted: int
    """How many experiments have a counted curve."""
    checksum: int
    """The sum of their `updated_at` in whole milliseconds (:func:`stamp`): any rewrite of
    a counted experiment changes it."""


def stamp(updated_at: float | None) -> int:
    """`updated_at` in whole milliseconds, as the checksum's SQL computes it."""
    return int(updated_at * 1000) if updated_at is not None and updated_at > 0 else 0


@functools.cache
def _sql(dialect: str, labels: bool, delta: bool) -> tuple[str, str]:
    mark = schema.marker(dialect)
    extra = "params, tags" if labels else "NULL, NULL"
    columns = f"id, name, dataset, method, rd_points, {extra}, status, updated_at"
    counted = f"rd_points IS NOT NULL AND status NOT IN ({mark}, {mark})"
    where = f"updated_at >= {mark}" if delta else counted
    # Whole milliseconds, truncated as Python's int() does (positive times: floor).
    millis = (
        "CAST(floor(updated_at * 1000) AS BIGINT)"
        if dialect == "postgresql"
        else "CAST(updated_at * 1000 AS INTEGER)"
    )
    checks = f"count(*), COALESCE(sum(CASE WHEN updated_at > 0 THEN {millis} END), 0)"
    return (
        f"SELECT {columns} FROM experiments WHERE {where}",  # noqa: S608 # constant
        f"SELECT {checks} FROM experiments WHERE {counted}",  # noqa: S608 # constant
    )


def read(conn: Connection, labels: bool, since: float | None = None) -> CurveReading:
    """The data version, the curves (all, or those written since `since`), the anchors.

    Constant hand-written statements on the driver's own cursor: the rows are plain tuples
    (SQLAlchemy's result rows cost more than the database's work for 10,000 curves)."""
    rows_sql, count_sql = _sql(conn.dialect.name, labels, since is not None)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(rows_sql, (since,) if since is not None else COUNTED_OUT)
        found = cursor.fetchall()
        cursor.execute(count_sql, COUNTED_OUT)
        counted, checksum = cursor.fetchone() or (0, 0)
    finally:
        cursor.close()
    return CurveReading(
        version=data_version(conn),
        rows=[CurveRow._make(row) for row in found],
        anchors=anchors.list_all(conn),
        counted=int(counted),
        checksum=int(checksum),
    )
