"""Settings: built-in defaults, then a TOML file, then `CODECDASH_*` environment variables.

Every field of :class:`Settings` is a setting; its environment variable is
``CODECDASH_`` followed by the field name in capitals (``monthly_budget_usd`` →
``CODECDASH_MONTHLY_BUDGET_USD``). ``docs/configuration.md`` lists them all and a
test keeps that list complete.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "CODECDASH_"
DEFAULT_CONFIG_FILE = "codecdash.toml"


class ConfigError(Exception):
    """A setting could not be read; the message says which and why."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = Field("codecdash.db", description="SQLite file path or SQLAlchemy URL.")
    source: Literal["local", "aws"] = Field("local", description="Where facts come from.")
    monthly_budget_usd: float = Field(5000.0, ge=0, description="Monthly budget in USD.")
    target_compression_pct: float = Field(90.0, description="Target bitrate reduction, %.")
    target_psnr_db: float = Field(35.0, description="Target PSNR in dB.")
    target_ms_ssim: float = Field(0.95, gt=0, lt=1, description="Target MS-SSIM (0-1).")
    quality_metric: Literal["psnr", "ms_ssim"] = Field("psnr", description="Quality headline.")
    compression_metric: Literal["reported", "bd_rate"] = Field(
        "reported",
        description="Best Compression from reported bitrate_reduction_pct or from BD-rate.",
    )
    default_anchor: str | None = Field(None, description="Anchor used for bd_rate_pct.")
    refresh_seconds: float = Field(30.0, gt=0, le=3600, description="Page refresh interval, s.")
    private: bool = Field(False, description="Require a token for reads too.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header allow-list (comma-separated in the environment).",
    )
    artifacts_dir: str | None = Field(None, description="Directory counted as Storage.")
    artifacts_scan_seconds: float = Field(60.0, gt=0, description="Artifacts rescan period, s.")
    heartbeat_retention_days: float = Field(
        14.0, gt=0, description="Raw heartbeats older than this are pruned (days)."
    )
    metrics_raw_retention_days: float = Field(
        0.0,
        ge=0,
        description="Raw training-curve points of a metric that received nothing for this "
        "many days are dropped (its downsampled curve stays); 0 keeps them.",
    )
    training_loss_rise_pct: float = Field(
        50.0, gt=0, description="A run's smoothed loss this % above its lowest is 'rising'."
    )
    demo: bool = Field(False, description="Mark the snapshot as demo data.")
    rate_limit_per_minute: int = Field(
        6000, ge=1, description="Write requests per minute per token and per client address."
    )
    max_event_clients: int = Field(200, ge=1, description="Concurrent event-stream clients.")
    source_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of each source.")
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="A request not answered within this answers 503, s."
    )
    sqlite_busy_timeout_ms: int = Field(
        5000, ge=0, description="How long a SQLite write waits for a lock before 503, ms."
    )
    log_level: str = Field("info", description="Log level of the server.")
    pricing: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Hourly USD per instance type, {type: {on_demand, spot}} (JSON in the "
        "environment); overrides the agent's built-in table.",
    )
    # AWS source
    aws_region: str | None = Field(None, description="AWS region (else boto3's default).")
    aws_stack_name: str | None = Field(None, description="CloudFormation stack to report.")
    aws_experiments_table: str | None = Field(None, description="DynamoDB experiments table.")
    aws_training_queue_url: str | None = Field(None, description="SQS training queue URL.")
    aws_inference_queue_url: str | None = Field(None, description="SQS inference queue URL.")
    aws_training_asg: str | None = Field(None, description="Training Auto Scaling group.")
    aws_inference_asg: str | None = Field(None, description="Inference Auto Scaling group.")
    aws_orchestrator_instance_id: str | None = Field(
        None, description="EC2 instance id of the orchestrator (CloudWatch metrics)."
    )
    aws_buckets: list[str] = Field(
        default_factory=list, description="S3 buckets counted as Storage (comma-separated)."
    )
    aws_efs_id: str | None = Field(None, description="EFS file system counted as Storage.")
    aws_metrics_namespace: str = Field("AIVideoCodec", description="CloudWatch namespace.")
    aws_cost_tag: str = Field("Component", description="Cost-allocation tag for components.")
    aws_cost_cache_seconds: float = Field(21600.0, gt=0, description="Cost Explorer cache, s.")
    aws_site_bucket: str | None = Field(None, description="Bucket the snapshot is written to.")

    @field_validator("allowed_hosts", "aws_buckets", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("pricing", mode="before")
    @classmethod
    def _json_table(cls, value: Any) -> Any:
        if isinstance(value, str):
            import json

            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value

    @property
    def active_window_seconds(self) -> float:
        """A worker is active while its newest heartbeat is younger than this."""
        return 3 * self.refresh_seconds


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults < TOML file < environment < explicit overrides (command-line flags)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = Path(config_file) if config_file else Path(DEFAULT_CONFIG_FILE)
    if config_file or path.exists():
        values.update(_read_toml(path))
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Accept both flat keys and a [codecdash] table.
    table = data.get("codecdash", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [codecdash] must be a table")
    unknown = sorted(set(table) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    return dict(table)
