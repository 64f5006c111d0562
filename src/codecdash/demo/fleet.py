"""The demo's fleet: one orchestrator, training and inference workers, what they cost, and the
heartbeats they send through the SDK.

Prices come from :mod:`codecdash.agent.pricing` (AWS us-east-1 on-demand list prices; spot is an
estimate, on-demand times a typical spot ratio for the family). Storage and "other" costs are
modelled here from AWS's published per-GB-month prices. Figures in heartbeats (CPU, GPU
utilisation, decoding FPS) are plausible values for the instance and whether it is busy.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from codecdash.agent.pricing import PriceTable
from codecdash.client import Client, ClientError

log = logging.getLogger("codecdash.demo")

Role = Literal["orchestrator", "training", "inference"]
HOUR: Final = 3600.0
DAY: Final = 86400.0

# -- instances -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceSpec:
    """What the demo needs to know of an EC2 instance type."""

    gpu: str | None
    gpu_mem_gib: float
    """GPU memory as PyTorch reports it ("total capacity") in out-of-memory errors."""
    train_speed: float
    """Training throughput relative to a g5.xlarge (one A10G)."""
    fps: tuple[float, float]
    """1080p decoding speed of the learned codec, frames per second (inference)."""


INSTANCES: Final[dict[str, InstanceSpec]] = {
    "g5.xlarge": InstanceSpec("NVIDIA A10G", 22.06, 1.00, (27.0, 33.0)),
    "g5.2xlarge": InstanceSpec("NVIDIA A10G", 22.06, 1.08, (28.0, 34.0)),
    "p3.2xlarge": InstanceSpec("Tesla V100-SXM2-16GB", 15.77, 1.12, (30.0, 36.0)),
    "g4dn.xlarge": InstanceSpec("Tesla T4", 14.75, 0.55, (21.0, 27.0)),
    "m6i.large": InstanceSpec(None, 0.0, 0.0, (0.0, 0.0)),
}

# The fleet at the start of the campaign: (worker id prefix, role, instance type, spot).
FLEET_PLAN: Final[tuple[tuple[str, Role, str, bool], ...]] = (
    ("orchestrator", "orchestrator", "m6i.large", False),
    ("train-g5", "training", "g5.xlarge", False),
    ("train-g5", "training", "g5.xlarge", False),
    ("train-g5-2x", "training", "g5.2xlarge", False),
    ("train-g5-spot", "training", "g5.xlarge", True),
    ("train-g5-spot", "training", "g5.xlarge", True),
    ("train-p3-spot", "training", "p3.2xlarge", True),
    ("infer-g4dn", "inference", "g4dn.xlarge", False),
    ("infer-g4dn", "inference", "g4dn.xlarge", False),
)
ZONES: Final = ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f")

# -- storage and other costs (AWS us-east-1 list prices) -------------------------------------
S3_USD_PER_GB_MONTH: Final = 0.023  # S3 Standard, first 50 TB
EBS_GP3_USD_PER_GB_MONTH: Final = 0.08  # gp3 volumes, baseline IOPS and throughput
HOURS_PER_MONTH: Final = 730.0
DATASET_GB: Final = 420.0  # Vimeo-90k septuplets, decoded training crops, UVG 1080p raw YUV
CHECKPOINT_GB_PER_RUN: Final = 1.2  # checkpoints every 5 epochs, final models, logs
EBS_GB_PER_GPU_WORKER: Final = 200.0
OTHER_USD_PER_HOUR: Final = 0.028  # CloudWatch metrics and logs, data transfer: ~$20 a month


def storage_usd_per_hour(runs_finished: int, gpu_workers: int) -> float:
    """S3 (datasets and checkpoints) plus the GPU workers' EBS volumes, per hour."""
    s3_gb = DATASET_GB + CHECKPOINT_GB_PER_RUN * runs_finished
    ebs_gb = EBS_GB_PER_GPU_WORKER * gpu_workers
    return (s3_gb * S3_USD_PER_GB_MONTH + ebs_gb * EBS_GP3_USD_PER_GB_MONTH) / HOURS_PER_MONTH


# -- workers ---------------------------------------------------------------------------------


@dataclass
class Worker:
    """A worker's life in campaign time (seconds since the campaign started)."""

    worker_id: str
    role: Role
    instance_type: str
    spot: bool
    hourly_usd: float
    instance_id: str
    zone: str
    joined_at: float
    left_at: float | None = None
    """When the instance went away (spot interruption, or terminated after a hang)."""
    silent_since: float | None = None
    """When it stopped sending heartbeats (hung, or gone)."""
    job: str | None = None
    """The experiment it works on, if any."""
    job_mem_gib: float = 0.0

    @property
    def spec(self) -> InstanceSpec:
        return INSTANCES[self.instance_type]

    @property
    def reporting(self) -> bool:
        """Alive and sending heartbeats."""
        return self.left_at is None and self.silent_since is None

    def billed_seconds(self, start: float, end: float) -> float:
        """Seconds of [start, end) this instance was running (and billed)."""
        lo = max(start, self.joined_at)
        hi = end if self.left_at is None else min(end, self.left_at)
        return max(0.0, hi - lo)


