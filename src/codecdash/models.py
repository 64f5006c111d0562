"""The public data shapes (docs/api.md): what clients send and what the API answers."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from codecdash.experiments.vocabulary import ExperimentStatus

Role = Literal["orchestrator", "training", "inference"]
WorkerStatus = Literal["ok", "degraded", "down"]
Component = Literal["training", "inference", "storage", "orchestrator", "other"]
COMPONENTS: tuple[str, ...] = ("training", "inference", "storage", "orchestrator", "other")

# 1-128 of A-Za-z0-9._:- but not "." or "..": those cannot be addressed in a URL's path
# (clients resolve /experiments/.. to /api/v1). Written without lookahead, so that every
# regex dialect (JSON Schema's, Python's, generators') reads it the same way.
ID_PATTERN = (
    r"^(?:[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,127}"
    r"|\.[A-Za-z0-9_:\-][A-Za-z0-9._:\-]{0,126}"
    r"|\.\.[A-Za-z0-9._:\-]{1,126})$"
)
NO_NUL_PATTERN = r"^[^\u0000]*$"
"""Text without NUL, as ECMA and Python regular expressions write it."""
MAX_BATCH = 1000
MAX_EXTRA_BYTES = 16 * 1024
MAX_PARAMS_BYTES = 16 * 1024
MAX_PARAMS_KEYS = 200
MAX_TAGS = 50
MAX_NOTES = 10_000
MAX_TAGS_BYTES = 4 * 1024


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the year 1 in UTC
        raise ValueError("time is out of range once converted to UTC") from None


_ISO_TIME = re.compile(
    r"\d{4}-\d\d-\d\d(?:[Tt ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[Zz]|[+-]\d\d:?\d\d)?)?"
)
_BAD_TIME = "expected an ISO 8601 time such as 2025-03-14T12:00:00Z"


def _time(value: Any, info: ValidationInfo) -> Any:
    """ISO 8601 text (or a datetime, from Python) as an aware UTC datetime.

    Pydantic alone would also take 0 or "0.5" as seconds since 1970. One call parses
    (``datetime.fromisoformat``, in C) and normalises to UTC: times are on the ingest
    hot path, three per experiment. Validated with a :func:`clock` context (the API's
    bodies), a time further ahead than the allowed clock skew is refused.
    """
    if isinstance(value, str) and _ISO_TIME.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value[:-1] + "Z" if value[-1] == "z" else value)
        except ValueError as exc:  # e.g. "month must be in 1..12"
            raise ValueError(f"{_BAD_TIME} ({exc})") from None
        value = _utc(parsed)
    elif isinstance(value, datetime):
        value = _utc(value)
    else:
        raise ValueError(_BAD_TIME)
    context = info.context
    if context is not None and CLOCK in context:
        _not_ahead(value, *context[CLOCK])
    return value


CLOCK = "codecdash.clock"
"""The validation context key of (the server's time, the allowed skew in seconds)."""


def clock(now: float, max_future_seconds: float) -> dict[str, tuple[float, float]]:
    """A validation context that refuses times more than `max_future_seconds` ahead of
    `now` (``Model.model_validate_json(body, context=clock(...))``)."""
    return {CLOCK: (now, max_future_seconds)}


def _not_ahead(value: datetime, now: float, skew: float) -> None:
    ahead = value.timestamp() - now
    if ahead > skew:
        raise ValueError(
            f"time is {_span(ahead)} ahead of the server's clock; at most {_span(skew)} "
            "is accepted (check the sending machine's clock and time zone)"
        )


def _span(seconds: float) -> str:
    for unit, size in (("years", 31_557_600), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:,.0f} s"


# Not strict (the models are): JSON has no datetime type, times come as text.
Timestamp = Annotated[datetime, Field(strict=False), BeforeValidator(_time)]
# A time a client reports: in the API's bodies, never far ahead of the server's clock.
ReportedTime = Annotated[
    Timestamp,
    Field(
        description="ISO 8601. At most `max_future_seconds` (15 minutes by default) ahead "
        "of the server's clock, else 422."
    ),
]


def _json_int(value: Any) -> Any:
    """JSON's integers: 5 and 5.0, not true or "5" (the models are strict; 5.0 is not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Bounds of a JsonInt go before its validator, `Annotated[int, Field(ge=0),
# BeforeValidator(_json_int)]`: on the field they are still checked but reach the
# OpenAPI document as pydantic's "ge"/"le", which no client reads.
JsonInt = Annotated[int, BeforeValidator(_json_int)]
ExperimentId = Annotated[str, Field(pattern=ID_PATTERN, examples=["ssf-lambda-0.0130-r3"])]
Tag = Annotated[str, Field(min_length=1, max_length=64)]


MAX_TEXT = 10_000
"""Characters in any string of a request body, keys and free-form JSON included."""


class _Strict(BaseModel):
    # strict: no true for 1.0, no 0 for false, no "5" for 5, as the OpenAPI document says
    # (tests/test_fuzz_api.py's negative_data_rejection); times: see Timestamp.
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, str_max_length=MAX_TEXT, strict=True
    )


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL: refuse it here (422), for both databases."""
    if "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    return value


class Documented:
    """Keywords added to a type's JSON schema: a rule that code checks, stated for clients.

    A `pattern` already there (a field's own) is kept; the added one joins it in `allOf`.
    """

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        for key, value in self.keywords.items():
            if key in schema and schema[key] != value:
                schema.setdefault("allOf", []).append({key: value})
            else:
                schema[key] = value
        return schema


# Text that can be stored on both databases. The check runs only on strings (not on the
# absent fields), as an annotation rather than a field validator: fewer calls per item;
# the document states it as a pattern (the check's own message is clearer than a regex's).
Text = Annotated[str, AfterValidator(_no_nul), Documented(pattern=NO_NUL_PATTERN)]


def _storable_json(value: dict[str, JsonValue], name: str) -> bytes:
    """The value as stored (orjson); integers beyond 64 bits cannot be, nor NaN or
    infinities (which orjson would store as null).

    Strings and keys at any depth hold at most MAX_TEXT characters. Validated from Python
    objects (FastAPI's routes) pydantic checks that itself; from JSON (the batch route)
    it checks only the top level, so the longer documents are walked here.
    """
    import orjson

    if not _finite(value):
        raise ValueError(f"{name} cannot hold NaN or infinite numbers (JSON has none)")
    try:
        raw = orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise ValueError(f"{name} cannot be stored as JSON: {exc}") from None
    if len(raw) > MAX_TEXT:
        _check_text(value, name)
    return raw


def _check_text(value: JsonValue, where: str) -> None:
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"{where}: a string holds at most {MAX_TEXT} characters")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_TEXT:
                raise ValueError(f"{where}: a key holds at most {MAX_TEXT} characters")
            _check_text(item, f"{where}.{key}")


