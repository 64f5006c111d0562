"""The demo's clock, the history back-fill and the live loop, all through :class:`Client`.

Campaign time runs from 0 (the campaign's start) on. ``--history DAYS`` puts the first DAYS of
the campaign in the past: they are back-filled at once with explicit timestamps, through the
batch endpoints. Then the live loop runs the campaign on at ``--speed`` campaign seconds per
real second, sending what happens as it happens, stamped with the wall-clock time it is sent.
So timestamps never lie in the future and the server's own clock (the active window, the last
24 hours, month to date) keeps its meaning; at high speed, live experiments just run in seconds.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx

from codecdash.client import Client, ClientError
from codecdash.demo import datasets as test_sets
from codecdash.demo.campaign import Campaign
from codecdash.demo.curves import CurveLogger
from codecdash.demo.fleet import (
    COST_DESCRIPTIONS,
    DAY,
    CostLedger,
    HeartbeatSender,
    ThrottledLog,
    Worker,
    heartbeat_fields,
)
from codecdash.demo.rd_model import RDModel
from codecdash.demo.runs import Change

log = logging.getLogger("codecdash.demo")

TICK_S: Final = 0.25
"""How often the live loop wakes (real seconds)."""
COST_FLUSH_S: Final = 2.0
"""How often owed costs are posted (real seconds)."""
BATCH_ABOVE: Final = 20
"""More experiments than this to send in one tick (a catch-up) go through the batch endpoint."""
CHUNK: Final = 500
T = TypeVar("T")


@dataclass(frozen=True)
class Clock:
    """Campaign time ↔ wall-clock time.

    The campaign starts `history_s` before `start_wall`; up to `start_wall` a campaign second
    is a wall second (the back-filled past), after it a real second is `speed` campaign seconds.
    """

    start_wall: float
    history_s: float
    speed: float

    def campaign(self, wall: float) -> float:
        return self.history_s + self.speed * max(0.0, wall - self.start_wall)

    def wall(self, t: float) -> float:
        if t <= self.history_s:
            return self.start_wall - self.history_s + t
        return self.start_wall + (t - self.history_s) / self.speed

    def stamp(self, t: float) -> datetime:
        return datetime.fromtimestamp(round(self.wall(t), 3), UTC)

    def utc_days(self, start: float, end: float) -> Iterator[tuple[float, float]]:
        """[start, end) of the back-filled past cut at UTC midnights (the server counts costs
        by UTC day, so one record per day and component loses nothing)."""
        while start < end:
            wall = self.wall(start)
            cut = min(end, start + (wall // DAY + 1) * DAY - wall)
            yield start, cut
            start = cut


def heartbeat_interval(speed: float, window_s: float) -> float:
    """Real seconds between one worker's heartbeats: 10 s at ×1, 5 s at ×60, 1 s from ×300.

    Never more often than once a second per worker, whatever the speed, and at least three
    heartbeats per active window so a healthy worker never looks stale.
    """
    return min(max(300.0 / speed, 1.0), 10.0, window_s / 3)


@dataclass(frozen=True)
class BackfillReport:
    experiments: int
    cost_records: int
    heartbeats: int
    seconds: float


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Workload:
    """Drives a demo server: `run()` waits for it, back-fills the history, then goes live."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        seed: int,
        speed: float,
        history_days: float,
        window_s: float = 90.0,
        stop: threading.Event | None = None,
        start_wall: float | None = None,
        client: Client | None = None,
        rd: RDModel | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.url = url.rstrip("/")
        self.stop = stop or threading.Event()
        history_s = max(0.0, history_days) * DAY
        self.clock = Clock(time.time() if start_wall is None else start_wall, history_s, speed)
        self.campaign = Campaign(seed, live_from=history_s, rd=rd)
        self.client = client or Client(self.url, token, timeout=10.0, retries=2)
        self.problems = ThrottledLog()
        self.beats = HeartbeatSender(
            self.client,
            interval_s=heartbeat_interval(speed, window_s),
            window_s=window_s,
            problems=self.problems,
        )
        self.ledger = CostLedger()
        # Running experiments' training steps, through the SDK's buffered log_step.
        self.curves = CurveLogger(self.campaign, self.client, self.clock.wall)
        # Its own generator: heartbeats depend on real time, the campaign must not.
        self.beat_rng = random.Random(f"{seed}:heartbeats")  # noqa: S311 - not a secret
        self._pending: dict[str, set[str] | None] = {}
        self._t = history_s
        self._last_flush = 0.0
        self.backfill_report: BackfillReport | None = None

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> None:
        """Wait for the server, back-fill, then live until `stop` is set. Never raises."""
        try:
            if not self.wait_ready():
                return
            report = self.backfill()
            log.info(
                "demo: %g days of history loaded (%d experiments, %d cost records, "
                "%d heartbeats) in %.1f s; live at ×%g",
                self.clock.history_s / DAY,
                report.experiments,
                report.cost_records,
                report.heartbeats,
                report.seconds,
                self.clock.speed,
            )
            self.live()
        except Exception:  # the workload must never take the server down with it
            log.exception("demo: the workload stopped")
        finally:
            self.client.close(timeout=5.0)  # the server may be gone already (Ctrl-C)

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Poll /api/v1/health until it answers 200; False if stopped or timed out."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while not self.stop.is_set():
                try:
                    if http.get("/api/v1/health").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    log.error("demo: the server did not answer %s/api/v1/health", self.url)
                    return False
                self.stop.wait(0.05)
        return False

    # -- the past -----------------------------------------------------------------------------
    def backfill(self) -> BackfillReport:
        """Store the published anchors, then send the campaign's first `history` days at once,
        with their own timestamps."""
        started = time.perf_counter()
        for anchor in test_sets.anchors():  # x264 first on each set
            self._persist(
                functools.partial(
                    self.client.put_anchor,
                    anchor.name,
                    anchor.description,
                    anchor.rd_points,
                    dataset=anchor.dataset,
                ),
                "anchors",
            )
        # The test sets' λ sweep and whole-curve experiments, evaluated at the campaign's start
        # (before the history: once the history's experiments are in, the history is whole).
        sets = test_sets.experiments(self.clock.stamp)
        self._persist(functools.partial(self.client.batch, sets), "test-set experiments")
        history = self.clock.history_s
        self.campaign.advance(history)
        runs = sorted(self.campaign.runs.values(), key=lambda r: (r.created_at, r.id))
        docs = [run.document(self.clock.stamp) for run in runs]

        records: list[dict[str, Any]] = []
        for start, end in self.clock.utc_days(0.0, history):
            at = self.clock.stamp((start + end) / 2)
            for component, usd in sorted(self.campaign.costs(start, end).items()):
                if usd > 0:
                    records.append(
                        {
                            "component": component,
                            "amount_usd": round(usd, 4),
                            "at": at,
                            "source": "codecdash-demo",
                            "description": COST_DESCRIPTIONS.get(component),
                        }
                    )
        for chunk in chunks(records, 1000):
            self._persist(functools.partial(self.client.costs, chunk), "history costs")

        beats = 0
        for worker in self.campaign.fleet.workers:
            gone = worker.silent_since
            if gone is not None and gone <= history:  # last words of a lost worker
                beats += self._beat(worker, self.clock.wall(max(worker.joined_at, gone - 20)))
        wall = self.clock.wall(history)
        for worker in self.campaign.fleet.workers:
            if worker.reporting:
                beats += self._beat(worker, wall)
        # The experiments last: once all of the history's experiments are in, so are the
        # fleet and the costs (a page or a test that waits for the count sees it whole).
        for chunk in chunks(docs, CHUNK):
            self._persist(functools.partial(self.client.batch, chunk), "history experiments")
        self.curves.log_until(history)  # the running experiments' curves so far
        self.backfill_report = BackfillReport(
            len(docs) + len(sets), len(records), beats, time.perf_counter() - started
        )
        return self.backfill_report

    def _persist(self, send: Callable[[], object], what: str, attempts: int = 5) -> bool:
        """Send, retrying a server hiccup a few times; False (one log line) if it never went."""
        for attempt in range(1, attempts + 1):
            try:
                send()
                return True
            except ClientError as exc:
                if attempt == attempts or self.stop.wait(0.5 * attempt):
                    self.problems.warning(what, "%s not sent (%s); going on without", what, exc)
                    return False
        return False  # pragma: no cover

    # -- the present --------------------------------------------------------------------------
    def live(self) -> None:
        self._last_flush = time.time()
        while not self.stop.wait(TICK_S):
            try:
                self.tick(time.time())
            except Exception as exc:  # survive anything; ClientErrors are handled inside
                self.problems.warning("tick", "live step failed (%r); going on", exc)
        # Last costs, best effort: after Ctrl-C the server may already be gone.
        self.ledger.flush(self.client, time.time(), ThrottledLog(level=logging.DEBUG))

    def tick(self, wall: float) -> None:
        """Advance the campaign to `wall`, then send what changed, heartbeats and costs."""
        t = self.clock.campaign(wall)
        self._queue(self.campaign.advance(t))
        self._send_experiments()
        self.curves.log_until(t, skip=lambda run_id: run_id in self._pending)
        for component, usd in self.campaign.costs(self._t, t).items():
            self.ledger.add(component, usd)
        self._t = t
        for worker in self.campaign.fleet.workers:
            if worker.reporting and self.beats.due(worker.worker_id, wall):
                self._beat(worker, wall)
        if wall - self._last_flush >= COST_FLUSH_S:
            self.ledger.flush(self.client, wall, self.problems)
            self._last_flush = wall

    def _beat(self, worker: Worker, wall: float) -> int:
        serving = self.campaign.serving
        fields = heartbeat_fields(
            worker,
            queue_depth=self.campaign.queue_depth(worker.role),
            rng=self.beat_rng,
            serving_fps=serving.worker_fps(worker, self.campaign.servers())
            if worker.role == "inference"
            else None,
        )
        if worker.role == "orchestrator":
            fields["extra"].update(
                training_queue=len(self.campaign.queue),
                inference_queue=len(self.campaign.eval_queue),
            )
        accrued = self.beats.beat(fields, wall)
        self.ledger.credit(worker.role, accrued)
        return 1

    def _queue(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.run_id in self._pending:
                known = self._pending[change.run_id]
                if known is None or change.fields is None:
                    self._pending[change.run_id] = None
                else:
                    known.update(change.fields)
            else:
                self._pending[change.run_id] = None if change.fields is None else set(change.fields)

    def _send_experiments(self) -> None:
        """Create with PUT, update with PATCH, as a training framework does; a catch-up of many
        changes goes as one batch. Whatever fails is re-sent whole next tick."""
        if not self._pending:
            return
        runs = self.campaign.runs
        if len(self._pending) > BATCH_ABOVE:
            docs = [runs[run_id].document(self.clock.stamp) for run_id in self._pending]
            try:
                for chunk in chunks(docs, CHUNK):
                    self.client.batch(chunk)
            except ClientError as exc:
                self.problems.warning("experiments", "experiments not sent (%s); will retry", exc)
                return
            self._pending.clear()
            return
        for run_id, fields in list(self._pending.items()):
            doc = runs[run_id].document(self.clock.stamp)
            try:
                if fields is None:
                    del doc["id"]
                    self.client.put_experiment(run_id, **doc)
                else:
                    self.client.update_experiment(run_id, **{f: doc[f] for f in sorted(fields)})
            except ClientError as exc:
                self.problems.warning(
                    "experiments", "experiment %s not sent (%s); will retry", run_id, exc
                )
                self._pending[run_id] = None  # next time, the whole experiment
                return
            del self._pending[run_id]
