"""The trash: experiments deleted (softly), restored and purged, the summaries kept exact.

A deleted experiment leaves the ``experiments`` table for ``experiments_trash`` in the same
transaction as the summaries forget it (``summaries.SUMMARIES``' ``withdraw``): every list,
total, status count, leaderboard, per-hour best, BD-rate figure and training fact reads
the experiments table only, so none of them needs a filter to leave it out. A restore
writes the stored row back through ``experiments.upsert`` (which counts it again, as for a
new experiment); a purge drops the trash's copy and the experiment's training curves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select, true, tuple_

from codecdash.experiments.query import ListQuery, decode_cursor, encode_cursor
from codecdash.store import experiments, leaders, rows, schema, summaries, training
from codecdash.store.ranking import matching

E = schema.experiments
T = schema.experiments_trash
PART = 500  # ids per statement (bound parameters; SQLite allows 32,766)

Derive = Callable[[Any], tuple[float | None, str | None]]
"""rd_points (decoded) -> (bd_rate_pct, bd_rate_anchor) against the anchor in force."""


class InTrash(ValueError):
    """An id to create is in the trash (409): restore or purge it first. A ValueError, so
    that commands (codecdash import-results --db) say it in one line."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        first = ids[0]
        more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
        super().__init__(
            f"experiment {first!r}{more} is in the trash: restore it "
            f"(POST /api/v1/experiments/{first}/restore) or purge it before writing it again"
        )


class Exists(ValueError):
    """An experiment to restore has a live namesake (409)."""


def _parts(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), PART):
        yield ids[start : start + PART]


def in_trash(conn: Connection, ids: Sequence[str]) -> list[str]:
    """Which of these ids are in the trash."""
    found: list[str] = []
    mark = schema.marker(conn.dialect.name)
    for part in _parts(list(dict.fromkeys(ids))):
        sql = f"SELECT id FROM experiments_trash WHERE id IN ({', '.join([mark] * len(part))})"  # noqa: S608
        found.extend(str(r[0]) for r in conn.exec_driver_sql(sql, tuple(part)))
    return found


def refuse_trashed(conn: Connection, ids: Sequence[str]) -> None:
    """InTrash when any of these ids is in the trash (a create or replace must not hide it).

    On PostgreSQL the write first takes its turn (the bounds' row locks, as `move` does):
    a deletion committed by another replica meanwhile is then seen here, so an id is never
    both live and in the trash."""
    if conn.dialect.name == "postgresql":
        leaders.bounds(conn, lock=True)
    found = in_trash(conn, ids)
    if found:
        raise InTrash(sorted(found))


def live_ids(conn: Connection, ids: Sequence[str]) -> list[str]:
    """Which of these ids are live experiments (in this order)."""
    found: set[str] = set()
    for part in _parts(list(dict.fromkeys(ids))):
        found.update(rows.select_by_id(conn, ("id",), part))
    return [i for i in dict.fromkeys(ids) if i in found]


def matching_ids(conn: Connection, query: ListQuery, limit: int) -> tuple[list[str], int]:
    """Up to `limit` ids of the live experiments matching the query's filters (oldest
    first), and how many match in all."""
    where = and_(true(), *matching(query, conn.dialect.name))
    total = int(conn.execute(select(func.count()).select_from(E).where(where)).scalar_one())
    found = conn.execute(
        select(E.c.id).where(where).order_by(E.c.created_at, E.c.id).limit(limit)
    ).all()
    return [str(r[0]) for r in found], total


