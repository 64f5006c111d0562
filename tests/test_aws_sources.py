"""The AWS sources against moto's server: experiments (the read replica), fleet, storage and
costs; per-service rows, timeouts and last known values in the snapshot."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from aws_fixtures import *  # noqa: F403
from aws_fixtures import AWS_WARNINGS, AwsEnv, create_experiments_table, put_experiment
from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.snapshot import SnapshotBuilder
from codecdash.sources.aws import CostState, aws_sources
from codecdash.sources.aws._common import Part
from codecdash.sources.aws.costs import (
    CACHE_KEY,
    CostExplorerRow,
    CostsSource,
    burn_rate_forecast,
)
from codecdash.sources.aws.dynamodb import LEGACY_IDS, plain, to_epoch
from codecdash.sources.aws.fleet import FleetSource, spot_from_policy, stack_health
from codecdash.sources.aws.read_model import NO_REPLICA_BUCKET
from codecdash.sources.aws.replica_writer import ReplicaWriter
from codecdash.sources.aws.storage import StorageSource
from codecdash.sources.base import SourceError

pytestmark = [pytest.mark.aws, *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS)]

TABLE = "experiments"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_table(aws: AwsEnv, name: str = TABLE) -> str:
    return create_experiments_table(aws.client("dynamodb"), name)


class Stream:
    """Reads the table's stream from moto like Lambda's event source mapping does."""

    def __init__(self, aws: AwsEnv, arn: str) -> None:
        self.client = aws.client("dynamodbstreams")
        self.arn = arn
        shard = self.client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        self.iterator = self.client.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def batch(self) -> dict[str, Any]:
        answer = self.client.get_records(ShardIterator=self.iterator)
        self.iterator = answer["NextShardIterator"]
        records = []
        for record in answer["Records"]:
            record = json.loads(json.dumps(record, default=str))
            record["eventSourceARN"] = self.arn
            records.append(record)
        return {"Records": records}


# -- experiments ---------------------------------------------------------------------------
def test_experiments_without_a_replica_bucket_say_what_to_set(aws: AwsEnv) -> None:
    """The replica is the one way experiments are read on AWS: a table alone is an error of
    the experiments source that says what to set, and the rest of the snapshot stands."""
    make_table(aws)
    settings = Settings(aws_experiments_table=TABLE)
    builder = SnapshotBuilder(settings, aws_sources(settings, clients=aws.factory()))
    snapshot = run(builder.build(time.time()))
    row = next(r for r in snapshot["sources"] if r["name"] == "aws.experiments")
    assert not row["ok"] and row["error"] == NO_REPLICA_BUCKET
    assert "CODECDASH_AWS_READ_MODEL_BUCKET" in row["error"]
    assert "ReadModelBucketName" in row["error"] and "codecdash deploy" in row["error"]
    assert snapshot["summary"]["total_experiments"] is None  # unknown, not zero
    assert not any("scan" in name or "get_item" in name for name in aws.calls)


def test_experiments_come_from_the_replica(aws: AwsEnv, tmp_path: Path) -> None:
    """`serve --source aws`: the experiments of a private copy of the replica, checked for a
    new version before each reading; an older release's aggregate items are no experiments."""
    make_table(aws)
    ddb = aws.client("dynamodb")
    for n in range(3):
        put_experiment(ddb, TABLE, id=f"e{n}", psnr_db=30.0 + n, created_at=1_700_000_000 + n)
    for legacy in sorted(LEGACY_IDS):
        ddb.put_item(TableName=TABLE, Item={"id": {"S": legacy}, "data": {"S": "{}"}})
    aws.client("s3").create_bucket(Bucket="read-model")
    settings = Settings(aws_experiments_table=TABLE, aws_read_model_bucket="read-model")
    writer = ReplicaWriter(settings, aws.client("s3"), tmp_path / "writer.db")
    assert writer.rebuild(ddb, TABLE)["total"] == 3
    writer.copy.close()
    sources = aws_sources(settings, clients=aws.factory())
    facts = run(sources[0].collect(1_700_100_000))["experiments"]
    assert facts["summary"]["total_experiments"] == 3
    assert [e["id"] for e in facts["recent_experiments"]] == ["e2", "e1", "e0"]
    assert facts["summary"]["best_quality"]["experiment_id"] == "e2"


