"""Fixtures for the AWS tests: moto's threaded server on 127.0.0.1, fake credentials, helpers.

Use with ``from aws_fixtures import *`` in an AWS test module. Every test gets a
freshly reset moto (one server per session), boto3 pointed at it through
``AWS_ENDPOINT_URL``, and clean process-wide caches of codecdash's AWS sources.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from codecdash import aws_clients
from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.sources.aws import costs

REGION = "us-east-1"
# The deployed dashboard's resources as the tests name them (the site bucket, the read
# replica's bucket, the experiments table).
SITE = "codecdash-site"
READ_MODEL = "codecdash-read-model"
TABLE = "experiments"
IMAGE: list[str] = []  # an AMI id moto knows (found once: listing them is slow)
_MODELS: list[type] = []
# moto warns about template resources its CloudFormation does not model (CloudFront, API
# Gateway v2…): the deploy test leaves them out on purpose.
AWS_WARNINGS = [
    "ignore:Tried to parse:UserWarning",
]

__all__ = [
    "AWS_WARNINGS",
    "REGION",
    "AwsEnv",
    "CountingClient",
    "aws",
    "lambda_environment",
    "moto_server",
    "put_experiment",
    "serialize",
]


def lambda_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> None:
    """The dashboard stack's functions' environment (SITE, TABLE, READ_MODEL, a database
    under `tmp_path`); `extra`: more CODECDASH_* variables, by their full names."""
    for name, value in {
        "CODECDASH_SOURCE": "aws",
        "CODECDASH_DATABASE_URL": str(tmp_path / "lambda" / "codecdash.db"),
        "CODECDASH_AWS_SITE_BUCKET": SITE,
        "CODECDASH_AWS_EXPERIMENTS_TABLE": TABLE,
        "CODECDASH_AWS_READ_MODEL_BUCKET": READ_MODEL,
        "CODECDASH_AWS_BUCKETS": "",
        **extra,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    register_cloudformation_models()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _warm_up(endpoint)
    yield endpoint
    server.stop()


def register_cloudformation_models() -> None:
    """What the dashboard's template uses and moto's CloudFormation does not model: Lambda
    aliases, CloudWatch alarms, and a Version replaced on update (a new version published).
    Each is a thin shim over moto's own Lambda and CloudWatch backends (the server runs in
    this process), so the deploy test creates them from the real template."""
    from moto.awslambda.models import LambdaVersion, lambda_backends
    from moto.cloudformation import parsing
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.common_models import CloudFormationModel

    if "AWS::Lambda::Alias" in parsing.get_model_map():
        return

    class MotoLambdaAlias(CloudFormationModel):
        __module__ = "moto.awslambda.models"  # moto files its models by service

        def __init__(self, arn: str, function: str, name: str) -> None:
            self.arn, self.function, self.name = arn, function, name

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Lambda::Alias"

        @property
        def physical_resource_id(self) -> str:
            return self.arn

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls,
            resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> MotoLambdaAlias:
            p = cloudformation_json["Properties"]
            alias = lambda_backends[account_id][region_name].create_alias(
                p["Name"], p["FunctionName"], str(p["FunctionVersion"]), "", ""
            )
            return cls(alias.arn, p["FunctionName"], p["Name"])

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> MotoLambdaAlias:
            p = cloudformation_json["Properties"]
            lambda_backends[account_id][region_name].update_alias(
                p["Name"], p["FunctionName"], str(p["FunctionVersion"]), "", ""
            )
            return original_resource  # type: ignore[no-any-return]

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn

    class MotoAlarm(CloudFormationModel):
        __module__ = "moto.cloudwatch.models"

        def __init__(self, name: str, arn: str) -> None:
            self.name, self.arn = name, arn

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @property
        def physical_resource_id(self) -> str:
            return self.name

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls,
            resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> MotoAlarm:
            p = cloudformation_json["Properties"]
            alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=p.get("AlarmName", resource_name),
                namespace=p.get("Namespace", ""),
                metric_name=p.get("MetricName", ""),
                comparison_operator=p["ComparisonOperator"],
                evaluation_periods=int(p["EvaluationPeriods"]),
                period=int(p.get("Period", 60)),
                threshold=float(p["Threshold"]),
                statistic=p.get("Statistic", ""),
                description=p.get("AlarmDescription", ""),
                dimensions=p.get("Dimensions", []),
                alarm_actions=p.get("AlarmActions", []),
                ok_actions=p.get("OKActions", []),
                extended_statistic=p.get("ExtendedStatistic"),
                treat_missing_data=p.get("TreatMissingData"),
            )
            return cls(alarm.name, alarm.alarm_arn)

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> MotoAlarm:
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn

    def version_attribute(self: Any, attribute_name: str) -> str:
        return str(self.version)

    def replace_version(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        # A changed Version is replaced: a new version is published (the old one is kept).
        return LambdaVersion.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    _MODELS.extend([MotoLambdaAlias, MotoAlarm])  # __subclasses__ holds them weakly
    LambdaVersion.get_cfn_attribute = version_attribute  # type: ignore[method-assign]
    LambdaVersion.update_from_cloudformation_json = classmethod(replace_version)  # type: ignore[method-assign,assignment]
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    assert {"AWS::Lambda::Alias", "AWS::CloudWatch::Alarm"} <= set(parsing.get_model_map())


def _warm_up(endpoint: str) -> None:
    """moto loads each service on its first request (seconds): do it once, up front, so
    that no test's short timeouts see the delay."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    calls = {
        "autoscaling": "describe_auto_scaling_groups",
        "cloudformation": "list_stacks",
        "cloudwatch": "list_metrics",
        "dynamodb": "list_tables",
        "ec2": "describe_regions",
        "efs": "describe_file_systems",
        "s3": "list_buckets",
        "sqs": "list_queues",
        "sts": "get_caller_identity",
        "lambda": "list_functions",
        "iam": "list_roles",
        "cloudfront": "list_distributions",
        "events": "list_rules",
        "logs": "describe_log_groups",
        "apigatewayv2": "get_apis",
        "dynamodbstreams": "list_streams",
    }
    for service, method in calls.items():
        client = session.client(service, endpoint_url=endpoint)  # type: ignore[call-overload]
        getattr(client, method)()
    ec2 = session.client("ec2", endpoint_url=endpoint)
    IMAGE.append(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    session.client("cloudformation", endpoint_url=endpoint).create_stack(
        StackName="warm-up",
        TemplateBody=json.dumps(
            {"Resources": {"B": {"Type": "AWS::S3::Bucket"}, "Q": {"Type": "AWS::SQS::Queue"}}}
        ),
    )


class CountingClient:
    """A boto3 client that counts the calls made through it, by operation."""

    def __init__(self, service: str, client: Any, counts: Counter[str]) -> None:
        self._service = service
        self._client = client
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if (
            callable(attr)
            and not name.startswith("_")
            and name not in ("exceptions", "meta", "get_paginator", "get_waiter", "can_paginate")
        ):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self._counts[f"{self._service}.{name}"] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


@dataclass
class AwsEnv:
    endpoint: str
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def image(self) -> str:
        return IMAGE[0]

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]

    def factory(self) -> ClientFactory:
        """A client factory whose clients count their calls into `self.calls`."""
        return ClientFactory(REGION, wrap=lambda service, c: CountingClient(service, c, self.calls))

    def settings(self, **values: Any) -> Settings:
        return Settings(**values)

    def moto_api(self, path: str, body: Any) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def set_cost_and_usage(self, *results: dict[str, Any]) -> None:
        """Queue answers of GetCostAndUsage (moto's own API for it)."""
        self.moto_api("/moto-api/static/ce/cost-and-usage-results", {"results": list(results)})


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    for name in list(__import__("os").environ):
        if name.startswith("CODECDASH_"):
            monkeypatch.delenv(name)
    _generous_timeouts(monkeypatch)
    env = AwsEnv(moto_server)
    env.moto_api("/moto-api/reset", {})
    aws_clients._DEFAULT.clear()
    costs._STATES.clear()
    yield env
    aws_clients._DEFAULT.clear()
    costs._STATES.clear()


