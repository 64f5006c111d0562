"""Anchors (reference rate-distortion curves) and BD-rate reports against any of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from codecdash.api.auth import require_read, require_write
from codecdash.api.bodies import JsonBody
from codecdash.api.errors import ApiError
from codecdash.api.experiments import (
    WRITE_ERRORS,
    IdPath,
    json_response,
    put_responses,
    same_as_path,
)
from codecdash.api.state import AppState, state
from codecdash.codec_metrics import MIN_POINTS
from codecdash.experiments.anchors import (
    ANCHOR_NAME_PATTERN,
    anchor_view,
    bd_report_for,
    check_curve,
    in_force,
    in_force_by_set,
    remove_anchor,
    save_anchor,
)
from codecdash.experiments.rederive import background_sync, recomputing
from codecdash.models import ID_PATTERN, ErrorResponse, RDPoint, Text

log = logging.getLogger("codecdash.anchors")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On start: stored BD-rates follow a changed default_anchor or quality_metric (in the
    background: the server answers meanwhile, the snapshot says "recomputing")."""
    st: AppState = app.state.codecdash
    sync = background_sync(st.store, st.settings)
    try:
        await asyncio.to_thread(sync.follow)
    except Exception as exc:  # the page must still serve; the next anchor write retries
        log.warning("BD-rates not re-derived on start: %s", exc)
    try:
        yield
    finally:
        sync.close()


router = APIRouter(prefix="/api/v1", tags=["anchors"], lifespan=_lifespan)
NamePath = Annotated[
    str,
    Path(
        pattern=ANCHOR_NAME_PATTERN,
        description="The anchor's name (a result file's `name`)",
        examples=["x264-medium-tune-zerolatency"],
    ),
]
DatasetQuery = Annotated[
    Text | None,
    Query(
        min_length=1,
        max_length=100,
        description="The anchor's test set (absent: the unspecified set)",
        examples=["UVG-1080p"],
    ),
]
QualityQuery = Annotated[
    Literal["psnr", "ms_ssim"] | None,
    Query(description="Quality axis (default: the `quality_metric` setting)"),
]
BD_RATE_REFUSALS = (
    "Refused beyond what the schema states:\n"
    "- **404** `not_found`: no such anchor or experiment; with no anchor named, no anchor "
    "in force;\n"
    "- **422** `invalid`: no BD-rate to compute: the experiment has no `rd_points`, its "
    "rate unit differs from the anchor's, a curve has fewer than 4 distinct points with "
    "the quality asked for (or two points at one quality), or the curves do not overlap."
)
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Private dashboard: a read token is needed"},
    404: {"model": ErrorResponse, "description": "No such anchor or experiment"},
    422: {"model": ErrorResponse, "description": "No BD-rate: units, too few points, no overlap"},
}


