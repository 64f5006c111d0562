"""What the rules read: the dashboard's snapshot, and a few queries of the local store.

Rules that need more than the snapshot (each worker's last heartbeat, failures over a
window, running experiments' newest steps) ask ``facts.store``; it is None where the facts
come from elsewhere (the AWS source), and those rules then find nothing rather than guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select

from codecdash.store import Store, schema

E = schema.experiments
W = schema.workers
# Experiments finished in a window are looked for among those created at most this long
# before it: the scan then uses the creation-time index (finished_at has none; an index
# costs every ingest). A run longer than this is not counted.
LOOKBACK_S = 7 * 86400.0


class StoreFacts(Protocol):
    def workers(self) -> list[dict[str, Any]]:
        """Every worker's newest state: worker_id, role, status, last_seen, clean_shutdown."""
        ...

    def finished_counts(self, since: float) -> tuple[int, int]:
        """(completed, failed) among the experiments finished at or after ``since``."""
        ...

    def failures_since(self, since: float, limit: int) -> list[dict[str, Any]]:
        """Failed experiments finished at or after ``since``, newest first: id, name, error,
        finished_at, worker_id."""
        ...

    def finished_at(self, experiment_id: str) -> float | None:
        """When an experiment finished (None: unknown, or not finished)."""
        ...

    def training(self) -> list[dict[str, Any]]:
        """The training summary of each running experiment that logged steps:
        experiment_id, name, step, received_at (the server's clock, epoch seconds),
        loss_metric, loss, non_finite_step, alert (see store/training.py)."""
        ...


@dataclass(frozen=True)
class Facts:
    snapshot: Mapping[str, Any]
    active_window_s: float = 90.0
    store: StoreFacts | None = None

    def section(self, *path: str) -> Mapping[str, Any]:
        """``facts.section("infrastructure", "orchestrator")``; {} where absent."""
        node: Any = self.snapshot
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        return node if isinstance(node, Mapping) else {}


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
