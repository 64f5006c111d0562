"""The local store as sources: experiments, the fleet's heartbeats, costs and storage."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from sqlalchemy import Connection

from codecdash.config import Settings
from codecdash.experiments.readmodel import SUMMARY_FIELDS, ExperimentsReadModel
from codecdash.experiments.rederive import recomputing
from codecdash.sources.base import Facts, FieldInfo
from codecdash.store import Store, costs, fleet
from codecdash.store.counters import RESULTS_VERSION, data_version, read_counters
from codecdash.store.maintenance import database_bytes
from codecdash.store.reads import SqlExperiments, SqlRows
from codecdash.timefmt import iso


class _LocalSource:
    name = "local"
    sections: tuple[str, ...] = ()
    fields: dict[str, FieldInfo] = {}  # noqa: RUF012 - overridden per class

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def collect(self, now: float) -> Facts:
        return await anyio.to_thread.run_sync(self._collect_sync, now)

    def _collect_sync(self, now: float) -> Facts:
        with self.store.db.read() as conn:
            return self.read(conn, now)

    def read(self, conn: Connection, now: float) -> Facts:
        raise NotImplementedError


class ExperimentsSource(_LocalSource):
    """The experiments section, from the store through the read model."""

    name = "local.experiments"
    sections: tuple[str, ...] = ("experiments",)
    fields = {  # noqa: RUF012
        "total_experiments": FieldInfo("experiments ever reported"),
        "experiments_24h": FieldInfo("experiments created in the last 24 hours"),
        **{name: FieldInfo(*info) for name, info in SUMMARY_FIELDS.items()},
    }

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store, settings)
        # BD-rates derived again by this server: said only while it lasts.
        self.model = ExperimentsReadModel(
            SqlExperiments(store), settings, recomputing=lambda: recomputing(store)
        )

    def read(self, conn: Connection, now: float) -> Facts:
        facts = self.model.facts_from(SqlRows(conn), now)
        return {"experiments": {**facts, **self.versions(conn)}}

    def versions(self, conn: Connection) -> dict[str, str]:
        """What the page reads its experiment sections again on: `version` moves with every
        write, `results_version` with the writes that may change the results (completed
        experiments, R-D points, anchors: counters.RESULTS_VERSION)."""
        return {
            "version": self.version(conn),
            "results_version": f"s{data_version(conn, RESULTS_VERSION)}",
        }

    def version(self, conn: Connection) -> str:
        """The store's data version."""
        return f"s{data_version(conn)}"


class FleetSource(_LocalSource):
    name = "local.heartbeats"
    sections = ("orchestrator", "training_workers", "inference_workers")
    fields = {  # noqa: RUF012
        "active": FieldInfo("workers whose newest heartbeat is younger than 3 refreshes"),
        "queue_depth": FieldInfo("newest reported queue depth of the pool", "jobs"),
        "spot_pct": FieldInfo("share of active workers on spot instances", "%"),
        "fps": FieldInfo("frames per second summed over active inference workers", "fps"),
    }

    def read(self, conn: Connection, now: float) -> Facts:
        window = self.settings.active_window_seconds
        stale_after = 1.5 * self.settings.refresh_seconds
        month_start = _month_start(now)
        # Heartbeats are dated when received at the latest: a worker seen "later" than the
        # allowed clock skew is a ghost stored before times were checked; it never counts.
        not_after = now + self.settings.max_future_seconds
        by_role = {
            role: [w for w in workers if w["last_seen"] <= not_after]
            for role, workers in fleet.workers_by_role(conn).items()
        }
        facts: Facts = {"orchestrator": self._orchestrator(by_role.get("orchestrator", []), now)}
        for role in ("training", "inference"):
            workers = by_role.get(role, [])
            active = [w for w in workers if now - w["last_seen"] < window and w["status"] != "down"]
            spot = sum(1 for w in active if w["spot"])
            gpu = [w["gpu_util_pct"] for w in active if w["gpu_util_pct"] is not None]
            pool: dict[str, Any] = {
                "active": len(active),
                "queue_depth": fleet.newest_queue_depth(conn, role, not_after),
                "spot_pct": 100.0 * spot / len(active) if active else None,
                "stale": sum(1 for w in active if now - w["last_seen"] > stale_after),
                "spot_interruptions": sum(
                    1
                    for w in workers
                    if w["spot"]
                    and not w["clean_shutdown"]
                    and month_start <= w["last_seen"] <= now - window
                ),
                "gpu_util_pct": sum(gpu) / len(gpu) if gpu else None,
            }
            if role == "inference":
                fps = [w["fps"] for w in active if w["fps"] is not None]
                pool["fps"] = sum(fps) if fps else None
            facts[f"{role}_workers"] = pool
        return facts

    def _orchestrator(self, workers: list[dict[str, Any]], now: float) -> dict[str, Any]:
        if not workers:
            return {"status": "unknown", "cpu_pct": None, "mem_pct": None, "last_seen": None}
        newest = max(workers, key=lambda w: w["last_seen"])
        fresh = now - newest["last_seen"] < self.settings.active_window_seconds
        return {
            "status": newest["status"] if fresh else "down",
            "cpu_pct": newest["cpu_pct"],
            "mem_pct": newest["mem_pct"],
            "last_seen": iso(newest["last_seen"]),
            "worker_id": newest["worker_id"],
        }


