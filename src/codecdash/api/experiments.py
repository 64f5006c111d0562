"""Experiments: list, get, create, replace, patch, batch."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from codecdash.api.auth import require_read, require_write
from codecdash.api.bodies import JsonBody
from codecdash.api.errors import ApiError
from codecdash.api.state import state
from codecdash.experiments.query import CURSOR_PATTERN, SORTABLE, ListQuery
from codecdash.experiments.service import TagsRefused
from codecdash.experiments.vocabulary import STATUSES
from codecdash.models import (
    ID_PATTERN,
    MAX_PARAMS_BYTES,
    MAX_TAGS_BYTES,
    Accepted,
    ErrorResponse,
    Experiment,
    ExperimentBatch,
    ExperimentIn,
    ExperimentPage,
    ExperimentPatch,
    Text,
    Timestamp,
)

router = APIRouter(prefix="/api/v1", tags=["experiments"])
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body shorter or longer than its Content-Length"},
    401: {"model": ErrorResponse, "description": "Missing, malformed, unknown or revoked token"},
    408: {"model": ErrorResponse, "description": "Body not received within the time limit"},
    413: {"model": ErrorResponse, "description": "Body over 4 MiB"},
    415: {"model": ErrorResponse, "description": "Body is not JSON"},
    422: {
        "model": ErrorResponse,
        "description": "Not JSON, or invalid fields (at most 20 listed; the message counts all)",
    },
    429: {"model": ErrorResponse, "description": "Rate limited; see Retry-After"},
    503: {
        "model": ErrorResponse,
        "description": "Store unavailable, or too many bodies being received; see Retry-After",
    },
}
# Rules the schema cannot state (JSON Schema has no "now" and counts items, not bytes),
# said in words in the operations' descriptions.
CLOCK_RULE = "a reported time more than `max_future_seconds` ahead of the server's clock"
SIZE_RULE = (
    f"`params` over {MAX_PARAMS_BYTES // 1024} KiB or `tags` over "
    f"{MAX_TAGS_BYTES // 1024} KiB of JSON"
)


def put_responses(model: type[BaseModel], invalid: str) -> dict[int | str, dict[str, Any]]:
    """A create-or-replace PUT's answers: 200 or 201 with `model`, the write errors, and
    422 for `invalid` (what is refused)."""
    return {
        201: {"model": model, "description": "Created"},
        **WRITE_ERRORS,
        422: {"model": ErrorResponse, "description": invalid},
    }


def same_as_path(what: str, sent: str | None, path: str) -> None:
    """A PUT body may repeat its path's key (as GET gave it), not name another (422)."""
    if sent is not None and sent != path:
        raise ApiError(422, f"body {what} {sent!r} differs from the path's {path!r}")


def beyond_the_schema(*rules: str) -> str:
    """An operation's description of the refusals its schema cannot state (all 422)."""
    lines = "".join(f"- **422** `invalid`: {rule};\n" for rule in rules)
    return "Refused beyond what the schema states:\n" + lines.rstrip(";\n") + "."


