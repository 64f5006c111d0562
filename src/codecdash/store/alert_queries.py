"""The alert rules' questions to the local store (``alerts.facts.StoreFacts``), in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from codecdash.store import schema
from codecdash.store.store import Store

E = schema.experiments
W = schema.workers
# Experiments finished in a window are looked for among those created at most this long
# before it: the scan then uses the creation-time index (finished_at has none; an index
# costs every ingest). A run longer than this is not counted.
LOOKBACK_S = 7 * 86400.0


class LocalStoreFacts:
    """:class:`StoreFacts` over the local store (a read transaction per question)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def workers(self) -> list[dict[str, Any]]:
        columns = (W.c.worker_id, W.c.role, W.c.status, W.c.last_seen, W.c.clean_shutdown)
        with self.store.db.read() as conn:
            return [dict(row) for row in conn.execute(select(*columns)).mappings()]

    def finished_counts(self, since: float) -> tuple[int, int]:
        query = (
            select(E.c.status, func.count())
            .where(
                E.c.created_at >= since - LOOKBACK_S,
                E.c.finished_at >= since,
                E.c.status.in_(("completed", "failed")),
            )
            .group_by(E.c.status)
        )
        with self.store.db.read() as conn:
            counts = {str(row[0]): int(row[1]) for row in conn.execute(query)}
        return counts.get("completed", 0), counts.get("failed", 0)

    def failures_since(self, since: float, limit: int) -> list[dict[str, Any]]:
        query = (
            select(E.c.id, E.c.name, E.c.error, E.c.finished_at, E.c.worker_id)
            .where(
                E.c.created_at >= since - LOOKBACK_S,
                E.c.status == "failed",
                E.c.finished_at >= since,
            )
            .order_by(E.c.finished_at.desc(), E.c.id)
            .limit(limit)
        )
        with self.store.db.read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def finished_at(self, experiment_id: str) -> float | None:
        with self.store.db.read() as conn:
            value = conn.execute(select(E.c.finished_at).where(E.c.id == experiment_id)).scalar()
        return float(value) if value is not None else None

    def training(self) -> list[dict[str, Any]]:
        return self.store.training_latest(running_only=True)
