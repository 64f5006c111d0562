"""Curation: delete experiments to the trash and restore them, one or in bulk; the trash and
its purge; the audit log (docs/curation.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from codecdash.api.auth import require_write
from codecdash.api.bodies import JsonBody
from codecdash.api.errors import ApiError
from codecdash.api.experiments import WRITE_ERRORS, IdPath, json_response
from codecdash.api.state import state
from codecdash.curation_models import (
    AuditPage,
    BulkDelete,
    BulkIds,
    Deleted,
    Purge,
    Purged,
    Restored,
    TrashPage,
)
from codecdash.experiments.curation import CurationService, Filter
from codecdash.experiments.query import CURSOR_PATTERN
from codecdash.models import ErrorResponse, Experiment, Text
from codecdash.store.audit import Action

router = APIRouter(prefix="/api/v1", tags=["curation"])
BULK_DELETE: JsonBody[BulkDelete] = JsonBody(BulkDelete, "BulkDelete")
BULK_IDS: JsonBody[BulkIds] = JsonBody(BulkIds, "BulkIds")
PURGE: JsonBody[Purge] = JsonBody(Purge, "Purge")
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "The experiment is live (not in the trash)"}
}
# The body-less writes answer these of the write errors.
NO_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    k: v for k, v in WRITE_ERRORS.items() if k in (401, 429, 503)
}


def curation(request: Request) -> CurationService:
    service: CurationService = state(request).extras["curation"]
    return service


@router.delete(
    "/experiments/{experiment_id}",
    response_model=Experiment,
    tags=["experiments"],
    summary="Move an experiment to the trash (soft delete; restorable)",
    description=(
        "The experiment leaves lists, totals, status counts, the snapshot, leaderboards and "
        "BD-rate figures; `GET` then answers 404 unless `include_deleted=true`. The answer "
        "is the experiment as deleted, with `deleted_at` and `deleted_by`. Recorded in the "
        "audit log. 404 for an experiment that is not live (unknown, or already in the trash)."
    ),
    responses={**NOT_FOUND, **NO_BODY_ERRORS},
)
def delete_experiment(
    request: Request,
    experiment_id: IdPath,
    token: Annotated[str, Depends(require_write)],
) -> Response:
    service = curation(request)
    deleted = service.delete(experiment_id, token)
    if deleted is None:
        if service.in_trash(experiment_id):
            raise ApiError(404, f"experiment {experiment_id!r} is already in the trash")
        raise ApiError(404, f"no experiment {experiment_id!r}")
    return json_response(deleted)


@router.post(
    "/experiments/{experiment_id}/restore",
    response_model=Experiment,
    tags=["experiments"],
    summary="Bring an experiment back from the trash, as it was",
    description=(
        "Its BD-rate is derived again against the anchor in force (the same figure when the "
        "anchor has not changed since). Recorded in the audit log. 409 for an experiment that "
        "is live (not in the trash), 404 for one that is neither."
    ),
    responses={**NOT_FOUND, **CONFLICT, **WRITE_ERRORS},
)
def restore_experiment(
    request: Request,
    experiment_id: IdPath,
    token: Annotated[str, Depends(require_write)],
) -> Response:
    service = curation(request)
    back = service.restore([experiment_id], token)
    if not back:
        if service.store.curation.live([experiment_id]):
            raise ApiError(
                409, f"experiment {experiment_id!r} is live: there is nothing to restore"
            )
        raise ApiError(404, f"no experiment {experiment_id!r} in the trash")
    return json_response(back[0])


@router.post(
    "/experiments/delete",
    response_model=Deleted,
    summary="Move many experiments to the trash: by ids or by a filter, with a dry run",
    description=(
        "With `ids`, those experiments (the live ones); else those the filter matches, its "
        "fields AND-ed as in the list's query (at least one is needed). `dry_run: true` "
        "only counts (`matched`); send it first. One transaction moves at most `limit` "
        "(10,000), the oldest first: call again while `deleted` < `matched`. Recorded in "
        "the audit log with the filter.\n\n"
        "Refused beyond what the schema states:\n"
        "- **422** `invalid`: neither `ids` nor any filter field (nothing would match all)."
    ),
    responses=WRITE_ERRORS,
    openapi_extra=BULK_DELETE.openapi,
)
async def delete_many(
    request: Request,
    body: Annotated[BulkDelete, Depends(BULK_DELETE)],
    token: Annotated[str, Depends(require_write)],
) -> Response:
    service = curation(request)
    if body.ids is not None:
        answer = await run_in_threadpool(
            lambda: service.delete_ids(body.ids or [], token, dry_run=body.dry_run)
        )
        return json_response(answer)
    chosen = Filter(
        status=body.status or (),
        q=body.q,
        worker_id=body.worker_id,
        tag=body.tag,
        created_after=body.created_after.timestamp() if body.created_after else None,
        created_before=body.created_before.timestamp() if body.created_before else None,
    )
    if chosen.empty():
        raise ApiError(
            422,
            "name the experiments: `ids`, or at least one filter (status, q, worker_id, "
            "tag, created_after, created_before)",
        )
    answer = await run_in_threadpool(
        lambda: service.delete_matching(chosen, token, dry_run=body.dry_run, limit=body.limit)
    )
    return json_response(answer)


@router.post(
    "/experiments/restore",
    response_model=Restored,
    summary="Bring many experiments back from the trash",
    description="Those of `ids` in the trash; the others are ignored (`restored` counts).",
    responses={**CONFLICT, **WRITE_ERRORS},
    openapi_extra=BULK_IDS.openapi,
)
async def restore_many(
    request: Request,
    body: Annotated[BulkIds, Depends(BULK_IDS)],
    token: Annotated[str, Depends(require_write)],
) -> Response:
    back = await run_in_threadpool(curation(request).restore, body.ids, token)
    return json_response({"restored": len(back), "ids": [r["id"] for r in back], "items": back})


@router.get(
    "/trash",
    response_model=TrashPage,
    # What people deleted is not for every viewer of a public dashboard: a write token.
    dependencies=[Depends(require_write)],
    summary="The experiments in the trash, most recently deleted first",
    description=(
        "The next page: `cursor` set to the `next_cursor` of this one (null on the last).\n\n"
        "Refused beyond what the schema states:\n"
        "- **400** `bad_cursor`: a `cursor` that this server did not make."
    ),
    responses={
        400: {"model": ErrorResponse, "description": "A cursor not made by this server"},
        401: {"model": ErrorResponse, "description": "Not a write token"},
    },
)
def trash(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=2000, pattern=CURSOR_PATTERN, description="`next_cursor` of a page"),
    ] = None,
) -> Response:
    return json_response(curation(request).trash(limit, cursor))


@router.post(
    "/trash/purge",
    response_model=Purged,
    summary="Drop experiments from the trash for good (with their training curves)",
    description=(
        "Those deleted more than `older_than_days` ago, or those of `ids`; neither: the whole "
        "trash. `dry_run: true` only counts. serve purges what is older than "
        "`trash_retention_days` by itself. Recorded in the audit log."
    ),
    responses=WRITE_ERRORS,
    openapi_extra=PURGE.openapi,
)
async def purge(
    request: Request,
    body: Annotated[Purge, Depends(PURGE)],
    token: Annotated[str, Depends(require_write)],
) -> Response:
    answer = await run_in_threadpool(
        lambda: curation(request).purge(
            token, older_than_days=body.older_than_days, ids=body.ids, dry_run=body.dry_run
        )
    )
    return json_response(answer)


@router.get(
    "/audit",
    response_model=AuditPage,
    dependencies=[Depends(require_write)],
    summary="The audit log: deletions, restores, purges and edits, newest first",
    responses={
        401: {"model": ErrorResponse, "description": "Not a write token"},
    },
)
def audit(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="`next_before` of the previous page")
    ] = None,
    action: Annotated[Action | None, Query(description="Only this action")] = None,
    actor: Annotated[Text | None, Query(max_length=100, description="Only this token")] = None,
) -> Response:
    return json_response(curation(request).audit(limit, before, action, actor))
