"""Experiments: failures (as a rate, or each one), targets reached, new best results."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from codecdash.alerts.facts import Facts
from codecdash.alerts.model import Finding, Severity
from codecdash.alerts.rules.base import Rule, duration, split_list

Metric = Literal["compression", "quality"]
Metrics = Annotated[list[Metric], BeforeValidator(split_list)]
ERROR_CHARS = 500


def _both_metrics() -> list[Metric]:
    return ["compression", "quality"]


class FailureRateRule(Rule):
    name = "failure_rate"
    description = (
        "Among the experiments finished in the last `window_seconds`, the failed share is "
        "above `max_ratio` (with at least `min_finished` of them; local store only)."
    )

    window_seconds: float = Field(3600.0, gt=0, description="The window, s.")
    max_ratio: float = Field(0.25, ge=0, lt=1, description="Highest acceptable failed share.")
    min_finished: int = Field(4, ge=1, description="Fewer finished experiments: no verdict.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        if facts.store is None:
            return []
        completed, failed = facts.store.finished_counts(now - self.window_seconds)
        finished = completed + failed
        if finished < self.min_finished or failed / finished <= self.max_ratio:
            return []
        ratio = failed / finished
        return [
            Finding(
                {},
                f"{failed} of {finished} experiments finished in the last "
                f"{duration(self.window_seconds)} failed ({100 * ratio:.0f} %, above "
                f"{100 * self.max_ratio:g} %)",
                value=ratio,
            )
        ]


class ExperimentFailedRule(Rule):
    name = "experiment_failed"
    description = (
        "Each experiment that failed in the last `window_seconds`, with its error text "
        "(off by default; local store only)."
    )
    notify_resolved = False

    enabled: bool = Field(False, description="Evaluate this rule.")
    window_seconds: float = Field(3600.0, gt=0, description="How far back a failure counts, s.")
    max_alerts: int = Field(50, ge=1, le=1000, description="At most this many at once.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        if facts.store is None:
            return []
        found = []
        for row in facts.store.failures_since(now - self.window_seconds, self.max_alerts):
            error = " ".join(str(row["error"] or "no error text").split())
            if len(error) > ERROR_CHARS:
                error = error[: ERROR_CHARS - 1] + "…"
            name = row["name"] or row["id"]
            found.append(
                Finding({"experiment": str(row["id"])}, f"Experiment {name} failed: {error}")
            )
        return found


class TargetReachedRule(Rule):
    name = "target_reached"
    description = "The best compression or the best quality reaches its target."
    notify_resolved = False

    severity: Severity = Field("info", description="info, warning or critical.")
    targets: Metrics = Field(default_factory=_both_metrics, description="Targets watched.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        targets = facts.section("targets")
        found = []
        for metric in self.targets:
            best = _best(facts, metric)
            target = _target(targets, metric)
            if best is None or target is None or best[0] < target:
                continue
            value, experiment, label = best
            found.append(
                Finding(
                    {"target": metric},
                    f"{label} target reached: {_shown(metric, value, facts)} by {experiment} "
                    f"(target {_shown(metric, target, facts)})",
                    value=value,
                )
            )
        return found


class NewBestRule(Rule):
    name = "new_best"
    description = (
        "A result finished in the last `window_seconds` is the new best compression or "
        "quality; one alert per metric and experiment."
    )
    notify_resolved = False

    severity: Severity = Field("info", description="info, warning or critical.")
    metrics: Metrics = Field(default_factory=_both_metrics, description="Metrics watched.")
    window_seconds: float = Field(
        3600.0, gt=0, description="Only a best that finished this recently is news, s."
    )

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        found = []
        for metric in self.metrics:
            best = _best(facts, metric)
            if best is None:
                continue
            value, experiment, label = best
            finished = _finished_at(facts, experiment)
            if finished is None or now - finished > self.window_seconds:
                continue
            # Labels name the metric and the experiment (a new best is a new alert). Per test
            # set and method, "dataset" and "method" labels join them.
            found.append(
                Finding(
                    {"metric": metric, "experiment": experiment},
                    f"New best {label.lower()}: {_shown(metric, value, facts)} by {experiment}",
                    value=value,
                )
            )
        return found


def _quality_metric(facts: Facts) -> str:
    return str(facts.section("targets").get("quality_metric") or "psnr")


def _best(facts: Facts, metric: str) -> tuple[float, str, str] | None:
    """(value, experiment id, label) of the snapshot's best result for the metric."""
    summary = facts.section("summary")
    if metric == "compression":
        best = summary.get("best_compression") or {}
        value, label = best.get("value_pct"), "Compression"
    else:
        best = summary.get("best_quality") or {}
        key = "ms_ssim" if _quality_metric(facts) == "ms_ssim" else "psnr_db"
        value, label = best.get(key), "Quality"
    experiment = best.get("experiment_id")
    if not isinstance(value, int | float) or not experiment:
        return None
    return float(value), str(experiment), label


def _target(targets: Any, metric: str) -> float | None:
    if metric == "compression":
        value = targets.get("compression_pct")
    elif targets.get("quality_metric") == "ms_ssim":
        value = targets.get("ms_ssim")
    else:
        value = targets.get("psnr_db")
    return float(value) if isinstance(value, int | float) else None


def _shown(metric: str, value: float, facts: Facts) -> str:
    if metric == "compression":
        return f"{value:.1f} % bitrate saved"
    if _quality_metric(facts) == "ms_ssim":
        return f"MS-SSIM {value:.4f}"
    return f"{value:.2f} dB PSNR"


def _finished_at(facts: Facts, experiment_id: str) -> float | None:
    if facts.store is not None:
        return facts.store.finished_at(experiment_id)
    from datetime import datetime

    for row in facts.snapshot.get("recent_experiments") or []:
        if row.get("id") == experiment_id and row.get("finished_at"):
            return datetime.fromisoformat(str(row["finished_at"])).timestamp()
    return None
