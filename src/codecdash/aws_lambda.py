"""AWS Lambda entry points.

- ``handler``: the API (the ASGI app through mangum) for API Gateway HTTP APIs, payload 2.0.
  Facts come from the AWS sources; Cost Explorer figures only from the shared S3 cache
  (this function never calls Cost Explorer). ``/api/v1/events`` answers 404 at once: a
  Lambda cannot hold a stream open, and the page then polls; ``/api/v1/alerts`` too: no
  alert rules are evaluated on AWS, and the page stops asking after that answer. With
  ``CODECDASH_AWS_ORIGIN_SECRET`` set (the stack sets it) a request without CloudFront's
  ``x-codecdash-origin`` header answers 403: the API is reachable only through the
  dashboard's address.
- ``snapshot_handler``: run every minute by EventBridge; builds the snapshot and writes it
  once to the site bucket as ``api/v1/dashboard``, which CloudFront serves as the API's
  answer to every polling viewer (one write a minute; no API request per poll).
- ``stream_handler``: applies DynamoDB Streams batches of the experiments table to the
  read replica (``codecdash.sources.aws.replica_writer``: the SQLite store in S3 that the
  other functions read, ``aws_read_model_bucket``); ``{"rebuild": true}`` makes it anew
  with one scan.

The API serves every experiments, anchors, curves and BD-rate route from its local copy of
the replica through the same code as ``codecdash serve``; before a request it checks for a
new version at most every ``aws_read_model_refresh_seconds`` (one conditional GET). Without
a replica bucket the experiments section and routes say what to set (503, never a 500).

Each function builds what it needs once per container and keeps it warm: the app, the
snapshot builder (so last known values survive between runs), the boto3 clients.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from datetime import datetime
from typing import Any

import orjson

from codecdash.config import Settings, load_settings

log = logging.getLogger("codecdash.aws_lambda")

SNAPSHOT_KEY = "api/v1/dashboard"  # CloudFront serves it as /api/v1/dashboard
FAILOVER_KEY = SNAPSHOT_KEY  # the earlier name of the same object
ORIGIN_HEADER = "x-codecdash-origin"
SNAPSHOT_CACHE_CONTROL = "public, max-age=15"
# What the API function does not serve, and why: the answer costs no container's work.
NOT_ON_AWS = {
    "/api/v1/events": "no event stream on AWS Lambda; poll /api/v1/dashboard",
    "/api/v1/alerts": (
        "no alerts on the AWS deployment: alert rules are evaluated by `codecdash serve`"
    ),
}

_api: Any = None
_builder: Any = None
_origin_secret: str | None = None
_loop: asyncio.AbstractEventLoop | None = None
_replica: Any = None  # the API's or the snapshot function's copy of the read replica
_writer: Any = None  # the stream function's


def lambda_settings() -> Settings:
    """Settings from the environment, made fit for Lambda: the AWS source, a store in
    /tmp (the code directory is read-only), and any Host (API Gateway checked it)."""
    settings = load_settings()
    logging.getLogger("codecdash").setLevel(settings.log_level.upper())
    updates: dict[str, Any] = {"source": "aws"}
    if "CODECDASH_DATABASE_URL" not in os.environ:
        updates["database_url"] = "/tmp/codecdash.db"  # noqa: S108 # nosec B108 (Lambda's only writable directory)
    if not settings.allowed_hosts:
        updates["allowed_hosts"] = ["*"]
    return settings.model_copy(update=updates)


def reset() -> None:
    """Forgets what the warm container built (tests; a new configuration)."""
    global _api, _builder, _replica, _writer, _origin_secret
    _api = None
    _builder = None
    _origin_secret = None
    for held in (_replica, _writer and _writer.copy):
        if held is not None:
            held.close()
    _replica = None
    _writer = None


def replica_copy(settings: Settings, name: str = "replica.db") -> Any:
    """This container's copy of the read replica (None without ``aws_read_model_bucket``),
    beside the configured store: the store the app reads is the copy."""
    global _replica
    if _replica is None and settings.aws_read_model_bucket:
        from codecdash.aws_clients import default_factory
        from codecdash.sources.aws.replica import ReplicaCopy
        from codecdash.store.backup import sqlite_file

        path = sqlite_file(settings.database_url).with_name(name)
        s3 = default_factory(settings.aws_region)("s3")
        _replica = ReplicaCopy.from_settings(settings, s3, path)
    return _replica


def _api_handler() -> Any:
    global _api
    if _api is None:
        from mangum import Mangum

        from codecdash.api.app import create_app
        from codecdash.sources.aws import aws_sources

        settings = lambda_settings()
        replica = replica_copy(settings)
        if replica is not None:  # every read through the same code as `codecdash serve`
            replica.refresh(force=True)
            app = create_app(
                settings,
                store=replica.store,
                sources=aws_sources(settings, cost_explorer=False, replica=replica),
                background=False,
            )
        else:
            from codecdash.sources.aws.read_model import NoReplica

            app = create_app(
                settings,
                sources=aws_sources(settings, cost_explorer=False),
                background=False,
                experiments_backend=NoReplica() if settings.aws_experiments_table else None,
            )
        _api = Mangum(app, lifespan="off")
    return _api


def _json_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": orjson.dumps({"error": {"code": code, "message": message}}).decode(),
        "isBase64Encoded": False,
    }


def _expected_origin_secret() -> str:
    global _origin_secret
    if _origin_secret is None:
        secret = lambda_settings().aws_origin_secret
        _origin_secret = secret.get_secret_value() if secret is not None else ""
    return _origin_secret


def from_cloudfront(event: dict[str, Any]) -> bool:
    """Whether the request carries the header CloudFront adds (always, when none is set)."""
    secret = _expected_origin_secret()
    if not secret:
        return True
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    return hmac.compare_digest(headers.get(ORIGIN_HEADER, "").encode(), secret.encode())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0) → the codecdash app."""
    if not from_cloudfront(event):
        return _json_error(403, "forbidden", "this API answers through the dashboard's address")
    path = str(event.get("rawPath") or event.get("path") or "")
    for prefix, reason in NOT_ON_AWS.items():
        if path.rstrip("/") == prefix or path.startswith(prefix + "/"):
            return _json_error(404, "not_found", reason)
    api = _api_handler()
    if _replica is not None:
        _replica.refresh()  # between requests: at most every refresh interval
    result: dict[str, Any] = api(event, context)
    return result


