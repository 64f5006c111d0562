"""The cost model of docs/aws.md, computed from the request counts of a simulated day.

One day of the deployed stack against moto: the snapshot function runs every minute (the real
handler, with every AWS request it makes counted). A viewer's visit is measured in Chromium
against the deployment (the API function behind a local CloudFront, browser/aws_mode.py):
the files and API requests the page makes when it loads, then the requests of 10 minutes
open on a fake clock while the stack works as a busy day has it (a running experiment's
progress written every minute, one experiment completed, the snapshot function run each
minute). 1,000 such visits are spread over the day through a model of CloudFront made from
the template's cache behaviours and the objects' own Cache-Control. The counts go to
``codecdash.deploy.cost_model``; the budget is checked, and the table in docs/aws.md must be
the one these counts give.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from aws_fixtures import AWS_WARNINGS, REGION, SITE, TABLE, AwsEnv, put_experiment
from browser.aws_mode import AwsDashboard
from browser.conftest import MakeAwsDashboard, OpenPage, seed_experiments, wait_for_data
from codecdash import aws_clients, aws_lambda
from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.deploy.cost_model import Day, monthly, render

pytestmark = [
    pytest.mark.browser,
    pytest.mark.aws,
    *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS),
]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infrastructure" / "cloudformation" / "dashboard.yaml"
DOCS = ROOT / "docs" / "aws.md"
START = 1_796_515_200.0  # 2026-12-06T00:00:00Z, a UTC midnight
VIEWERS = 1000
VISIT_S = 600
EDGES = 20  # CloudFront locations the viewers are spread over
API_ANSWER_BYTES = 5000  # a compressed API answer


def template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    decoded, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    return dict(json.loads(json.dumps(decoded)))


# -- counting what the functions ask of AWS ----------------------------------------------------
class Meter:
    """Counts every request and the metrics of GetMetricData."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.metrics = 0

    def wrap(self, service: str, client: Any) -> Any:
        meter = self

        class Metered:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(client, name)
                if not callable(attr) or name.startswith("_") or name in ("get_paginator",):
                    return attr

                def call(*args: Any, **kwargs: Any) -> Any:
                    meter.calls[f"{service}.{name}"] += 1
                    if name == "get_metric_data":
                        meter.metrics += len(kwargs.get("MetricDataQueries", []))
                    return attr(*args, **kwargs)

                return call

        return Metered()


# -- the research resources the dashboard reports on ---------------------------------------------
def template_environment(tpl: dict[str, Any]) -> dict[str, str]:
    """The snapshot function's settings that the template gives as plain values
    (`refresh_seconds`…), as make_aws_dashboard takes them."""
    variables = tpl["Resources"]["SnapshotFunction"]["Properties"]["Environment"]["Variables"]
    skipped = {"CODECDASH_SOURCE", "CODECDASH_DATABASE_URL"}  # the test's own
    return {
        name.removeprefix("CODECDASH_").lower(): value
        for name, value in variables.items()
        if isinstance(value, str) and name not in skipped
    }