def test_item_conversion() -> None:
    assert to_epoch("2025-03-14T15:03:00Z") == calendar.timegm((2025, 3, 14, 15, 3, 0))
    assert to_epoch("2025-03-14T15:03:00") == calendar.timegm((2025, 3, 14, 15, 3, 0))
    assert to_epoch(1_700_000_000_000) == 1_700_000_000.0  # milliseconds
    assert to_epoch("not a time") is None
    from decimal import Decimal

    out = plain({"lr": Decimal("0.001"), "n": Decimal(3), "tags": {"b", "a"}, "b": b"x"})
    assert out == {"lr": 0.001, "n": 3, "tags": ["a", "b"], "b": None}


def test_the_aws_sources_and_the_snapshot_load_without_the_store() -> None:
    """What the snapshot and stream functions run (the AWS sources, the snapshot builder,
    time formatting) imports neither the SQL store nor SQLAlchemy (but for the read
    replica's source, and only when a replica is configured)."""
    code = (
        "import sys\n"
        "import codecdash.snapshot, codecdash.sources.aws, codecdash.sources.aws.dynamodb\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'\n"
        "          or m.startswith('codecdash.store')]\n"
        "print(','.join(sorted(loaded)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# -- fleet ---------------------------------------------------------------------------------
def make_fleet(aws: AwsEnv) -> dict[str, Any]:
    ec2 = aws.client("ec2")
    image = aws.image
    ec2.create_launch_template(
        LaunchTemplateName="gpu-lt",
        LaunchTemplateData={"ImageId": image, "InstanceType": "g5.xlarge"},
    )
    asg = aws.client("autoscaling")
    asg.create_auto_scaling_group(
        AutoScalingGroupName="training",
        MinSize=4,
        MaxSize=8,
        DesiredCapacity=4,
        AvailabilityZones=["us-east-1a"],
        MixedInstancesPolicy={
            "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": "gpu-lt"}},
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 1,
                "OnDemandPercentageAboveBaseCapacity": 0,
            },
        },
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="inference",
        MinSize=2,
        MaxSize=4,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateName": "gpu-lt"},
    )
    sqs = aws.client("sqs")
    queues = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("train", "infer")}
    for n in range(3):
        sqs.send_message(QueueUrl=queues["train"], MessageBody=f"job {n}")
    sqs.send_message(QueueUrl=queues["infer"], MessageBody="job")
    orchestrator = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    cw = aws.client("cloudwatch")
    dims = [{"Name": "InstanceId", "Value": orchestrator["InstanceId"]}]
    cw.put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[{"MetricName": "CPUUtilization", "Dimensions": dims, "Value": 42.5}],
    )
    cw.put_metric_data(
        Namespace="CWAgent",
        MetricData=[{"MetricName": "mem_used_percent", "Dimensions": dims, "Value": 61.0}],
    )
    cw.put_metric_data(
        Namespace="AIVideoCodec",
        MetricData=[
            {"MetricName": "InferenceFPS", "Value": 120.0},
            {"MetricName": "InferenceFPS", "Value": 80.0},
        ],
    )
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName="research",
        TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}),
    )
    return {"queues": queues, "orchestrator": orchestrator["InstanceId"]}


def fleet_settings(fleet: dict[str, Any], **extra: Any) -> Settings:
    return Settings(
        aws_stack_name="research",
        aws_training_asg="training",
        aws_inference_asg="inference",
        aws_training_queue_url=fleet["queues"]["train"],
        aws_inference_queue_url=fleet["queues"]["infer"],
        aws_orchestrator_instance_id=fleet["orchestrator"],
        **extra,
    )


def test_fleet(aws: AwsEnv) -> None:
    fleet = make_fleet(aws)
    source = FleetSource(fleet_settings(fleet), aws.factory())
    facts = run(source.collect(time.time()))
    assert facts["orchestrator"]["status"] == "ok"
    assert facts["orchestrator"]["cpu_pct"] == 42.5
    assert facts["orchestrator"]["mem_pct"] == 61.0
    assert facts["orchestrator"]["stack_status"] == "CREATE_COMPLETE"
    assert facts["orchestrator"]["last_seen"].endswith("Z")
    training, inference = facts["training_workers"], facts["inference_workers"]
    assert (training["active"], training["queue_depth"]) == (4, 3)
    assert training["spot_pct"] == 75.0  # 1 On-Demand base, the rest spot
    assert training["spot_basis"] == "mixed_instances_policy"
    assert (inference["active"], inference["queue_depth"], inference["fps"]) == (2, 1, 200.0)
    assert inference["spot_pct"] == 0.0 and inference["spot_basis"] == "instance_lifecycle"
    assert set(training) >= {"active", "queue_depth", "spot_pct"}
    assert set(inference) >= {"active", "queue_depth", "fps"}
    assert aws.calls == {
        "cloudformation.describe_stacks": 1,
        "autoscaling.describe_auto_scaling_groups": 1,
        "ec2.describe_instances": 1,
        "sqs.get_queue_attributes": 2,
        "cloudwatch.get_metric_data": 1,
    }