def planned_hourly_usd() -> float:
    """What the planned fleet's instances cost an hour, all together (list prices)."""
    prices = PriceTable()
    return sum(prices.hourly(t, spot) or 0.0 for _, _, t, spot in FLEET_PLAN)


@dataclass
class Fleet:
    """All workers that ever ran, and how replacements are named and priced."""

    rng: random.Random
    prices: PriceTable = field(default_factory=PriceTable)
    workers: list[Worker] = field(default_factory=list)
    _numbers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def initial(cls, rng: random.Random) -> Fleet:
        fleet = cls(rng)
        for prefix, role, instance_type, spot in FLEET_PLAN:
            fleet.launch(prefix, role, instance_type, spot, at=0.0)
        return fleet

    def price(self, instance_type: str, spot: bool) -> float:
        usd = self.prices.hourly(instance_type, spot)
        if usd is None:  # pragma: no cover - every planned type is in the table
            raise ValueError(f"no price for {instance_type}")
        return usd

    def launch(self, prefix: str, role: Role, instance_type: str, spot: bool, at: float) -> Worker:
        number = self._numbers.get(prefix, 0) + 1
        self._numbers[prefix] = number
        worker = Worker(
            worker_id=f"{prefix}-{number:02d}",
            role=role,
            instance_type=instance_type,
            spot=spot,
            hourly_usd=self.price(instance_type, spot),
            instance_id="i-0" + "".join(self.rng.choice("0123456789abcdef") for _ in range(16)),
            zone=self.rng.choice(ZONES),
            joined_at=at,
        )
        self.workers.append(worker)
        return worker

    def replace(self, old: Worker, at: float) -> Worker:
        """A new instance of the same kind, as an Auto Scaling group launches it."""
        prefix = old.worker_id.rsplit("-", 1)[0]
        return self.launch(prefix, old.role, old.instance_type, old.spot, at)

    def by_id(self, worker_id: str) -> Worker:
        return next(w for w in self.workers if w.worker_id == worker_id)

    def alive(self, role: Role | None = None) -> list[Worker]:
        return [w for w in self.workers if w.left_at is None and (role is None or w.role == role)]

    def gpu_workers(self, at: float) -> int:
        return sum(
            1
            for w in self.workers
            if w.spec.gpu and w.joined_at <= at and (w.left_at is None or w.left_at > at)
        )

    def compute_usd(self, start: float, end: float) -> dict[str, float]:
        """Instance cost of [start, end) by component (training, inference, orchestrator)."""
        out: dict[str, float] = {}
        for w in self.workers:
            seconds = w.billed_seconds(start, end)
            if seconds > 0:
                out[w.role] = out.get(w.role, 0.0) + w.hourly_usd * seconds / HOUR
        return out


def heartbeat_fields(
    worker: Worker,
    *,
    queue_depth: int | None,
    rng: random.Random,
    serving_fps: float | None = None,
) -> dict[str, Any]:
    """A plausible heartbeat of `worker` now: busy workers run hot, idle ones near zero.

    An inference worker not evaluating serves the real-time load: `serving_fps` (its share,
    :mod:`codecdash.demo.serving`), with CPU, GPU and memory following its utilisation.
    """
    busy = worker.job is not None
    fields: dict[str, Any] = {
        "worker_id": worker.worker_id,
        "role": worker.role,
        "status": "ok",
        "instance_type": worker.instance_type,
        "spot": worker.spot,
        "hourly_cost_usd": worker.hourly_usd,
        "extra": {
            "instance_id": worker.instance_id,
            "zone": worker.zone,
            "gpu": worker.spec.gpu,
            "job": worker.job,
        },
    }
    if worker.role == "orchestrator":
        fields.update(cpu_pct=_pct(rng.gauss(12, 4)), mem_pct=_pct(rng.gauss(38, 2)))
        return fields
    spec = worker.spec
    if busy and worker.role == "training":
        used = worker.job_mem_gib / spec.gpu_mem_gib * 100 if spec.gpu_mem_gib else 0.0
        fields.update(
            cpu_pct=_pct(rng.gauss(55, 10)),
            mem_pct=_pct(rng.gauss(58, 6)),
            gpu_util_pct=_pct(rng.gauss(94, 3)),
            gpu_mem_pct=_pct(used + rng.gauss(0, 1.5)),
        )
    elif worker.role == "inference" and not busy and serving_fps is not None:
        load = min(1.0, serving_fps / ((spec.fps[0] + spec.fps[1]) / 2)) if spec.fps[1] else 0.0
        fields.update(
            cpu_pct=_pct(4 + 38 * load + rng.gauss(0, 2)),
            mem_pct=_pct(30 + 12 * load + rng.gauss(0, 1)),
            gpu_util_pct=_pct(3 + 94 * load + rng.gauss(0, 1.5)),
            gpu_mem_pct=_pct(24 + 26 * load + rng.gauss(0, 1)),  # the model stays loaded
            fps=round(max(0.0, serving_fps * (1 + rng.gauss(0, 0.01))), 1),
        )
    elif busy:
        fields.update(
            cpu_pct=_pct(rng.gauss(35, 8)),
            mem_pct=_pct(rng.gauss(41, 4)),
            gpu_util_pct=_pct(rng.gauss(82, 5)),
            gpu_mem_pct=_pct(rng.gauss(47, 3)),
            fps=round(rng.uniform(*spec.fps), 1),
        )
    else:
        fields.update(
            cpu_pct=_pct(rng.uniform(1, 6)),
            mem_pct=_pct(rng.gauss(22, 2)),
            gpu_util_pct=_pct(rng.uniform(0, 2)),
            gpu_mem_pct=_pct(rng.uniform(0, 3)),
        )
        if worker.role == "inference":
            fields["fps"] = 0.0
    if queue_depth is not None:
        fields["queue_depth"] = queue_depth
    return fields


