"""The Lambda entry points against moto: the API through mangum with real API Gateway HTTP
API (payload 2.0) events, the scheduled snapshot writer, and the DynamoDB Streams handler."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aws_fixtures import *  # noqa: F403
from aws_fixtures import AWS_WARNINGS, REGION, AwsEnv, create_experiments_table
from codecdash import aws_clients, aws_lambda
from codecdash.snapshot_models import Snapshot
from codecdash.sources.aws.costs import CACHE_KEY
from codecdash.sources.aws.read_model import NO_REPLICA_BUCKET

pytestmark = [pytest.mark.aws, *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS)]

SITE = "codecdash-site"
TABLE = "experiments"


def http_event(
    path: str, query: str = "", headers: dict[str, str] | None = None, method: str = "GET"
) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format 2.0, as Lambda receives it."""
    domain = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
    all_headers = {
        "accept": "application/json",
        "accept-encoding": "gzip, deflate, br",
        "content-length": "0",
        "host": domain,
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "x-amzn-trace-id": "Root=1-6745b2a0-1a2b3c4d5e6f7a8b9c0d1e2f",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "GET /{proxy+}" if path != "/" else "GET /",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": domain,
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": all_headers["user-agent"],
            },
            "requestId": "C1YbKg6ZoAMEVJw=",
            "routeKey": "GET /{proxy+}" if path != "/" else "GET /",
            "stage": "$default",
            "time": "26/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795600800000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if path != "/":
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    return event


def body_of(response: dict[str, Any]) -> bytes:
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    return gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw


@pytest.fixture
def lambda_env(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AwsEnv]:
    """The environment the template gives the functions, on moto resources."""
    aws.client("s3").create_bucket(Bucket=SITE)
    queue = aws.client("sqs").create_queue(QueueName="training")["QueueUrl"]
    aws.client("sqs").send_message(QueueUrl=queue, MessageBody="job")
    for name, value in {
        "CODECDASH_SOURCE": "aws",
        "CODECDASH_DATABASE_URL": str(tmp_path / "lambda.db"),
        "CODECDASH_AWS_SITE_BUCKET": SITE,
        "CODECDASH_AWS_TRAINING_QUEUE_URL": queue,
        "CODECDASH_AWS_EXPERIMENTS_TABLE": "",
        "CODECDASH_AWS_BUCKETS": "",
    }.items():
        monkeypatch.setenv(name, value)
    aws_clients._DEFAULT[None] = aws.factory()  # count every call the functions make
    aws_lambda.reset()
    yield aws
    aws_lambda.reset()


def test_api_through_mangum(lambda_env: AwsEnv) -> None:
    health = aws_lambda.handler(http_event("/api/v1/health"), None)
    assert health["statusCode"] == 200
    assert json.loads(body_of(health))["status"] == "ok"

    first = aws_lambda.handler(http_event("/api/v1/dashboard"), None)
    assert first["statusCode"] == 200
    headers = {k.lower(): v for k, v in first["headers"].items()}
    assert headers["content-type"].startswith("application/json")
    snapshot = json.loads(body_of(first))
    Snapshot.model_validate(snapshot)
    assert snapshot["infrastructure"]["training_workers"]["queue_depth"] == 1
    rows = {row["name"]: row for row in snapshot["sources"]}
    assert rows["aws.fleet.sqs"]["ok"] is True
    # No Cost Explorer figures in the shared cache yet: that row says so; the page still works.
    assert rows["aws.costs"]["ok"] is False

    for _attempt in range(3):  # the ETag moves on every few seconds (a slow machine…)
        etag = aws_lambda.handler(http_event("/api/v1/dashboard"), None)["headers"]["etag"]
        again = aws_lambda.handler(
            http_event("/api/v1/dashboard", headers={"if-none-match": etag}), None
        )
        if again["statusCode"] == 304:
            break
    assert again["statusCode"] == 304

    listed = aws_lambda.handler(http_event("/api/v1/experiments", "limit=5&sort=-created_at"), None)
    assert listed["statusCode"] == 200
    assert json.loads(body_of(listed))["items"] == []

    page = aws_lambda.handler(http_event("/"), None)
    assert page["statusCode"] == 200
    assert b"<!doctype html>" in body_of(page).lower()
    # The API function never asks Cost Explorer (it has no permission to).
    assert not any(name.startswith("ce.") for name in lambda_env.calls)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/api/v1/events", "no event stream"),
        ("/api/v1/alerts", "no alerts on the AWS deployment"),
        ("/api/v1/alerts/history", "no alerts on the AWS deployment"),
    ],
)
def test_what_aws_has_not_is_refused_at_once_with_the_reason(
    lambda_env: AwsEnv, path: str, reason: str
) -> None:
    started = time.monotonic()
    response = aws_lambda.handler(http_event(path, headers={"accept": "text/event-stream"}), None)
    assert time.monotonic() - started < 1
    assert response["statusCode"] == 404
    error = json.loads(response["body"])["error"]
    assert error["code"] == "not_found" and reason in error["message"]
    # A path that only starts alike is the API's to answer.
    other = aws_lambda.handler(http_event("/api/v1/alertsx"), None)
    assert "AWS deployment" not in other.get("body", "")


