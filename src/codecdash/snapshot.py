"""Turns the sources' facts into the dashboard's snapshot (the Snapshot of docs/api.md).

Each source is called with a timeout; one that fails, hangs or returns garbage is marked
`ok: false` in `sources` and its sections keep their last known values, so one broken
backend never blanks the page.

Every viewer downloads the snapshot, so its size is bounded whatever is written: each
recent experiment carries at most EXPERIMENT_BYTES of JSON (its largest fields are left
out first, and named in its `omitted`; the page fetches the whole experiment when it opens
it), and each progress series at most PROGRESS_POINTS points. With 20 recent experiments
that keeps the snapshot under 256 KB (tests/test_limits.py writes the worst case).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from codecdash import models, snapshot_models
from codecdash.config import Settings
from codecdash.redact import public_text
from codecdash.sources.base import SECTIONS, Facts, Source
from codecdash.timefmt import iso

log = logging.getLogger("codecdash.snapshot")

EMPTY: dict[str, Any] = {
    "experiments": {
        "summary": {
            "total_experiments": None,
            "queued": None,
            "running": None,
            "completed": None,
            "failed": None,
            "cancelled": None,
            "success_rate": None,
            "experiments_24h": None,
            "best_compression": None,
            "best_quality": None,
        },
        "recent_experiments": [],
        "progress": {"compression": [], "quality": []},
    },
    "orchestrator": {"status": "unknown", "cpu_pct": None, "mem_pct": None, "last_seen": None},
    "training_workers": {"active": None, "queue_depth": None, "spot_pct": None},
    "inference_workers": {"active": None, "queue_depth": None, "fps": None},
    "storage": {"objects": None, "bytes": None, "db_items": None},
    "costs": {"month_to_date_usd": None, "forecast_month_usd": None, "cost_breakdown": []},
}


class SnapshotBuilder:
    def __init__(self, settings: Settings, sources: Sequence[Source]) -> None:
        self.settings = settings
        self.sources = list(sources)
        self._last: dict[str, Any] = {}  # section -> last good facts
        self._status: dict[str, dict[str, Any]] = {}
        # source -> its running call and when it started (monotonic)
        self._inflight: dict[str, tuple[asyncio.Future[Facts], float]] = {}

    async def build(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        results = await asyncio.gather(*(self._collect(s, now) for s in self.sources))
        sections: dict[str, Any] = {}
        fresh: set[str] = set()  # the sections a source answered for in this build
        for source, facts in zip(self.sources, results, strict=True):
            for name in source.sections:
                if facts is not None and name in facts:
                    sections[name] = self._last[name] = facts[name]
                    fresh.add(name)
                elif name not in sections:
                    sections[name] = self._last.get(name, EMPTY[name])
        return self._assemble(sections, now, fresh)

    async def _collect(self, source: Source, now: float) -> Facts | None:
        timeout = getattr(source, "timeout_s", None) or self.settings.source_timeout_seconds
        # One call per source at a time. A call past its timeout is not cancelled: one in
        # a worker thread would go on regardless (cancelling only forgets it, and the next
        # build would start another thread). The next builds wait on it again, and take its
        # answer when it comes; only after 10 timeouts is it cancelled and a new one made
        # (an await that never returns).
        call, since = self._inflight.get(source.name, (None, 0.0))
        if call is not None and not call.done() and time.monotonic() - since > 10 * timeout:
            call.cancel()
            call = None
        if call is None:
            call = asyncio.ensure_future(source.collect(now))
            call.add_done_callback(_retrieve)
            self._inflight[source.name] = (call, time.monotonic())
        done, _ = await asyncio.wait({call}, timeout=timeout)
        if not done:
            self._mark(source, now, f"timed out after {timeout:g} s")
            return None
        del self._inflight[source.name]
        try:
            if call.cancelled():
                raise TimeoutError(f"timed out after {timeout:g} s")
            facts = call.result()
            _check(source, facts)
        except Exception as exc:  # a source may fail in any way; the page must not
            message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            log.warning("source %s failed: %s", source.name, message)
            self._mark(source, now, message)
            return None
        self._status[source.name] = {
            "name": source.name,
            "ok": True,
            "error": None,
            "as_of": iso(now),
            "sections": list(source.sections),
        }
        return facts

    def close(self) -> None:
        """Cancel calls still running (at shutdown)."""
        for call, _since in self._inflight.values():
            call.cancel()
        self._inflight.clear()

    def _mark(self, source: Source, now: float, error: str) -> None:
        previous = self._status.get(source.name, {})
        self._status[source.name] = {
            "name": source.name,
            "ok": False,
            "error": public_text(error),  # public: no ARNs, account ids or AWS messages
            "as_of": previous.get("as_of"),  # when it last answered, if ever
            "sections": list(source.sections),
        }

    def _assemble(self, sections: dict[str, Any], now: float, fresh: set[str]) -> dict[str, Any]:
        s = self.settings
        experiments = sections.get("experiments", EMPTY["experiments"])
        recent = [brief(e) for e in experiments.get("recent_experiments", [])[:RECENT_MAX]]
        progress = dict(experiments.get("progress") or EMPTY["experiments"]["progress"])
        for name in ("compression", "quality"):
            progress[name] = thinned(progress.get(name) or [])
        cost = sections.get("costs", EMPTY["costs"])
        summary = dict(experiments["summary"])
        summary["month_to_date_usd"] = cost.get("month_to_date_usd")
        summary["forecast_month_usd"] = cost.get("forecast_month_usd")
        return {
            "generated_at": iso(now),
            "demo": s.demo,
            "refresh_seconds": s.refresh_seconds,
            "targets": {
                "compression_pct": s.target_compression_pct,
                "psnr_db": s.target_psnr_db,
                "ms_ssim": s.target_ms_ssim,
                "quality_metric": s.quality_metric,
                "compression_metric": s.compression_metric,
                "monthly_budget_usd": s.monthly_budget_usd,
            },
            "summary": summary,
            "infrastructure": {
                name: sections.get(name, EMPTY[name])
                for name in ("orchestrator", "training_workers", "inference_workers", "storage")
            },
            "recent_experiments": recent,
            "experiments_version": experiments.get("version"),
            "results_version": experiments.get("results_version"),
            "cost_breakdown": cost.get("cost_breakdown", []),
            "costs_as_of": cost.get("as_of"),
            "costs_live": "costs" in fresh and _live(cost, now, s.refresh_seconds),
            "progress": progress,
            "sources": [self._status[src.name] for src in self.sources if src.name in self._status],
        }


RECENT_MAX = 20
EXPERIMENT_BYTES = 8 * 1024
PROGRESS_POINTS = 400
ERROR_CHARS = 300
# Left out in this order until an experiment fits; `error` is shortened first.
HEAVY_FIELDS = ("notes", "params", "rd_points", "tags", "error")


def brief(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment as the snapshot carries it: whole when its JSON fits EXPERIMENT_BYTES,
    else without its largest fields (`notes`, `params`, `rd_points`, `tags`; `error` shortened,
    then left out too), which `omitted` names."""
    if len(orjson.dumps(experiment)) <= EXPERIMENT_BYTES:
        return experiment
    out = dict(experiment)
    omitted: list[str] = []
    error = out.get("error")
    if isinstance(error, str) and len(error) > ERROR_CHARS:
        out["error"] = error[: ERROR_CHARS - 1] + "…"
        omitted.append("error")
    for name in HEAVY_FIELDS:
        out["omitted"] = omitted
        if len(orjson.dumps(out)) <= EXPERIMENT_BYTES:
            break
        if out.get(name) is not None:
            out[name] = None
            if name not in omitted:
                omitted.append(name)
    out["omitted"] = omitted
    return out