class CostsSource(_LocalSource):
    name = "local.costs"
    sections = ("costs",)
    fields = {  # noqa: RUF012
        "month_to_date_usd": FieldInfo("cost records plus accrued worker time this month", "USD"),
        "forecast_month_usd": FieldInfo("month to date + 7-day burn rate to month end", "USD"),
    }

    def read(self, conn: Connection, now: float) -> Facts:
        month_start = _month_start(now)
        month_end = _month_end(now)
        mtd_by = costs.by_component(conn, month_start)
        mtd = sum(mtd_by.values())
        day = int(now // costs.DAY)
        window_first_day = day - 6
        first = costs.first_day(conn)
        burn_per_s = 0.0
        if first is not None:
            start_day = max(window_first_day, first)
            spent = sum(costs.by_component(conn, start_day * costs.DAY).values())
            began = start_day * costs.DAY
            if first >= window_first_day:
                # Costs began inside the window (a new fleet): the rate counts from the first
                # record, not from its day's midnight, which would dilute it up to twofold.
                began = max(began, costs.first_at(conn) or began)
            elapsed = max(now - began, 3600.0)
            burn_per_s = spent / elapsed
        forecast = mtd + burn_per_s * max(0.0, month_end - now)
        breakdown = [
            {"component": c, "usd": round(usd, 2)}
            for c, usd in sorted(mtd_by.items(), key=lambda kv: -kv[1])
            if usd > 0
        ]
        return {
            "costs": {
                "month_to_date_usd": round(mtd, 2),
                "forecast_month_usd": round(forecast, 2),
                "cost_breakdown": breakdown,
                "as_of": iso(now),
            }
        }


class StorageSource(_LocalSource):
    name = "local.storage"
    sections = ("storage",)
    fields = {  # noqa: RUF012
        "objects": FieldInfo("files in the artifacts directory (when one is set)", "files"),
        "bytes": FieldInfo("bytes in the artifacts directory (when one is set)", "bytes"),
        "db_items": FieldInfo("rows in the store (experiments, heartbeats, costs)", "rows"),
        "db_bytes": FieldInfo("size of the store: SQLite files, or PostgreSQL tables", "bytes"),
        "artifacts": FieldInfo("whether an artifacts directory is counted"),
    }

    def __init__(
        self,
        store: Store,
        settings: Settings,
        artifacts: Callable[[], tuple[int, int] | None] | None = None,
    ) -> None:
        super().__init__(store, settings)
        self.artifacts = artifacts

    def read(self, conn: Connection, now: float) -> Facts:
        counters = read_counters(conn)
        db_items = sum(n for name, n in counters.items() if name.startswith("experiments."))
        db_items += counters.get("rows.heartbeats", 0) + counters.get("rows.cost_records", 0)
        scanned = self.artifacts() if self.artifacts else None
        db_bytes = database_bytes(conn, self.store.db.url)
        return {
            "storage": {
                "objects": scanned[0] if scanned else None,
                "bytes": scanned[1] if scanned else None,
                "db_items": db_items,
                "db_bytes": db_bytes,
                # Set but not counted yet (the first scan runs in the background) is not
                # the same as not set: the page says "counting" rather than nothing.
                "artifacts": self.artifacts is not None,
            }
        }


def _month_start(now: float) -> float:
    t = time.gmtime(now)
    return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)))


def _month_end(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def local_sources(
    store: Store,
    settings: Settings,
    artifacts: Callable[[], tuple[int, int] | None] | None = None,
) -> list[_LocalSource]:
    return [
        ExperimentsSource(store, settings),
        FleetSource(store, settings),
        CostsSource(store, settings),
        StorageSource(store, settings, artifacts),
    ]
