"""The demo's training curves: what each run would log per step, sent through the SDK.

A run of the campaign trains for ``epochs × (64,612 ÷ batch)`` steps over its training time;
every LOG_EVERY steps it logs, as CompressAI's training loop computes them:

- ``bpp`` falling fast from about 1.1 bits per pixel to the run's final rate (smaller for a
  larger λ's opposite: the rate a λ buys), with 3 % noise;
- ``psnr_db`` rising from about 20 dB to the run's final quality (higher for a larger λ),
  with a small lift at each learning-rate drop;
- ``loss`` = λ · 255² · MSE + bpp (the rate-distortion loss), with 6 % noise;
- ``lr``: a linear warm-up over the first 1 % of steps, then ×0.1 at 75 % and at 90 %.

A run that the campaign makes diverge (``nan_at``: it fails there) sees its loss blow up
for DIVERGE_S of campaign time, then logs NaN for the last NAN_S (the time a training
loop's NaN check takes to stop it). Runs logging is thinned to
MAX_LOGS_PER_TICK steps a tick, so at high ``--speed`` the demo stays light. Deterministic
per run (its own generator), though the steps a fast demo keeps depend on timing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from codecdash.client import Client
from codecdash.demo.campaign import Campaign
from codecdash.demo.fleet import HOUR
from codecdash.demo.runs import SEQUENCES, Run

LOG_EVERY: Final = 100
MAX_LOGS_PER_TICK: Final = 25
DIVERGE_S: Final = 15 * 60.0  # campaign seconds over which a diverging loss blows up
NAN_S: Final = 10 * 60.0  # campaign seconds a diverged run logs NaN before it fails


@dataclass
class _Tracked:
    total: int  # steps of the whole training
    seconds: float  # campaign seconds the whole training takes on its worker
    logged: int  # newest step logged, -1 before any
    rng: random.Random


def total_steps(run: Run) -> int:
    return int(run.params["epochs"]) * (SEQUENCES // int(run.params["batch_size"]))


def values(run: Run, step: int, total: int, seconds: float, rng: random.Random) -> dict[str, float]:
    """The metrics run `run` logs at `step` of `total` (its training takes `seconds`)."""
    lam = float(run.params["lambda"])
    p = step / total
    decay = math.exp(-7.0 * p)
    bpp_end = (0.08 + 2.2 * lam**0.75) * run.scale**0.3
    psnr_end = 29.5 + 1.1 * math.log2(lam / 0.0018)
    bpp = (bpp_end * (1.0 + 0.04 * (1.0 - p)) + (1.1 - bpp_end) * decay) * rng.lognormvariate(
        0.0, 0.03
    )
    lift = (0.25 if p >= 0.75 else 0.0) + (0.1 if p >= 0.9 else 0.0)
    psnr = psnr_end - 0.6 * (1.0 - p) - 9.0 * decay + lift + rng.gauss(0.0, 0.15)
    lr0 = float(run.params["lr"])
    lr = lr0 * min(1.0, 0.1 + 90.0 * p) * (0.1 if p >= 0.75 else 1.0) * (0.1 if p >= 0.9 else 1.0)
    blow = 1.0
    if run.nan_at is not None:
        nan_from = run.nan_at - NAN_S / seconds
        rising = (p - (nan_from - DIVERGE_S / seconds)) * seconds / DIVERGE_S  # 0 → 1
        if p >= nan_from:
            return {"loss": math.nan, "bpp": math.nan, "psnr_db": math.nan, "lr": lr}
        if rising > 0:
            blow = math.exp(4.0 * rising)  # up to ~55 times
            bpp *= blow**0.5
            psnr = max(10.0, psnr - 3.0 * math.log(blow))
    mse = 10.0 ** (-psnr / 10.0)
    loss = (lam * 255.0**2 * mse + bpp) * blow * rng.lognormvariate(0.0, 0.06)
    return {"loss": loss, "bpp": bpp, "psnr_db": psnr, "lr": lr}


class CurveLogger:
    """Logs the steps the running runs have reached, each tick, with `client.log_steps`.

    `stamp(t)` maps campaign time to wall-clock seconds (the step's `at`)."""

    def __init__(self, campaign: Campaign, client: Client, stamp: Callable[[float], float]):
        self.campaign = campaign
        self.client = client
        self.stamp = stamp
        self._runs: dict[str, _Tracked] = {}
        self._done: set[str] = set()  # stopped training: logged to the end

    def log_until(self, t: float, skip: Callable[[str], bool] = lambda _id: False) -> int:
        """Log every tracked or running run's steps up to campaign time `t` (a run that
        stopped meanwhile, up to where it stopped); returns how many steps were logged."""
        logged = 0
        for run in self.campaign.runs.values():
            new = run.id not in self._runs and run.id not in self._done
            if run.status == "running" and new and not skip(run.id):
                tracked = self._track(run)
                if tracked is not None:
                    self._runs[run.id] = tracked
                else:
                    self._done.add(run.id)
        for run_id, tracked in list(self._runs.items()):
            run = self.campaign.runs[run_id]
            end = self._stopped_at(run)
            logged += self._log(run, tracked, min(t, end) if end is not None else t)
            if end is not None and end <= t:
                del self._runs[run_id]  # done: nothing more to log
                self._done.add(run_id)
        return logged

    def _track(self, run: Run) -> _Tracked | None:
        worker = self.campaign.fleet.by_id(run.worker_id or "")
        seconds = run.train_hours * HOUR / worker.spec.train_speed
        if run.started_at is None or run.train_end is None:
            return None
        if run.nan_at is None and run.train_end - run.started_at < 0.5 * seconds:
            return None  # out of memory in its first minutes: nothing to plot
        rng = random.Random(f"{self.campaign.seed}:{run.id}:curve")  # noqa: S311 - not a secret
        return _Tracked(total_steps(run), seconds, -1, rng)

    def _stopped_at(self, run: Run) -> float | None:
        """When the run stopped training (None while it trains)."""
        worker = self.campaign.fleet.by_id(run.worker_id or "")
        if worker.job != run.id or run.status != "running":
            ends = [run.train_end, run.finished_at, worker.silent_since, worker.left_at]
            known = [e for e in ends if e is not None]
            return min(known) if known else self.campaign.now
        return worker.silent_since  # hung: it stopped logging, the run still "runs"

    def _log(self, run: Run, tracked: _Tracked, t: float) -> int:
        assert run.started_at is not None
        share = (t - run.started_at) / tracked.seconds
        limit = run.nan_at if run.nan_at is not None else 1.0
        reached = int(min(share, limit) * tracked.total)
        first = (tracked.logged // LOG_EVERY + 1) * LOG_EVERY
        steps = list(range(first, reached + 1, LOG_EVERY))
        if not steps:
            return 0
        if len(steps) > MAX_LOGS_PER_TICK:  # a fast demo: fewer steps, always the newest
            stride = len(steps) / MAX_LOGS_PER_TICK
            steps = [steps[int(len(steps) - 1 - k * stride)] for k in range(MAX_LOGS_PER_TICK)][
                ::-1
            ]
        points = [
            {
                "step": step,
                "at": self.stamp(run.started_at + step / tracked.total * tracked.seconds),
                "values": values(run, step, tracked.total, tracked.seconds, tracked.rng),
            }
            for step in steps
        ]
        self.client.log_steps(run.id, points)
        tracked.logged = steps[-1]
        return len(points)