def test_fleet_spot_from_instance_lifecycle(aws: AwsEnv) -> None:
    ec2 = aws.client("ec2")
    image = aws.image
    ec2.create_launch_template(
        LaunchTemplateName="spot",
        LaunchTemplateData={"ImageId": image, "InstanceMarketOptions": {"MarketType": "spot"}},
    )
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="inference",
        MinSize=2,
        MaxSize=2,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateName": "spot"},
    )
    facts = run(
        FleetSource(Settings(aws_inference_asg="inference"), aws.factory()).collect(time.time())
    )
    pool = facts["inference_workers"]
    assert pool["active"] == 2
    assert pool["spot_pct"] in (0.0, 100.0)  # moto marks spot only when the template says so
    assert pool["spot_basis"] == "instance_lifecycle"


def test_spot_and_stack_rules() -> None:
    policy = {
        "MixedInstancesPolicy": {
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 2,
                "OnDemandPercentageAboveBaseCapacity": 25,
            }
        }
    }
    assert spot_from_policy(policy, 10) == 6  # 2 base + ceil(8 × 25 %) = 4 On-Demand
    assert spot_from_policy(policy, 1) == 0
    assert spot_from_policy({}, 5) is None
    assert stack_health("UPDATE_COMPLETE") == "ok"
    assert stack_health("UPDATE_IN_PROGRESS") == "degraded"
    assert stack_health("ROLLBACK_COMPLETE") == "down"
    assert stack_health(None) == "unknown"


def test_one_failing_service_keeps_the_others(aws: AwsEnv) -> None:
    """SQS fails: its row says so, its figures stay as they were, the rest is current."""
    fleet = make_fleet(aws)
    settings = fleet_settings(fleet)
    builder = SnapshotBuilder(settings, aws_sources(settings, clients=aws.factory()))
    now = time.time()
    first = run(builder.build(now))
    assert first["infrastructure"]["training_workers"]["queue_depth"] == 3
    aws.client("sqs").delete_queue(QueueUrl=fleet["queues"]["train"])
    aws.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName="training", DesiredCapacity=6
    )
    second = run(builder.build(now + 120))
    rows = {row["name"]: row for row in second["sources"]}
    assert rows["aws.fleet.sqs"]["ok"] is False
    assert "NonExistentQueue" in rows["aws.fleet.sqs"]["error"] or rows["aws.fleet.sqs"]["error"]
    assert rows["aws.fleet"]["ok"] is True and rows["aws.fleet.autoscaling"]["ok"] is True
    training = second["infrastructure"]["training_workers"]
    assert training["queue_depth"] == 3  # last known
    assert training["active"] == 6  # current


def test_a_hanging_service_times_out_alone(aws: AwsEnv) -> None:
    fleet = make_fleet(aws)
    release = threading.Event()

    class Hanging:
        def __init__(self, client: Any) -> None:
            self.client = client

        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                release.wait(60)
                return getattr(self.client, name)(*args, **kwargs)

            return call

    factory = ClientFactory(
        "us-east-1", wrap=lambda service, c: Hanging(c) if service == "cloudformation" else c
    )
    settings = fleet_settings(fleet)
    sources = aws_sources(settings, clients=factory)
    for source in sources:
        for part in getattr(source, "parts", []):
            if part.name == "aws.fleet.cloudformation":
                part.timeout_s = 0.5
    builder = SnapshotBuilder(settings, sources)

    async def build() -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        snapshot = await builder.build(time.time())
        elapsed = time.monotonic() - started
        release.set()  # let the stuck call finish (the thread would, on its own, later)
        return snapshot, elapsed

    snapshot, elapsed = run(build())
    assert elapsed < 45  # the others answered long before the stuck call was let go
    rows = {row["name"]: row for row in snapshot["sources"]}
    assert rows["aws.fleet.cloudformation"]["ok"] is False
    assert "no answer within" in rows["aws.fleet.cloudformation"]["error"]
    assert snapshot["infrastructure"]["training_workers"]["active"] == 4


