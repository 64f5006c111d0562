"""Checking the AWS resources as the sources need them (for `codecdash doctor`).

:class:`Checkup` makes the findings: it runs a source's own call and, when AWS refuses it,
says why and how to fix it. The experiments table's check is here (its key, its stream) and
its read replica's; the fleet, storage and costs sources check theirs in their ``check`` methods.
The stream rule (:func:`stream_arn`) is also the one `codecdash deploy` applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from codecdash.aws_clients import ACCESS_DENIED, describe_error, error_code
from codecdash.sources.base import SourceError
from codecdash.sources.checks import FAIL, OK, WARN, Finding, Status

STREAM_VIEW: Final = "NEW_AND_OLD_IMAGES"


class Checkup:
    """The findings of a check, in order."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, status: Status, what: str, detail: str = "", fix: str = "") -> None:
        self.findings.append(Finding(status, what, detail, fix))

    def call(
        self,
        what: str,
        call: Callable[[], Any],
        fix: str,
        missing: tuple[str, ...] = (),
        ok: Callable[[Any], str] | None = None,
    ) -> Any:
        """Runs `call`; None when it failed, and why is a finding, with the fix (or the
        permission to grant, when AWS refused it to this identity). `missing`: the error
        codes that mean the resource does not exist. `ok(answer)`: the detail of the finding
        that it worked, when that is all there is to say."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = call()
        except ClientError as exc:
            code = error_code(exc)
            reason = describe_error(exc)
            if "denied" in reason or code in ACCESS_DENIED:
                self.add(
                    FAIL,
                    what,
                    reason,
                    f"allow {exc.operation_name} on this resource to this identity "
                    "(docs/aws.md lists the permissions of each source)",
                )
            elif code in missing or "does not exist" in reason or "not found" in reason.lower():
                self.add(FAIL, what, f"not found ({reason})", fix)
            else:
                self.add(FAIL, what, reason, fix)
        except (BotoCoreError, SourceError) as exc:
            self.add(FAIL, what, describe_error(exc), fix)
        else:
            if ok is not None:
                self.add(OK, what, ok(answer))
            return answer
        return None


def stream_arn(table: dict[str, Any]) -> str:
    """The stream of a ``DescribeTable`` answer's ``Table`` that keeps the read replica
    (new and old images); "" when the table has none."""
    spec = table.get("StreamSpecification") or {}
    if spec.get("StreamEnabled") and spec.get("StreamViewType") == STREAM_VIEW:
        return str(table.get("LatestStreamArn", ""))
    return ""


def enable_stream(table: str) -> str:
    """The command that gives `table` the stream the read replica needs."""
    return (
        f"aws dynamodb update-table --table-name {table} --stream-specification "
        f"StreamEnabled=true,StreamViewType={STREAM_VIEW}"
    )


def check_read_model(s3: Any, bucket: str, key: str) -> list[Finding]:
    """The read replica of the experiments: published, how large, how recent."""
    checkup = Checkup()
    checkup.call(
        "experiments read replica",
        lambda: s3.head_object(Bucket=bucket, Key=key),
        "codecdash deploy --stack STACK --rebuild-read-model (once); the deployed stream "
        "function keeps it current",
        missing=("404", "NoSuchKey", "NotFound"),
        ok=lambda head: (
            f"s3://{bucket}/{key}: {int(head.get('ContentLength', 0)):,} bytes, "
            f"published {head.get('LastModified')}"
        ),
    )
    return checkup.findings


def check_table(client: Any, name: str, region: str | None) -> list[Finding]:
    """The experiments table: its key and its stream."""
    checkup = Checkup()
    what = f"experiments table {name}"
    described = checkup.call(
        what,
        lambda: client.describe_table(TableName=name),
        f"check the name and the region ({region})",
        missing=("ResourceNotFoundException",),
    )
    if described is None:
        return checkup.findings
    table = described["Table"]
    keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
    if keys != {"id": "HASH"}:
        checkup.add(
            FAIL,
            what,
            f"key schema is {keys}, not a partition key `id`",
            "the experiments table needs partition key id (string) and no sort key",
        )
        return checkup.findings
    checkup.add(OK, what, f"about {table.get('ItemCount', 0)} items")
    if stream_arn(table):
        checkup.add(OK, f"{what} stream", STREAM_VIEW)
    else:
        checkup.add(
            FAIL,
            f"{what} stream",
            "no stream with old and new images",
            f"{enable_stream(name)}, then deploy again",
        )
    return checkup.findings


# -- the deployed dashboard itself (`codecdash doctor --stack NAME`) ----------------------------
SNAPSHOT_MAX_AGE_S: Final = 300  # the stack's alarm fires at the same age


def check_alarms(cloudwatch: Any, stack: str) -> list[Finding]:
    """The state of each alarm the stack made (their names start with the stack's)."""
    checkup = Checkup()
    paginator = cloudwatch.get_paginator("describe_alarms")
    pages = checkup.call(
        f"alarms of {stack}",
        lambda: list(paginator.paginate(AlarmNamePrefix=f"{stack}-", AlarmTypes=["MetricAlarm"])),
        "check the stack name and the region",
    )
    if pages is None:
        return checkup.findings
    alarms = [a for page in pages for a in page.get("MetricAlarms", [])]
    if not alarms:
        checkup.add(
            WARN,
            f"alarms of {stack}",
            "none found",
            f"deploy again with the current template: codecdash deploy --stack {stack}",
        )
    for alarm in sorted(alarms, key=lambda a: str(a["AlarmName"])):
        name = str(alarm["AlarmName"])
        state = str(alarm.get("StateValue", "INSUFFICIENT_DATA"))
        if state == "OK":
            checkup.add(OK, f"alarm {name}", "OK")
        elif state == "ALARM":
            reason = str(alarm.get("StateReason", ""))[:200]
            checkup.add(
                FAIL,
                f"alarm {name}",
                f"ALARM: {reason}" if reason else "ALARM",
                str(alarm.get("AlarmDescription", "")) or "see the stack's health dashboard",
            )
        else:
            checkup.add(WARN, f"alarm {name}", "no data yet")
    return checkup.findings


def check_snapshot_age(s3: Any, bucket: str, key: str, now: float) -> list[Finding]:
    """How old the snapshot CloudFront serves is (the schedule writes it every minute)."""
    checkup = Checkup()
    head = checkup.call(
        "snapshot",
        lambda: s3.head_object(Bucket=bucket, Key=key),
        "deploy again: the deployment writes a first snapshot",
        missing=("404", "NoSuchKey", "NotFound"),
    )
    if head is None:
        return checkup.findings
    age = now - head["LastModified"].timestamp()
    if age <= SNAPSHOT_MAX_AGE_S:
        checkup.add(OK, "snapshot", f"written {max(0, round(age))} s ago")
    else:
        checkup.add(
            FAIL,
            "snapshot",
            f"written {round(age / 60)} minutes ago (the schedule writes it every minute)",
            "look at the snapshot function's log group (/aws/lambda/STACK-snapshot)",
        )
    return checkup.findings


def check_failure_queue(sqs: Any, url: str) -> list[Finding]:
    """Stream batches that failed every retry, recorded in the stack's failure queue."""
    checkup = Checkup()
    answer = checkup.call(
        "stream failure queue",
        lambda: sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        ),
        "deploy again with the current template",
    )
    if answer is None:
        return checkup.findings
    count = int(answer.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
    if count:
        checkup.add(
            FAIL,
            "stream failure queue",
            f"{count} failed batch{'es' if count != 1 else ''} recorded",
            "read them from the queue (they name the stream records), fix the cause, then "
            "rebuild (codecdash deploy --stack STACK --rebuild-read-model) and purge the "
            "queue",
        )
    else:
        checkup.add(OK, "stream failure queue", "empty")
    return checkup.findings
