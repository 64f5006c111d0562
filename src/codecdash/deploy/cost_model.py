"""What the deployed dashboard costs a month, from the request counts of one day.

The counts are measured, not guessed: ``tests/browser/test_aws_cost_model.py`` runs a
simulated day (the snapshot function every minute against moto; a viewer's visit measured in
Chromium against the deployment, repeated for 1,000 viewers through a model of CloudFront
built from the template's cache behaviours) and hands them to :func:`monthly`; docs/aws.md
shows the table :func:`render` makes of them, and the test checks that the two agree. What
cannot be measured without AWS (how long a function runs, how large its log lines are) is an
assumption named in :class:`Assumptions`.

Prices: us-east-1 list prices (2026), 30-day month. ``free`` is the always-free tier (it does
not expire), applied as if the account used it for nothing else; totals are given with and
without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

DAYS: Final = 30

# us-east-1 list prices, USD per unit.
PRICE: Final[dict[str, float]] = {
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "cost_explorer_request": 0.01,
    "cloudwatch_metric_requested": 0.01 / 1000,  # GetMetricData, per metric asked
    "cloudwatch_alarm_metric": 0.10,  # per metric of a standard-resolution alarm, per month
    "cloudwatch_dashboard": 3.00,  # per dashboard per month
    "logs_ingested_gb": 0.50,
    "api_gateway_http_request": 1.00 / 1e6,
    "cloudfront_https_request": 0.0100 / 10_000,
    "cloudfront_gb_out": 0.085,
    "sqs_request": 0.40 / 1e6,
}

# The always-free tier, per month.
FREE: Final[dict[str, float]] = {
    "lambda_request": 1_000_000,
    "lambda_gb_s_arm64": 400_000,
    "cloudwatch_alarm_metric": 10,
    "cloudwatch_dashboard": 3,
    "logs_ingested_gb": 5,
    "cloudfront_https_request": 10_000_000,
    "cloudfront_gb_out": 1000,
    "sqs_request": 1_000_000,
}


@dataclass(frozen=True)
class Assumptions:
    """What a simulation against moto cannot measure."""

    seconds_per_aws_call: float = 0.05  # a warm function's wait per AWS request
    seconds_per_run: float = 0.10  # its own work per run (building the snapshot)
    snapshot_memory_gb: float = 0.5
    api_memory_gb: float = 0.5
    api_seconds_per_request: float = 0.10
    log_bytes_per_invocation: int = 300  # START, END, REPORT and a line or two
    experiment_writes_per_day: int = 2000


@dataclass
class Day:
    """The billable requests of one simulated day (measured)."""

    viewers: int
    snapshot_runs: int
    snapshot_aws_calls: int  # every AWS request the snapshot function made
    s3_puts: int
    snapshot_s3_gets: int  # the snapshot function's reads (the replica, the cost cache)
    s3_gets: int  # CloudFront's misses
    cost_explorer_requests: int
    metrics_requested: int  # GetMetricData metrics (each query counts)
    sqs_requests: int
    stream_batches: int
    stream_s3_puts_per_batch: int  # the read replica's publication (measured on one batch)
    stream_s3_gets_per_batch: int
    api_replica_checks: int  # the API function's conditional GETs of the replica
    cloudfront_requests: int
    cloudfront_bytes: int
    api_requests: int  # requests that reached API Gateway and the API function
    alarm_metrics: int  # from the template
    dashboards: int  # from the template


@dataclass
class Line:
    item: str
    quantity: float  # per month
    unit: str
    price_key: str
    fixed: bool
    usd: float = 0.0  # list price
    usd_free: float = 0.0  # after the always-free tier


@dataclass
class Estimate:
    lines: list[Line] = field(default_factory=list)

    def total(self, *, fixed: bool | None = None, free: bool = False) -> float:
        chosen = [x for x in self.lines if fixed is None or x.fixed == fixed]
        return round(sum(x.usd_free if free else x.usd for x in chosen), 2)


def monthly(day: Day, assume: Assumptions = Assumptions()) -> Estimate:
    """The month's lines from one day's counts. Fixed lines cost the same with no viewer."""
    runs = day.snapshot_runs * DAYS
    snapshot_seconds = (
        assume.seconds_per_run
        + assume.seconds_per_aws_call * day.snapshot_aws_calls / max(1, day.snapshot_runs)
    )
    api = day.api_requests * DAYS
    batches = day.stream_batches * DAYS
    log_gb = (runs + batches) * assume.log_bytes_per_invocation / 1e9
    api_log_gb = api * assume.log_bytes_per_invocation / 1e9
    lines = [
        Line("snapshot function: runs", runs, "requests", "lambda_request", True),
        Line(
            f"snapshot function: compute at {assume.snapshot_memory_gb:g} GB",
            runs * snapshot_seconds * assume.snapshot_memory_gb,
            "GB-s",
            "lambda_gb_s_arm64",
            True,
        ),
        Line(
            "S3 PUT (the snapshot, the cost cache)", day.s3_puts * DAYS, "requests", "s3_put", True
        ),
        Line(
            "S3 GET (the snapshot function's reads)",
            day.snapshot_s3_gets * DAYS,
            "requests",
            "s3_get",
            True,
        ),
        Line("S3 GET (CloudFront's misses)", day.s3_gets * DAYS, "requests", "s3_get", False),
        Line(
            "Cost Explorer",
            day.cost_explorer_requests * DAYS,
            "requests",
            "cost_explorer_request",
            True,
        ),
        Line(
            "CloudWatch GetMetricData (fleet, S3 storage)",
            day.metrics_requested * DAYS,
            "metrics",
            "cloudwatch_metric_requested",
            True,
        ),
        Line("SQS GetQueueAttributes", day.sqs_requests * DAYS, "requests", "sqs_request", True),
        Line(
            f"stream function: {assume.experiment_writes_per_day:,} experiment writes a day, "
            "the replica published per batch",
            batches * day.stream_s3_puts_per_batch,
            "requests",
            "s3_put",
            True,
        ),
        Line(
            "stream function: replica reads",
            batches * day.stream_s3_gets_per_batch,
            "requests",
            "s3_get",
            True,
        ),
        Line("stream function: batches", batches, "requests", "lambda_request", True),
        Line("alarms", day.alarm_metrics, "alarm metrics", "cloudwatch_alarm_metric", True),
        Line(
            "health dashboard (off unless deployed with --health-dashboard)",
            day.dashboards,
            "dashboards",
            "cloudwatch_dashboard",
            True,
        ),
        Line(
            "CloudWatch Logs (the snapshot and stream functions)",
            log_gb,
            "GB",
            "logs_ingested_gb",
            True,
        ),
        Line("CloudWatch Logs (the API function)", api_log_gb, "GB", "logs_ingested_gb", False),
        Line(
            "CloudFront requests",
            day.cloudfront_requests * DAYS,
            "requests",
            "cloudfront_https_request",
            False,
        ),
        Line(
            "CloudFront data out",
            day.cloudfront_bytes * DAYS / 1e9,
            "GB",
            "cloudfront_gb_out",
            False,
        ),
        Line("API Gateway requests", api, "requests", "api_gateway_http_request", False),
        Line("API function: requests", api, "requests", "lambda_request", False),
        Line(
            "API function: replica checks (conditional GET)",
            day.api_replica_checks * DAYS,
            "requests",
            "s3_get",
            False,
        ),
        Line(
            f"API function: {assume.api_seconds_per_request:g} s × "
            f"{assume.api_memory_gb:g} GB per request",
            api * assume.api_seconds_per_request * assume.api_memory_gb,
            "GB-s",
            "lambda_gb_s_arm64",
            False,
        ),
    ]
    _price(lines)
    return Estimate(lines)


def _price(lines: list[Line]) -> None:
    """List prices, then the free tier shared by the lines of one price (fixed ones first)."""
    left = dict(FREE)
    for line in sorted(lines, key=lambda x: not x.fixed):
        price = PRICE[line.price_key]
        line.usd = line.quantity * price
        free = min(line.quantity, left.get(line.price_key, 0.0))
        left[line.price_key] = left.get(line.price_key, 0.0) - free
        line.usd_free = (line.quantity - free) * price


def render(estimate: Estimate, day: Day) -> str:
    """The Markdown table of docs/aws.md."""
    rows = [
        f"Measured for {day.viewers:,} viewers a day; 30-day month, us-east-1 list prices.",
        "",
        "| item | per month | list $ | after the always-free tier $ |",
        "| --- | ---: | ---: | ---: |",
    ]
    for kind, fixed in (("fixed", True), ("traffic", False)):
        for x in (x for x in estimate.lines if x.fixed == fixed):
            rows.append(
                f"| {x.item} ({kind}) | {_amount(x.quantity)} {x.unit} | {x.usd:.2f} | "
                f"{x.usd_free:.2f} |"
            )
    rows += [
        f"| **fixed** | | **{estimate.total(fixed=True):.2f}** | "
        f"**{estimate.total(fixed=True, free=True):.2f}** |",
        f"| **traffic** | | **{estimate.total(fixed=False):.2f}** | "
        f"**{estimate.total(fixed=False, free=True):.2f}** |",
        f"| **total** | | **{estimate.total():.2f}** | **{estimate.total(free=True):.2f}** |",
    ]
    return "\n".join(rows)


def _amount(quantity: float) -> str:
    if quantity >= 100 or quantity == math.floor(quantity):
        return f"{quantity:,.0f}"
    return f"{quantity:,.2f}"