@pytest.fixture
def stack(
    aws: AwsEnv, make_aws_dashboard: MakeAwsDashboard
) -> Iterator[tuple[AwsDashboard, Meter]]:
    """The deployment behind a local CloudFront, reporting on a research stack, with a
    meter on every AWS request its functions make."""
    for bucket in ("raw-video", "models"):
        aws.client("s3").create_bucket(Bucket=bucket)
    ec2 = aws.client("ec2")
    ec2.create_launch_template(LaunchTemplateName="gpu", LaunchTemplateData={"ImageId": aws.image})
    for group in ("training", "inference"):
        aws.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=group,
            MinSize=1,
            MaxSize=2,
            AvailabilityZones=["us-east-1a"],
            LaunchTemplate={"LaunchTemplateName": "gpu"},
        )
    sqs = aws.client("sqs")
    queues = [sqs.create_queue(QueueName=n)["QueueUrl"] for n in ("train", "infer")]
    orchestrator = ec2.run_instances(ImageId=aws.image, MinCount=1, MaxCount=1)["Instances"][0]
    aws.client("cloudformation").create_stack(
        StackName="research",
        TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}),
    )
    aws.set_cost_and_usage(
        {
            "ResultsByTime": [
                {
                    "TimePeriod": {"Start": "2026-12-01", "End": "2026-12-02"},
                    "Total": {},
                    "Groups": [
                        {
                            "Keys": ["Component$training"],
                            "Metrics": {"UnblendedCost": {"Amount": "40", "Unit": "USD"}},
                        }
                    ],
                    "Estimated": True,
                }
            ],
            "DimensionValueAttributes": [],
        }
    )
    dash = make_aws_dashboard(
        **template_environment(template()),
        aws_stack_name="research",
        aws_training_queue_url=queues[0],
        aws_inference_queue_url=queues[1],
        aws_training_asg="training",
        aws_inference_asg="inference",
        aws_orchestrator_instance_id=orchestrator["InstanceId"],
        aws_buckets="raw-video,models",
        # A real minute between runs is longer than the 10 s between the functions' checks
        # of the replica: each run checks (the simulated day runs faster than real time).
        aws_read_model_refresh_seconds="0",
    )
    dash.put_experiments(seed_experiments())
    meter = Meter()
    aws_clients._DEFAULT[None] = ClientFactory(REGION, wrap=meter.wrap)
    aws_lambda.reset()
    dash.publish()  # the first replica
    meter.calls.clear()
    meter.metrics = 0
    yield dash, meter
    aws_lambda.reset()


# -- CloudFront, as the template configures it -----------------------------------------------------
@dataclass
class Behavior:
    pattern: str
    origin: str
    min_ttl: float
    default_ttl: float
    max_ttl: float


def behaviors(tpl: dict[str, Any]) -> list[Behavior]:
    """The distribution's behaviours in CloudFront's order (the default last)."""
    resources = tpl["Resources"]
    config = resources["Distribution"]["Properties"]["DistributionConfig"]
    out = []
    for b in [*config["CacheBehaviors"], {**config["DefaultCacheBehavior"], "PathPattern": "*"}]:
        policy = b["CachePolicyId"]
        if isinstance(policy, dict):
            ttl = resources[policy["Ref"]]["Properties"]["CachePolicyConfig"]
            times = (ttl["MinTTL"], ttl["DefaultTTL"], ttl["MaxTTL"])
        else:  # a managed policy: CachingDisabled is the only one the template uses
            assert policy == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
            times = (0, 0, 0)
        out.append(Behavior(b["PathPattern"], b["TargetOriginId"], *times))
    return out


def max_age(cache_control: str) -> float | None:
    found = re.search(r"max-age=(\d+)", cache_control)
    return float(found[1]) if found else (0.0 if "no-cache" in cache_control else None)


class CloudFront:
    """Per-location caches; counts requests, bytes, S3 GETs and API requests."""

    def __init__(self, tpl: dict[str, Any], objects: dict[str, tuple[int, str]]) -> None:
        self.behaviors = behaviors(tpl)
        self.objects = objects  # path → (compressed bytes, Cache-Control)
        self.cached: dict[tuple[int, str], float] = {}
        self.requests = 0
        self.bytes = 0
        self.s3_gets = 0
        self.api_requests = 0
        self.api_times: list[float] = []

    def replica_checks(self, every_s: float) -> int:
        """The API function's conditional GETs of the replica: one before a request, unless
        one was made less than `every_s` before (one warm container, as at this traffic)."""
        checks, last = 0, float("-inf")
        for at in sorted(self.api_times):
            if at - last >= every_s:
                checks, last = checks + 1, at
        return checks

    def get(self, edge: int, path: str, now: float) -> None:
        self.requests += 1
        behavior = next(b for b in self.behaviors if fnmatch.fnmatchcase(path, b.pattern))
        if behavior.origin == "api":
            self.api_requests += 1
            self.api_times.append(now)
            self.bytes += API_ANSWER_BYTES
            return
        size, cache_control = self.objects[path]
        self.bytes += size
        if self.cached.get((edge, path), -1.0) > now:
            return
        self.s3_gets += 1
        age = max_age(cache_control)
        ttl = behavior.default_ttl if age is None else age
        self.cached[(edge, path)] = now + min(max(ttl, behavior.min_ttl), behavior.max_ttl)


