"""What the rules read: the dashboard's snapshot, and a few questions to the local store.

Rules that need more than the snapshot (each worker's last heartbeat, failures over a
window, running experiments' newest steps) ask ``facts.store``; it is None where the facts
come from elsewhere (the AWS source), and those rules then find nothing rather than guess.
The answers over SQL live in ``store/alert_queries.py``: this module stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


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
