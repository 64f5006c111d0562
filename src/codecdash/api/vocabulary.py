"""`GET /api/v1/vocabulary`: the rules and labels the page is told instead of copying them
(codecdash/page_vocabulary.py). It changes only with the package: ETag, cached for a day."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from codecdash.api.auth import require_read
from codecdash.api.state import state
from codecdash.models import ErrorResponse
from codecdash.page_vocabulary import CACHE_CONTROL, vocabulary_body

router = APIRouter(prefix="/api/v1", tags=["dashboard"])

Name = Annotated[str, Field(min_length=1, max_length=40)]
Label = Annotated[str, Field(max_length=80)]
Text = Annotated[str, Field(max_length=400)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatusTerm(_Out):
    name: Name
    label: Label
    finished: bool = Field(description="Whether the status ends an experiment")


class MetricTerm(_Out):
    name: Name = Field(description="The Experiment field")
    label: Label
    unit: Annotated[str, Field(max_length=10)]
    larger_is_better: bool


class QualityTerm(_Out):
    name: Name = Field(description="The value of the `quality_metric` setting")
    field: Name = Field(description="The Experiment's and a rate-distortion point's field")
    label: Label
    unit: Annotated[str, Field(max_length=10)] = Field(description="On the R-D chart's axis")
    axis_label: Label


class RateUnitTerm(_Out):
    name: Name
    field: Name = Field(description="The rate-distortion point's field holding this rate")
    label: Label


class BdRateRules(_Out):
    min_points: int = Field(ge=1, le=100, description="Distinct points each curve needs")
    overlap_warning: float = Field(
        ge=0, le=1, description="Below this share of the quality range a BD figure is warned"
    )
    overlap_warning_text: Text = Field(description="With {overlap} and {threshold}, in %")
    reasons: dict[str, Text] = Field(
        max_length=40,
        description="Why an experiment has no BD-rate, by code; {…} are filled in by the page",
    )


class SectionTerm(_Out):
    name: Name = Field(description="A snapshot section (a `sources[].sections` entry)")
    label: Label


class Vocabulary(_Out):
    """Statuses, metrics, rate units, the BD-rate rules and the snapshot sections' labels."""

    version: Annotated[str, Field(max_length=40)] = Field(description="codecdash's version")
    statuses: list[StatusTerm] = Field(max_length=20)
    metrics: list[MetricTerm] = Field(max_length=40)
    quality_metrics: list[QualityTerm] = Field(max_length=10)
    rate_units: list[RateUnitTerm] = Field(
        max_length=10, description="In order: a point's rate is the first field it has"
    )
    bd_rate: BdRateRules
    sections: list[SectionTerm] = Field(max_length=20)


@router.get(
    "/vocabulary",
    response_model=Vocabulary,
    dependencies=[Depends(require_read)],
    summary="The rules and labels the page uses (ETag; cached for a day)",
    responses={304: {"description": "Not modified"}, 401: {"model": ErrorResponse}},
)
def get_vocabulary(
    request: Request,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    body, etag = vocabulary_body()
    scope = "private" if state(request).settings.private else "public"
    headers = {"ETag": etag, "Cache-Control": f"{scope}, {CACHE_CONTROL}"}
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
