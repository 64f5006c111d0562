"""Training curves: what clients send (per-step metrics) and what the API answers (curves).
The limits and the encoding of NaN and infinities are in curve_rules.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from codecdash.curve_rules import (
    MAX_POINTS_PER_REQUEST,
    MAX_STEP,
    MAX_VALUES_PER_POINT,
    METRIC_NAME_PATTERN,
)
from codecdash.models import MAX_BATCH, ExperimentId, JsonInt, ReportedTime, _Strict

NonFinite = Literal["NaN", "Infinity", "-Infinity"]
MetricName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN, examples=["loss"])]
MetricValue = float | NonFinite


class MetricPoint(_Strict):
    """One training step: its number, optionally its wall time, and its metrics' values."""

    step: JsonInt = Field(ge=0, le=MAX_STEP, examples=[1200])
    at: ReportedTime | None = Field(None, description="When the step ran; default: when received.")
    values: dict[MetricName, MetricValue] = Field(
        min_length=1,
        max_length=MAX_VALUES_PER_POINT,
        examples=[{"loss": 0.0213, "bpp": 0.41, "psnr_db": 33.2, "lr": 0.0001}],
        # The names' pattern is the only kind of key (pydantic refuses any other).
        json_schema_extra={"additionalProperties": False},
    )


class MetricPoints(_Strict):
    """The body of POST /api/v1/experiments/{id}/metrics."""

    points: list[MetricPoint] = Field(max_length=MAX_POINTS_PER_REQUEST)


class MetricsItem(MetricPoints):
    experiment_id: ExperimentId


class MetricsBatch(_Strict):
    """The body of POST /api/v1/metrics: several experiments' points in one transaction."""

    items: list[MetricsItem] = Field(max_length=MAX_BATCH)


class CurveSeries(BaseModel):
    """One metric's curve: parallel arrays, one entry per point (raw) or per bucket."""

    step: list[int] = Field(description="Raw: the step. Downsampled: the bucket's last step.")
    value: list[float | NonFinite] = Field(
        description="Raw: the value. Downsampled: the value at the bucket's last step."
    )
    time: list[float] = Field(description="Wall time of `step`, seconds since 1970 (UTC).")
    min: list[float | NonFinite] | None = Field(
        None, description="Downsampled only: the bucket's lowest value (NaN ignored)."
    )
    max: list[float | NonFinite] | None = Field(
        None, description="Downsampled only: the bucket's highest value (NaN ignored)."
    )
    bucket_steps: int = Field(
        description="Steps per bucket: 1 for raw points, else a power of two; buckets start "
        "at multiples of it."
    )
    points: int = Field(description="Raw points stored for this metric (the whole history).")


class Curves(BaseModel):
    """GET /api/v1/experiments/{id}/metrics."""

    series: dict[str, CurveSeries]
    total_points: int = Field(description="Raw points stored for the series answered.")
    names: list[str] = Field(description="Every metric name the experiment has logged.")
