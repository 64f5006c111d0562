"""Public error texts: no account ids, ARNs, access keys or AWS's own messages."""

from __future__ import annotations

import pytest

from codecdash.redact import MAX_CHARS, public_text


@pytest.mark.parametrize(
    ("raw", "public"),
    [
        (
            "GetItem: permission denied (AccessDeniedException): User: "
            "arn:aws:sts::123456789012:assumed-role/dash-ApiRole-1AB/dash-api is not "
            "authorized to perform: dynamodb:GetItem on resource: "
            "arn:aws:dynamodb:us-east-1:123456789012:table/experiments",
            "GetItem: permission denied (AccessDeniedException)",
        ),
        (
            "DescribeStacks: ValidationError: Stack with id research does not exist",
            "DescribeStacks: ValidationError",
        ),
        (
            "GetQueueAttributes: AWS.SimpleQueueService.NonExistentQueue: The specified "
            "queue does not exist for this wsdl version.",
            "GetQueueAttributes: AWS.SimpleQueueService.NonExistentQueue",
        ),
        (
            "BatchGetItem: ProvisionedThroughputExceededException: Rate exceeded",
            "BatchGetItem: ProvisionedThroughputExceededException",
        ),
        ("timed out after 6 s", "timed out after 6 s"),
        (
            "Could not connect to the endpoint URL: "
            '"https://sqs.us-east-1.amazonaws.com/123456789012/train"',
            'Could not connect to the endpoint URL: "<aws address>',
        ),
        ("role arn:aws-cn:iam::123456789012:role/x failed", "role <arn> failed"),
        ("key AKIAIOSFODNN7EXAMPLE leaked", "key <key> leaked"),
        ("account 123456789012 here", "account <account> here"),
        ("1234567890123 is not an account; 3.123456789012 neither", None),
        ("aws.fleet.sqs: first line\nsecond line with 123456789012", "aws.fleet.sqs: first line"),
    ],
)
def test_public_text(raw: str, public: str | None) -> None:
    assert public_text(raw) == (raw if public is None else public)


def test_public_text_is_short_and_keeps_none() -> None:
    assert public_text(None) is None
    assert len(public_text("x" * 5000) or "") == MAX_CHARS


def test_no_account_or_arn_survives() -> None:
    from codecdash.aws_clients import describe_error

    try:
        from botocore.exceptions import ClientError
    except ImportError:  # pragma: no cover - the aws extra is a dev dependency
        pytest.skip("botocore is not installed")
    error = ClientError(
        {
            "Error": {
                "Code": "AccessDenied",
                "Message": "User: arn:aws:sts::210987654321:assumed-role/r/s is not authorized "
                "to perform: s3:GetObject on resource: arn:aws:s3:::site/_codecdash/x",
            }
        },
        "GetObject",
    )
    text = public_text(describe_error(error)) or ""
    assert "210987654321" not in text and "arn:" not in text and "authorized" not in text
    assert text == "GetObject: permission denied (AccessDenied)"
