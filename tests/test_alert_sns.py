"""Alerts through Amazon SNS, against moto's server: a topic with an SQS queue subscribed
(what a team would subscribe: e-mail, SMS, a Lambda, a chat bridge)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from alert_fixtures import snapshot
from aws_fixtures import *  # noqa: F403
from aws_fixtures import AwsEnv
from codecdash.alerts.channels import DeliveryError, build_channels
from codecdash.alerts.service import AlertService, send_test
from codecdash.config import Settings
from codecdash.store import Store

pytestmark = pytest.mark.aws


def topic_with_queue(aws: AwsEnv) -> tuple[str, str]:
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="codecdash-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue


def received(aws: AwsEnv, queue: str) -> list[dict[str, Any]]:
    answer = aws.client("sqs").receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_alerts_published_to_a_topic(aws: AwsEnv, settings: Settings) -> None:
    topic, queue = topic_with_queue(aws)
    s = settings.model_copy(
        update={
            "alert_sns_topic_arn": topic,
            "alert_timeout_seconds": 30,
            "alert_rules": {"orchestrator_down": {"pending_seconds": 0}},
        }
    )
    send_test(build_channels(s), "sns", s)
    (test,) = received(aws, queue)
    assert test["Subject"] == "[codecdash] Test notification"
    assert "this channel works" in test["Message"]
    store = Store(s.database_url)
    svc = AlertService(s, store)
    now = time.time()
    svc.evaluate(snapshot(infrastructure={"orchestrator": {"status": "down"}}), now)
    assert svc.deliver(now) == 1
    assert svc.deliver(now + 1) == 0
    (fired,) = received(aws, queue)
    assert fired["Subject"] == "[codecdash] FIRING: 1 alert (orchestrator_down)"
    assert "critical · orchestrator_down: The orchestrator is down" in fired["Message"]
    assert fired["MessageAttributes"]["severity"]["Value"] == "critical"
    store.close()


def test_a_missing_topic_is_a_clear_error(aws: AwsEnv, settings: Settings) -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    s = settings.model_copy(update={"alert_sns_topic_arn": arn, "alert_timeout_seconds": 30})
    with pytest.raises(DeliveryError, match="Publish: NotFound") as caught:
        send_test(build_channels(s), "sns", s)
    assert caught.value.retry is False