def _finite(value: JsonValue) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


class RDPoint(_Strict):
    """One rate-distortion point: a rate (kbps or bpp) and a quality."""

    bitrate_kbps: float | None = Field(None, gt=0, examples=[5011.5])
    bpp: float | None = Field(None, gt=0)
    psnr_db: float | None = Field(None, ge=0, le=200, examples=[31.85])
    ms_ssim: float | None = Field(None, ge=0, le=1)
    sequence: Text | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="A per-sequence result (e.g. UVG's `Beauty`); points without it are "
        "the test set's average, the curve that BD-rates use.",
        examples=["Beauty"],
    )

    @model_validator(mode="after")
    def _rate_and_quality(self) -> RDPoint:
        if self.bitrate_kbps is None and self.bpp is None:
            raise ValueError("a rate-distortion point needs bitrate_kbps or bpp")
        if self.psnr_db is None and self.ms_ssim is None:
            raise ValueError("a rate-distortion point needs psnr_db or ms_ssim")
        return self


def _params_size(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    if len(value) > MAX_PARAMS_KEYS:
        raise ValueError(f"params holds at most {MAX_PARAMS_KEYS} keys")
    if len(_storable_json(value, "params")) > MAX_PARAMS_BYTES:
        raise ValueError(f"params is limited to {MAX_PARAMS_BYTES // 1024} KiB of JSON")
    return value


def _tags_size(value: list[str]) -> list[str]:
    import orjson

    if len(orjson.dumps(value)) > MAX_TAGS_BYTES:
        raise ValueError(f"tags are limited to {MAX_TAGS_BYTES // 1024} KiB of JSON in all")
    return value


Params = Annotated[
    dict[str, JsonValue], AfterValidator(_params_size), Documented(maxProperties=MAX_PARAMS_KEYS)
]


def _ignored(_value: object) -> None:
    """A derived field sent back as fetched: accepted, then dropped."""
    return None


class ExperimentFields(_Strict):
    """Fields a client may set; everything optional so PATCH can reuse it."""

    name: Text | None = Field(None, max_length=200, examples=["ssf2020 λ=0.0130"])
    status: ExperimentStatus | None = Field(None, examples=["completed"])
    created_at: ReportedTime | None = None
    started_at: ReportedTime | None = None
    finished_at: ReportedTime | None = None
    bitrate_reduction_pct: float | None = Field(
        None, ge=-1000, le=100, description="% bitrate saved against the baseline", examples=[41.3]
    )
    psnr_db: float | None = Field(None, ge=0, le=200, examples=[35.84])
    ms_ssim: float | None = Field(None, ge=0, le=1, examples=[0.9645])
    bpp: float | None = Field(None, ge=0, le=1000)
    bitrate_kbps: float | None = Field(None, ge=0, le=1e9)
    cost_usd: float | None = Field(None, ge=0, le=1e9, examples=[12.4])
    worker_id: Text | None = Field(None, max_length=128, examples=["train-g5-03"])
    params: Params | None = Field(
        None,
        description=f"Free-form; at most {MAX_PARAMS_KEYS} keys and "
        f"{MAX_PARAMS_BYTES // 1024} KiB of JSON.",
        examples=[{"model": "ssf2020", "lambda": 0.013, "lr": 0.0001}],
    )
    tags: Annotated[list[Tag], AfterValidator(_tags_size)] | None = Field(
        None,
        max_length=MAX_TAGS,
        description=f"At most {MAX_TAGS} tags and {MAX_TAGS_BYTES // 1024} KiB of JSON in all.",
        examples=[["uvg", "mse"]],
    )
    error: Text | None = Field(None, max_length=10_000)
    dataset: Text | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="The test set the experiment was evaluated on; null: unspecified. "
        "BD-rates are measured against an anchor of the same set.",
        examples=["UVG-1080p"],
    )
    method: Text | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The method (model family) its R-D points belong to: a method's curve "
        "on a set joins its experiments' points (a λ sweep). Null: the experiment is its "
        "own method (or the `method_from` setting names one).",
        examples=["ssf2020-ours"],
    )
    notes: Text | None = Field(
        None,
        max_length=MAX_NOTES,
        description="Free text about the experiment (Markdown, shown as plain text).",
        examples=["Diverged after lr warm-up; rerun as r4."],
    )
    rd_points: list[RDPoint] | None = Field(
        None,
        max_length=512,
        description="The set's average curve (points without `sequence`) and, optionally, "
        "per-sequence points beside it; at most 512 points.",
        examples=[
            [
                {"bitrate_kbps": 900.0, "psnr_db": 30.5},
                {"bitrate_kbps": 1800.0, "psnr_db": 33.5},
                {"bitrate_kbps": 3600.0, "psnr_db": 36.4},
                {"bitrate_kbps": 7200.0, "psnr_db": 39.1},
            ]
        ],
    )
    # Derived by the server; accepted so a fetched Experiment can be sent back as is.
    duration_s: float | None = Field(None, description="Derived by the server; ignored.")
    bd_rate_pct: float | None = Field(None, description="Derived by the server; ignored.")
    bd_rate_anchor: Text | None = Field(None, description="Derived by the server; ignored.")
    updated_at: Timestamp | None = Field(None, description="Set by the server; ignored.")
    # Any object: it is dropped unread, so nothing in it can be refused.
    training: Annotated[dict[str, Any] | None, AfterValidator(_ignored)] = Field(
        None, description="Derived by the server; ignored."
    )