# The bodies, validated off the event loop (api/bodies.py).
EXPERIMENT_IN: JsonBody[ExperimentIn] = JsonBody(ExperimentIn, "ExperimentIn")
EXPERIMENT_PATCH: JsonBody[ExperimentPatch] = JsonBody(ExperimentPatch, "ExperimentPatch")
EXPERIMENT_BATCH: JsonBody[ExperimentBatch] = JsonBody(ExperimentBatch, "ExperimentBatch")
IdPath = Annotated[str, Path(pattern=ID_PATTERN, examples=["ssf-lambda-0.0130-r3"])]
# Documented (not enforced by FastAPI, so the handler's 400 names the known values): the
# patterns accept exactly what the handler accepts.
_ONE_STATUS = "(?:" + "|".join(STATUSES) + ")"
STATUS_PATTERN = rf"^,*(?:{_ONE_STATUS}(?:,+{_ONE_STATUS})*,*)?$"
SORT_PATTERN = r"^[-+]?(?:" + "|".join(SORTABLE) + ")$"
PAGE_BYTES = 4 * 1024 * 1024
"""A list page's JSON stops growing past this: large experiments make shorter pages."""


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer serialised with orjson (the API's one way to answer JSON)."""
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


@router.get(
    "/experiments",
    response_model=ExperimentPage,
    dependencies=[Depends(require_read)],
    summary="List experiments with filters, sort and keyset pagination",
    description=(
        "The next page: the same query with `cursor` set to the `next_cursor` of this one "
        "(null on the last page).\n\n"
        "Refused beyond what the schema states:\n"
        "- **400** `bad_cursor`: a `cursor` that this server did not make for this `sort` "
        "(the schema can say only that it is base64url);\n"
        "- **400** `bad_request`: where the experiments are read from DynamoDB (AWS mode), "
        "a filter, sort or further page that the table cannot answer (the message names it)."
    ),
    responses={
        400: {
            "model": ErrorResponse,
            "description": "A cursor not made by this server (`bad_cursor`), or a query "
            "this deployment cannot answer",
        },
        422: {"model": ErrorResponse, "description": "Invalid parameters"},
    },
)
def list_experiments(
    request: Request,
    status: Annotated[
        str | None,
        Query(
            description="One status or several, comma-separated",
            examples=["completed"],
            max_length=200,
            json_schema_extra={"pattern": STATUS_PATTERN},
        ),
    ] = None,
    q: Annotated[
        Text | None, Query(max_length=200, description="Text in the id, the name or a tag")
    ] = None,
    sort: Annotated[
        str,
        Query(
            description=f"Field to sort by, '-' for descending: {', '.join(SORTABLE)}",
            examples=["-psnr_db"],
            json_schema_extra={"pattern": SORT_PATTERN},
        ),
    ] = "-created_at",
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=1000,
            description="Rows wanted; a page stops early (with `next_cursor`) where more "
            "would take its JSON past 4 MiB",
        ),
    ] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=CURSOR_PATTERN,
            description="`next_cursor` of the previous page (made by this server)",
        ),
    ] = None,
    worker_id: Annotated[Text | None, Query(max_length=128)] = None,
    tag: Annotated[Text | None, Query(max_length=64)] = None,
    created_after: Timestamp | None = None,  # ISO 8601 only, as in bodies
    created_before: Timestamp | None = None,
    min_psnr_db: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    min_bitrate_reduction_pct: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    max_bd_rate_pct: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    dataset: Annotated[
        Text | None,
        Query(
            max_length=100, description="Only this test set (exact name)", examples=["UVG-1080p"]
        ),
    ] = None,
    method: Annotated[
        Text | None,
        Query(max_length=200, description="Only this method (the `method` field, exact)"),
    ] = None,
) -> Response:
    statuses = [s for s in (status or "").split(",") if s]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ApiError(400, f"unknown status {unknown[0]!r}; one of {', '.join(STATUSES)}")
    field = sort[1:] if sort.startswith(("-", "+")) else sort
    if field not in SORTABLE:
        raise ApiError(400, f"cannot sort by {field!r}; one of {', '.join(SORTABLE)}")
    query = ListQuery(
        status=statuses,
        q=q or None,
        sort=sort,
        limit=limit,
        cursor=cursor,
        worker_id=worker_id,
        tag=tag,
        created_after=created_after.timestamp() if created_after else None,
        created_before=created_before.timestamp() if created_before else None,
        min_psnr_db=min_psnr_db,
        min_bitrate_reduction_pct=min_bitrate_reduction_pct,
        max_bd_rate_pct=max_bd_rate_pct,
        dataset=dataset or None,
        method=method or None,
    )
    page = state(request).experiments.list(query)  # QueryNotSupported: 400 (errors.py)
    items, next_cursor, total = page.items, page.next_cursor, page.total
    body = orjson.dumps({"items": items, "next_cursor": next_cursor, "total": total})
    if len(body) > PAGE_BYTES and len(items) > 1:
        # Fewer rows than asked for, and the cursor continues after the last one sent.
        kept, size = 0, 0
        for item in items:
            size += len(orjson.dumps(item)) + 1
            if kept and size > PAGE_BYTES:
                break
            kept += 1
        items, next_cursor = items[:kept], page.cursor_after(kept - 1)
        body = orjson.dumps({"items": items, "next_cursor": next_cursor, "total": total})
    return Response(body, media_type="application/json")


async def deleted_readers(
    request: Request,
    include_deleted: Annotated[
        bool,
        Query(
            description="Answer an experiment in the trash too (with its `deleted_at`); "
            "needs a write token: what people deleted is not for every viewer"
        ),
    ] = False,
) -> bool:
    """`include_deleted`, allowed to write tokens only (401/403 otherwise)."""
    if include_deleted:
        await require_write(request)
    return include_deleted