def _generous_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto shares this process (and a busy test machine): give its answers time. A test
    that wants a timeout sets a part's `timeout_s` itself."""
    from codecdash.sources.aws import _common as common
    from codecdash.sources.aws.costs import CostsSource
    from codecdash.sources.aws.fleet import FleetSource
    from codecdash.sources.aws.storage import StorageSource

    original = common.Part.__init__

    def patient(self: Any, name: str, fetch: Any, *, ttl_s: float, timeout_s: float = 4.0) -> None:
        original(self, name, fetch, ttl_s=ttl_s, timeout_s=60.0)

    monkeypatch.setattr(common.Part, "__init__", patient)
    for source in (CostsSource, FleetSource, StorageSource):
        monkeypatch.setattr(source, "timeout_s", 90.0)


_serializer = TypeSerializer()


def serialize(value: dict[str, Any]) -> dict[str, Any]:
    def convert(v: Any) -> Any:
        if isinstance(v, float):
            return Decimal(str(v))
        if isinstance(v, dict):
            return {k: convert(x) for k, x in v.items()}
        if isinstance(v, list):
            return [convert(x) for x in v]
        return v

    return {k: _serializer.serialize(convert(v)) for k, v in value.items() if v is not None}


def create_experiments_table(client: Any, table: str) -> str:
    """An experiments table (key ``id``, a stream of new and old images); its stream's ARN."""
    answer = client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(answer["TableDescription"]["LatestStreamArn"])


def put_experiment(client: Any, table: str, **item: Any) -> dict[str, Any]:
    item.setdefault("status", "completed")
    item.setdefault("created_at", time.time())
    client.put_item(TableName=table, Item=serialize(item))
    return item
