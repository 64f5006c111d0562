"""One experiment of the demo's campaign, in campaign time, and what the workload sends of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

SEQUENCES: Final = 64_612  # Vimeo-90k septuplet training set: an epoch is SEQUENCES / batch steps
EVALUATED_ON: Final = "UVG-1080p"  # = datasets.UVG: the campaign's test set
RESULT_FIELDS: Final = ("bitrate_reduction_pct", "psnr_db", "ms_ssim", "bitrate_kbps", "rd_points")


@dataclass
class Run:
    """One experiment, in campaign time."""

    id: str
    name: str
    params: dict[str, Any]
    tags: list[str]
    scale: float
    train_hours: float
    """Training time on a g5.xlarge; faster instances take less."""
    mem_gib: float
    """GPU memory training needs."""
    mem_estimate_gib: float
    """What the orchestrator thinks it needs (placement); an underestimate ends in OOM."""
    nan_at: float | None
    """Share of training after which the loss turns NaN, or None."""
    created_at: float
    status: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    error: str | None = None
    cost_usd: float | None = None
    results: dict[str, Any] | None = None
    train_usd: float = 0.0
    train_end: float | None = None

    def document(self, wall: Callable[[float], datetime]) -> dict[str, Any]:
        """The Experiment as the API takes it, times mapped to wall-clock by `wall`."""
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": wall(self.created_at),
            "started_at": None if self.started_at is None else wall(self.started_at),
            "finished_at": None if self.finished_at is None else wall(self.finished_at),
            "worker_id": self.worker_id,
            "params": dict(self.params),
            "tags": list(self.tags),
            "error": self.error,
            "cost_usd": self.cost_usd,
            "dataset": EVALUATED_ON,
        }
        for name in RESULT_FIELDS:
            doc[name] = None if self.results is None else self.results[name]
        return doc


class Change(NamedTuple):
    """An experiment to send: `fields` changed, or None for the whole (new) experiment."""

    run_id: str
    fields: tuple[str, ...] | None
