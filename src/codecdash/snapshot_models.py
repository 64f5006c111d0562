"""The snapshot document's shapes (GET /api/v1/dashboard, docs/api.md), for the OpenAPI
document: snapshot.py builds the snapshot as plain JSON, in these shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from codecdash.models import Experiment


class BestCompression(BaseModel):
    value_pct: float
    experiment_id: str
    metric: str | None = None
    anchor: str | None = None
    per: Literal["experiment", "method"] | None = Field(
        None,
        description="What was ranked: experiments one by one (the summary); the BD-rate "
        "table (GET /api/v1/bd-rates) ranks methods.",
    )
    dataset: str | None = Field(None, description="The experiment's test set, when it has one.")
    method: str | None = Field(None, description="The experiment's method, when it has one.")


class BestQuality(BaseModel):
    psnr_db: float | None
    experiment_id: str
    ms_ssim: float | None = None
    metric: str | None = None


class Summary(BaseModel):
    total_experiments: int | None
    queued: int | None = None
    running: int | None
    completed: int | None
    failed: int | None
    cancelled: int | None = None
    success_rate: float | None
    experiments_24h: int | None
    best_compression: BestCompression | None
    best_quality: BestQuality | None
    bd_rate_recomputing: bool | None = Field(
        None,
        description="Present, and true, while the server derives the stored BD-rates again.",
    )
    month_to_date_usd: float | None
    forecast_month_usd: float | None


class Targets(BaseModel):
    compression_pct: float
    psnr_db: float
    monthly_budget_usd: float
    ms_ssim: float | None = None
    quality_metric: str | None = None
    compression_metric: str | None = None


class Orchestrator(BaseModel):
    status: Literal["ok", "degraded", "down", "unknown"]
    cpu_pct: float | None
    mem_pct: float | None
    last_seen: datetime | None


class WorkerPool(BaseModel):
    active: int | None
    queue_depth: int | None
    spot_pct: float | None = None
    fps: float | None = None
    stale: int | None = None
    spot_interruptions: int | None = None
    gpu_util_pct: float | None = None


class StorageBucket(BaseModel):
    name: str
    objects: int | None = None
    bytes: int | None = None
    basis: str | None = None  # "cloudwatch" (daily metric) or "listing"
    partial: bool = False  # a listing cut short: the figures are lower bounds


class Storage(BaseModel):
    objects: int | None
    bytes: int | None
    db_items: int | None
    db_bytes: int | None = None
    artifacts: bool | None = None
    s3_bytes: int | None = None
    efs_bytes: int | None = None
    buckets: list[StorageBucket] = []


class Infrastructure(BaseModel):
    orchestrator: Orchestrator
    training_workers: WorkerPool
    inference_workers: WorkerPool
    storage: Storage


class CostSlice(BaseModel):
    component: str
    usd: float


class CompressionPoint(BaseModel):
    t: datetime
    best_pct: float


class QualityPoint(BaseModel):
    t: datetime
    best_psnr_db: float | None = None
    best_ms_ssim: float | None = None


class Progress(BaseModel):
    compression: list[CompressionPoint]
    quality: list[QualityPoint]


class SourceStatus(BaseModel):
    name: str
    ok: bool
    error: str | None
    as_of: datetime | None
    sections: list[str] = []


class Snapshot(BaseModel):
    generated_at: datetime
    demo: bool
    refresh_seconds: float | None = None
    targets: Targets
    summary: Summary
    infrastructure: Infrastructure
    recent_experiments: list[Experiment]
    experiments_version: str | None = Field(
        None,
        description="Opaque; changes whenever the experiments or anchors may have changed. "
        "The page reads the experiments table's page again only when it moves (absent: on "
        "every new snapshot).",
    )
    results_version: str | None = Field(
        None,
        description="Opaque; changes whenever the results may have changed: a completed "
        "experiment written or removed, an anchor written or removed (not a running "
        "experiment's progress). The page reads Rate-Distortion, the BD-rate table and "
        "Compare again only when it moves (absent: on every new snapshot).",
    )
    cost_breakdown: list[CostSlice]
    costs_as_of: datetime | None = None
    costs_live: bool | None = None
    progress: Progress
    sources: list[SourceStatus]
