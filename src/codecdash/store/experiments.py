"""Experiments: the one write path (upsert, summaries kept current) and the list's pages.

Rows are built and read back in ``store/rows.py``; which rows a list query matches, and in
what order, is ``store/ranking.py``; what each write keeps current, ``store/summaries.py``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select, true

from codecdash.experiments.query import ListQuery, encode_cursor
from codecdash.experiments.vocabulary import STATUSES
from codecdash.store import leaders, progress, schema, summaries
from codecdash.store.counters import bump_counters, data_version
from codecdash.store.ranking import matching, ranked_page
from codecdash.store.rows import AS_PARAMETERS, FIELDS, FILLED, duration, select_by_id

T = schema.experiments


@functools.cache
def _upsert_sql(dialect: str) -> str:
    mark = schema.marker(dialect)
    updates = ", ".join(f"{c} = excluded.{c}" for c in FIELDS if c != "id")
    # Constant column names; every value is a bound parameter.
    columns, marks = ", ".join(FIELDS), ", ".join([mark] * len(FIELDS))
    return " ".join(
        (
            "INSERT INTO experiments",
            f"({columns}) VALUES ({marks})",
            "ON CONFLICT (id) DO UPDATE SET",
            updates,
        )
    )


@functools.cache
def _old_columns(kept: tuple[summaries.Summary, ...]) -> tuple[str, ...]:
    """What a write needs to know of the rows it replaces: its own columns (the kept
    creation time, the times the server filled in), then whatever the summaries need."""
    own = ("id", "status", "created_at", "started_at", "finished_at")
    return tuple(dict.fromkeys((*own, *(name for s in kept for name in s.needs))))


def upsert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace whole rows (``rows.to_row``), keeping the summaries current."""
    if not rows:
        return
    by_id = {row["id"]: row for row in rows}  # the last of duplicate ids wins
    rows = list(by_id.values())
    # First: one writer at a time from here (PostgreSQL replicas; see leaders.bounds).
    leaders.bounds(conn, lock=True)
    kept = summaries.SUMMARIES
    old = select_by_id(conn, _old_columns(kept), by_id)
    for row in rows:
        previous = old.get(row["id"])
        if row["created_at"] is None:  # keep the stored creation time, else now
            row["created_at"] = previous["created_at"] if previous else row["updated_at"]
        if previous is not None and previous["status"] == row["status"] and row.get(FILLED):
            # A retried PUT or batch must not move the times the server filled in the
            # first time (idempotent retries).
            for name in row[FILLED]:
                row[name] = previous[name]
            row["duration_s"] = duration(row["started_at"], row["finished_at"])
    # Hand-written SQL on purpose: SQLAlchemy's per-row parameter processing cost more
    # than SQLite's own work here (docs/performance.md). The statement is the same on
    # both databases but for the placeholder.
    conn.exec_driver_sql(_upsert_sql(conn.dialect.name), [AS_PARAMETERS(r) for r in rows])
    for summary in kept:
        summary.apply(conn, rows, old)


def remove(conn: Connection, experiment_id: str) -> bool:
    """Delete one experiment for good, keeping the summaries current (False: none such).

    Rare (a read replica following a deleted item): its leaders rows go and a metric whose
    leaderboard held it is rebuilt (one scan of that column), and its hour's best values
    are recomputed."""
    leaders.bounds(conn, lock=True)
    columns = _old_columns(summaries.SUMMARIES)
    old = select_by_id(conn, columns, [experiment_id]).get(experiment_id)
    if old is None:
        return False
    conn.execute(T.delete().where(T.c.id == experiment_id))
    led: list[str] = list(
        conn.execute(
            select(leaders.L.c.metric).where(leaders.L.c.id == experiment_id).distinct()
        ).scalars()
    )
    for metric in sorted(led):
        leaders.rebuild(conn, metric)
    bump_counters(conn, {summaries.STATUS_COUNTS.PREFIX + old["status"]: -1})
    summaries.RESULTS.withdraw(conn, {experiment_id: old})
    if old["status"] == "completed" and old["finished_at"] is not None:
        progress.recompute_hours(conn, [int(old["finished_at"] // 3600)])
    return True


def status_counts(conn: Connection) -> dict[str, int]:
    return summaries.STATUS_COUNTS.read(conn)


# -- listing ---------------------------------------------------------------------------
def list_page(
    conn: Connection, query: ListQuery, totals: TotalCache | None = None
) -> tuple[list[dict[str, Any]], str | None, int]:
    """A page of whole rows, the cursor of the next page (None on the last), the total."""
    rows = ranked_page(conn, query)
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last = rows[-1]
        next_cursor = encode_cursor(last[query.field], last["id"])
    return rows, next_cursor, _total(conn, query, totals)


class TotalCache:
    """Totals of filtered listings until the next write (a small LRU, thread-safe).

    Counting the matches of a filter reads the whole table; paging through the results
    asks for the same total on every page, and a page that refreshes asks again. The
    data version in the key makes any write a miss.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._totals: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> int | None:
        with self._lock:
            total = self._totals.pop(key, None)
            if total is not None:
                self._totals[key] = total  # most recent last
            return total

    def put(self, key: tuple[Any, ...], total: int) -> None:
        with self._lock:
            self._totals[key] = total
            while len(self._totals) > self.size:
                del self._totals[next(iter(self._totals))]


def _total(conn: Connection, query: ListQuery, cache: TotalCache | None = None) -> int:
    filters = (
        query.q,
        query.worker_id,
        query.tag,
        query.created_after,
        query.created_before,
        query.min_psnr_db,
        query.min_bitrate_reduction_pct,
        query.max_bd_rate_pct,
        query.dataset,
        query.method,
    )
    if all(value is None or value == "" for value in filters):  # the status counters
        counts = status_counts(conn)
        return sum(counts.get(s, 0) for s in query.status or STATUSES)
    key = None
    if cache is not None:
        key = (data_version(conn), tuple(query.status), *filters)
        cached = cache.get(key)
        if cached is not None:
            return cached
    where = matching(query, conn.dialect.name)
    stmt = select(func.count()).select_from(T).where(and_(true(), *where))
    total = int(conn.execute(stmt).scalar_one())
    if key is not None and cache is not None:
        cache.put(key, total)
    return total
