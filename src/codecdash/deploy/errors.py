"""boto3 failures of a deployment, said as clear messages."""

from __future__ import annotations

from codecdash.deploy.package import DeployError

PERMISSIONS_DOC = "docs/aws.md (section 'What the deployer needs')"


def explain(exc: Exception, doing: str) -> DeployError:
    """A boto3 failure as a clear message that says what to do."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    from codecdash.aws_clients import ACCESS_DENIED, error_code

    if isinstance(exc, NoCredentialsError):
        return DeployError(
            "no AWS credentials found. Configure them (`aws configure`, `aws sso login`, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and run again."
        )
    if isinstance(exc, NoRegionError):
        return DeployError(
            "no AWS region: pass --region, or set AWS_REGION or CODECDASH_AWS_REGION."
        )
    if isinstance(exc, EndpointConnectionError):
        return DeployError(f"{doing}: cannot reach AWS ({exc}). Check the network and region.")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if code in ("ExpiredToken", "ExpiredTokenException"):
            return DeployError(
                "the AWS credentials have expired: refresh them "
                "(`aws sso login`, or new session keys) and run again."
            )
        if code in ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"):
            return DeployError(
                f"the AWS credentials were rejected ({code}): check "
                "AWS_PROFILE / AWS_ACCESS_KEY_ID and the secret key."
            )
        if code in ACCESS_DENIED:
            return DeployError(
                f"{doing}: permission denied ({exc.operation_name}: {message}). "
                f"The deploying identity needs the permissions listed in {PERMISSIONS_DOC}."
            )
        return DeployError(f"{doing}: {exc.operation_name} failed: {code}: {message}")
    return DeployError(f"{doing}: {exc}")