class AnchorIn(BaseModel):
    """An anchor as sent to PUT. `name` and `rate_unit` may be sent back as GET gave them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=10_000)

    name: str | None = Field(None, description="Must equal the path's name when present.")
    dataset: Text | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="The anchor's test set; must equal the `dataset` query when both are "
        "present. Absent: the query's, else the unspecified set.",
    )
    description: Text | None = Field(None, max_length=10_000)
    rd_points: list[RDPoint] = Field(
        min_length=MIN_POINTS,
        max_length=512,
        examples=[
            [
                {"bitrate_kbps": 1000.0, "psnr_db": 30.1},
                {"bitrate_kbps": 2000.0, "psnr_db": 33.2},
                {"bitrate_kbps": 4000.0, "psnr_db": 36.0},
                {"bitrate_kbps": 8000.0, "psnr_db": 38.7},
            ]
        ],
    )
    rate_unit: Literal["kbps", "bpp"] | None = Field(
        None, description="Checked against the points when present."
    )


ANCHOR_IN: JsonBody[AnchorIn] = JsonBody(AnchorIn, "AnchorIn")


class Anchor(BaseModel):
    name: str
    dataset: str | None = Field(None, description="Its test set; null: unspecified.")
    description: str | None
    rd_points: list[dict[str, Any]]
    rate_unit: Literal["kbps", "bpp"] | None


class SetAnchor(BaseModel):
    dataset: str | None = Field(description="A test set; null: unspecified.")
    anchor: str | None = Field(description="The anchor in force there, if any.")
    configured: str | None = Field(
        description="What the settings name for it (`default_anchors`, else `default_anchor`)."
    )


class AnchorList(BaseModel):
    items: list[Anchor]
    default: str | None = Field(
        description="The anchor in force for bd_rate_pct on the unspecified set, if any."
    )
    in_force: list[SetAnchor] = Field(
        [], description="The anchor in force of every set with anchors or a configured one."
    )
    configured_default: str | None = Field(description="The `default_anchor` setting.")
    quality_metric: Literal["psnr", "ms_ssim"] = Field(
        description="The quality axis of the stored BD-rates (the `quality_metric` setting)."
    )
    recomputing: bool = Field(
        description="True while this server derives the stored BD-rates again."
    )


RECOMPUTED = Field(
    description="Experiments whose stored BD-rate changed: 0 when the anchor in force is "
    "unchanged; null while they are being derived again in the background (`recomputing`)."
)
RECOMPUTING = Field(
    description="True when the stored BD-rates are being derived again in the background; "
    "the snapshot's `summary.bd_rate_recomputing` says when that is done."
)


class AnchorWritten(Anchor):
    created: bool
    default: str | None = Field(description="The anchor in force after this write.")
    recomputed: int | None = RECOMPUTED
    recomputing: bool = RECOMPUTING


class AnchorDeleted(BaseModel):
    deleted: str
    dataset: str | None = None
    default: str | None
    recomputed: int | None = RECOMPUTED
    recomputing: bool = RECOMPUTING


class BdRateReport(BaseModel):
    anchor: str
    experiment_id: str
    dataset: str | None = Field(None, description="The test set of both curves.")
    quality_metric: Literal["psnr", "ms_ssim"]
    rate_unit: Literal["kbps", "bpp"]
    bd_rate_pct: float = Field(description="Negative: the experiment needs fewer bits.")
    bd_psnr_db: float | None = Field(description="Positive: the experiment is better (dB).")
    overlap: float = Field(description="Share of the quality range both curves cover, 0-1.")
    warning: str | None = Field(description="Set when the figures describe only part.")


@router.get(
    "/anchors",
    response_model=AnchorList,
    dependencies=[Depends(require_read)],
    summary="The anchors, and the one in force for bd_rate_pct",
    responses={401: READ_ERRORS[401]},
)
def list_anchors(request: Request) -> Response:
    st = state(request)
    current = in_force(st.store, st.settings)
    stored = st.store.anchors()
    sets = dict.fromkeys(a["dataset"] for a in stored)
    sets.update(dict.fromkeys(st.settings.default_anchors))
    by_set = in_force_by_set(st.store, st.settings)
    per_set = [
        {
            "dataset": dataset,
            "anchor": by_set[dataset]["name"] if dataset in by_set else None,
            "configured": st.settings.default_anchors.get(dataset or "")
            or st.settings.default_anchor,
        }
        for dataset in sets
    ]
    return json_response(
        {
            "items": [anchor_view(a) for a in stored],
            "default": current["name"] if current else None,
            "in_force": per_set,
            "configured_default": st.settings.default_anchor,
            "quality_metric": st.settings.quality_metric,
            "recomputing": recomputing(st.store),
        }
    )


@router.get(
    "/anchors/{name}",
    response_model=Anchor,
    dependencies=[Depends(require_read)],
    summary="One anchor",
    responses={401: READ_ERRORS[401], 404: {"model": ErrorResponse}},
)
def get_anchor(request: Request, name: NamePath, dataset: DatasetQuery = None) -> Response:
    return json_response(anchor_view(_anchor(state(request), name, dataset)))


@router.put(
    "/anchors/{name}",
    response_model=AnchorWritten,
    summary="Create or replace an anchor; stored BD-rates follow the anchor in force",
    description=(
        "Answers at once; when the anchor in force changes, the stored BD-rates are "
        "derived again in the background (`recomputing`).\n\n"
        "Refused beyond what the schema states, each with **422** `invalid`:\n"
        "- the body's `name`, when present, differs from the path's;\n"
        "- `rd_points` that cannot anchor BD-rates on the configured quality axis (the "
        "`quality_metric` setting): fewer than 4 distinct points that have that quality, "
        "two points at one quality, or an MS-SSIM of 1 on the MS-SSIM axis;\n"
        "- points in more than one rate unit (a point's rate is its `bitrate_kbps`, else "
        "its `bpp`: one rate unit per curve);\n"
        "- a `rate_unit` other than the points' unit."
    ),
    responses=put_responses(
        AnchorWritten, "Invalid fields, or points that cannot form the anchor's curve"
    ),
    openapi_extra=ANCHOR_IN.openapi,
)
def put_anchor(
    request: Request,
    name: NamePath,
    body: Annotated[AnchorIn, Depends(ANCHOR_IN)],
    _token: Annotated[str, Depends(require_write)],
    dataset: DatasetQuery = None,
) -> Response:
    same_as_path("name", body.name, name)
    if body.dataset is not None and dataset is not None and body.dataset != dataset:
        raise ApiError(422, f"body dataset {body.dataset!r} differs from the query's {dataset!r}")
    dataset = dataset or body.dataset
    st = state(request)
    points = [p.model_dump(exclude_none=True) for p in body.rd_points]
    quality = st.settings.quality_metric
    try:
        unit = check_curve(points, quality)
    except ValueError as exc:
        raise ApiError(422, f"rd_points cannot anchor BD-rates in {quality}: {exc}") from None
    if body.rate_unit is not None and body.rate_unit != unit:
        raise ApiError(422, f"rate_unit is {body.rate_unit!r} but the points are in {unit}")
    change = save_anchor(
        st.store, st.settings, name, body.description, points, background=True, dataset=dataset
    )
    view = anchor_view(
        {"name": name, "dataset": dataset, "description": body.description, "rd_points": points}
    )
    return json_response(
        {
            **view,
            "created": change.created,
            "default": change.in_force,
            "recomputed": change.recomputed,
            "recomputing": change.recomputing,
        },
        201 if change.created else 200,
    )


@router.delete(
    "/anchors/{name}",
    response_model=AnchorDeleted,
    summary="Delete an anchor; stored BD-rates follow the anchor in force",
    responses={404: {"model": ErrorResponse}, **WRITE_ERRORS},
)
def delete_anchor(
    request: Request,
    name: NamePath,
    _token: Annotated[str, Depends(require_write)],
    dataset: DatasetQuery = None,
) -> Response:
    st = state(request)
    change = remove_anchor(st.store, st.settings, name, background=True, dataset=dataset)
    if change is None:
        raise ApiError(404, f"no anchor {name!r}{_of_set(dataset)}")
    return json_response(
        {
            "deleted": name,
            "dataset": dataset,
            "default": change.in_force,
            "recomputed": change.recomputed,
            "recomputing": change.recomputing,
        }
    )


# The two BD-rate reports (by anchor, by experiment) answer alike.
BD_RATE_REPORT: dict[str, Any] = {
    "response_model": BdRateReport,
    "dependencies": [Depends(require_read)],
    "description": BD_RATE_REFUSALS,
    "responses": READ_ERRORS,
}


@router.get(
    "/anchors/{name}/bd-rate",
    summary="BD-rate, BD-PSNR and curve overlap of an experiment against this anchor",
    **BD_RATE_REPORT,
)
def anchor_bd_rate(
    request: Request,
    name: NamePath,
    experiment_id: Annotated[str, Query(pattern=ID_PATTERN)],
    quality: QualityQuery = None,
    dataset: DatasetQuery = None,
) -> Response:
    return json_response(
        _report(state(request), experiment_id, name, quality, dataset, by_anchor=True)
    )


@router.get(
    "/experiments/{experiment_id}/bd-rate",
    summary="BD-rate report of an experiment against an anchor (default: the one in force)",
    tags=["experiments"],
    **BD_RATE_REPORT,
)
def experiment_bd_rate(
    request: Request,
    experiment_id: IdPath,
    anchor: Annotated[
        str | None, Query(pattern=ANCHOR_NAME_PATTERN, description="An anchor's name")
    ] = None,
    quality: QualityQuery = None,
) -> Response:
    return json_response(_report(state(request), experiment_id, anchor, quality))


def _report(
    st: AppState,
    experiment_id: str,
    anchor_name: str | None,
    quality: str | None,
    anchor_set: str | None = None,
    *,
    by_anchor: bool = False,
) -> dict[str, Any]:
    """A BD report of an experiment against an anchor of ITS test set: the one in force
    there, or the named one (of the `dataset` given, for the by-anchor route)."""
    row = st.store.get_experiment(experiment_id)
    if row is None:
        raise ApiError(404, f"no experiment {experiment_id!r}")
    dataset = row.get("dataset")
    if by_anchor and anchor_set != dataset:
        _anchor(st, anchor_name or "", anchor_set)  # 404 first when there is no such anchor
        raise ApiError(
            422,
            f"experiment {experiment_id!r} is of {_set_name(dataset)} but anchor "
            f"{anchor_name!r} is of {_set_name(anchor_set)}: BD-rates compare curves of one "
            "test set",
        )
    if anchor_name is None:
        chosen = in_force(st.store, st.settings, dataset)
        if chosen is None:
            raise ApiError(
                404,
                f"no anchor in force on {_set_name(dataset)}: import one "
                "(codecdash import-results --anchor FILE)",
            )
    else:
        chosen = _anchor(st, anchor_name, dataset)
    points = row["rd_points"] or []
    if not points:
        raise ApiError(422, f"experiment {experiment_id!r} has no rd_points")
    axis = "ms_ssim" if quality == "ms_ssim" else "psnr" if quality else st.settings.quality_metric
    try:
        report = bd_report_for(chosen, points, axis)
    except ValueError as exc:
        raise ApiError(
            422, f"no BD-rate of {experiment_id!r} against {chosen['name']!r}: {exc}"
        ) from None
    return {**report, "experiment_id": experiment_id, "dataset": dataset}


def _anchor(st: AppState, name: str, dataset: str | None = None) -> dict[str, Any]:
    found = next(
        (a for a in st.store.anchors() if a["name"] == name and a["dataset"] == dataset), None
    )
    if found is None:
        raise ApiError(404, f"no anchor {name!r}{_of_set(dataset)}")
    return found


def _set_name(dataset: str | None) -> str:
    return "the unspecified test set" if dataset is None else f"test set {dataset!r}"


def _of_set(dataset: str | None) -> str:
    return "" if dataset is None else f" in test set {dataset!r}"
