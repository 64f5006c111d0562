"""Scheduled backups, run by ``codecdash serve`` when ``backup_dir`` is set.

Every ``backup_every_hours`` a verified backup named by its UTC time
(``codecdash-20261127T120000Z.db``) goes into ``backup_dir``, and all but the newest
``backup_keep`` stamped files there are deleted. The schedule follows the newest file,
not the server's uptime: a restarted server backs up at once only when the newest backup
is already due. The copy runs in a worker thread, off the event loop, and holds no lock
that writers wait for (store/backup.py). Each outcome is logged and recorded in
``backup_dir/codecdash-backups.json``, which ``codecdash doctor`` reads; a failed attempt is
tried again after ``RETRY_SECONDS`` (or the period, when shorter).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codecdash.backup import files
from codecdash.backup.lease import Lease, hold_for_server
from codecdash.backup.make import Made, make_backup
from codecdash.config import Settings
from codecdash.store import Store
from codecdash.store.backup import NotSQLite, sqlite_file

log = logging.getLogger("codecdash")
STATUS_FILE = "codecdash-backups.json"
RETRY_SECONDS = 900.0
LONGEST_SLEEP = 300.0  # wake up this often anyway (clock changes, a file deleted by hand)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Schedule:
    db: Path
    directory: Path
    every_s: float
    keep: int

    @classmethod
    def from_settings(cls, settings: Settings, db: Path) -> Schedule:
        assert settings.backup_dir is not None
        return cls(
            db,
            Path(settings.backup_dir).expanduser().absolute(),
            settings.backup_every_hours * 3600,
            settings.backup_keep,
        )

    def due(self, now: float) -> float:
        """When the next backup is due: a period after the newest one (now if none)."""
        found = files.backups_in(self.directory)
        return found[0][0] + self.every_s if found else now

    def run_once(self, now: float | None = None) -> tuple[Made, list[Path]]:
        """One verified backup named by ``now``, then the rotation; the outcome is recorded
        in the status file either way."""
        now = time.time() if now is None else now
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            made = make_backup(self.db, self.directory / files.stamped_name(now), check=True)
            removed = files.rotate(self.directory, self.keep)
        except Exception as exc:
            self._record(failure={"at": iso(now), "error": _reason(exc)})
            raise
        self._record(
            success={
                "at": iso(now),
                "file": made.out.name,
                "bytes": made.copied.facts.size_bytes,
                "seconds": round(made.copied.seconds, 3),
                "experiments": made.copied.facts.total_experiments,
            }
        )
        return made, removed

    def _record(self, **outcome: dict[str, Any]) -> None:
        status = read_status(self.directory)
        for key, value in outcome.items():
            status[f"last_{key}"] = value
        with contextlib.suppress(OSError):  # a directory we cannot write: the log says it
            path = self.directory / STATUS_FILE
            with files.written_atomically(path) as tmp:
                tmp.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_status(directory: Path) -> dict[str, Any]:
    """The recorded outcomes: ``last_success`` {at, file, bytes, seconds, experiments} and
    ``last_failure`` {at, error}, each absent until it happened."""
    try:
        data = json.loads((directory / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


async def run(schedule: Schedule) -> None:
    """Forever: sleep until the next backup is due, make it in a thread, log the outcome."""
    log.info(
        "scheduled backups of %s into %s every %g h, keeping %d",
        schedule.db,
        schedule.directory,
        schedule.every_s / 3600,
        schedule.keep,
    )
    while True:
        now = time.time()
        wait = await asyncio.to_thread(schedule.due, now) - now
        if wait > 0:
            await asyncio.sleep(min(wait, LONGEST_SLEEP))
            continue
        try:
            made, removed = await asyncio.to_thread(schedule.run_once)
        except Exception as exc:
            retry = min(RETRY_SECONDS, schedule.every_s)
            log.error(
                "scheduled backup of %s failed (next try in %g s): %s",
                schedule.db,
                retry,
                _reason(exc),
            )
            await asyncio.sleep(retry)
            continue
        log.info("%s", made.describe().replace("\n", "; "))
        for path in removed:
            log.info("removed the old backup %s (backup_keep = %d)", path, schedule.keep)


class BesideServer:
    """What a server runs for its store beside the app: the lease that keeps a restore
    away, and the scheduled backups."""

    def __init__(self, lease: Lease | None, task: asyncio.Task[None] | None) -> None:
        self.lease = lease
        self.task = task

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.lease is not None:
            self.lease.release()


def start_beside_server(settings: Settings, store: Store, *, schedule: bool) -> BesideServer:
    """Take the server's lease on a SQLite file (StoreInUse while a restore runs) and start
    the scheduled backups when ``schedule`` and ``backup_dir`` say so."""
    try:
        db: Path | None = sqlite_file(store.db.url)
    except NotSQLite:
        db = None
    lease = hold_for_server(db) if db is not None else None
    task = None
    if schedule and settings.backup_dir:
        if db is None:
            log.warning(
                "backup_dir is set, but the store is not a SQLite file: no scheduled backups "
                "(for PostgreSQL use pg_dump; docs/backups.md)"
            )
        else:
            plan = Schedule.from_settings(settings, db)
            task = asyncio.create_task(run(plan), name="codecdash-backups")
    return BesideServer(lease, task)