def move(
    conn: Connection, ids: Sequence[str], now: float, actor: str | None
) -> list[dict[str, Any]]:
    """Move these experiments (those that exist) to the trash; returns them as records
    (with `deleted_at`, `deleted_by`)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    leaders.bounds(conn, lock=True)  # one writer at a time from here (see upsert)
    found: dict[str, dict[str, Any]] = {}
    for part in _parts(ids):
        found.update(rows.select_by_id(conn, rows.FIELDS, part))
    if not found:
        return []
    gone = [i for i in ids if i in found]
    for part in _parts(gone):
        conn.execute(delete(E).where(E.c.id.in_(list(part))))
    for summary in summaries.SUMMARIES:
        summary.withdraw(conn, found)
    conn.execute(
        insert(T),
        [
            {
                "id": i,
                "deleted_at": now,
                "deleted_by": actor,
                "name": found[i]["name"],
                "status": found[i]["status"],
                "created_at": found[i]["created_at"],
                "stored_row": orjson.dumps(found[i]).decode(),
            }
            for i in gone
        ],
    )
    out = [_record(found[i], now, actor) for i in gone]
    training.attach(conn, out)
    return out


def restore(
    conn: Connection, ids: Sequence[str], derive: Derive | None = None
) -> list[dict[str, Any]]:
    """Write these trashed experiments back as they were (those in the trash); returns
    them as records. `derive`: their BD-rate again, against the anchor in force now."""
    ids = list(dict.fromkeys(ids))
    stored = _trashed(conn, ids)
    if not stored:
        return []
    back = [i for i in ids if i in stored]
    live = [i for i in back if rows.exists(conn, i)]
    if live:
        raise Exists(
            f"experiment {live[0]!r} exists outside the trash: delete it, or purge the "
            "trashed copy, before restoring"
        )
    written = []
    for i in back:
        saved = orjson.loads(stored[i]["stored_row"])
        # Columns added since the deletion are left empty; columns dropped since, ignored.
        row = {name: saved.get(name) for name in rows.FIELDS}
        if derive is not None and row["rd_points"] is not None:
            row["bd_rate_pct"], row["bd_rate_anchor"] = derive(orjson.loads(row["rd_points"]))
        written.append(row)
    experiments.upsert(conn, written)
    for part in _parts(back):
        conn.execute(delete(T).where(T.c.id.in_(list(part))))
    out = [rows.decode(row) for row in written]
    training.attach(conn, out)
    return out


def purge(
    conn: Connection, *, before: float | None = None, ids: Sequence[str] | None = None
) -> list[str]:
    """Drop from the trash the experiments deleted before `before` (or these ids), with
    their training curves; returns their ids."""
    stmt = select(T.c.id)
    if before is not None:
        stmt = stmt.where(T.c.deleted_at < before)
    if ids is not None:
        chosen: list[str] = []
        for part in _parts(list(dict.fromkeys(ids))):
            chosen.extend(str(r[0]) for r in conn.execute(stmt.where(T.c.id.in_(list(part)))))
    else:
        chosen = [str(r[0]) for r in conn.execute(stmt)]
    S, C, TS = schema.metric_series, schema.metric_chunks, schema.training_summary
    for part in _parts(chosen):
        listed = list(part)
        series = select(S.c.id).where(S.c.experiment_id.in_(listed)).scalar_subquery()
        conn.execute(delete(C).where(C.c.series_id.in_(series)))
        conn.execute(delete(S).where(S.c.experiment_id.in_(listed)))
        conn.execute(delete(TS).where(TS.c.experiment_id.in_(listed)))
        conn.execute(delete(T).where(T.c.id.in_(listed)))
    return chosen


def count_before(conn: Connection, before: float | None) -> int:
    stmt = select(func.count()).select_from(T)
    if before is not None:
        stmt = stmt.where(T.c.deleted_at < before)
    return int(conn.execute(stmt).scalar_one())


def get(conn: Connection, experiment_id: str) -> dict[str, Any] | None:
    """The trashed experiment as a record (with `deleted_at`, `deleted_by`), or None."""
    found = _trashed(conn, [experiment_id]).get(experiment_id)
    if found is None:
        return None
    out = [_from_trash(found)]
    training.attach(conn, out)
    return out[0]


def page(
    conn: Connection, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None, int]:
    """The trash, most recently deleted first: a page of records, the next page's cursor
    (None on the last) and how many experiments the trash holds."""
    stmt = select(T).order_by(T.c.deleted_at.desc(), T.c.id.desc()).limit(limit + 1)
    if cursor:
        at, last = decode_cursor(cursor, "created_at")
        stmt = stmt.where(tuple_(T.c.deleted_at, T.c.id) < tuple_(float(at), last))
    found = [dict(r) for r in conn.execute(stmt).mappings()]
    next_cursor = None
    if len(found) > limit:
        found = found[:limit]
        next_cursor = encode_cursor(found[-1]["deleted_at"], found[-1]["id"])
    out = [_from_trash(r) for r in found]
    training.attach(conn, out)
    return out, next_cursor, count_before(conn, None)


def _trashed(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for part in _parts(ids):
        for r in conn.execute(select(T).where(T.c.id.in_(list(part)))).mappings():
            found[str(r["id"])] = dict(r)
    return found


def _from_trash(found: dict[str, Any]) -> dict[str, Any]:
    saved = orjson.loads(found["stored_row"])
    row = {name: saved.get(name) for name in rows.FIELDS}
    return _record(row, found["deleted_at"], found["deleted_by"])


def _record(row: dict[str, Any], deleted_at: float, deleted_by: str | None) -> dict[str, Any]:
    record = rows.decode(row)
    record["deleted_at"] = deleted_at
    record["deleted_by"] = deleted_by
    return record
