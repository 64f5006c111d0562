"""Training curves: a running experiment whose loss turned NaN or infinite, whose loss is
rising, or that stopped logging steps.

They read the training summary the store keeps current on each metrics write (the newest
step, when the server received it, the loss and its mark), of running experiments only: a
finished run's alerts resolve, and one that never logged a step is never found.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from codecdash.alerts.facts import Facts
from codecdash.alerts.model import Finding, Severity
from codecdash.alerts.rules.base import Rule, duration


def _running(facts: Facts) -> list[dict[str, Any]]:
    return facts.store.training() if facts.store is not None else []


def _name(row: dict[str, Any]) -> str:
    return str(row.get("name") or row["experiment_id"])


class NonFiniteLossRule(Rule):
    name = "non_finite_loss"
    description = (
        "A running experiment's newest loss is NaN or infinite; one alert per experiment "
        "(local store only)."
    )

    severity: Severity = Field("critical", description="info, warning or critical.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        found = []
        for row in _running(facts):
            if row["alert"] != "non_finite_loss":
                continue
            # The step named is the first non-finite one (where to look, which checkpoint
            # to resume from): it stays put while the run goes on logging NaN, so the
            # alert is not rewritten at every evaluation.
            first = row["non_finite_step"]
            where = f" (first non-finite at step {first})" if first is not None else ""
            found.append(
                Finding(
                    {"experiment": str(row["experiment_id"])},
                    f"Experiment {_name(row)}: {row['loss_metric'] or 'the loss'} is "
                    f"{row['loss']}{where}",
                )
            )
        return found


class LossRisingRule(Rule):
    name = "loss_rising"
    description = (
        "A running experiment's smoothed loss is well above its lowest "
        "(`training_loss_rise_pct`) for `pending_seconds`; one alert per experiment (off by "
        "default; local store only)."
    )

    enabled: bool = Field(False, description="Evaluate this rule.")
    pending_seconds: float = Field(600.0, ge=0, description="How long it must hold, s.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        return [
            Finding(
                {"experiment": str(row["experiment_id"])},
                f"Experiment {_name(row)}: {row['loss_metric'] or 'the loss'} is rising "
                "(its moving average is well above its lowest)",
                value=row["loss"] if isinstance(row["loss"], float) else None,
            )
            for row in _running(facts)
            if row["alert"] == "loss_rising"
        ]


class StalledRunRule(Rule):
    name = "stalled_run"
    description = (
        "A running experiment that logged steps has logged none for `stalled_after_seconds` "
        "(by the server's clock); one alert per experiment (local store only)."
    )

    stalled_after_seconds: float = Field(
        900.0, gt=0, description="Silence that makes a running experiment stalled, s."
    )
    forget_after_seconds: float = Field(
        86400.0, gt=0, description="A run silent for longer is taken as abandoned (resolves)."
    )

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        found = []
        for row in _running(facts):
            # When the server received the newest write: a client's clock does not count.
            age = now - float(row["received_at"])
            if self.stalled_after_seconds <= age < self.forget_after_seconds:
                found.append(
                    Finding(
                        {"experiment": str(row["experiment_id"])},
                        f"Experiment {_name(row)} has logged no step for {duration(age)} "
                        f"(last: step {row['step']})",
                        value=age,
                    )
                )
        return found
