"""Curation on the store: delete to the trash, restore, purge, and the audit log.

Each operation is one write transaction (its audit entry included) that bumps the data
version and tells the store's listeners, like every other write (store/store.py). The
SQL is ``store/trash.py`` and ``store/audit.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from codecdash.experiments.query import ListQuery
from codecdash.store import audit, trash
from codecdash.store.counters import bump_data_version
from codecdash.store.db import Database


class _Store(Protocol):
    """What curation needs of codecdash.store.Store."""

    @property
    def db(self) -> Database: ...

    def changed(self) -> None: ...


class Curation:
    """The store's curation operations (``Store.curation``)."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    def delete(
        self,
        ids: Sequence[str],
        actor: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Move these experiments to the trash; returns those moved (records with
        `deleted_at` and `deleted_by`), none for ids not found."""
        with self.store.db.write() as conn:
            moved = _to_trash(conn, ids, actor, details)
        if moved:
            self.store.changed()
        return moved

    def live(self, ids: Sequence[str]) -> list[str]:
        """Which of these ids are live experiments."""
        with self.store.db.read() as conn:
            return trash.live_ids(conn, ids)

    def matching(self, query: ListQuery, limit: int) -> tuple[list[str], int]:
        """Up to `limit` ids of the experiments a filter matches, and how many it matches."""
        with self.store.db.read() as conn:
            return trash.matching_ids(conn, query, limit)

    def delete_matching(
        self,
        query: ListQuery,
        limit: int,
        actor: str | None,
        details: Mapping[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Move up to `limit` of the experiments a filter matches (oldest first) to the trash
        in one transaction; returns those moved and how many matched."""
        with self.store.db.write() as conn:
            ids, total = trash.matching_ids(conn, query, limit)
            moved = _to_trash(conn, ids, actor, details)
        if moved:
            self.store.changed()
        return moved, total

    def restore(
        self, ids: Sequence[str], actor: str | None, derive: trash.Derive | None = None
    ) -> list[dict[str, Any]]:
        """Bring these experiments back from the trash as they were (their BD-rate derived
        again by `derive`); returns those restored."""
        now = time.time()
        with self.store.db.write() as conn:
            back = trash.restore(conn, ids, derive)
            if back:
                audit.record(conn, "restore", [r["id"] for r in back], actor, now)
                bump_data_version(conn)
        if back:
            self.store.changed()
        return back

    def purge(
        self,
        actor: str | None,
        *,
        before: float | None = None,
        ids: Sequence[str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Drop for good the trashed experiments deleted before `before` (or these ids),
        with their training curves; returns their ids."""
        now = time.time()
        with self.store.db.write() as conn:
            purged = trash.purge(conn, before=before, ids=ids)
            if purged:
                audit.record(conn, "purge", purged, actor, now, details)
                bump_data_version(conn)
        if purged:
            self.store.changed()
        return purged

    def trashed(self, experiment_id: str) -> dict[str, Any] | None:
        with self.store.db.read() as conn:
            return trash.get(conn, experiment_id)

    def in_trash(self, ids: Sequence[str]) -> list[str]:
        with self.store.db.read() as conn:
            return trash.in_trash(conn, ids)

    def trash_page(
        self, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        with self.store.db.read() as conn:
            return trash.page(conn, limit, cursor)

    def trash_count(self, before: float | None = None) -> int:
        """Experiments in the trash (deleted before `before`)."""
        with self.store.db.read() as conn:
            return trash.count_before(conn, before)

    def audit(
        self,
        limit: int,
        before: int | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        with self.store.db.read() as conn:
            return audit.entries(conn, limit, before, action, actor)


def _to_trash(
    conn: Connection, ids: Sequence[str], actor: str | None, details: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Move these experiments to the trash and record it in the audit log (one deletion)."""
    now = time.time()
    moved = trash.move(conn, ids, now, actor)
    if moved:
        audit.record(conn, "delete", [r["id"] for r in moved], actor, now, details)
        bump_data_version(conn)
    return moved
