"""Curation: delete experiments to the trash, restore them, purge the trash; the audit log.

The API, the CLI (``codecdash experiments …``) and serve's periodic purge call
:class:`CurationService`. It shapes the store's records as the API shows them and derives
a restored experiment's BD-rate against the anchor in force (the same deriver as every
other write, ``experiments/service.py``); the store keeps the summaries exact
(``store/trash.py``). docs/curation.md describes the whole.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codecdash.config import Settings
from codecdash.experiments.query import Filters, ListQuery
from codecdash.experiments.readmodel import experiment
from codecdash.experiments.service import bd_rates_for
from codecdash.store import Store
from codecdash.timefmt import iso

log = logging.getLogger("codecdash.curation")
PURGE_EVERY_S = 3600.0
MAX_BULK = 10_000
"""Experiments one bulk deletion moves at most (the rest: call again)."""
DAY_S = 86400.0


@dataclass
class Filter(Filters):
    """Which experiments a bulk deletion takes: the list's filters (AND-ed)."""

    def empty(self) -> bool:
        return not self.status and all(
            v is None or v == ""
            for v in (self.q, self.worker_id, self.tag, self.created_after, self.created_before)
        )

    def query(self) -> ListQuery:
        return ListQuery(
            status=list(self.status),
            q=self.q or None,
            worker_id=self.worker_id or None,
            tag=self.tag or None,
            created_after=self.created_after,
            created_before=self.created_before,
        )

    def described(self) -> dict[str, Any]:
        """The filter as the audit log and the answers show it (times in ISO 8601)."""
        out: dict[str, Any] = {}
        if self.status:
            out["status"] = list(self.status)
        for name in ("q", "worker_id", "tag"):
            if value := getattr(self, name):
                out[name] = value
        for name in ("created_after", "created_before"):
            if (value := getattr(self, name)) is not None:
                out[name] = iso(value)
        return out


class CurationService:
    """See the module's docstring. Answers plain JSON-ready data."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def delete(self, experiment_id: str, actor: str | None) -> dict[str, Any] | None:
        """Move one experiment to the trash; None when it is not live."""
        moved = self.store.curation.delete([experiment_id], actor)
        return experiment(moved[0]) if moved else None

    def delete_ids(self, ids: Sequence[str], actor: str | None, *, dry_run: bool) -> dict[str, Any]:
        """Move these experiments to the trash (those live); `dry_run`: only count them."""
        ids = list(dict.fromkeys(ids))
        if dry_run:
            found = self.store.curation.live(ids)
            return {"dry_run": True, "matched": len(found), "deleted": 0, "ids": found}
        moved = self.store.curation.delete(ids, actor, {"ids_sent": len(ids)})
        return {
            "dry_run": False,
            "matched": len(moved),
            "deleted": len(moved),
            "ids": [r["id"] for r in moved],
        }

    def delete_matching(
        self, chosen: Filter, actor: str | None, *, dry_run: bool, limit: int = MAX_BULK
    ) -> dict[str, Any]:
        """Move up to `limit` experiments that `chosen` matches (oldest first) to the trash;
        `dry_run`: only count them. The answer's `matched` counts every match."""
        if chosen.empty():
            raise ValueError("a bulk deletion needs a filter or ids (nothing would match all)")
        query = chosen.query()
        if dry_run:
            ids, total = self.store.curation.matching(query, limit)
            return {
                "dry_run": True,
                "matched": total,
                "deleted": 0,
                "ids": ids,
                "filter": chosen.described(),
            }
        moved, total = self.store.curation.delete_matching(
            query, limit, actor, {"filter": chosen.described()}
        )
        return {
            "dry_run": False,
            "matched": total,
            "deleted": len(moved),
            "ids": [r["id"] for r in moved],
            "filter": chosen.described(),
        }

    def restore(self, ids: Sequence[str], actor: str | None) -> list[dict[str, Any]]:
        """Bring these experiments back from the trash; returns those restored."""
        derive = bd_rates_for(self.store, self.settings).derive
        back = self.store.curation.restore(ids, actor, derive)
        return [experiment(r) for r in back]

    def trashed(self, experiment_id: str) -> dict[str, Any] | None:
        found = self.store.curation.trashed(experiment_id)
        return None if found is None else experiment(found)

    def in_trash(self, experiment_id: str) -> bool:
        return bool(self.store.curation.in_trash([experiment_id]))

    def trash(self, limit: int, cursor: str | None = None) -> dict[str, Any]:
        items, next_cursor, total = self.store.curation.trash_page(limit, cursor)
        return {
            "items": [experiment(r) for r in items],
            "next_cursor": next_cursor,
            "total": total,
        }

    def purge(
        self,
        actor: str | None,
        *,
        older_than_days: float | None = None,
        ids: Sequence[str] | None = None,
        dry_run: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Drop for good what the trash holds deleted more than `older_than_days` ago (or
        these ids; all of it when neither is given)."""
        before = None
        if older_than_days is not None:
            before = (time.time() if now is None else now) - older_than_days * DAY_S
        details: Mapping[str, Any] = (
            {"older_than_days": older_than_days} if older_than_days is not None else {}
        )
        if dry_run:
            if ids is not None:
                found = self.store.curation.in_trash(ids)
                if before is not None:
                    found = [
                        i
                        for i in found
                        if (t := self.store.curation.trashed(i)) is not None
                        and t["deleted_at"] < before
                    ]
                return {"dry_run": True, "matched": len(found), "purged": 0, "ids": found}
            n = self.store.curation.trash_count(before)
            return {"dry_run": True, "matched": n, "purged": 0, "ids": []}
        purged = self.store.curation.purge(actor, before=before, ids=ids, details=details)
        return {"dry_run": False, "matched": len(purged), "purged": len(purged), "ids": purged}

    # The store's audit() parameters on purpose: this layer only adds the answer's shape.
    def audit(
        self,
        limit: int,
        before: int | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        entries, next_before = self.store.curation.audit(limit, before, action, actor)
        for entry in entries:
            entry["at"] = iso(entry["at"])
        return {"items": entries, "next_before": next_before}


async def purge_periodically(service: CurationService, settings: Settings) -> None:
    """serve's task: hourly, purge the trash older than `trash_retention_days` (0: never)."""
    while True:
        days = settings.trash_retention_days
        if days > 0:
            try:
                done = await asyncio.to_thread(service.purge, None, older_than_days=days)
                if done["purged"]:
                    log.info("purged %d experiments deleted over %g days ago", done["purged"], days)
            except Exception as exc:  # the store may be briefly unavailable; try next hour
                log.warning("purging the trash failed: %s", exc)
        await asyncio.sleep(PURGE_EVERY_S)