@router.get(
    "/experiments/{experiment_id}",
    response_model=Experiment,
    dependencies=[Depends(require_read)],
    summary="One experiment",
    responses={
        401: {"model": ErrorResponse, "description": "include_deleted without a write token"},
        404: {"model": ErrorResponse},
    },
)
def get_experiment(
    request: Request,
    experiment_id: IdPath,
    include_deleted: Annotated[bool, Depends(deleted_readers)],
) -> Response:
    found = state(request).experiments.get(experiment_id)
    if found is None:
        curation = state(request).extras.get("curation")
        if curation is not None and include_deleted:
            found = curation.trashed(experiment_id)
        elif curation is not None and curation.in_trash(experiment_id):
            raise ApiError(
                404,
                f"experiment {experiment_id!r} is in the trash (include_deleted=true shows it; "
                "POST …/restore brings it back)",
            )
    if found is None:
        raise ApiError(404, f"no experiment {experiment_id!r}")
    return json_response(found)


@router.post(
    "/experiments",
    status_code=201,
    response_model=Experiment,
    summary="Create an experiment (id generated when absent; 409 if it exists or is in the trash)",
    description=beyond_the_schema(CLOCK_RULE, SIZE_RULE),
    responses={409: {"model": ErrorResponse}, **WRITE_ERRORS},
    openapi_extra=EXPERIMENT_IN.openapi,
)
def create_experiment(
    request: Request,
    item: Annotated[ExperimentIn, Depends(EXPERIMENT_IN)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    created = state(request).writes.create(item)
    return json_response(created, 201, {"Location": f"/api/v1/experiments/{created['id']}"})


@router.put(
    "/experiments/{experiment_id}",
    response_model=Experiment,
    summary="Create or replace an experiment (idempotent)",
    description=beyond_the_schema(
        "the body's `id`, when present, differs from the path's `experiment_id`",
        CLOCK_RULE,
        SIZE_RULE,
    ),
    responses={
        **put_responses(Experiment, "Invalid fields, or a body `id` other than the path's"),
        409: {"model": ErrorResponse, "description": "The id is in the trash: restore it"},
    },
    openapi_extra=EXPERIMENT_IN.openapi,
)
def put_experiment(
    request: Request,
    experiment_id: IdPath,
    item: Annotated[ExperimentIn, Depends(EXPERIMENT_IN)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    same_as_path("id", item.id, experiment_id)
    stored, created = state(request).writes.put(experiment_id, item)
    return json_response(stored, 201 if created else 200)


@router.patch(
    "/experiments/{experiment_id}",
    response_model=Experiment,
    summary="Update some fields of an experiment",
    description=(
        "`add_tags` and `remove_tags` change the stored tags without resending them (removed "
        "first, then added; with `tags` in the same body, applied to those). A change of "
        "`name`, `notes` or the tags is recorded in the audit log.\n\n"
        + beyond_the_schema(CLOCK_RULE, SIZE_RULE, "more than 50 tags after `add_tags`")
    ),
    responses={404: {"model": ErrorResponse}, **WRITE_ERRORS},
    openapi_extra=EXPERIMENT_PATCH.openapi,
)
def patch_experiment(
    request: Request,
    experiment_id: IdPath,
    patch: Annotated[ExperimentPatch, Depends(EXPERIMENT_PATCH)],
    token: Annotated[str, Depends(require_write)],
) -> Response:
    try:
        stored = state(request).writes.patch(experiment_id, patch, token)
    except TagsRefused as exc:
        raise ApiError(422, str(exc)) from None
    if stored is None:
        curation = state(request).extras.get("curation")
        if curation is not None and curation.in_trash(experiment_id):
            raise ApiError(404, f"experiment {experiment_id!r} is in the trash: restore it first")
        raise ApiError(404, f"no experiment {experiment_id!r}")
    return json_response(stored)


@router.post(
    "/experiments/batch",
    response_model=Accepted,
    summary="Upsert up to 1,000 experiments in one transaction (all or nothing)",
    description=beyond_the_schema(CLOCK_RULE + " (in any item)", SIZE_RULE),
    responses={
        **WRITE_ERRORS,
        409: {"model": ErrorResponse, "description": "An id is in the trash: restore it"},
    },
    openapi_extra=EXPERIMENT_BATCH.openapi,
)
async def batch(
    request: Request,
    parsed: Annotated[ExperimentBatch, Depends(EXPERIMENT_BATCH)],
    _token: Annotated[str, Depends(require_write)],
) -> Response:
    accepted = await run_in_threadpool(state(request).writes.batch, parsed.items)
    return json_response({"accepted": accepted})
