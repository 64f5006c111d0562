"""The fleet: the orchestrator down, a worker gone silent, queued work with no worker."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from codecdash.alerts.facts import Facts
from codecdash.alerts.model import Finding, Severity
from codecdash.alerts.rules.base import Rule, duration, split_list

Pool = Literal["training", "inference"]
Pools = Annotated[list[Pool], BeforeValidator(split_list)]


def _both_pools() -> list[Pool]:
    return ["training", "inference"]


class OrchestratorDownRule(Rule):
    name = "orchestrator_down"
    description = (
        "The orchestrator's newest heartbeat says `down`, or is older than the active window "
        "(3 × refresh_seconds)."
    )

    severity: Severity = Field("critical", description="info, warning or critical.")
    pending_seconds: float = Field(60.0, ge=0, description="How long it must hold, s.")
    include_degraded: bool = Field(
        False, description="Also fire (as a warning) while the orchestrator says `degraded`."
    )

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        orchestrator = facts.section("infrastructure", "orchestrator")
        status = orchestrator.get("status")
        seen = orchestrator.get("last_seen") or "never"
        if status == "down":
            return [Finding({}, f"The orchestrator is down (last heartbeat {seen})")]
        if status == "degraded" and self.include_degraded:
            return [
                Finding(
                    {}, f"The orchestrator is degraded (last heartbeat {seen})", severity="warning"
                )
            ]
        return []


class WorkerStaleRule(Rule):
    name = "worker_stale"
    description = (
        "A training or inference worker has sent no heartbeat for `stale_after_seconds` "
        "without a clean shutdown; one alert per worker (local store only)."
    )

    stale_after_seconds: float | None = Field(
        None, gt=0, description="Silence that makes a worker stale, s; unset: the active window."
    )
    forget_after_seconds: float = Field(
        86400.0, gt=0, description="A worker silent for longer is taken as retired (resolves)."
    )
    roles: Pools = Field(default_factory=_both_pools, description="Pools watched.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        if facts.store is None:
            return []
        after = self.stale_after_seconds or facts.active_window_s
        found = []
        for worker in facts.store.workers():
            age = now - float(worker["last_seen"])
            if (
                worker["role"] in self.roles
                and not worker["clean_shutdown"]
                and after <= age < self.forget_after_seconds
            ):
                found.append(
                    Finding(
                        {"worker": str(worker["worker_id"]), "role": str(worker["role"])},
                        f"Worker {worker['worker_id']} ({worker['role']}) has sent no "
                        f"heartbeat for {duration(age)}",
                        value=age,
                    )
                )
        return found


class PoolIdleRule(Rule):
    name = "pool_idle"
    description = "A pool has queued work and no active worker, for `pending_seconds` (10 minutes)."

    pending_seconds: float = Field(600.0, ge=0, description="How long it must hold, s.")
    pools: Pools = Field(default_factory=_both_pools, description="Pools watched.")

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        found = []
        for pool in self.pools:
            figures = facts.section("infrastructure", f"{pool}_workers")
            queued, active = figures.get("queue_depth"), figures.get("active")
            if isinstance(queued, int) and queued > 0 and active == 0:
                found.append(
                    Finding(
                        {"pool": pool},
                        f"{queued} job{'s' if queued != 1 else ''} queued for the {pool} "
                        "pool and no active worker",
                        value=float(queued),
                    )
                )
        return found
