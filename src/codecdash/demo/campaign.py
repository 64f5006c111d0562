"""The deterministic model of a codec research campaign, in campaign time.

Everything here is a pure function of the seed: experiment ids, names, parameters, outcomes,
results, the fleet's events. Times are seconds since the campaign started; the workload maps
them to wall-clock times (:mod:`codecdash.demo.workload`).

Each experiment's results come from the rate-distortion model (:mod:`codecdash.demo.rd_model`):
the learned codec's curve with its rates times a scale ``s``. The research frontier improves as
``s_f(t) = S_END + (1 - S_END)·exp(-t / TAU)``: from the published ssf2020 (s = 1) towards
s = 0.085, i.e. 88 % fewer bits than x264, near the 90 % target; each experiment lands around
the frontier (family, learning rate, crop and epochs matter, plus noise), so best-so-far climbs
in steps. Experiments fail as real ones do (:mod:`codecdash.demo.failures`).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from codecdash.demo import failures
from codecdash.demo.failures import WATCHDOG_S
from codecdash.demo.fleet import (
    DAY,
    HOUR,
    OTHER_USD_PER_HOUR,
    Fleet,
    Worker,
    storage_usd_per_hour,
)
from codecdash.demo.rd_model import RDModel
from codecdash.demo.runs import RESULT_FIELDS, Change, Run
from codecdash.demo.serving import ServingLoad, speed

S_END: Final = 0.085
TAU_DAYS: Final = 9.0
MIN_SCALE: Final = 0.04

# Research directions, introduced over the campaign: (model, from day, log-scale offset).
FAMILIES: Final = (
    ("ssf2020", 0.0, 0.06),
    ("ssf2020-ctx", 1.5, 0.0),
    ("ssf2020-attn", 6.0, -0.03),
    ("dcvc-cond", 12.0, -0.06),
    ("dcvc-cond-hyper", 20.0, -0.08),
)
# CompressAI's ssf2020 MSE lambdas, one per quality level.
LAMBDAS: Final = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
LEARNING_RATES: Final = ((5e-5, 0.2), (1e-4, 0.45), (2e-4, 0.25), (5e-4, 0.1))
BATCHES: Final = ((4, 0.2), (8, 0.6), (16, 0.2))
CROPS: Final = ((256, 0.85), (384, 0.15))
EPOCHS: Final = ((25, 0.3), (40, 0.5), (60, 0.2))
HOURS_PER_EPOCH: Final = 0.085  # Vimeo-90k septuplets, 256² crops, batch 8, one A10G
EVAL_FRAMES: Final = 3_900 * 7  # UVG 1080p (7 sequences, 3,900 frames) at 7 rate points
SPOT_MEAN_DAYS: Final = 10.0  # mean time between interruptions of one spot worker
HANG_MEAN_DAYS: Final = 9.0  # mean time between hung training workers, fleet-wide
DIVERGE_AFTER_S: Final = 30 * 60.0  # the live demo's diverging run fails this much later
SWEEP_WHEN_QUEUED: Final = 3  # the next sweep is prepared once the queue is this short…
THINK_HOURS: Final = (0.25, 2.0)  # …and queued this many hours later


def frontier_scale(t: float) -> float:
    """The rate scale the campaign's best ideas reach at campaign time `t` (seconds)."""
    return S_END + (1.0 - S_END) * math.exp(-t / DAY / TAU_DAYS)


def _weighted(rng: random.Random, options: Sequence[tuple[Any, float]]) -> Any:
    values = [v for v, _ in options]
    return rng.choices(values, weights=[w for _, w in options])[0]


# -- the campaign ----------------------------------------------------------------------------


@dataclass(order=True)
class _Event:
    t: float
    seq: int
    kind: str = field(compare=False)
    a: str = field(default="", compare=False)
    b: str = field(default="", compare=False)