def _event_loop() -> asyncio.AbstractEventLoop:
    # One loop for the container's life: asyncio.run would wait, at its end, for any boto3
    # call that timed out but is still running in a worker thread.
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def build_snapshot(settings: Settings, now: float | None = None) -> dict[str, Any]:
    global _builder
    if _builder is None:
        from codecdash.snapshot import SnapshotBuilder
        from codecdash.sources.aws import aws_sources

        replica = replica_copy(settings)
        sources = aws_sources(settings, replica=replica, refresh_replica=True)
        _builder = SnapshotBuilder(settings, sources)
    at = time.time() if now is None else now
    data: dict[str, Any] = _event_loop().run_until_complete(_builder.build(at))
    return data


def _scheduled_time(event: dict[str, Any]) -> float | None:
    """The minute EventBridge scheduled this run for (its event's ``time``), if given."""
    value = event.get("time")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def snapshot_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge schedule → ``api/v1/dashboard`` in the site bucket (one write)."""
    from codecdash.aws_clients import default_factory

    settings = lambda_settings()
    if not settings.aws_site_bucket:
        raise RuntimeError("CODECDASH_AWS_SITE_BUCKET is not set: nowhere to write the snapshot")
    data = build_snapshot(settings, _scheduled_time(event or {}))
    body = orjson.dumps(data)
    s3 = default_factory(settings.aws_region)("s3")
    s3.put_object(
        Bucket=settings.aws_site_bucket,
        Key=SNAPSHOT_KEY,
        Body=body,
        ContentType="application/json",
        CacheControl=SNAPSHOT_CACHE_CONTROL,
    )
    failing = [s["name"] for s in data.get("sources", []) if not s.get("ok")]
    if failing:
        log.warning("snapshot written; failing sources: %s", ", ".join(failing))
    return {
        "written": [f"s3://{settings.aws_site_bucket}/{SNAPSHOT_KEY}"],
        "bytes": len(body),
        "generated_at": data["generated_at"],
        "failing": failing,
    }


def _table_of(record: dict[str, Any]) -> str | None:
    arn = str(record.get("eventSourceARN", ""))  # arn:aws:dynamodb:r:a:table/NAME/stream/…
    parts = arn.split("/")
    return parts[1] if len(parts) >= 2 and parts[0].endswith(":table") else None


def replica_writer(settings: Settings) -> Any:
    """The stream function's writer of the read replica (kept warm with its copy)."""
    global _writer
    if _writer is None:
        from codecdash.aws_clients import default_factory
        from codecdash.sources.aws.replica_writer import ReplicaWriter
        from codecdash.store.backup import sqlite_file

        path = sqlite_file(settings.database_url).with_name("replica-writer.db")
        _writer = ReplicaWriter(settings, default_factory(settings.aws_region)("s3"), path)
    return _writer


def stream_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """DynamoDB Streams batch → the read replica (raises to have the batch retried)."""
    from codecdash.aws_clients import default_factory

    settings = lambda_settings()
    records = list(event.get("Records", []))
    table = (_table_of(records[0]) if records else None) or settings.aws_experiments_table
    if not table:
        raise RuntimeError("CODECDASH_AWS_EXPERIMENTS_TABLE is not set")
    if not settings.aws_read_model_bucket:
        raise RuntimeError(
            "CODECDASH_AWS_READ_MODEL_BUCKET is not set: nowhere to keep the read replica"
        )
    writer = replica_writer(settings)
    if event.get("rebuild"):
        client = default_factory(settings.aws_region)("dynamodb")
        rebuilt: dict[str, Any] = writer.rebuild(client, table)
        return rebuilt
    result = writer.apply(records)
    log.info("read replica of %s: %s", table, result)
    return {**result, "table": table}
