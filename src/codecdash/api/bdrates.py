"""The BD-rate table: methods × test sets against each set's anchor (JSON, CSV, LaTeX)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from codecdash.api.auth import require_read
from codecdash.api.errors import ApiError
from codecdash.api.state import state
from codecdash.experiments.table import TableError, TableQuery, table_for
from codecdash.models import ErrorResponse, Text

router = APIRouter(prefix="/api/v1", tags=["bd-rates"])
MAX_REPEATS = 50
"""Values of one repeated parameter (anchor=, dataset=, method=)."""
# One or more characters, no control characters: an anchor= value (SET:NAME or NAME).
ANCHOR_VALUE_PATTERN = r"^[^\u0000-\u001f\u007f]+$"


class BdCell(BaseModel):
    """A method's figures on one test set, or the reason there are none."""

    bd_rate_pct: float | None = Field(
        None, description="BD-rate against the set's anchor, %: negative = fewer bits."
    )
    bd_psnr_db: float | None = Field(None, description="BD-PSNR, dB: positive = better.")
    overlap: float | None = Field(None, description="Share of the quality range both cover.")
    warning: str | None = Field(None, description="Set when the figures describe only part.")
    best: bool | None = Field(None, description="True on the lowest BD-rate of the column.")
    points: int | None = Field(None, description="Points of the method's merged curve.")
    experiments: int = Field(description="The method's experiments on the set.")
    reason: str | None = Field(None, description="Why there is no figure (and no other field).")
    sequences: dict[str, dict[str, Any]] | None = Field(
        None, description="With `sequences=true`: the same per sequence (BD figures or reason)."
    )


class BdDataset(BaseModel):
    name: str | None = Field(description="The test set; null: unspecified.")
    key: str = Field(description='Its key in `cells` (the name; `""` when unspecified).')
    anchor: str | None = Field(description="The anchor its cells are measured against.")
    rate_unit: Literal["kbps", "bpp"] | None = Field(description="The anchor's rate unit.")


class BdRow(BaseModel):
    method: str = Field(description="The method (or the experiment's name when it is its own).")
    experiments: int = Field(description="Its experiments on the sets shown.")
    experiment_id: str | None = Field(
        None, description="Set when the row is one experiment (no method, or per=experiment)."
    )
    cells: dict[str, BdCell] = Field(
        description="By set key; a set where the method has no results has no cell."
    )


class BdTableAnswer(BaseModel):
    quality_metric: Literal["psnr", "ms_ssim"]
    per: Literal["method", "experiment"]
    datasets: list[BdDataset]
    rows: list[BdRow]


REFUSALS = (
    "Refused beyond what the schema states:\n"
    "- **404** `not_found`: an `anchor=` naming no anchor (of that set, or of any set);\n"
    "- **400** `bad_request`: a `sort` that is neither `method` nor a test set's name."
)


@router.get(
    "/bd-rates",
    response_model=BdTableAnswer,
    dependencies=[Depends(require_read)],
    summary="The BD-rate table: methods × test sets against each set's anchor (JSON, CSV, LaTeX)",
    description=(
        "A method's curve on a set is the union of its experiments' average points there; "
        "each cell is its BD-rate against the anchor in force on that set (the "
        "`default_anchors` / `default_anchor` settings, or `anchor=`), or the reason there "
        "is none. `format=csv` (or `Accept: text/csv`) answers CSV, `format=latex` a LaTeX "
        "`tabular`.\n\n" + REFUSALS
    ),
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-latex": {"schema": {"type": "string"}},
            }
        },
        400: {"model": ErrorResponse, "description": "A sort that names no column"},
        404: {"model": ErrorResponse, "description": "An anchor= that names no anchor"},
        422: {"model": ErrorResponse, "description": "Invalid parameters"},
    },
)
async def bd_rates(
    request: Request,
    anchor: Annotated[
        list[Annotated[str, Field(max_length=302, pattern=ANCHOR_VALUE_PATTERN)]] | None,
        Query(
            max_length=MAX_REPEATS,
            description="The anchor per set, repeated: `SET:NAME` for one set (`:NAME` the "
            "unspecified one), or `NAME` for every set that has an anchor of that name",
            examples=[["UVG-1080p:x265-medium-tune-zerolatency"]],
        ),
    ] = None,
    quality: Annotated[
        Literal["psnr", "ms_ssim"] | None,
        Query(description="Quality axis (default: the `quality_metric` setting)"),
    ] = None,
    dataset: Annotated[
        list[Annotated[Text, Field(max_length=100)]] | None,
        Query(
            max_length=MAX_REPEATS,
            description='Only these test sets (repeated; `""`: the unspecified one)',
        ),
    ] = None,
    method: Annotated[
        list[Annotated[Text, Field(max_length=200)]] | None,
        Query(max_length=MAX_REPEATS, description="Only these methods (repeated; exact)"),
    ] = None,
    q: Annotated[Text | None, Query(max_length=200, description="Text in the method")] = None,
    sort: Annotated[
        Text,
        Query(
            min_length=1,
            max_length=101,
            description="`method`, or a test set's name: its best BD-rate first; `-` first "
            "reverses",
        ),
    ] = "method",
    per: Annotated[
        Literal["method", "experiment"],
        Query(description="Rows per method (default) or per experiment"),
    ] = "method",
    sequences: Annotated[
        bool, Query(description="Add each cell's per-sequence breakdown (`sequences`)")
    ] = False,
    format: Annotated[
        Literal["json", "csv", "latex"] | None,
        Query(description="csv (also `Accept: text/csv`) or latex (a `tabular`)"),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    st = state(request)
    query = TableQuery(
        quality=quality or st.settings.quality_metric,
        anchors=tuple(anchor or ()),
        datasets=tuple(dataset or ()),
        methods=tuple(method or ()),
        q=q or None,
        sort=sort,
        per=per,
        sequences=sequences,
    )
    if format is None:
        format = "csv" if "text/csv" in (accept or "") else "json"
    # Kept compressed too: a table of a thousand methods is some 600 KB of JSON.
    gzipped = "gzip" in (accept_encoding or "")
    table = table_for(st.store, st.settings)
    try:
        body = await run_in_threadpool(table.encoded, query, format, gzipped)
    except TableError as exc:
        raise ApiError(exc.status, str(exc)) from None
    headers = {"Vary": "Accept, Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    if format == "csv":
        headers["Content-Disposition"] = 'attachment; filename="bd-rates.csv"'
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    if format == "latex":
        headers["Content-Disposition"] = 'attachment; filename="bd-rates.tex"'
        return Response(body, media_type="application/x-latex; charset=utf-8", headers=headers)
    return Response(body, media_type="application/json", headers=headers)
