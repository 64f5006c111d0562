"""The experiments' read model: what the dashboard and the API say about experiments,
shaped once over any backend.

A backend (:class:`ExperimentsBackend`) answers a few plain questions over one consistent
reading of its data (:class:`ExperimentRows`): the counts per status, the best completed
experiment by a ranked metric, the newest experiments, how many were created since a
time, the best results per hour or day, a page of the list, one experiment. The SQL store
is the backend (``codecdash.store.reads``), over ``codecdash serve``'s store and over the
AWS deployment's read replica alike (``codecdash.sources.aws.replica``); a backend that
cannot answer some listing raises QueryNotSupported for it.

Everything else is here, once: the summary (counts, success rate, experiments in 24 h,
best compression and best quality as the metric switches choose, with the BD-rate sign),
the recent experiments, the progress series (best so far), and each experiment as the API
shows it (ISO times, the running duration). The local and AWS sources, the experiments
routes and the Lambda all read through :class:`ExperimentsReadModel`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from codecdash.config import Settings
from codecdash.experiments.query import Best, ListQuery, RowPage, encode_cursor
from codecdash.experiments.vocabulary import (
    COMPRESSION_FIELDS,
    QUALITY_FIELDS,
    RANKED,
    STATUSES,
    saving_pct,
)
from codecdash.timefmt import iso

RECENT: Final = 20
"""Experiments in the snapshot's recent list."""
SHORT_HISTORY_HOURS: Final = 72
"""Progress is charted per hour up to this much history, per day beyond."""
TIME_FIELDS: Final = ("created_at", "started_at", "finished_at", "updated_at", "deleted_at")
SUMMARY_FIELDS: Final[Mapping[str, tuple[str, str]]] = {
    "success_rate": ("completed ÷ (completed + failed)", "ratio"),
    "best_compression": ("best bitrate saving of a completed experiment", "%"),
    "best_quality": ("best PSNR of a completed experiment", "dB"),
}
"""(description, unit) of the summary's figures that every backend gives alike."""


class ExperimentRows(Protocol):
    """One consistent reading of a backend's experiments. Records are the Experiment's
    fields with times in seconds since the epoch and JSON fields decoded; each one handed
    out is the caller's (a fresh dict: the read model shapes it in place)."""

    def status_counts(self) -> Mapping[str, int]:
        """Experiments per status (every status of STATUSES, none negative)."""
        ...

    def best(self, metric: str) -> Best | None:
        """The best completed experiment with a value of this ranked metric."""
        ...

    def newest(self, limit: int, not_after: float) -> list[dict[str, Any]]:
        """The newest records by creation time (then id), none created after `not_after`."""
        ...

    def created_since(self, since: float) -> int:
        """How many experiments were created at or after `since` (the last day or so)."""
        ...

    def hour_span(self) -> tuple[int, int] | None:
        """The first and last hour (since the epoch) with a completed result, if any."""
        ...

    def best_per_bucket(
        self, metrics: Sequence[str], bucket_hours: int
    ) -> Mapping[str, list[tuple[float, float]]]:
        """Per metric, (bucket start, best completed value in that bucket), oldest first;
        buckets of 1 or 24 hours."""
        ...

    def list(self, query: ListQuery) -> RowPage:
        """A page of the list (QueryNotSupported where this backend cannot answer it)."""
        ...

    def get(self, experiment_id: str) -> dict[str, Any] | None: ...


class ExperimentsBackend(Protocol):
    def rows(self) -> AbstractContextManager[ExperimentRows]:
        """One consistent reading (a read transaction)."""
        ...


@dataclass(frozen=True)
class Page:
    """A page of the experiment list as the API answers it."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int
    positions: list[tuple[Any, str]]
    """(sort value, id) of each item: where a shorter page continues."""

    def cursor_after(self, index: int) -> str:
        """The cursor of a page cut after `items[index]`."""
        return encode_cursor(*self.positions[index])


def experiment(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A record as the API's Experiment: ISO times; a running experiment's duration so
    far, a finished one's when its backend did not store it. Changes `record` itself."""
    started, finished = record.get("started_at"), record.get("finished_at")
    if record.get("duration_s") is None and started is not None:
        if finished is not None:
            record["duration_s"] = max(0.0, finished - started)
        elif record.get("status") == "running":
            record["duration_s"] = max(0.0, (time.time() if now is None else now) - started)
    for name in TIME_FIELDS:
        if (ts := record.get(name)) is not None:
            record[name] = iso(ts)
    return record