class Campaign:
    """A discrete-event simulation of the campaign: sweeps, queues, workers, failures.

    `advance(t)` runs every event up to campaign time `t` and returns the experiments that
    changed. `live_from` (seconds) is where the live part begins: a running experiment starts
    diverging 20 minutes into it (its loss NaN, it fails 30 minutes later), one worker hangs one
    hour into it and one spot worker is interrupted two hours into it, so a live demo always
    shows all three, whatever the seed.
    """

    def __init__(self, seed: int, *, live_from: float = 0.0, rd: RDModel | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        self.rd = rd or RDModel.load()
        self.fleet = Fleet.initial(self.rng)
        self.serving = ServingLoad(seed, sum(speed(w) for w in self.fleet.alive("inference")))
        self.now = 0.0
        self.runs: dict[str, Run] = {}
        self.queue: deque[str] = deque()
        self.eval_queue: deque[str] = deque()
        self.finish_times: list[float] = []
        self._events: list[_Event] = []
        self._seq = 0
        self._changes: list[Change] = []
        self._sweeps = 0
        self._sweep_pending = False
        self._handlers: dict[str, Callable[[_Event], None]] = {
            "sweep": self._on_sweep,
            "train_end": self._on_train_end,
            "eval_end": self._on_eval_end,
            "spot": self._on_spot,
            "hang": self._on_hang,
            "watchdog": self._on_watchdog,
            "replace": self._on_replace,
            "diverge": self._on_diverge,
        }
        self._schedule(0.0, "sweep", "baseline")
        self._sweep_pending = True
        for worker in self.fleet.workers:
            self._schedule_spot(worker)
        self._schedule(self.rng.expovariate(1.0 / (HANG_MEAN_DAYS * DAY)), "hang", "random")
        self._schedule(live_from + HOUR / 3, "diverge", "live")
        self._schedule(live_from + HOUR, "hang", "live")
        self._schedule(live_from + 2 * HOUR, "spot", "", "live")

    # -- driving ------------------------------------------------------------------------------
    def advance(self, until: float) -> list[Change]:
        """Run every event up to `until`; the experiments that changed, in order."""
        while self._events and self._events[0].t <= until:
            event = heapq.heappop(self._events)
            self.now = max(self.now, event.t)
            self._handlers[event.kind](event)
        self.now = max(self.now, until)
        self.serving.advance(self.now, sum(speed(w) for w in self.servers()))
        changes, self._changes = self._changes, []
        return changes

    def servers(self) -> list[Worker]:
        """The inference workers serving the real-time load (not busy evaluating)."""
        return [w for w in self.fleet.alive("inference") if w.reporting and w.job is None]

    def queue_depth(self, role: str) -> int | None:
        if role == "training":
            return len(self.queue)
        if role == "inference":  # 2-second segments waiting, and evaluations waiting
            return self.serving.queue_depth + len(self.eval_queue)
        return None

    def costs(self, start: float, end: float) -> dict[str, float]:
        """What [start, end) costs, by component: instances, storage, other."""
        out = self.fleet.compute_usd(start, end)
        mid = (start + end) / 2
        finished = bisect.bisect_right(self.finish_times, mid)
        hours = (end - start) / HOUR
        out["storage"] = storage_usd_per_hour(finished, self.fleet.gpu_workers(mid)) * hours
        out["other"] = OTHER_USD_PER_HOUR * hours
        return out

    def _schedule(self, t: float, kind: str, a: str = "", b: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(t, self._seq, kind, a, b))

    def _emit(self, run: Run, *fields: str) -> None:
        self._changes.append(Change(run.id, fields or None))

    def _schedule_spot(self, worker: Worker) -> None:
        if worker.spot:
            delay = self.rng.expovariate(1.0 / (SPOT_MEAN_DAYS * DAY))
            self._schedule(worker.joined_at + delay, "spot", worker.worker_id)

    # -- experiments --------------------------------------------------------------------------
    def _new_run(self, sweep: str, family: str, offset: float, baseline: bool) -> Run:
        rng = self.rng
        lam = rng.choice(LAMBDAS)
        lr: float = _weighted(rng, LEARNING_RATES)
        batch: int = _weighted(rng, BATCHES)
        crop: int = _weighted(rng, CROPS)
        epochs: int = _weighted(rng, EPOCHS)
        if crop == 384:
            batch = min(batch, 8)
        area = (crop / 256) ** 2
        if baseline:
            log_scale = rng.gauss(0.0, 0.03)
        else:
            log_scale = (
                math.log(frontier_scale(self.now))
                + offset
                + 0.12 * abs(math.log2(lr / 1e-4))
                + (-0.02 if crop == 384 else 0.0)
                + {25: 0.04, 40: 0.0, 60: -0.03}[epochs]
                + rng.gauss(0.08, 0.10)
            )
        scale = max(MIN_SCALE, math.exp(log_scale))
        nan_at = rng.uniform(0.1, 0.85) if rng.random() < (0.3 if lr >= 5e-4 else 0.015) else None
        number = len(self.runs) + 1
        mem_gib = 1.2 + 0.95 * batch * area * rng.uniform(0.97, 1.03)
        run = Run(
            id=f"exp-{number:05d}",
            name=f"{family} λ={lam:.4f} lr={lr:.0e} b{batch} c{crop} e{epochs}",
            params={
                "model": family,
                "lambda": lam,
                "lr": lr,
                "batch_size": batch,
                "crop": crop,
                "epochs": epochs,
                "dataset": "vimeo90k-septuplet",
                "sweep": sweep,
            },
            tags=[family, "uvg-1080p", "mse", sweep],
            scale=scale,
            train_hours=epochs
            * HOURS_PER_EPOCH
            * area
            * (8 / batch) ** 0.15
            * rng.uniform(0.92, 1.08),
            mem_gib=mem_gib,
            mem_estimate_gib=mem_gib * rng.uniform(0.88, 1.0),
            nan_at=nan_at,
            created_at=self.now,
        )
        if baseline:
            run.name = f"ssf2020 reproduction, seed {number} (λ={lam:.4f})"
            run.tags.append("baseline")
        self.runs[run.id] = run
        self._emit(run)
        return run

    def _retry(self, run: Run) -> Run:
        number = len(self.runs) + 1
        retry = Run(
            id=f"exp-{number:05d}",
            name=(run.name.removesuffix(" (retry)") + " (retry)")[:200],
            params={**run.params, "retry_of": run.id},
            tags=[*(t for t in run.tags if t != "retry"), "retry"],
            scale=run.scale,
            train_hours=run.train_hours,
            mem_gib=run.mem_gib,
            mem_estimate_gib=run.mem_estimate_gib,
            nan_at=run.nan_at,
            created_at=self.now,
        )
        retry.params.pop("gpu_hours", None)
        self.runs[retry.id] = retry
        self.queue.appendleft(retry.id)  # retries go first
        self._emit(retry)
        return retry

    def _finish(self, run: Run, status: str, error: str | None = None) -> None:
        run.status = status
        run.finished_at = self.now
        run.error = error
        run.cost_usd = round(run.train_usd, 2)
        self.finish_times.append(self.now)
        self._emit(
            run,
            "status",
            "finished_at",
            "error",
            "cost_usd",
            "params",
            *(RESULT_FIELDS if run.results is not None else ()),
        )

    def _on_sweep(self, event: _Event) -> None:
        self._sweep_pending = False
        self._sweeps += 1
        name = f"sweep-{self._sweeps:03d}"
        if event.a == "baseline":
            for _ in range(4):
                self.queue.append(self._new_run(name, "ssf2020", 0.0, baseline=True).id)
        else:
            day = self.now / DAY
            available = [f for f in FAMILIES if f[1] <= day]
            weights = [3.0 if f is available[-1] else 1.0 for f in available]
            family, _, offset = self.rng.choices(available, weights=weights)[0]
            for _ in range(self.rng.randint(6, 14)):
                self.queue.append(self._new_run(name, family, offset, baseline=False).id)
        self._dispatch()

    def _dispatch(self) -> None:
        idle = [w for w in self.fleet.alive("training") if w.reporting and w.job is None]
        for worker in idle:
            fits = next(
                (
                    run_id
                    for run_id in self.queue
                    if self.runs[run_id].mem_estimate_gib <= worker.spec.gpu_mem_gib
                ),
                None,
            )
            if fits is not None:
                self.queue.remove(fits)
                self._start(self.runs[fits], worker)
        if len(self.queue) <= SWEEP_WHEN_QUEUED and not self._sweep_pending:
            self._sweep_pending = True
            self._schedule(self.now + self.rng.uniform(*THINK_HOURS) * HOUR, "sweep")

    def _start(self, run: Run, worker: Worker) -> None:
        run.status = "running"
        run.started_at = self.now
        run.worker_id = worker.worker_id
        worker.job, worker.job_mem_gib = run.id, run.mem_gib
        spec = worker.spec
        hours = run.train_hours / spec.train_speed
        if run.mem_gib > spec.gpu_mem_gib * 0.97:
            end, reason = self.now + self.rng.uniform(2, 8) * 60, "oom"
        elif run.nan_at is not None:
            end, reason = self.now + hours * run.nan_at * HOUR, "nan"
        else:
            end, reason = self.now + hours * HOUR, ""
        run.train_end = end
        self._schedule(end, "train_end", run.id, reason)
        self._emit(run, "status", "started_at", "worker_id")

    def _on_train_end(self, event: _Event) -> None:
        run = self.runs[event.a]
        worker = self.fleet.by_id(run.worker_id or "")
        if run.status != "running" or worker.job != run.id or not worker.reporting:
            return  # interrupted, or hung: the watchdog deals with it
        self._bill(run, worker)
        worker.job = None
        if event.b == "oom":
            self._finish(run, "failed", failures.oom_error(run, worker, self.rng))
        elif event.b == "nan":
            self._finish(run, "failed", failures.nan_error(run, self.now, self.rng))
        else:
            self.eval_queue.append(run.id)
            self._dispatch_eval()
        self._dispatch()

    def _bill(self, run: Run, worker: Worker) -> None:
        hours = (self.now - (self.now if run.started_at is None else run.started_at)) / HOUR
        run.train_usd += hours * worker.hourly_usd
        run.params["gpu_hours"] = round(hours, 2)

    def _dispatch_eval(self) -> None:
        for worker in self.fleet.alive("inference"):
            if not self.eval_queue:
                return
            if worker.job is None and worker.reporting:
                run = self.runs[self.eval_queue.popleft()]
                worker.job = run.id
                fps = self.rng.uniform(*worker.spec.fps)
                self._schedule(self.now + EVAL_FRAMES / fps, "eval_end", run.id, worker.worker_id)

    def _on_eval_end(self, event: _Event) -> None:
        run = self.runs[event.a]
        worker = self.fleet.by_id(event.b)
        worker.job = None
        eval_hours = EVAL_FRAMES / worker.spec.fps[0] / HOUR  # billed as the slow case
        run.train_usd += eval_hours * worker.hourly_usd
        run.results = self.rd.result(run.scale, self.rng)
        self._finish(run, "completed")
        self._dispatch_eval()

    # -- the fleet's troubles -----------------------------------------------------------------
    def _on_spot(self, event: _Event) -> None:
        if event.b == "live":  # the live demo's interruption: a busy spot worker, if any
            spot = [w for w in self.fleet.alive("training") if w.spot and w.reporting]
            busy = [w for w in spot if w.job] or spot
            if not busy:
                self._schedule(self.now + 900, "spot", "", "live")
                return
            worker = self.rng.choice(busy)
        else:
            worker = self.fleet.by_id(event.a)
            if not worker.reporting:
                return
        worker.silent_since = self.now
        self._lose(worker, failures.spot_error, replace_in_min=(3, 8))

    def _on_hang(self, event: _Event) -> None:
        if event.a == "random":
            self._schedule(
                self.now + self.rng.expovariate(1.0 / (HANG_MEAN_DAYS * DAY)), "hang", "random"
            )
        candidates = [
            w for w in self.fleet.alive("training") if not w.spot and w.reporting and w.job
        ]
        if not candidates:
            if event.a == "live":
                self._schedule(self.now + 900, "hang", "live")
            return
        worker = self.rng.choice(candidates)
        worker.silent_since = self.now
        self._schedule(self.now + WATCHDOG_S, "watchdog", worker.worker_id)

    def _on_watchdog(self, event: _Event) -> None:
        self._lose(self.fleet.by_id(event.a), failures.hang_error, replace_in_min=(4, 8))

    def _lose(
        self, worker: Worker, error: failures.LostWorker, replace_in_min: tuple[float, float]
    ) -> None:
        """`worker` is gone: its experiment fails (with `error`'s text) and is retried, and a
        new worker replaces it a few minutes later."""
        worker.left_at = self.now
        if worker.job is not None:
            run = self.runs[worker.job]
            worker.job = None
            self._bill(run, worker)
            retry = self._retry(run)
            self._finish(run, "failed", error(run, worker, retry.id, self.now, self.rng))
        delay = self.rng.uniform(*replace_in_min) * 60
        self._schedule(self.now + delay, "replace", worker.worker_id)
        self._dispatch()

    def _on_diverge(self, _event: _Event) -> None:
        """The live demo's diverging run: a running one fails with a NaN loss DIVERGE_AFTER_S
        from now (demo/curves.py draws its loss climbing, then NaN, before that)."""
        candidates = []
        for worker in self.fleet.alive("training"):
            run = self.runs.get(worker.job or "")
            if run is None or not worker.reporting or run.nan_at is not None:
                continue
            assert run.started_at is not None and run.train_end is not None
            seconds = run.train_hours * HOUR / worker.spec.train_speed
            share = (self.now + DIVERGE_AFTER_S - run.started_at) / seconds
            if run.train_end - run.started_at >= 0.5 * seconds and share < 0.9:  # not OOM
                candidates.append((run, share))
        if not candidates:
            self._schedule(self.now + 900, "diverge", "live")
            return
        run, share = self.rng.choice(candidates)
        run.nan_at = share
        run.train_end = self.now + DIVERGE_AFTER_S
        self._schedule(run.train_end, "train_end", run.id, "nan")

    def _on_replace(self, event: _Event) -> None:
        new = self.fleet.replace(self.fleet.by_id(event.a), self.now)
        self._schedule_spot(new)
        self._dispatch()