class ExperimentIn(ExperimentFields):
    """A whole experiment as sent to POST, PUT and batch."""

    id: ExperimentId | None = None
    status: ExperimentStatus = "queued"


class ExperimentPatch(ExperimentFields):
    """A partial update: only the fields present change; null clears a field."""

    add_tags: list[Tag] | None = Field(
        None,
        max_length=MAX_TAGS,
        description="Tags to add to the stored ones (those already there are kept once).",
        examples=[["baseline"]],
    )
    remove_tags: list[Tag] | None = Field(
        None,
        max_length=MAX_TAGS,
        description="Tags to remove from the stored ones (absent ones are ignored).",
        examples=[["wip"]],
    )


class Experiment(BaseModel):
    """An experiment as the API answers it."""

    id: str
    name: str | None = None
    status: ExperimentStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    duration_s: float | None = None
    bitrate_reduction_pct: float | None = None
    psnr_db: float | None = None
    ms_ssim: float | None = None
    bpp: float | None = None
    bitrate_kbps: float | None = None
    cost_usd: float | None = None
    worker_id: str | None = None
    params: dict[str, Any] | None = None
    tags: list[str] | None = None
    error: str | None = None
    notes: str | None = None
    rd_points: list[dict[str, Any]] | None = None
    bd_rate_pct: float | None = None
    bd_rate_anchor: str | None = None
    dataset: str | None = None
    method: str | None = None
    deleted_at: datetime | None = Field(
        None, description="When it was moved to the trash (only with `include_deleted=true`)."
    )
    deleted_by: str | None = Field(
        None,
        description="The name of the token that deleted it (`local:<user>`: the command line).",
    )
    omitted: list[str] | None = Field(
        None,
        description="In the snapshot only: the fields left out (or, for `error`, shortened) "
        "to keep it small; GET the experiment for all of them.",
    )
    training: TrainingSummary | None = None


