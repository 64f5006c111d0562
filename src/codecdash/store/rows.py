"""Experiment rows: built from plain values for a write, read back by id, decoded for reads.

A row is a dict of the ``experiments`` columns: times as float seconds, ``params``, ``tags``
and ``rd_points`` as JSON text. What callers hand the store are plain values (the
Experiment's fields, times as datetimes or seconds, JSON-ready objects, BD-rates already
derived); what the store hands back to readers is a *record*: the same, decoded (JSON
objects, times still in seconds).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select

from codecdash.experiments.vocabulary import FINISHED
from codecdash.ids import new_id
from codecdash.store import schema

T = schema.experiments
FIELDS = schema.EXPERIMENT_FIELDS
JSON_FIELDS = ("params", "tags", "rd_points")
TIME_FIELDS = ("created_at", "started_at", "finished_at", "updated_at")
FILLED = "_server_filled"  # a row key (not a column): times to_row filled in

_BLANK_ROW: dict[str, Any] = dict.fromkeys(FIELDS)
AS_PARAMETERS = operator.itemgetter(*FIELDS)  # a row as a statement's parameter tuple


def to_row(values: Mapping[str, Any], now: float) -> dict[str, Any]:
    """Plain values of an experiment as a full table row, written at `now`.

    The server's part: an id when there is none, `started_at` / `finished_at` when the
    status says the experiment started or ended (noted in FILLED: a retry keeps the first
    ones), `updated_at`, `duration_s`. `bd_rate_pct` and `bd_rate_anchor` are taken as
    given: the caller derived them.
    """
    row = _BLANK_ROW.copy()
    row.update(values)  # the ingest hot path: keys are columns (and FILLED is set below)
    if row["id"] is None:
        row["id"] = new_id()
    created, started, finished = row["created_at"], row["started_at"], row["finished_at"]
    if created is not None and not isinstance(created, float | int):
        row["created_at"] = created.timestamp()
    if started is not None and not isinstance(started, float | int):
        started = row["started_at"] = started.timestamp()
    if finished is not None and not isinstance(finished, float | int):
        finished = row["finished_at"] = finished.timestamp()
    status = row["status"]
    filled: tuple[str, ...] = ()  # times the server fills in; a retry keeps the first ones
    if status == "running" and started is None:
        started = row["started_at"] = now
        filled = ("started_at",)
    elif status in FINISHED and finished is None:
        finished = row["finished_at"] = now
        filled = ("finished_at",)
    row[FILLED] = filled
    row["updated_at"] = now
    # duration(), written out like the rest: this runs for every experiment written
    row["duration_s"] = max(0.0, finished - started) if started and finished else None
    # JSON_FIELDS, written out
    if row["rd_points"] is not None:
        row["rd_points"] = orjson.dumps(row["rd_points"]).decode()
    if row["params"] is not None:
        row["params"] = orjson.dumps(row["params"]).decode()
    if row["tags"] is not None:
        row["tags"] = orjson.dumps(row["tags"]).decode()
    return row


def duration(started: float | None, finished: float | None) -> float | None:
    """`duration_s` of a stored experiment: finished - started, once both are known."""
    return max(0.0, finished - started) if started and finished else None


def merged(current: Mapping[str, Any], changes: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A stored row with some fields changed (a PATCH): the full new row.

    `status` and `created_at` cannot be cleared (null keeps the stored value)."""
    values = decode(current)
    values["duration_s"] = None  # derived again
    values.update(changes)
    if values["status"] is None:
        values["status"] = current["status"]
    if values["created_at"] is None:
        values["created_at"] = current["created_at"]
    return to_row(values, now)


def decode(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored row as a record: plain str keys, JSON fields decoded, times in seconds."""
    out = dict(row)
    if type(next(iter(out), "")) is not str:  # SQLAlchemy's quoted_name: plain str for orjson
        out = {str(k): v for k, v in out.items()}
    out.pop(FILLED, None)
    for name in JSON_FIELDS:
        if (text := out.get(name)) is not None:
            out[name] = orjson.loads(text)
    return out


def decode_in_place(rows: Iterable[dict[str, Any]]) -> None:
    """Decode the JSON fields of freshly read rows (dicts of FIELDS) without copying them."""
    for row in rows:
        for name in JSON_FIELDS:
            if (text := row[name]) is not None:
                row[name] = orjson.loads(text)


@functools.cache
def _by_id_sql(dialect: str, columns: tuple[str, ...], n: int) -> str:
    marks = ", ".join([schema.marker(dialect)] * n)
    return f"SELECT {', '.join(columns)} FROM experiments WHERE id IN ({marks})"  # noqa: S608


def select_by_id(
    conn: Connection, columns: tuple[str, ...], ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """``columns`` (the first being ``id``) of these experiments, by id.

    Hand-written like the upsert, and read as plain tuples zipped with the names:
    compiling a 1,000-value IN cost ~1 ms a batch, and SQLAlchemy's rows ~20 µs each.
    """
    ids = tuple(ids)
    sql = _by_id_sql(conn.dialect.name, columns, len(ids))
    found = conn.exec_driver_sql(sql, ids).all()  # fetchall: not a fetchone per row
    return {r[0]: dict(zip(columns, r, strict=True)) for r in found}


def rows_by_id(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Whole rows of these experiments, in this order (ids that exist)."""
    if not ids:
        return []
    found = select_by_id(conn, FIELDS, ids)
    return [found[i] for i in ids if i in found]


def get(conn: Connection, experiment_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(T).where(T.c.id == experiment_id)).mappings().first()
    return dict(row) if row is not None else None


def exists(conn: Connection, experiment_id: str) -> bool:
    return conn.execute(select(T.c.id).where(T.c.id == experiment_id)).first() is not None
