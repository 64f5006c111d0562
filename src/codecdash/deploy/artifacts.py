"""The Lambda package's upload: a private bucket of this account with an unguessable name,
every request made with ``ExpectedBucketOwner`` so that a bucket of the same name in another
account (made first, by someone who guessed it) is refused instead of receiving the code."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from codecdash.deploy.errors import explain
from codecdash.deploy.package import DeployError, Echo

MISSING_BUCKET = ("404", "NoSuchBucket", "NotFound")
MISSING_KEY = ("404", "NoSuchKey", "NotFound")
NOT_OURS = ("403", "AccessDenied", "Forbidden")
Step = Callable[[str, Callable[[], Any]], Any]


def new_bucket_name() -> str:
    """``codecdash-artifacts-`` and 16 random hex digits: nobody can make it first."""
    return f"codecdash-artifacts-{secrets.token_hex(8)}"


def code_key(data: bytes) -> str:
    """The package's key: content-addressed, so an unchanged package is not uploaded again."""
    return f"codecdash/lambda-{hashlib.sha256(data).hexdigest()[:20]}.zip"


def upload_code(
    s3: Any,
    *,
    data: bytes,
    bucket: str,
    account: str,
    region: str,
    step: Step,
    echo: Echo,
) -> tuple[str, str]:
    """Uploads `data` to `bucket` (made, private, when missing); (bucket, key)."""
    from botocore.exceptions import ClientError

    from codecdash.aws_clients import error_code

    key = code_key(data)
    owner = {"ExpectedBucketOwner": account}
    try:
        s3.head_bucket(Bucket=bucket, **owner)
    except ClientError as exc:
        code = error_code(exc)
        if code in NOT_OURS:
            raise DeployError(
                f"the artifacts bucket {bucket} belongs to another account (or this identity "
                "may not read it): deploy refuses to upload code there. Pass "
                "--artifacts-bucket with a bucket of this account, or leave it out to make one"
            ) from None
        if code not in MISSING_BUCKET:
            raise explain(exc, f"checking the artifacts bucket {bucket}") from None
        echo(f"Creating the artifacts bucket {bucket}")
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        step(f"creating bucket {bucket}", lambda: s3.create_bucket(**kwargs))
        step(
            f"blocking public access to {bucket}",
            lambda: s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
                **owner,
            ),
        )
    try:
        s3.head_object(Bucket=bucket, Key=key, **owner)
        echo(f"Lambda package already uploaded: s3://{bucket}/{key}")
    except ClientError as exc:
        if error_code(exc) not in MISSING_KEY:
            raise explain(exc, f"checking s3://{bucket}/{key}") from None
        echo(f"Uploading the Lambda package to s3://{bucket}/{key}")
        step(
            "uploading the Lambda package",
            lambda: s3.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType="application/zip", **owner
            ),
        )
    return bucket, key