def test_part_is_shared_within_a_refresh_and_reused_for_its_ttl() -> None:
    calls: list[float] = []

    def fetch(now: float) -> float:
        calls.append(now)
        return now

    part = Part("p", fetch, ttl_s=30)

    async def go() -> None:
        await asyncio.gather(part.get(100.0), part.get(100.0), part.get(100.0))
        await part.get(110.0)
        await part.get(131.0)

    run(go())
    assert calls == [100.0, 131.0]


# -- storage -------------------------------------------------------------------------------
def test_storage_listing_metrics_efs_and_items(aws: AwsEnv) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="listed")
    for n in range(5):
        s3.put_object(Bucket="listed", Key=f"k{n}", Body=b"x" * 100)
    s3.create_bucket(Bucket="measured")
    cw = aws.client("cloudwatch")

    def dims(storage: str) -> list[dict[str, str]]:
        return [
            {"Name": "BucketName", "Value": "measured"},
            {"Name": "StorageType", "Value": storage},
        ]

    cw.put_metric_data(
        Namespace="AWS/S3",
        MetricData=[
            {"MetricName": "NumberOfObjects", "Dimensions": dims("AllStorageTypes"), "Value": 1000},
            {"MetricName": "BucketSizeBytes", "Dimensions": dims("StandardStorage"), "Value": 5e9},
            {"MetricName": "BucketSizeBytes", "Dimensions": dims("GlacierStorage"), "Value": 1e9},
        ],
    )
    efs = aws.client("efs").create_file_system(CreationToken="t")["FileSystemId"]
    make_table(aws)
    put_experiment(aws.client("dynamodb"), TABLE, id="one")
    settings = Settings(aws_buckets="listed,measured", aws_efs_id=efs, aws_experiments_table=TABLE)
    source = StorageSource(settings, aws.factory())
    facts = run(source.collect(time.time()))["storage"]
    buckets = {b["name"]: b for b in facts["buckets"]}
    assert buckets["listed"] == {
        "name": "listed",
        "objects": 5,
        "bytes": 500,
        "basis": "listing",
        "partial": False,
    }
    assert buckets["measured"]["basis"] == "cloudwatch"
    assert (buckets["measured"]["objects"], buckets["measured"]["bytes"]) == (1000, 6_000_000_000)
    assert facts["objects"] == 1005
    assert facts["efs_bytes"] == 0
    assert facts["bytes"] == 6_000_000_500
    assert facts["db_items"] == 1
    # Within the hour nothing is asked again.
    before = dict(aws.calls)
    run(source.collect(time.time() + 60))
    assert aws.calls == before


# -- costs ---------------------------------------------------------------------------------
def usage_result(now: float) -> dict[str, Any]:
    t = time.gmtime(now)
    days = []
    for day in range(1, t.tm_mday + 1):
        start = f"{t.tm_year:04d}-{t.tm_mon:02d}-{day:02d}"
        days.append(
            {
                "TimePeriod": {"Start": start, "End": start},
                "Total": {},
                "Groups": [
                    {
                        "Keys": ["Component$training"],
                        "Metrics": {"UnblendedCost": {"Amount": "100", "Unit": "USD"}},
                    },
                    {
                        "Keys": ["Component$inference"],
                        "Metrics": {"UnblendedCost": {"Amount": "20", "Unit": "USD"}},
                    },
                    {
                        "Keys": ["Component$"],
                        "Metrics": {"UnblendedCost": {"Amount": "5", "Unit": "USD"}},
                    },
                ],
                "Estimated": True,
            }
        )
    return {"ResultsByTime": days, "DimensionValueAttributes": []}


def noon(day: int = 15) -> float:
    t = time.gmtime()
    return float(calendar.timegm((t.tm_year, t.tm_mon, day, 12, 0, 0)))


