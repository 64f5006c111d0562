"""The shapes of curation's bodies and answers: deletions, restores, the trash, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from codecdash.experiments.vocabulary import STATUSES, ExperimentStatus
from codecdash.models import Experiment, ExperimentId, JsonInt, Text, Timestamp, _Strict

MAX_BULK = 10_000
"""Ids one bulk request names, and experiments one bulk deletion moves, at most."""


class BulkDelete(_Strict):
    """POST /api/v1/experiments/delete: the experiments named by `ids`, or those that the
    filter matches (its fields AND-ed, as in the list's query); at least one is needed."""

    ids: list[ExperimentId] | None = Field(
        None, max_length=MAX_BULK, description="These experiments (the filter is then unused)."
    )
    status: list[ExperimentStatus] | None = Field(
        None, max_length=len(STATUSES), examples=[["failed"]]
    )
    q: Text | None = Field(None, max_length=200, description="Text in the id, the name or a tag.")
    worker_id: Text | None = Field(None, max_length=128)
    tag: Text | None = Field(None, max_length=64)
    created_after: Timestamp | None = None
    created_before: Timestamp | None = Field(None, examples=["2026-01-01T00:00:00Z"])
    dry_run: bool = Field(
        False, description="Only count: `matched` says how many would go; nothing moves."
    )
    limit: JsonInt = Field(
        MAX_BULK,
        ge=1,
        le=MAX_BULK,
        description="Move at most this many (the oldest first); call again for the rest.",
    )


class BulkIds(_Strict):
    """POST /api/v1/experiments/restore: the trashed experiments to bring back."""

    ids: list[ExperimentId] = Field(min_length=1, max_length=MAX_BULK)


class Purge(_Strict):
    """POST /api/v1/trash/purge: drop for good what the trash holds deleted more than
    `older_than_days` ago, or these `ids`; both: those ids among the old ones."""

    older_than_days: float | None = Field(None, ge=0, le=36500, examples=[30])
    ids: list[ExperimentId] | None = Field(None, max_length=MAX_BULK)
    dry_run: bool = False


class Deleted(BaseModel):
    dry_run: bool
    matched: int = Field(description="Experiments the ids or the filter match (all of them).")
    deleted: int = Field(description="Experiments moved to the trash by this request.")
    ids: list[str] = Field(description="The ids moved (or, with `dry_run`, that would move).")
    filter: dict[str, Any] | None = None


class Restored(BaseModel):
    restored: int
    ids: list[str]
    items: list[Experiment]


class Purged(BaseModel):
    dry_run: bool
    matched: int
    purged: int
    ids: list[str]


class TrashPage(BaseModel):
    items: list[Experiment] = Field(description="Most recently deleted first.")
    next_cursor: str | None
    total: int = Field(description="Experiments in the trash.")


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    actor: str | None = Field(
        description="The write token's name; `local:<user>`: the command line; null: serve's "
        "hourly purge."
    )
    action: Literal["delete", "restore", "purge", "edit"]
    count: int = Field(description="Experiments the operation touched.")
    ids: list[str] = Field(description="Their ids (the first 1,000).")
    details: dict[str, Any] | None = Field(
        None, description="The filter of a bulk deletion, the fields of an edit, …"
    )


class AuditPage(BaseModel):
    items: list[AuditEntry] = Field(description="Newest first.")
    next_before: int | None = Field(description="`before` of the next page; null on the last.")