class TrainingSummary(BaseModel):
    """The newest step an experiment logged (POST …/metrics), kept current on write."""

    step: int = Field(description="The highest step logged.")
    at: datetime = Field(description="Its wall time.")
    loss_metric: str | None = Field(
        None, description="The metric watched as the loss: loss, train/loss or train_loss."
    )
    loss: float | Literal["NaN", "Infinity", "-Infinity"] | None = Field(
        None, description="The newest value of the loss."
    )
    non_finite_step: int | None = Field(
        None, description="The first step whose loss was NaN or infinite, if any."
    )
    alert: Literal["non_finite_loss", "loss_rising"] | None = Field(
        None,
        description="non_finite_loss: the newest loss is NaN or infinite; loss_rising: the "
        "smoothed loss is well above its lowest (training_loss_rise_pct).",
    )


class ExperimentBatch(_Strict):
    items: list[ExperimentIn] = Field(max_length=MAX_BATCH)


class ExperimentPage(BaseModel):
    items: list[Experiment]
    next_cursor: str | None
    total: int


def _extra_size(value: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
    if value is not None and len(_storable_json(value, "extra")) > MAX_EXTRA_BYTES:
        raise ValueError(f"extra is limited to {MAX_EXTRA_BYTES} bytes of JSON")
    return value


class Heartbeat(_Strict):
    worker_id: str = Field(pattern=ID_PATTERN, examples=["train-g5-03"])
    role: Role = Field(examples=["training"])
    status: WorkerStatus = "ok"
    instance_type: Text | None = Field(None, max_length=64, examples=["g5.xlarge"])
    spot: bool | None = None
    hourly_cost_usd: float | None = Field(None, ge=0, le=10_000, examples=[1.006])
    cpu_pct: float | None = Field(None, ge=0, le=100)
    mem_pct: float | None = Field(None, ge=0, le=100)
    gpu_util_pct: float | None = Field(None, ge=0, le=100)
    gpu_mem_pct: float | None = Field(None, ge=0, le=100)
    fps: float | None = Field(None, ge=0, le=1e6)
    queue_depth: Annotated[int, Field(ge=0, le=10**9), BeforeValidator(_json_int)] | None = None
    at: ReportedTime | None = None
    extra: Annotated[dict[str, JsonValue] | None, AfterValidator(_extra_size)] = Field(
        None, description="Free-form figures (per-GPU list, load, disk); at most 16 KiB."
    )


class CostRecord(_Strict):
    component: Component = Field(examples=["training"])
    amount_usd: float = Field(ge=0, le=1e9, examples=[12.5])
    at: ReportedTime | None = None
    description: Text | None = Field(None, max_length=500)
    source: Text | None = Field(None, max_length=100, examples=["aws-cur"])


class CostBatch(_Strict):
    items: list[CostRecord] = Field(max_length=MAX_BATCH)


class Accepted(BaseModel):
    accepted: int


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