def test_the_deployed_page_is_told_what_the_api_has_not() -> None:
    from codecdash.deploy.stack import aws_site_files
    from codecdash.export import site_files

    index = next(f for f in aws_site_files() if f.name == "index.html").body
    assert b'<meta name="codecdash-events" content="off">' in index
    assert b'<meta name="codecdash-alerts" content="off">' in index
    served = next(f for f in site_files("") if f.name == "index.html").body
    assert b'content="off"' not in served


def test_the_api_answers_only_requests_through_cloudfront(
    lambda_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODECDASH_AWS_ORIGIN_SECRET", "s3cr3t-from-the-stack")
    aws_lambda.reset()
    direct = aws_lambda.handler(http_event("/api/v1/health"), None)  # the execute-api URL
    assert direct["statusCode"] == 403
    assert json.loads(direct["body"])["error"]["code"] == "forbidden"
    wrong = aws_lambda.handler(
        http_event("/api/v1/health", headers={"x-codecdash-origin": "guess"}), None
    )
    assert wrong["statusCode"] == 403
    through = aws_lambda.handler(
        http_event("/api/v1/health", headers={"x-codecdash-origin": "s3cr3t-from-the-stack"}),
        None,
    )
    assert through["statusCode"] == 200
    # Without a secret configured (serve --source aws, older stacks) nothing is checked.
    monkeypatch.delenv("CODECDASH_AWS_ORIGIN_SECRET")
    aws_lambda.reset()
    assert aws_lambda.handler(http_event("/api/v1/health"), None)["statusCode"] == 200


def test_errors_are_json(lambda_env: AwsEnv) -> None:
    missing = aws_lambda.handler(http_event("/api/v1/experiments/nope"), None)
    assert missing["statusCode"] == 404
    assert "error" in json.loads(body_of(missing))
    bad = aws_lambda.handler(http_event("/api/v1/experiments", "limit=0"), None)
    assert bad["statusCode"] in (400, 422)


def test_api_reads_costs_from_the_shared_cache(lambda_env: AwsEnv) -> None:
    now = time.time()
    entry = {
        "fetched_at": now - 60,
        "attempted_at": now - 60,
        "month": time.strftime("%Y-%m", time.gmtime(now)),
        "day": time.strftime("%Y-%m-%d", time.gmtime(now)),
        "calls_today": 2,
        "month_to_date_usd": 1234.5,
        "forecast_month_usd": 2500.0,
        "forecast_method": "cost_explorer",
        "cost_breakdown": [
            {"component": "training", "usd": 1000.0},
            {"component": "inference", "usd": 234.5},
        ],
        "error": None,
    }
    lambda_env.client("s3").put_object(Bucket=SITE, Key=CACHE_KEY, Body=json.dumps(entry))
    snapshot = json.loads(body_of(aws_lambda.handler(http_event("/api/v1/dashboard"), None)))
    assert snapshot["summary"]["month_to_date_usd"] == 1234.5
    assert snapshot["cost_breakdown"][0] == {"component": "training", "usd": 1000.0}
    assert snapshot["costs_as_of"] is not None
    assert not any(name.startswith("ce.") for name in lambda_env.calls)


def test_snapshot_handler_writes_the_site_snapshot(lambda_env: AwsEnv) -> None:
    now = time.time()
    t = time.gmtime(now)
    day = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
    lambda_env.set_cost_and_usage(
        {
            "ResultsByTime": [
                {
                    "TimePeriod": {"Start": day, "End": day},
                    "Total": {},
                    "Groups": [
                        {
                            "Keys": ["Component$training"],
                            "Metrics": {"UnblendedCost": {"Amount": "42.5", "Unit": "USD"}},
                        }
                    ],
                    "Estimated": True,
                }
            ],
            "DimensionValueAttributes": [],
        }
    )
    scheduled = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:00Z", t),
        "region": REGION,
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/snapshot"],
        "detail": {},
    }
    result = aws_lambda.snapshot_handler(scheduled, None)
    # One write a minute: the object CloudFront serves as /api/v1/dashboard.
    assert result["written"] == [f"s3://{SITE}/api/v1/dashboard"]
    assert (
        lambda_env.calls["s3.put_object"] == 1 + 2
    )  # the snapshot; the cost cache's claim and figures
    s3 = lambda_env.client("s3")
    obj = s3.get_object(Bucket=SITE, Key="api/v1/dashboard")
    assert obj["ContentType"] == "application/json"
    assert obj["CacheControl"] == "public, max-age=15"
    snapshot = json.loads(obj["Body"].read())
    Snapshot.model_validate(snapshot)
    # The scheduled minute is the snapshot's time.
    assert snapshot["generated_at"].startswith(time.strftime("%Y-%m-%dT%H:%M:00", t))
    assert snapshot["summary"]["month_to_date_usd"] == 42.5
    assert snapshot["infrastructure"]["training_workers"]["queue_depth"] == 1
    # The schedule asked Cost Explorer once (usage; the forecast is the burn rate)…
    assert lambda_env.calls["ce.get_cost_and_usage"] == 1
    assert snapshot["cost_breakdown"] == [{"component": "training", "usd": 42.5}]
    # …and a minute later, a warm container asks nothing of Cost Explorer.
    aws_lambda.snapshot_handler(scheduled, None)
    assert lambda_env.calls["ce.get_cost_and_usage"] == 1
    assert (
        json.loads(s3.get_object(Bucket=SITE, Key=CACHE_KEY)["Body"].read())["month_to_date_usd"]
        == 42.5
    )


