"""Amazon SNS: one message per notification, published to a topic (boto3's own credentials
chain and ``AWS_ENDPOINT_URL`` apply)."""

from __future__ import annotations

from typing import Any

from codecdash.alerts import message
from codecdash.alerts.channels.base import DeliveryError
from codecdash.alerts.model import Notification

PERMANENT = frozenset(
    {
        "AuthorizationError",
        "NotFound",
        "InvalidParameter",
        "InvalidClientTokenId",
        "KMSDisabled",
        "KMSNotFound",
        "AccessDenied",
        "AccessDeniedException",
    }
)


def _subject(text: str) -> str:
    """SNS subjects: ASCII, no line breaks, at most 100 characters."""
    ascii_text = text.encode("ascii", "replace").decode().replace("?", "-")
    flat = " ".join(ascii_text.split())
    return flat if len(flat) <= 100 else flat[:99] + "-"


class SnsChannel:
    name = "sns"

    def __init__(self, topic_arn: str, timeout: float, client: Any = None) -> None:
        self.topic_arn = topic_arn
        self.timeout = timeout
        self._client = client

    def target(self) -> str:
        return self.topic_arn

    @property
    def region(self) -> str | None:
        parts = self.topic_arn.split(":")
        return parts[3] if len(parts) > 5 and parts[3] else None

    def client(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            from codecdash.aws_clients import ClientFactory

            config = Config(
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                retries={"max_attempts": 1, "mode": "standard"},
            )
            self._client = ClientFactory(self.region, config=config)("sns")
        return self._client

    def send(self, notification: Notification) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from codecdash.aws_clients import describe_error

        severity = max(
            (str(a.get("severity")) for a in notification.alerts),
            key=lambda s: (
                ("info", "warning", "critical").index(s)
                if s in ("info", "warning", "critical")
                else -1
            ),
            default="info",
        )
        try:
            self.client().publish(
                TopicArn=self.topic_arn,
                Subject=_subject(message.title(notification)),
                Message=message.body(notification),
                MessageAttributes={
                    "status": {"DataType": "String", "StringValue": notification.status},
                    "severity": {"DataType": "String", "StringValue": severity},
                },
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise DeliveryError(
                f"sns {self.topic_arn}: {describe_error(exc)}", retry=code not in PERMANENT
            ) from None
        except BotoCoreError as exc:
            raise DeliveryError(f"sns {self.topic_arn}: {describe_error(exc)}") from None