@pytest.mark.parametrize("forecast", ["burn_rate", "cost_explorer"])
def test_costs_from_cost_explorer_with_the_burn_rate_forecast(
    aws: AwsEnv, forecast: Literal["burn_rate", "cost_explorer"]
) -> None:
    """One request a refresh by default (the forecast is codecdash's burn rate); two with
    Cost Explorer's forecast, falling back to the burn rate when it has none."""
    now = noon(15)
    aws.set_cost_and_usage(usage_result(now))
    aws.client("s3").create_bucket(Bucket="site")
    settings = Settings(aws_site_bucket="site", aws_cost_forecast=forecast)
    source = CostsSource(settings, aws.factory(), state=CostState())
    facts = run(source.collect(now))["costs"]
    assert facts["month_to_date_usd"] == 15 * 125.0
    assert facts["cost_breakdown"] == [
        {"component": "training", "usd": 1500.0},
        {"component": "inference", "usd": 300.0},
        {"component": "other", "usd": 75.0},
    ]
    # moto has no GetCostForecast: codecdash's own burn-rate forecast is used either way.
    assert facts["forecast_method"] == "burn_rate"
    _, month_end = month_bounds(now)
    assert facts["forecast_month_usd"] == round(15 * 125.0 + 125.0 / 86400 * (month_end - now), 2)
    assert facts["as_of"] == time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    asked = 2 if forecast == "cost_explorer" else 1
    assert aws.calls == {
        "ce.get_cost_and_usage": 1,
        **({"ce.get_cost_forecast": 1} if forecast == "cost_explorer" else {}),
        "s3.get_object": 1,
        "s3.put_object": 2,
    }
    stored = json.loads(aws.client("s3").get_object(Bucket="site", Key=CACHE_KEY)["Body"].read())
    assert stored["month_to_date_usd"] == facts["month_to_date_usd"]
    assert stored["calls_today"] == asked


def month_bounds(now: float) -> tuple[float, float]:
    from codecdash.sources.aws.costs import _month_bounds

    return _month_bounds(now)


def test_burn_rate_forecast_rules() -> None:
    now = noon(3)
    t = time.gmtime(now)
    day = f"{t.tm_year:04d}-{t.tm_mon:02d}-"
    daily = {day + "01": 10.0, day + "02": 30.0, day + "03": 5.0}
    month_end = month_bounds(now)[1]
    assert burn_rate_forecast(45.0, daily, now) == pytest.approx(
        45.0 + 20.0 / 86400 * (month_end - now)
    )
    first = noon(1)
    assert burn_rate_forecast(6.0, {}, first) == pytest.approx(
        6.0 + 6.0 / (12 * 3600) * (month_bounds(first)[1] - first)
    )


def test_cost_explorer_is_asked_fewer_than_10_times_a_day(aws: AwsEnv) -> None:
    """A day of heavy traffic, cold starts and a reader function: < 10 requests in all."""
    start = noon(10) - 12 * 3600  # midnight UTC
    aws.set_cost_and_usage(usage_result(start))
    aws.client("s3").create_bucket(Bucket="site")
    settings = Settings(aws_site_bucket="site")
    ce_calls = 0

    def counting(service: str, client: Any) -> Any:
        if service != "ce":
            return client

        class Counting:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(client, name)
                if not name.startswith("get_cost"):
                    return attr

                def call(*args: Any, **kwargs: Any) -> Any:
                    nonlocal ce_calls
                    ce_calls += 1
                    return attr(*args, **kwargs)

                return call

        return Counting()

    factory = ClientFactory("us-east-1", wrap=counting)  # clients hold no state: shared

    def container() -> tuple[CostsSource, CostsSource]:
        """A fresh Lambda container of each function: nothing in memory."""
        writer = CostsSource(settings, factory, state=CostState())
        reader = CostsSource(settings, factory, may_call=False, state=CostState())
        return writer, reader

    async def day() -> int:
        writer, reader = container()
        readers = [reader, container()[1], container()[1]]
        builds = 0
        for second in range(0, 86400, 5):
            now = start + second
            if second % 3600 == 0:  # a cold start of every function, every hour
                writer, _ = container()
                readers = [container()[1] for _ in readers]
            if second % 60 == 0:
                await writer.collect(now)  # the scheduled snapshot, every minute
            for reader in readers:
                # Three API containers each rebuilding their snapshot every 5 s: the most
                # page views can cause (the snapshot is cached for 5 s per container, and
                # CloudFront caches the API's answer too).
                with contextlib.suppress(SourceError):  # before the first figures landed
                    await reader.collect(now)
                builds += 1
        return builds

    builds = asyncio.run(day())
    assert builds == 3 * 17_280
    assert 0 < ce_calls < 10
    assert ce_calls == 1  # one refresh of one request with the 24-hour cache (the default)


