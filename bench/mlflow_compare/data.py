"""The experiments both systems receive: seeded, the same values in each system's shape."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MODELS = ("ssf2020", "dcvc", "dcvc-dc", "dcvc-fm", "elic", "hific", "cheng2020")
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932)
LRS = (1e-4, 5e-5, 2e-5, 1e-5)
STATUS_WEIGHTS = (("completed", 85), ("failed", 8), ("running", 4), ("queued", 2), ("cancelled", 1))
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "running": "RUNNING",
    "queued": "SCHEDULED",
    "cancelled": "KILLED",
}
TOP = 100  # both ranked queries ask for the first 100
MIN_BR = 80.0  # the filtered query: bitrate reduction above this


@dataclass(frozen=True)
class Exp:
    id: str
    status: str
    model: str
    lam: float
    lr: float
    psnr: float
    br: float
    cost: float
    start_ms: int
    end_ms: int | None


def make_experiments(n: int, seed: int) -> list[Exp]:
    """N deterministic experiments; no bitrate reduction equals 80 exactly (> vs >=)."""
    rng = random.Random(seed)
    statuses = [s for s, _ in STATUS_WEIGHTS]
    weights = [w for _, w in STATUS_WEIGHTS]
    base_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    out = []
    for i in range(n):
        status = rng.choices(statuses, weights)[0]
        start = base_ms + i * 60_000 + rng.randrange(60_000)
        end = (
            start + rng.randrange(600_000, 36_000_000)
            if status in ("completed", "failed", "cancelled")
            else None
        )
        br = round(rng.uniform(-20.0, 95.0), 4)
        if br == MIN_BR:
            br = MIN_BR + 0.0001
        out.append(
            Exp(
                id=f"bench-{i:07d}",
                status=status,
                model=rng.choice(MODELS),
                lam=rng.choice(LAMBDAS),
                lr=rng.choice(LRS),
                psnr=round(rng.uniform(26.0, 42.0), 6),
                br=br,
                cost=round(rng.uniform(0.2, 60.0), 4),
                start_ms=start,
                end_ms=end,
            )
        )
    return out


def expected_answers(exps: list[Exp]) -> dict[str, Any]:
    """What each measure must answer, computed here: both systems are checked against it."""
    by_psnr = sorted(exps, key=lambda e: -e.psnr)
    return {
        "top_psnr": [e.id for e in by_psnr[:TOP]],
        "top_br80": [e.id for e in by_psnr if e.br > MIN_BR][:TOP],
        "count": len(exps),
    }


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def codecdash_item(e: Exp) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": e.id,
        "name": e.id,
        "status": e.status,
        "created_at": iso(e.start_ms),
        "params": {"model": e.model, "lambda": e.lam, "lr": e.lr},
        "psnr_db": e.psnr,
        "bitrate_reduction_pct": e.br,
        "cost_usd": e.cost,
    }
    if e.status != "queued":
        item["started_at"] = iso(e.start_ms)
    if e.end_ms is not None:
        item["finished_at"] = iso(e.end_ms)
    return item


def mlflow_params(e: Exp) -> list[dict[str, str]]:
    return [
        {"key": "model", "value": e.model},
        {"key": "lambda", "value": str(e.lam)},
        {"key": "lr", "value": str(e.lr)},
    ]


def mlflow_metrics(e: Exp) -> list[tuple[str, float]]:
    return [("psnr", e.psnr), ("bitrate_reduction", e.br), ("cost_usd", e.cost)]


def metric_ts(e: Exp) -> int:
    return e.end_ms if e.end_ms is not None else e.start_ms