def thinned(series: list[dict[str, Any]], most: int = PROGRESS_POINTS) -> list[dict[str, Any]]:
    """A best-so-far series of at most `most` points: first the points that repeat the one
    before are dropped (the step chart keeps its shape), then, if still too many, evenly
    spaced ones are kept, always with the first and the last."""
    if len(series) <= most:
        return series
    values = [{k: v for k, v in p.items() if k != "t"} for p in series]
    changes = [p for i, p in enumerate(series) if i == 0 or values[i] != values[i - 1]]
    if changes[-1] is not series[-1]:
        changes.append(series[-1])
    if len(changes) <= most:
        return changes
    step = (len(changes) - 1) / (most - 1)
    return [changes[round(i * step)] for i in range(most)]


class _ExperimentsSummary(BaseModel):
    total_experiments: int | None = None
    queued: int | None = None
    running: int | None = None
    completed: int | None = None
    failed: int | None = None
    cancelled: int | None = None
    success_rate: float | None = None
    experiments_24h: int | None = None
    best_compression: snapshot_models.BestCompression | None = None
    best_quality: snapshot_models.BestQuality | None = None
    bd_rate_recomputing: bool | None = None


class _ExperimentsFacts(BaseModel):
    summary: _ExperimentsSummary
    recent_experiments: list[models.Experiment] = []
    progress: snapshot_models.Progress | None = None
    version: str | None = None
    results_version: str | None = None


class _CostsFacts(BaseModel):
    month_to_date_usd: float | None = None
    forecast_month_usd: float | None = None
    cost_breakdown: list[snapshot_models.CostSlice] = []
    as_of: datetime | None = None


# What each section must look like (the Snapshot's own types; extra keys are fine).
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "experiments": _ExperimentsFacts,
    "orchestrator": snapshot_models.Orchestrator,
    "training_workers": snapshot_models.WorkerPool,
    "inference_workers": snapshot_models.WorkerPool,
    "storage": snapshot_models.Storage,
    "costs": _CostsFacts,
}


def _check(source: Source, facts: Any) -> None:
    """Refuse garbage: facts must be a mapping of the source's own sections to mappings,
    each JSON-serialisable and of the snapshot's types ("lots" is not a count)."""
    if not isinstance(facts, dict):
        raise TypeError(f"returned {type(facts).__name__}, not a mapping of sections")
    for name, value in facts.items():
        if name not in SECTIONS or name not in source.sections:
            raise TypeError(f"returned an unknown section {name!r}")
        if not isinstance(value, dict):
            raise TypeError(f"section {name!r} is {type(value).__name__}, not a mapping")
        try:
            # lax: 1234.0 bytes (as CloudWatch reports) is a count; "lots" is not
            SECTION_MODELS[name].model_validate_json(orjson.dumps(value))
        except orjson.JSONEncodeError as exc:
            raise TypeError(f"section {name!r} is not JSON: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TypeError(f"section {name!r}: {where}: {first['msg']}") from None


def _live(facts: dict[str, Any], now: float, within_s: float) -> bool:
    """Figures made for this snapshot: not marked stale, and as of no longer than `within_s`
    ago (Cost Explorer's cached figures are hours old; the local store's are of now)."""
    if facts.get("stale"):
        return False
    as_of = facts.get("as_of")
    if as_of is None:
        return True
    try:
        at = as_of if isinstance(as_of, datetime) else datetime.fromisoformat(str(as_of))
    except ValueError:
        return False
    return now - at.timestamp() <= within_s


def _retrieve(call: asyncio.Future[Facts]) -> None:
    """An abandoned call's outcome is collected, never reported as unretrieved."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        call.exception()
