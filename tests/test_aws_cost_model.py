"""The cost model of docs/aws.md, computed from the request counts of a simulated day.

One day of the deployed stack against moto: the snapshot function runs every minute (the real
handler, with every AWS request it makes counted), and 1,000 viewers keep the page open
10 minutes each, polling every 30 s, through a model of CloudFront made from the template's
cache behaviours and the objects' own Cache-Control. The counts go to
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

from aws_fixtures import *  # noqa: F403
from aws_fixtures import AWS_WARNINGS, REGION, AwsEnv, create_experiments_table, put_experiment
from codecdash import aws_clients, aws_lambda
from codecdash.aws_clients import ClientFactory
from codecdash.deploy.cost_model import Day, monthly, render

pytestmark = [pytest.mark.aws, *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS)]

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infrastructure" / "cloudformation" / "dashboard.yaml"
DOCS = ROOT / "docs" / "aws.md"
SITE = "codecdash-site"
READ_MODEL = "codecdash-read-model"
TABLE = "experiments"
START = 1_796_515_200.0  # 2026-12-06T00:00:00Z, a UTC midnight
VIEWERS = 1000
VISIT_S = 600
EDGES = 20  # CloudFront locations the viewers are spread over
INTERACTIONS = 4  # API requests a viewer makes beyond the page's own (a search, a detail…)
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
@pytest.fixture
def stack_env(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Meter]:
    ddb = aws.client("dynamodb")
    create_experiments_table(ddb, TABLE)
    for n in range(40):
        put_experiment(ddb, TABLE, id=f"exp-{n}", psnr_db=30 + n / 10, created_at=START - n * 60)
    s3 = aws.client("s3")
    for bucket in (SITE, READ_MODEL, "raw-video", "models"):
        s3.create_bucket(Bucket=bucket)
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
    environment = {  # what the template gives the snapshot function
        "CODECDASH_SOURCE": "aws",
        "CODECDASH_DATABASE_URL": str(tmp_path / "lambda.db"),
        "CODECDASH_AWS_SITE_BUCKET": SITE,
        "CODECDASH_AWS_EXPERIMENTS_TABLE": TABLE,
        "CODECDASH_AWS_STACK_NAME": "research",
        "CODECDASH_AWS_TRAINING_QUEUE_URL": queues[0],
        "CODECDASH_AWS_INFERENCE_QUEUE_URL": queues[1],
        "CODECDASH_AWS_TRAINING_ASG": "training",
        "CODECDASH_AWS_INFERENCE_ASG": "inference",
        "CODECDASH_AWS_ORCHESTRATOR_INSTANCE_ID": orchestrator["InstanceId"],
        "CODECDASH_AWS_BUCKETS": "raw-video,models",
        "CODECDASH_AWS_READ_MODEL_BUCKET": READ_MODEL,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    meter = Meter()
    aws_clients._DEFAULT[None] = ClientFactory(REGION, wrap=meter.wrap)
    aws_lambda.reset()
    assert aws_lambda.stream_handler({"rebuild": True}, None)["rebuilt"]  # the first replica
    meter.calls.clear()
    meter.metrics = 0
    yield meter
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

    def get(self, edge: int, path: str, now: float) -> None:
        self.requests += 1
        behavior = next(b for b in self.behaviors if fnmatch.fnmatchcase(path, b.pattern))
        if behavior.origin == "api":
            self.api_requests += 1
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


def page_api_paths() -> list[str]:
    """The API paths the page's code asks for, other than the polled snapshot (one each)."""
    found: set[str] = set()
    for script in (ROOT / "src" / "codecdash" / "dashboard").glob("*.js"):
        for path in re.findall(
            r"api/v1/[a-z_-]+(?:/\$\{[^}]*\}|/\{id\})?(?:/[a-z_-]+)?", script.read_text()
        ):
            found.add("/" + re.sub(r"\$\{[^}]*\}|\{id\}", "ID", path))
    found.discard("/api/v1/dashboard")
    # Never asked by a viewer on AWS: the page is told there is no event stream, and the
    # curation writes (POST) are not routed by API Gateway (GET only).
    found -= {"/api/v1/events", "/api/v1/experiments/delete"}
    return sorted(found)


# -- the day -------------------------------------------------------------------------------------
@pytest.mark.timeout(1200)  # 1,440 runs of the snapshot function against moto: minutes
def test_a_simulated_day_costs_less_than_the_budget(stack_env: Meter) -> None:
    from codecdash.deploy.stack import aws_site_files

    meter = stack_env
    tpl = template()
    for minute in range(1440):
        at = START + 60 * minute
        event = {"time": _iso(at), "detail-type": "Scheduled Event", "source": "aws.events"}
        aws_lambda.snapshot_handler(event, None)
    snapshot_calls = sum(meter.calls.values())
    day_calls = Counter(meter.calls)
    batch = one_stream_batch(stream_env_client(), meter)

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
    page = [p for p in objects if p != "/api/v1/dashboard"]
    api_paths = page_api_paths()
    assert "/api/v1/experiments" in api_paths and "/api/v1/anchors" in api_paths
    for viewer in range(VIEWERS):
        start, edge = START + viewer * 86400 / VIEWERS, viewer % EDGES
        for path in page:
            cdn.get(edge, path, start)
        for path in api_paths + ["/api/v1/experiments"] * INTERACTIONS:
            cdn.get(edge, path, start)
        for poll in range(VISIT_S // 30):
            cdn.get(edge, "/api/v1/dashboard", start + 30 * poll)

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
        # + one replica check a run: a run comes every 60 s, more than the 10 s between
        # checks, but the simulated day runs faster than real time and skips most of them
        snapshot_s3_gets=day_calls["s3.get_object"] + day_calls["s3.head_object"] + 1440,
        s3_gets=cdn.s3_gets,
        cost_explorer_requests=day_calls["ce.get_cost_and_usage"]
        + day_calls["ce.get_cost_forecast"],
        metrics_requested=meter.metrics,
        sqs_requests=day_calls["sqs.get_queue_attributes"],
        stream_batches=min(2000, int(86400 / window)),
        stream_s3_puts_per_batch=batch["s3.put_object"],
        stream_s3_gets_per_batch=batch["s3.get_object"] + batch["s3.head_object"],
        api_replica_checks=min(cdn.api_requests, 86400 // 10),  # at most one per 10 s
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
    assert cdn.api_requests == VIEWERS * (len(api_paths) + INTERACTIONS)  # no poll reaches the API
    assert alarm_metrics == 7  # within CloudWatch's 10 free alarm metrics; $0.70 without
    assert day.dashboards == 0  # the health dashboard ($3.00) only when asked for

    estimate = monthly(day)
    table = render(estimate, day)
    print(table)
    assert estimate.total(fixed=True) <= 2.00  # at list price, without the free tier
    assert estimate.total(free=True) <= 5.00
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


def stream_env_client() -> Any:
    return aws_clients._DEFAULT[None]


def one_stream_batch(clients: Any, meter: Meter) -> Counter[str]:
    """The requests the stream function makes for one batch (one new experiment)."""
    ddb, streams = clients("dynamodb"), clients("dynamodbstreams")
    arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    put_experiment(ddb, TABLE, id="exp-new", psnr_db=36.0, created_at=START + 86400)
    records = streams.get_records(ShardIterator=iterator)["Records"]
    event = {
        "Records": [
            {**json.loads(json.dumps(r, default=str)), "eventSourceARN": arn} for r in records
        ]
    }
    before = Counter(meter.calls)
    aws_lambda.stream_handler(event, None)
    return Counter(meter.calls) - before


def _iso(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