def _pct(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 1)


# -- the live side: heartbeats through the SDK, and the cost ledger --------------------------


class ThrottledLog:
    """One log line per kind of problem per `every` seconds: hiccups must not flood the log."""

    def __init__(self, every: float = 10.0, level: int = logging.WARNING) -> None:
        self.every = every
        self.level = level
        self._last: dict[str, float] = {}

    def warning(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.every) >= self.every:
            self._last[kind] = now
            log.log(self.level, "demo: " + message, *args)


@dataclass
class _Sent:
    wall: float
    hourly_usd: float | None


class HeartbeatSender:
    """Sends heartbeats at most once per `interval_s` (real time) per worker.

    The server accrues a worker's cost from its heartbeats: the time since the previous one,
    capped at the active window, at the previous heartbeat's hourly price. :meth:`beat` returns
    that amount so the workload can post only the rest of the compressed campaign time as
    cost records (see :class:`CostLedger`).
    """

    def __init__(
        self, client: Client, *, interval_s: float, window_s: float, problems: ThrottledLog
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.window_s = window_s
        self.problems = problems
        self._sent: dict[str, _Sent] = {}

    def due(self, worker_id: str, wall: float) -> bool:
        sent = self._sent.get(worker_id)
        return sent is None or wall - sent.wall >= self.interval_s

    def beat(self, fields: dict[str, Any], wall: float) -> float:
        """Send one heartbeat stamped `wall`; the USD the server accrues for it (0 on failure)."""
        worker_id = str(fields["worker_id"])
        try:
            self.client.heartbeat(**fields, at=datetime.fromtimestamp(wall, UTC))
        except ClientError as exc:
            self.problems.warning(
                "heartbeat", "heartbeat of %s not sent (%s); going on", worker_id, exc
            )
            return 0.0
        previous = self._sent.get(worker_id)
        self._sent[worker_id] = _Sent(wall, fields.get("hourly_cost_usd"))
        if previous is None or not previous.hourly_usd or wall < previous.wall:
            return 0.0
        return previous.hourly_usd * min(wall - previous.wall, self.window_s) / HOUR


COST_DESCRIPTIONS: Final[dict[str, str]] = {
    "training": "GPU training instances (time not covered by heartbeats)",
    "inference": "GPU inference instances (time not covered by heartbeats)",
    "orchestrator": "orchestrator instance (time not covered by heartbeats)",
    "storage": "S3 datasets and checkpoints, EBS gp3 volumes",
    "other": "CloudWatch metrics and logs, data transfer",
}


class CostLedger:
    """What the campaign owes per component, less what the server already accrued.

    At `--speed X` a heartbeat interval of 1 s stands for X s of campaign; the server accrues only
    the wall-clock share (capped at its active window), so the ledger posts the difference as
    cost records. Totals then equal the campaign's instance hours × prices, at any speed.
    """

    MIN_POST_USD: Final = 0.01

    def __init__(self) -> None:
        self.owed: dict[str, float] = {}

    def add(self, component: str, usd: float) -> None:
        self.owed[component] = self.owed.get(component, 0.0) + usd

    def credit(self, component: str, usd: float) -> None:
        self.owed[component] = self.owed.get(component, 0.0) - usd

    def flush(self, client: Client, wall: float, problems: ThrottledLog) -> float:
        """Post what is owed as cost records stamped `wall`; the USD posted."""
        amounts = [
            (component, round(usd, 4))
            for component, usd in sorted(self.owed.items())
            if usd >= self.MIN_POST_USD
        ]
        if not amounts:
            return 0.0
        at = datetime.fromtimestamp(wall, UTC)
        try:
            client.costs(
                {
                    "component": component,
                    "amount_usd": usd,
                    "at": at,
                    "description": COST_DESCRIPTIONS.get(component),
                    "source": "codecdash-demo",
                }
                for component, usd in amounts
            )
        except ClientError as exc:
            problems.warning("costs", "cost records not sent (%s); will retry", exc)
            return 0.0
        posted = 0.0
        for component, usd in amounts:
            self.owed[component] -= usd
            posted += usd
        return posted