def test_cost_budget_holds_with_a_short_cache(aws: AwsEnv) -> None:
    start = noon(10) - 12 * 3600
    aws.set_cost_and_usage(usage_result(start))
    settings = Settings(aws_cost_cache_seconds=600)  # asks for 144 refreshes a day
    source = CostsSource(settings, aws.factory(), state=CostState())

    async def day() -> None:
        for minute in range(0, 1440):
            await source.collect(start + minute * 60)

    asyncio.run(day())
    assert source.calls <= 9
    facts = run(source.collect(start + 86399))["costs"]
    assert facts["stale"] is True  # honest about it: the budget is spent


def test_cost_reader_never_calls_and_waits_for_the_cache(aws: AwsEnv) -> None:
    aws.client("s3").create_bucket(Bucket="site")
    settings = Settings(aws_site_bucket="site")
    reader = CostsSource(settings, aws.factory(), may_call=False, state=CostState())
    with pytest.raises(SourceError, match="scheduled function"):
        run(reader.collect(time.time()))
    assert not any(name.startswith("ce.") for name in aws.calls)


def test_cost_explorer_failure_is_reported_and_retried_later(aws: AwsEnv) -> None:
    def denied(service: str, client: Any) -> Any:
        if service != "ce":
            return client

        class Denied:
            def get_cost_and_usage(self, **kwargs: Any) -> Any:
                from botocore.exceptions import ClientError

                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}},
                    "GetCostAndUsage",
                )

        return Denied()

    settings = Settings()
    source = CostsSource(settings, ClientFactory("us-east-1", wrap=denied), state=CostState())
    now = time.time()
    builder = SnapshotBuilder(settings, [source, CostExplorerRow(source)])
    snapshot = run(builder.build(now))
    rows = {row["name"]: row for row in snapshot["sources"]}
    assert rows["aws.costs"]["ok"] is False
    assert "permission denied" in rows["aws.costs"]["error"]
    assert rows["aws.costs.cost_explorer"]["ok"] is False
    assert snapshot["summary"]["month_to_date_usd"] is None  # never known: empty, not wrong
    run(builder.build(now + 60))
    assert source.state.entry is not None and source.state.entry["calls_today"] == 1


def test_aws_sources_follow_the_settings(aws: AwsEnv) -> None:
    names = [s.name for s in aws_sources(Settings(), clients=aws.factory())]
    assert names == ["aws.costs", "aws.costs.cost_explorer"]
    names = [
        s.name
        for s in aws_sources(
            Settings(
                aws_experiments_table="t", aws_training_queue_url="https://q", aws_buckets="a,b"
            ),
            clients=aws.factory(),
        )
    ]
    assert names == [
        "aws.experiments",
        "aws.fleet",
        "aws.fleet.sqs",
        "aws.storage",
        "aws.storage.s3",
        "aws.storage.dynamodb",
        "aws.costs",
        "aws.costs.cost_explorer",
    ]


def test_snapshot_of_everything(aws: AwsEnv, tmp_path: Path) -> None:
    fleet = make_fleet(aws)
    arn = make_table(aws)
    ddb = aws.client("dynamodb")
    put_experiment(ddb, TABLE, id="x", psnr_db=35.1, bitrate_reduction_pct=44.0)
    for bucket in ("site", "read-model"):
        aws.client("s3").create_bucket(Bucket=bucket)
    now = time.time()
    aws.set_cost_and_usage(usage_result(now))
    settings = fleet_settings(
        fleet,
        aws_experiments_table=TABLE,
        aws_buckets="site",
        aws_site_bucket="site",
        aws_read_model_bucket="read-model",
    )
    writer = ReplicaWriter(settings, aws.client("s3"), tmp_path / "writer.db")
    writer.apply(Stream(aws, arn).batch()["Records"])
    writer.copy.close()
    builder = SnapshotBuilder(settings, aws_sources(settings, clients=aws.factory()))
    snapshot = run(builder.build(now))
    from codecdash.snapshot_models import Snapshot

    Snapshot.model_validate(snapshot)
    assert all(row["ok"] for row in snapshot["sources"]), snapshot["sources"]
    assert snapshot["summary"]["best_quality"]["experiment_id"] == "x"
    assert snapshot["summary"]["month_to_date_usd"] > 0
    assert snapshot["costs_as_of"] is not None
    assert snapshot["infrastructure"]["storage"]["db_items"] == 1
    assert [e["id"] for e in snapshot["recent_experiments"]] == ["x"]
