"""What the BD-rate table reads: every experiment's curve with its set and method, and the
anchors, in one consistent reading (``experiments/table.py`` assembles the table)."""

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
    only when a `method_from` setting needs them (else None)."""

    id: str
    name: str | None
    dataset: str | None
    method: str | None
    rd_points: str
    params: str | None
    tags: str | None


class CurveReading(NamedTuple):
    version: int
    """The data version the reading was made at."""
    rows: list[CurveRow]
    anchors: list[dict[str, Any]]


@functools.cache
def _curves_sql(dialect: str, labels: bool) -> str:
    mark = schema.marker(dialect)
    extra = "params, tags" if labels else "NULL, NULL"
    return (
        f"SELECT id, name, dataset, method, rd_points, {extra} FROM experiments "  # noqa: S608
        f"WHERE rd_points IS NOT NULL AND status NOT IN ({mark}, {mark})"
    )


def read(conn: Connection, labels: bool) -> CurveReading:
    """One read transaction's worth: the data version, the curves, the anchors.

    A constant hand-written statement (a scan of the experiments table: the table reads
    every curve; see docs/performance.md for its cost), its rows as plain tuples."""
    found = conn.exec_driver_sql(_curves_sql(conn.dialect.name, labels), COUNTED_OUT).all()
    return CurveReading(
        version=data_version(conn),
        rows=[CurveRow._make(row) for row in found],
        anchors=anchors.list_all(conn),
    )