class ExperimentsReadModel:
    """The experiments as the dashboard and the API show them (see the module's docstring).

    `recomputing()` says whether this server is deriving the stored BD-rates again; the
    summary then says so (`bd_rate_recomputing`)."""

    def __init__(
        self,
        backend: ExperimentsBackend,
        settings: Settings,
        *,
        recomputing: Callable[[], bool] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.recomputing = recomputing

    # -- the snapshot's experiments section -------------------------------------------------
    def facts(self, now: float) -> dict[str, Any]:
        with self.backend.rows() as rows:
            return self.facts_from(rows, now)

    def facts_from(self, rows: ExperimentRows, now: float) -> dict[str, Any]:
        """The `experiments` section: summary, recent experiments, progress."""
        counts = rows.status_counts()
        finished = counts["completed"] + counts["failed"]
        summary: dict[str, Any] = {
            "total_experiments": sum(counts.values()),
            **{status: counts[status] for status in STATUSES},
            "success_rate": counts["completed"] / finished if finished else None,
            "experiments_24h": rows.created_since(now - 86400),
            "best_compression": self._best_compression(rows),
            "best_quality": self._best_quality(rows),
        }
        if self.recomputing is not None and self.recomputing():
            summary["bd_rate_recomputing"] = True  # said only while it lasts
        # Times ahead of the allowed clock skew are refused; one stored before that was
        # checked must not hold the top of the list for ever.
        recent = rows.newest(RECENT, now + self.settings.max_future_seconds)
        progress = self._progress(rows)
        return {
            "summary": summary,
            "recent_experiments": [experiment(r, now) for r in recent],
            "progress": progress,
        }

    def _best_compression(self, rows: ExperimentRows) -> dict[str, Any] | None:
        metric = COMPRESSION_FIELDS[self.settings.compression_metric]
        best = rows.best(metric)
        if best is None:
            return None
        found = {
            "value_pct": saving_pct(metric, best.value),
            "experiment_id": best.experiment_id,
            "metric": self.settings.compression_metric,
            # Best of the experiments, one by one; the BD-rate table ranks methods.
            "per": "experiment",
        }
        if metric == "bd_rate_pct":
            found["anchor"] = best.anchor
        if best.dataset is not None:
            found["dataset"] = best.dataset
        if best.method is not None:
            found["method"] = best.method
        return found

    def _best_quality(self, rows: ExperimentRows) -> dict[str, Any] | None:
        metric = QUALITY_FIELDS[self.settings.quality_metric]
        best = rows.best(metric)
        if best is None:
            return None
        if metric == "ms_ssim":
            values = {"ms_ssim": best.value, "psnr_db": None}
        else:
            values = {"psnr_db": best.value}
        return {
            **values,
            "experiment_id": best.experiment_id,
            "metric": self.settings.quality_metric,
        }

    def _progress(self, rows: ExperimentRows) -> dict[str, Any]:
        """Best so far, per hour (short histories) or per day."""
        span = rows.hour_span()
        hourly = span is None or span[1] - span[0] <= SHORT_HISTORY_HOURS
        compression = COMPRESSION_FIELDS[self.settings.compression_metric]
        quality = QUALITY_FIELDS[self.settings.quality_metric]
        per_bucket = rows.best_per_bucket((compression, quality), 1 if hourly else 24)
        return {
            "compression": [
                {"t": iso(t), "best_pct": saving_pct(compression, v)}
                for t, v in _best_so_far(compression, per_bucket[compression])
            ],
            "quality": [
                {"t": iso(t), f"best_{quality}": v}
                for t, v in _best_so_far(quality, per_bucket[quality])
            ],
            "bucket": "hour" if hourly else "day",
        }

    # -- the experiments API --------------------------------------------------------------
    def list(self, query: ListQuery, now: float | None = None) -> Page:
        with self.backend.rows() as rows:
            page = rows.list(query)
        field = query.field
        positions = [(r[field], r["id"]) for r in page.records]
        now = time.time() if now is None else now
        items = [experiment(r, now) for r in page.records]
        return Page(items, page.next_cursor, page.total, positions)

    def get(self, experiment_id: str, now: float | None = None) -> dict[str, Any] | None:
        with self.backend.rows() as rows:
            found = rows.get(experiment_id)
        return None if found is None else experiment(found, now)


def _best_so_far(metric: str, buckets: list[tuple[float, float]]) -> Iterator[tuple[float, float]]:
    better = RANKED[metric].better
    best: float | None = None
    for t, value in buckets:
        if best is None or better(value, best):
            best = value
        yield t, best
