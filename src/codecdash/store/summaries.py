"""What every experiments write keeps current, in the write's own transaction.

The dashboard never aggregates the experiments table: status counts, the leaderboards of
the ranked metrics and the per-hour best results are kept current by each write instead
(docs/performance.md). Each is a small object with the same shape (:class:`Summary`):
the columns it needs of the rows a write replaces, and ``apply``. ``experiments.upsert``
reads the replaced rows once (the union of what the summaries need) and calls each in turn,
so a new summary is one more entry in :data:`SUMMARIES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from codecdash.experiments.vocabulary import RANKED, STATUSES
from codecdash.store import leaders, progress
from codecdash.store.counters import RESULTS_VERSION, bump_counters, read_counters

Rows = Sequence[Mapping[str, Any]]
"""The rows a write stores, whole."""
Old = Mapping[str, Mapping[str, Any]]
"""The rows they replace, by id (the columns the summaries need); new ids are absent."""


class Summary(Protocol):
    needs: tuple[str, ...]
    """The columns `apply` reads of the replaced rows."""

    def apply(self, conn: Connection, rows: Rows, old: Old) -> None:
        """Follow one write (called after the rows are written, in its transaction)."""
        ...

    def withdraw(self, conn: Connection, old: Old) -> None:
        """Forget these rows (called after they left the table, in the same transaction:
        a deletion to the trash or a purge)."""
        ...


class StatusCounts:
    """Experiments per status, as counters ``experiments.<status>``."""

    needs: tuple[str, ...] = ("status",)
    PREFIX = "experiments."

    def apply(self, conn: Connection, rows: Rows, old: Old) -> None:
        deltas: dict[str, int] = {}
        for row in rows:
            previous = old.get(row["id"])
            if previous is not None:
                key = self.PREFIX + previous["status"]
                deltas[key] = deltas.get(key, 0) - 1
            key = self.PREFIX + row["status"]
            deltas[key] = deltas.get(key, 0) + 1
        bump_counters(conn, deltas)

    def withdraw(self, conn: Connection, old: Old) -> None:
        deltas: dict[str, int] = {}
        for previous in old.values():
            key = self.PREFIX + previous["status"]
            deltas[key] = deltas.get(key, 0) - 1
        bump_counters(conn, deltas)

    def read(self, conn: Connection) -> dict[str, int]:
        counts = read_counters(conn, self.PREFIX)
        return {s: max(0, counts.get(self.PREFIX + s, 0)) for s in STATUSES}


class Leaderboards:
    """The best experiments of each ranked metric (``store/leaders.py``)."""

    needs: tuple[str, ...] = ("id", *leaders.METRICS, *leaders.CARRIED)

    def apply(self, conn: Connection, rows: Rows, old: Old) -> None:
        # The bounds were locked by the write before it read `old` (leaders.bounds).
        leaders.update(conn, rows, old, leaders.bounds(conn))

    def withdraw(self, conn: Connection, old: Old) -> None:
        leaders.withdraw(conn, old, leaders.bounds(conn))


class HourlyBests:
    """The best results of completed experiments per hour (``store/progress.py``)."""

    needs: tuple[str, ...] = ("status", "finished_at", *RANKED)

    def apply(self, conn: Connection, rows: Rows, old: Old) -> None:
        progress.merge_progress(conn, [r for r in rows if r["status"] == "completed"])
        progress.recompute_hours(conn, progress.hours_to_recompute(rows, old))

    def withdraw(self, conn: Connection, old: Old) -> None:
        progress.recompute_hours(
            conn,
            {
                int(previous["finished_at"] // 3600)
                for previous in old.values()
                if previous["status"] == "completed" and previous["finished_at"] is not None
            },
        )


class ResultsVersion:
    """The counter ``results_version``: moved by a write that stores, replaces or removes an
    experiment with R-D points or a completed one (what the R-D curves, the BD-rates and
    Compare read), not by the progress of the others. Anchor writes move it too (store.py)."""

    needs: tuple[str, ...] = ("status", "rd_points")

    @staticmethod
    def _counts(row: Mapping[str, Any]) -> bool:
        return row.get("status") == "completed" or row.get("rd_points") is not None

    def apply(self, conn: Connection, rows: Rows, old: Old) -> None:
        if any(map(self._counts, rows)) or any(map(self._counts, old.values())):
            bump_counters(conn, {RESULTS_VERSION: 1})

    def withdraw(self, conn: Connection, old: Old) -> None:
        if any(map(self._counts, old.values())):
            bump_counters(conn, {RESULTS_VERSION: 1})


STATUS_COUNTS = StatusCounts()
RESULTS = ResultsVersion()
SUMMARIES: tuple[Summary, ...] = (STATUS_COUNTS, Leaderboards(), HourlyBests(), RESULTS)
