"""The stack's parameters from the settings, and its parameters and outputs read back: what
a deployment passes CloudFormation and finds in it, apart from the AWS calls (stack.py)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from codecdash.config import Settings
from codecdash.deploy.package import DeployError

TEMPLATE = Path("infrastructure") / "cloudformation" / "dashboard.yaml"


def find_template(given: Path | None = None) -> Path:
    candidates = (
        [given]
        if given
        else [
            Path.cwd() / TEMPLATE,
            Path(__file__).resolve().parents[3] / TEMPLATE,  # a source checkout (src layout)
        ]
    )
    for path in candidates:
        if path is not None and path.is_file():
            return path
    raise DeployError(
        f"template not found ({TEMPLATE}): run from the codecdash repository or pass --template"
    )


def _arn_of_queue(url: str, region: str) -> str:
    # https://sqs.<region>.amazonaws.com/<account>/<name>
    parts = url.rstrip("/").split("/")
    if len(parts) < 5:
        raise DeployError(f"not an SQS queue URL: {url}")
    host = parts[2]
    queue_region = host.split(".")[1] if host.startswith("sqs.") else region
    partition = "aws-cn" if host.endswith(".cn") else "aws"
    return f"arn:{partition}:sqs:{queue_region}:{parts[3]}:{parts[4]}"


def stack_parameters(
    settings: Settings,
    region: str,
    stream_arn: str,
    code: tuple[str, str],
    arch: str,
    site_origin: str,
    *,
    release: str = "",
    alarm_email: str = "",
    health_dashboard: bool = False,
) -> list[dict[str, str]]:
    queues = [u for u in (settings.aws_training_queue_url, settings.aws_inference_queue_url) if u]
    values = {
        "CodeBucket": code[0],
        "CodeKey": code[1],
        "Architecture": arch,
        "SiteOrigin": site_origin,
        "ExperimentsTable": settings.aws_experiments_table or "",
        "ExperimentsStreamArn": stream_arn,
        "ResearchStackName": settings.aws_stack_name or "",
        "TrainingQueueUrl": settings.aws_training_queue_url or "",
        "InferenceQueueUrl": settings.aws_inference_queue_url or "",
        "QueueArns": ",".join(_arn_of_queue(u, region) for u in queues),
        "TrainingAsg": settings.aws_training_asg or "",
        "InferenceAsg": settings.aws_inference_asg or "",
        "OrchestratorInstanceId": settings.aws_orchestrator_instance_id or "",
        "Buckets": ",".join(settings.aws_buckets),
        "BucketArns": ",".join(f"arn:aws:s3:::{b}" for b in settings.aws_buckets),
        "EfsId": settings.aws_efs_id or "",
        "MetricsNamespace": settings.aws_metrics_namespace or "AIVideoCodec",
        "CostTag": settings.aws_cost_tag or "Component",
        "CostCacheSeconds": str(int(max(3600, settings.aws_cost_cache_seconds))),
        "CostForecast": settings.aws_cost_forecast,
        "Release": release,
        "AlarmEmail": alarm_email,
        "WithHealthDashboard": "true" if health_dashboard else "false",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def parameter_values(stack: dict[str, Any] | None) -> dict[str, str]:
    if not stack:
        return {}
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}


def new_origin_secret() -> str:
    """The value CloudFront sends the API in x-codecdash-origin (32 random bytes)."""
    return secrets.token_urlsafe(32)


def output_values(stack: dict[str, Any] | None) -> dict[str, str]:
    if not stack:
        return {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
