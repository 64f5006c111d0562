"""The demo's real-time inference load: the inference pool decodes video streams with the
learned codec as they arrive, and the demand follows the (time-compressed) day.

- **Demand** (frames per second the pool is asked to decode) is a daily curve in campaign
  time: a night trough near 12 % of the pool's capacity, a morning ramp, an afternoon peak a
  little above capacity (105–115 %, depending on the day) and an evening decline, with slow
  seeded wobble on top. At `--speed 60` a day passes in 24 minutes.
- **Serving**: each worker decodes at most its instance's speed (:data:`INSTANCES` fps, the
  learned codec's 1080p decode rate on that GPU); a worker busy evaluating an experiment
  gives its GPU to that and serves nothing. Work beyond capacity waits in the queue as
  2-second segments; the queue drains once demand falls below capacity.
- **What a heartbeat says**: a worker's FPS is its share of the frames served; its GPU
  utilisation follows its load (idle ~3 %, saturated ~97 %), CPU and memory likewise.

Everything is a deterministic function of the seed and campaign time, advanced in steps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Final

from codecdash.demo.fleet import DAY, Worker

STEP_S: Final = 60.0  # integration step, campaign seconds
SEGMENT_FRAMES: Final = 60  # a queued job: 2 s of 30 fps video
NIGHT_SHARE: Final = 0.12
PEAK_SHARE: Final = (1.05, 1.15)  # the afternoon peak, as a share of capacity, varies by day
PEAK_HOUR: Final = 15.0


def daily_shape(t: float) -> float:
    """0 (night) … 1 (the afternoon peak), a smooth curve of the hour of the campaign day."""
    hour = (t % DAY) / 3600.0
    # A raised cosine centred on the peak, wider in the morning than in the evening.
    width = 7.0 if hour < PEAK_HOUR else 5.0
    x = (hour - PEAK_HOUR) / width
    return 0.5 * (1 + math.cos(math.pi * x)) if abs(x) < 1 else 0.0


@dataclass
class ServingLoad:
    """The pool's real-time load over campaign time; `advance(t, servers)` moves it on."""

    seed: int
    capacity_fps: float
    """The pool's nominal capacity (all its workers at their mean speed): demand's scale."""
    t: float = 0.0
    backlog_frames: float = 0.0
    served_fps: float = 0.0
    demand_fps: float = 0.0
    _phases: tuple[float, float] = field(default=(0.0, 0.0), init=False)

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.seed}:serving")  # noqa: S311 - a simulation
        self._phases = (rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))

    def peak_share(self, t: float) -> float:
        day = int(t // DAY)
        rng = random.Random(f"{self.seed}:peak:{day}")  # noqa: S311
        return rng.uniform(*PEAK_SHARE)

    def demand(self, t: float) -> float:
        """Frames per second asked of the pool at campaign time `t`."""
        share = NIGHT_SHARE + (self.peak_share(t) - NIGHT_SHARE) * daily_shape(t)
        a, b = self._phases
        wobble = (
            1
            + 0.04 * math.sin(2 * math.pi * t / 5400 + a)
            + 0.03 * math.sin(2 * math.pi * t / 1500 + b)
        )
        return max(0.0, self.capacity_fps * share * wobble)

    def advance(self, until: float, capacity_fps: float) -> None:
        """Serves demand up to `until` with `capacity_fps` available (the free workers')."""
        while self.t < until:
            dt = min(STEP_S, until - self.t)
            demand = self.demand(self.t + dt / 2)
            wanted = demand + self.backlog_frames / dt
            served = min(capacity_fps, wanted)
            self.backlog_frames = max(0.0, self.backlog_frames + (demand - served) * dt)
            self.served_fps, self.demand_fps = served, demand
            self.t += dt

    @property
    def queue_depth(self) -> int:
        """Segments waiting (2 s of video each)."""
        return math.ceil(self.backlog_frames / SEGMENT_FRAMES - 1e-9)

    def worker_fps(self, worker: Worker, servers: list[Worker]) -> float:
        """This worker's share of the frames served, in proportion to its speed."""
        if worker not in servers:
            return 0.0
        total = sum(speed(w) for w in servers)
        return self.served_fps * speed(worker) / total if total else 0.0


def speed(worker: Worker) -> float:
    """A worker's decoding capacity, frames per second (the middle of its instance's range)."""
    low, high = worker.spec.fps
    return (low + high) / 2


def utilisation(fps: float, worker: Worker) -> float:
    """0–1: how busy this worker's GPU is serving `fps`."""
    capacity = speed(worker)
    return min(1.0, fps / capacity) if capacity else 0.0
