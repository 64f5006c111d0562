"""The SQL store as the backend of the experiments read model (codecdash.experiments.readmodel).

Every answer comes from a summary kept on write or an index: counts from the counters,
best results from the leaderboards, the newest and the last day's from the creation-time
index, progress from the per-hour bests. One read transaction per reading. Every record
handed out carries its `training` (the newest step and loss state, store/training.py;
None for an experiment that logged no metrics): the store's own reads (`Store.get_experiment`,
`Store.list_experiments`) go through :class:`SqlRows` too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, func, select

from codecdash.experiments.query import Best, ListQuery, RowPage
from codecdash.experiments.vocabulary import LARGER_IS_BETTER
from codecdash.store import experiments, progress, rows, schema, training
from codecdash.store.db import Database
from codecdash.store.ranking import ranked_page

E = schema.experiments


class SqlRows:
    """One read transaction's answers (readmodel.ExperimentRows)."""

    def __init__(self, conn: Connection, totals: experiments.TotalCache | None = None) -> None:
        self.conn = conn
        self.totals = totals

    def status_counts(self) -> dict[str, int]:
        return experiments.status_counts(self.conn)

    def best(self, metric: str) -> Best | None:
        query = ListQuery(status=["completed"], sort=_best_first(metric), limit=1)
        found = ranked_page(self.conn, query, values_only=True)
        if not found:
            return None
        row = found[0]
        return Best(row["id"], row[metric], row["bd_rate_anchor"], row["dataset"], row["method"])

    def newest(self, limit: int, not_after: float) -> list[dict[str, Any]]:
        stmt = (
            select(E)
            .where(E.c.created_at <= not_after)
            .order_by(E.c.created_at.desc(), E.c.id.desc())
            .limit(limit)
        )
        found = [dict(zip(rows.FIELDS, r, strict=True)) for r in self.conn.execute(stmt)]
        return _records(self.conn, found)

    def created_since(self, since: float) -> int:
        stmt = select(func.count()).select_from(E).where(E.c.created_at >= since)
        return int(self.conn.execute(stmt).scalar_one())

    def hour_span(self) -> tuple[int, int] | None:
        return progress.hour_span(self.conn)

    def best_per_bucket(
        self, metrics: Sequence[str], bucket_hours: int
    ) -> dict[str, list[tuple[float, float]]]:
        columns = [progress.COLUMN_OF[m] for m in metrics]
        found = progress.best_per_bucket(self.conn, columns, bucket_hours)
        return {m: found[c] for m, c in zip(metrics, columns, strict=True)}

    def list(self, query: ListQuery) -> RowPage:
        found, next_cursor, total = experiments.list_page(self.conn, query, self.totals)
        return RowPage(_records(self.conn, found), next_cursor, total)

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        row = rows.get(self.conn, experiment_id)
        if row is None:
            return None
        record = rows.decode(row)
        training.attach(self.conn, [record])
        return record


def _records(conn: Connection, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Freshly read rows (dicts of the columns) as records: JSON decoded in place,
    `training` attached."""
    rows.decode_in_place(found)
    training.attach(conn, found)
    return found


def _best_first(metric: str) -> str:
    return ("-" if LARGER_IS_BETTER[metric] else "") + metric


class _Store(Protocol):
    """What a reading needs of codecdash.store.Store (which reads through SqlRows itself)."""

    @property
    def db(self) -> Database: ...

    @property
    def totals(self) -> experiments.TotalCache: ...


class SqlExperiments:
    """The store's experiments (readmodel.ExperimentsBackend)."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    @contextlib.contextmanager
    def rows(self) -> Iterator[SqlRows]:
        with self.store.db.read() as conn:
            yield SqlRows(conn, self.store.totals)