# -- a visit, measured in the browser -------------------------------------------------------------
@dataclass
class Visit:
    files: list[str]  # the site's files the page asked for (paths, without the query)
    api: list[tuple[float, str]]  # (second, path and query) of API requests, the polls apart
    polls: list[float]  # when it asked for /api/v1/dashboard, seconds after it opened


def measure_visit(open_page: OpenPage, dash: AwsDashboard) -> Visit:
    """One viewer: the page opened, a search, one experiment opened and closed, then VISIT_S
    seconds on a fake clock while the stack works (every minute a running experiment's
    progress and a snapshot run; one completion halfway). Every request that reaches
    CloudFront (the shim) is recorded, with the visit's second."""
    page = open_page()
    seen: list[tuple[float, str]] = []
    inflight: set[Any] = set()
    clock = {"now": 0.0}

    # What CloudFront receives, at the shim: requests the browser answered from its own
    # cache (the versioned files, the favicon again) are not billed and not counted.
    dash.shim.on_request = lambda path: seen.append((clock["now"], path))
    page.on("request", lambda r: inflight.add(r))
    page.on("requestfinished", lambda r: inflight.discard(r))
    page.on("requestfailed", lambda r: inflight.discard(r))

    def settle() -> None:
        """Until what the page asked for is answered (and drawn: a frame more)."""
        for _ in range(500):
            page.wait_for_timeout(20)
            if not inflight:
                return
        raise AssertionError(f"requests still open: {[r.url for r in inflight]}")

    page.clock.install()
    page.goto(dash.url)
    wait_for_data(page)
    settle()
    # What a viewer does besides watching: a search, one experiment opened and closed, the
    # search cleared. (A filter left on reads the table's page again whenever the experiments
    # change: a request a minute on a busy day.)
    page.fill("#filter-q", "run 1")
    page.clock.run_for(1000)  # past the search box's pause
    settle()
    expect(page.locator("#experiments-body tr").first).to_contain_text("run 1")
    page.click("#experiments-body tr a.exp-link")
    expect(page.locator("#experiment-details")).to_be_visible()
    settle()
    page.click("#details-close")
    expect(page.locator("#experiment-details")).to_be_hidden()
    page.fill("#filter-q", "")  # back to the newest experiments, which the snapshot carries
    page.clock.run_for(1000)
    settle()
    stream = Stream()
    running = next(e for e in seed_experiments() if e["status"] == "running")
    queued = next(e for e in seed_experiments() if e["status"] == "queued")
    completed = next(e for e in seed_experiments() if e["status"] == "completed")
    for minute in range(VISIT_S // 60):
        writes = [{**running, "notes": f"minute {minute}"}]
        if minute == COMPLETION_MINUTE:
            mine = {k: queued[k] for k in ("id", "name", "created_at")}
            writes.append({**completed, **mine})  # a queued experiment, completed
        dash.put_experiments(writes)
        stream.deliver()  # the stream function's batch
        dash.snapshot()
        for _step in range(12):  # the minute in 5 s steps, each one's requests answered
            page.clock.run_for(5000)
            clock["now"] += 5
            settle()
    polls = [at for at, url in seen if url in SNAPSHOT]
    api = [(at, url) for at, url in seen if url.startswith("/api/") and url not in SNAPSHOT]
    files = [url.split("?")[0] for _at, url in seen if not url.startswith("/api/")]
    dash.shim.on_request = None
    return Visit(["/index.html" if f == "/" else f for f in files], api, polls)


SNAPSHOT = ("/api/v1/dashboard",)
COMPLETION_MINUTE = 4


# -- the day -------------------------------------------------------------------------------------
@pytest.mark.timeout(1500)  # 1,440 runs of the snapshot function against moto: minutes
def test_a_simulated_day_costs_less_than_the_budget(
    stack: tuple[AwsDashboard, Meter], open_page: OpenPage
) -> None:
    from codecdash.deploy.stack import aws_site_files

    dash, meter = stack
    tpl = template()
    for minute in range(1440):
        at = START + 60 * minute
        event = {"time": _iso(at), "detail-type": "Scheduled Event", "source": "aws.events"}
        # In the container's thread: this one runs Playwright's event loop.
        dash.shim.container.submit(aws_lambda.snapshot_handler, event, None).result(60)
    snapshot_calls = sum(meter.calls.values())
    day_calls = Counter(meter.calls)
    batch = one_stream_batch(meter)
    dash.snapshot()  # the stack as the visit finds it
    visit = measure_visit(open_page, dash)
    print(visit)

    snapshot = gzip.compress(
        aws_clients._DEFAULT[None]("s3")
        .get_object(Bucket=SITE, Key="api/v1/dashboard")["Body"]
        .read()
    )
    objects = {"/api/v1/dashboard": (len(snapshot), aws_lambda.SNAPSHOT_CACHE_CONTROL)}
    for item in aws_site_files():
        body = gzip.compress(item.body) if item.content_type.startswith("text") else item.body
        objects["/" + item.name] = (len(body), item.cache_control)
    cdn = CloudFront(tpl, objects)
    for viewer in range(VIEWERS):
        start, edge = START + viewer * 86400 / VIEWERS, viewer % EDGES
        for path in visit.files:
            cdn.get(edge, path, start)
        for _at, path in visit.api:
            cdn.get(edge, path.split("?")[0], start + _at)
        for at in visit.polls:
            cdn.get(edge, "/api/v1/dashboard", start + at)

    resources = tpl["Resources"].values()
    alarms = [r for r in resources if r["Type"] == "AWS::CloudWatch::Alarm"]
    alarm_metrics = sum(
        len([m for m in a["Properties"].get("Metrics", []) if "MetricStat" in m]) or 1
        for a in alarms
    )
    window = next(r for r in resources if r["Type"] == "AWS::Lambda::EventSourceMapping")[
        "Properties"
    ]["MaximumBatchingWindowInSeconds"]
    day = Day(
        viewers=VIEWERS,
        snapshot_runs=1440,
        snapshot_aws_calls=snapshot_calls,
        s3_puts=day_calls["s3.put_object"],
        snapshot_s3_gets=day_calls["s3.get_object"] + day_calls["s3.head_object"],
        s3_gets=cdn.s3_gets,
        cost_explorer_requests=day_calls["ce.get_cost_and_usage"]
        + day_calls["ce.get_cost_forecast"],
        metrics_requested=meter.metrics,
        sqs_requests=day_calls["sqs.get_queue_attributes"],
        stream_batches=min(2000, int(86400 / window)),
        stream_s3_puts_per_batch=batch["s3.put_object"],
        stream_s3_gets_per_batch=batch["s3.get_object"] + batch["s3.head_object"],
        api_replica_checks=cdn.replica_checks(
            Settings.model_fields["aws_read_model_refresh_seconds"].default
        ),
        cloudfront_requests=cdn.requests,
        cloudfront_bytes=cdn.bytes,
        api_requests=cdn.api_requests,
        alarm_metrics=alarm_metrics,
        dashboards=sum(
            1
            for r in resources
            if r["Type"] == "AWS::CloudWatch::Dashboard" and "Condition" not in r
        ),  # the optional one is left out, as its parameter's default leaves it
    )
    print(day)
    # The levers, measured.
    assert day_calls["s3.put_object"] <= 1440 + 2  # a snapshot write a minute, the cost cache
    assert day.cost_explorer_requests == 1  # once a day, usage only (the forecast: burn rate)
    assert day_calls["cloudwatch.get_metric_data"] <= 288 + 24  # fleet every 5 min, S3 every 6 h
    assert batch["s3.put_object"] >= 1  # the stream function publishes the replica
    assert cdn.api_requests == VIEWERS * len(visit.api)  # no poll reaches the API
    # The page polls as often as the schedule writes the snapshot (the template's
    # refresh_seconds is the schedule's rate), and between polls it asks the API only
    # when the results changed: the completion's minute, not a running experiment's.
    schedule = tpl["Resources"]["SnapshotSchedule"]["Properties"]["ScheduleExpression"]
    assert schedule == "rate(1 minute)" and template_environment(tpl)["refresh_seconds"] == "60"
    assert len(visit.polls) <= 1 + VISIT_S // 60, visit.polls
    later = [at for at, _url in visit.api if at > 0]
    assert later, "the completed experiment was not read: the test no longer measures it"
    assert min(later) >= 60 * COMPLETION_MINUTE, visit.api
    assert alarm_metrics == 7  # within CloudWatch's 10 free alarm metrics; $0.70 without
    assert day.dashboards == 0  # the health dashboard ($3.00) only when asked for

    estimate = monthly(day)
    table = render(estimate, day)
    print(table)
    # At list price, without the free tier.
    assert estimate.total(fixed=True) <= 2.00
    assert estimate.total() <= 5.00
    # docs/aws.md shows this table: the same lines, each within a cent (a run's timing can
    # move a request or two), and the same totals.
    documented = table_rows(DOCS.read_text())
    measured = table_rows(table)
    assert list(documented) == list(measured), "docs/aws.md's cost table has other lines"
    for item, (usd, usd_free) in measured.items():
        assert abs(documented[item][0] - usd) <= 0.011, (item, documented[item], usd)
        assert abs(documented[item][1] - usd_free) <= 0.011, (item, documented[item], usd_free)


def table_rows(text: str) -> dict[str, tuple[float, float]]:
    """The cost table's rows: item → (list $, after the free tier $)."""
    start = text.index("| item | per month | list $ |")
    rows: dict[str, tuple[float, float]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        rows[cells[0]] = (float(cells[2]), float(cells[3]))
    return rows


class Stream:
    """The experiments table's stream, as the stream function's event source mapping reads
    it: `deliver()` hands the records written since the last call to the stream handler."""

    def __init__(self) -> None:
        clients = aws_clients._DEFAULT[None]
        ddb, self.streams = clients("dynamodb"), clients("dynamodbstreams")
        self.arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        description = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn,
            ShardId=description["Shards"][0]["ShardId"],
            ShardIteratorType="LATEST",
        )["ShardIterator"]

    def deliver(self) -> None:
        answer = self.streams.get_records(ShardIterator=self.iterator)
        self.iterator = answer["NextShardIterator"]
        records = [json.loads(json.dumps(r, default=str)) for r in answer["Records"]]
        assert records, "nothing written since the last batch"
        event = {"Records": [{**r, "eventSourceARN": self.arn} for r in records]}
        aws_lambda.stream_handler(event, None)


def one_stream_batch(meter: Meter) -> Counter[str]:
    """The requests the stream function makes for one batch (one new experiment)."""
    stream = Stream()
    ddb = aws_clients._DEFAULT[None]("dynamodb")
    put_experiment(ddb, TABLE, id="exp-new", psnr_db=36.0, created_at=START + 86400)
    before = Counter(meter.calls)
    stream.deliver()
    return Counter(meter.calls) - before


def _iso(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
