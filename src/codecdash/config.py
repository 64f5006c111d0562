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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from codecdash.experiments.vocabulary import CompressionMetric, QualityMetric

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
    quality_metric: QualityMetric = Field("psnr", description="Quality headline.")
    compression_metric: CompressionMetric = Field(
        "reported",
        description="Best Compression from reported bitrate_reduction_pct or from BD-rate.",
    )
    default_anchor: str | None = Field(None, description="Anchor used for bd_rate_pct.")
    default_anchors: dict[str, str] = Field(
        default_factory=dict,
        description="The anchor in force per test set, {dataset: anchor name}.",
    )
    method_from: str | None = Field(
        None,
        pattern=r"^(?:param:.+|tag:.+)$",
        description="Where an experiment without `method` finds one: `param:KEY` or `tag:PREFIX`.",
    )
    refresh_seconds: float = Field(30.0, gt=0, le=3600, description="Page refresh interval, s.")
    private: bool = Field(False, description="Require a token for reads too.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header allow-list (comma-separated in the environment).",
    )
    artifacts_dir: str | None = Field(None, description="Directory counted as Storage.")
    page_dir: str | None = Field(
        None,
        description="Page files to serve instead of the installed ones "
        "(`codecdash page eject`); missing files come from the installed copy.",
    )
    artifacts_scan_seconds: float = Field(60.0, gt=0, description="Artifacts rescan period, s.")
    heartbeat_retention_days: float = Field(
        14.0, gt=0, description="Raw heartbeats older than this are pruned (days)."
    )
    trash_retention_days: float = Field(
        30.0,
        ge=0,
        description="Deleted experiments stay in the trash (restorable) this many days; "
        "serve then purges them hourly with their training curves. 0 keeps them until "
        "`codecdash experiments purge`.",
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
    max_event_clients_per_address: int = Field(
        10, ge=1, description="Concurrent event-stream clients from one client address."
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description="Proxy addresses (or networks) whose X-Forwarded-For/-Proto are trusted; "
        "none by default (comma-separated in the environment).",
    )
    body_timeout_seconds: float = Field(
        15.0, gt=0, le=3600, description="A request body not received within this answers 408, s."
    )
    max_body_bytes_in_flight: int = Field(
        64 * 1024 * 1024,
        ge=4 * 1024 * 1024,
        description="Bytes of request bodies held at once; past it, writes answer 503.",
    )
    max_future_seconds: float = Field(
        900.0,
        ge=0,
        le=7 * 86400,
        description="How far in the future a reported time may be (clock skew), s.",
    )
    source_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of each source.")
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="A request not answered within this answers 503, s."
    )
    sqlite_busy_timeout_ms: int = Field(
        5000, ge=0, description="How long a SQLite write waits for a lock before 503, ms."
    )
    backup_dir: str | None = Field(
        None, description="Where `codecdash serve` puts scheduled backups (none: no schedule)."
    )
    backup_every_hours: float = Field(
        24.0, gt=0, le=8760, description="Hours between scheduled backups."
    )
    backup_keep: int = Field(7, ge=1, description="Scheduled backups kept (the newest).")
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
    aws_cost_cache_seconds: float = Field(86400.0, gt=0, description="Cost Explorer cache, s.")
    aws_cost_forecast: Literal["burn_rate", "cost_explorer"] = Field(
        "burn_rate",
        description="The month's forecast: burn_rate (month to date + the last 7 days' rate, "
        "no request) or cost_explorer (GetCostForecast: one more request a refresh, $0.30 a "
        "month at a refresh a day).",
    )
    aws_site_bucket: str | None = Field(None, description="Bucket the snapshot is written to.")
    release: str | None = Field(
        None, description="The deployed release this process runs (set by the stack)."
    )
    aws_origin_secret: SecretStr | None = Field(
        None, description="Header value CloudFront sends the API; other requests are refused."
    )
    aws_read_model_bucket: str | None = Field(
        None, description="Private bucket of the experiments' read replica (SQLite file)."
    )
    aws_read_model_key: str = Field(
        "read-model/codecdash.db", description="Object key of the read replica."
    )
    aws_read_model_refresh_seconds: float = Field(
        10.0, ge=0, description="How often a function checks the replica for a new copy, s."
    )
    # Alerts (codecdash/alerts; docs/alerts.md). Secrets are SecretStr: never shown.
    alert_rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-rule overrides, {rule: {setting: value}} ([alert_rules.NAME] tables; "
        "JSON or CODECDASH_ALERT_RULES__NAME__SETTING in the environment).",
    )
    alert_evaluate_seconds: float = Field(
        10.0, ge=1, le=3600, description="How often the alert rules are evaluated, s."
    )
    alert_dashboard_url: str | None = Field(None, description="Dashboard link in notifications.")
    alert_max_per_hour: int = Field(
        20, ge=1, description="Notifications a channel sends per hour at most (then grouped)."
    )
    alert_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Delivery timeout, s.")
    alert_max_attempts: int = Field(8, ge=1, le=100, description="Delivery attempts per message.")
    alert_webhook_url: SecretStr | None = Field(None, description="Generic JSON webhook URL.")
    alert_webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the webhook's X-Codecdash-Signature."
    )
    alert_slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook.")
    alert_teams_webhook_url: SecretStr | None = Field(None, description="Teams Workflows webhook.")
    alert_smtp_host: str | None = Field(None, description="SMTP server for e-mail alerts.")
    alert_smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    alert_smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="SMTP transport security."
    )
    alert_smtp_username: str | None = Field(None, description="SMTP login name.")
    alert_smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    alert_email_from: str | None = Field(None, description="Sender address of alert e-mail.")
    alert_email_to: list[str] = Field(
        default_factory=list, description="Recipients of alert e-mail (comma-separated)."
    )
    alert_sns_topic_arn: str | None = Field(None, description="Amazon SNS topic for alerts.")

    @field_validator(
        "allowed_hosts", "forwarded_allow_ips", "aws_buckets", "alert_email_to", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("pricing", "alert_rules", "default_anchors", mode="before")
    @classmethod
    def _json_table(cls, value: Any) -> Any:
        """A table given as text (an environment variable) is JSON."""
        if isinstance(value, str):
            import json

            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value

    @field_validator("alert_rules")
    @classmethod
    def _known_rules(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from codecdash.alerts.rules import check_overrides  # the rules declare their settings

        check_overrides(value)
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
    _nested_env(values, env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None


NESTED = "__"


def _nested_env(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """``CODECDASH_<TABLE>__<KEY>[__<KEY>…]`` sets one key inside a table setting
    (``CODECDASH_ALERT_RULES__BUDGET__ENABLED=false`` is ``[alert_rules.budget]
    enabled = false``); keys are taken in lower case and override the file's, key by key."""
    tables = {n for n, f in Settings.model_fields.items() if _is_table(f.annotation)}
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or NESTED not in variable:
            continue
        name, *path = variable.removeprefix(ENV_PREFIX).lower().split(NESTED)
        if name not in tables or not path or not all(path):
            raise ConfigError(
                f"{variable}: {ENV_PREFIX}<TABLE>{NESTED}<KEY> needs a table setting "
                f"({', '.join(sorted(tables))}) and non-empty keys"
            )
        table = values.get(name)
        if isinstance(table, str):  # the whole table as JSON, then keys on top of it
            table = Settings.model_validate({name: table}).model_dump()[name]
        node = values[name] = dict(table or {})
        for key in path[:-1]:
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[path[-1]] = env[variable]


def _is_table(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is dict


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