def test_snapshot_handler_keeps_working_when_a_service_fails(
    lambda_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODECDASH_AWS_STACK_NAME", "no-such-stack")
    result = aws_lambda.snapshot_handler({}, None)
    assert "aws.fleet.cloudformation" in result["failing"]
    snapshot = json.loads(
        lambda_env.client("s3").get_object(Bucket=SITE, Key="api/v1/dashboard")["Body"].read()
    )
    assert snapshot["infrastructure"]["training_workers"]["queue_depth"] == 1
    # What the public snapshot says of the failure: no ARN, no account id, no AWS message.
    row = next(s for s in snapshot["sources"] if s["name"] == "aws.fleet.cloudformation")
    assert row["error"] and "123456789012" not in row["error"] and "arn:" not in row["error"]


def test_without_a_replica_bucket_the_experiments_say_what_to_set(
    lambda_env: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read replica is the one way experiments are read on AWS: with a table and no
    replica bucket, the routes answer 503 and the snapshot's source row say what to set,
    and the stream function refuses its batches (retried once the stack is deployed)."""
    monkeypatch.setenv("CODECDASH_AWS_EXPERIMENTS_TABLE", TABLE)
    arn = create_experiments_table(lambda_env.client("dynamodb"), TABLE)
    response = aws_lambda.handler(http_event("/api/v1/experiments/e01"), None)
    assert response["statusCode"] == 503
    assert json.loads(body_of(response))["error"]["message"] == NO_REPLICA_BUCKET
    listed = aws_lambda.handler(http_event("/api/v1/experiments", "limit=5"), None)
    assert listed["statusCode"] == 503
    dashboard = aws_lambda.handler(http_event("/api/v1/dashboard"), None)
    assert dashboard["statusCode"] == 200
    rows = {row["name"]: row for row in json.loads(body_of(dashboard))["sources"]}
    assert rows["aws.experiments"]["error"] == NO_REPLICA_BUCKET
    record = {"eventName": "INSERT", "eventSourceARN": arn, "dynamodb": {}}
    with pytest.raises(RuntimeError, match="CODECDASH_AWS_READ_MODEL_BUCKET"):
        aws_lambda.stream_handler({"Records": [record]}, None)
    assert not any(name.endswith(("scan", "get_item")) for name in lambda_env.calls)
