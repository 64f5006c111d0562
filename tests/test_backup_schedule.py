"""Scheduled backups of `codecdash serve` (backup_dir, backup_every_hours, backup_keep):
named by UTC time, rotated, run off the event loop without holding writers back, their
failures logged and reported by `codecdash doctor`."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backup_helpers import filled_store
from codecdash.backup import files, schedule
from codecdash.backup.health import check_backups
from codecdash.backup.make import make_backup
from codecdash.backup.schedule import STATUS_FILE, Schedule, read_status
from codecdash.config import Settings
from codecdash.doctor import Doctor
from codecdash.store.integrity import verify
from conftest import MakeApp

HOUR = 3600.0
T0 = 1_795_000_000.0  # 2026-11-18T...Z


async def until(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Polls `condition` (never a bare sleep); fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if condition():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def plan(tmp_path: Path, keep: int = 3, every_h: float = 6) -> Schedule:
    db = filled_store(tmp_path / "live.db", n=30)
    return Schedule(db, tmp_path / "backups", every_h * HOUR, keep)


def test_scheduled_backups_are_named_by_utc_time_and_the_newest_are_kept(tmp_path: Path) -> None:
    s = plan(tmp_path, keep=3)
    removed_total: list[Path] = []
    for k in range(5):
        made, removed = s.run_once(now=T0 + k * s.every_s)
        assert made.verdict is not None and made.verdict.ok  # verified before it is named
        removed_total += removed
    names = sorted(p.name for p in s.directory.iterdir() if p.name != STATUS_FILE)
    stamps = [time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(T0 + k * s.every_s)) for k in (2, 3, 4)]
    assert names == [f"codecdash-{stamp}.db" for stamp in stamps]
    assert [p.name for p in removed_total] == [
        files.stamped_name(T0),
        files.stamped_name(T0 + s.every_s),
    ]
    for name in names:
        assert verify(s.directory / name).ok
    status = read_status(s.directory)
    assert status["last_success"]["file"] == names[-1]
    assert status["last_success"]["experiments"] == 30
    assert "last_failure" not in status


def test_rotation_leaves_other_files_alone(tmp_path: Path) -> None:
    s = plan(tmp_path, keep=1)
    s.directory.mkdir()
    (s.directory / "before-upgrade.db").write_bytes(b"mine")
    (s.directory / "codecdash-latest.db").write_bytes(b"not stamped")
    s.run_once(now=T0)
    s.run_once(now=T0 + HOUR)
    assert sorted(p.name for p in s.directory.iterdir()) == sorted(
        ["before-upgrade.db", "codecdash-latest.db", files.stamped_name(T0 + HOUR), STATUS_FILE]
    )


def test_the_next_backup_is_due_a_period_after_the_newest(tmp_path: Path) -> None:
    s = plan(tmp_path, every_h=6)
    assert s.due(T0) == T0  # none yet: now
    s.run_once(now=T0)
    assert s.due(T0 + HOUR) == T0 + 6 * HOUR  # a restart an hour later waits
    (s.directory / files.stamped_name(T0 + 2 * HOUR)).write_bytes(b"")  # e.g. made by hand
    assert s.due(T0 + 3 * HOUR) == T0 + 8 * HOUR


def test_a_failed_attempt_is_recorded_and_raised(tmp_path: Path) -> None:
    s = plan(tmp_path)
    s.run_once(now=T0)
    s.db.unlink()
    with pytest.raises(FileNotFoundError):
        s.run_once(now=T0 + s.every_s)
    status = read_status(s.directory)
    assert status["last_failure"]["error"].startswith("FileNotFoundError: no SQLite database")
    assert status["last_success"]["file"] == files.stamped_name(T0)  # still there


@pytest.mark.anyio
async def test_serve_backs_up_in_the_background_while_requests_and_writes_go_on(
    make_app: MakeApp, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduled backup holds its snapshot until a write has been answered: the
    event loop and the writers never wait for it."""
    backup_dir = tmp_path / "backups"
    written = threading.Event()
    pinned_at: list[float] = []

    def held_until_a_write(db: Path, out: Path, **kwargs: Any) -> Any:
        def wait() -> None:
            pinned_at.append(time.time())
            assert written.wait(20), "no write was answered while the backup ran"

        return make_backup(db, out, pinned=wait, **kwargs)

    monkeypatch.setattr(schedule, "make_backup", held_until_a_write)
    app = await make_app(
        settings.model_copy(update={"backup_dir": str(backup_dir)}), background=True
    )
    token = app.state.codecdash.store.create_token("w")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        await until(lambda: bool(pinned_at), "a scheduled backup")
        response = await client.put(
            "/api/v1/experiments/during-backup",
            json={"status": "running"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code in (200, 201), response.text
        assert (await client.get("/api/v1/health")).status_code == 200
        written.set()
        await until(lambda: "last_success" in read_status(backup_dir), "the backup's end")
    [(_at, made)] = files.backups_in(backup_dir)
    assert verify(made).ok
    assert read_status(backup_dir)["last_success"]["file"] == made.name


@pytest.mark.anyio
async def test_a_failing_schedule_logs_and_tries_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schedule, "RETRY_SECONDS", 0.05)
    s = Schedule(tmp_path / "gone.db", tmp_path / "backups", 6 * HOUR, 3)
    caplog.set_level(logging.INFO, logger="codecdash")
    task = asyncio.create_task(schedule.run(s))
    try:
        await until(
            lambda: sum("scheduled backup of" in r.message for r in caplog.records) >= 2,
            "two failed attempts",
        )
    finally:
        task.cancel()
    failures = [r for r in caplog.records if "scheduled backup of" in r.message]
    assert failures[0].levelno == logging.ERROR
    assert "no SQLite database at" in failures[0].message
    assert "last_failure" in read_status(s.directory)


# -- doctor ----------------------------------------------------------------------------------
def doctor_says(settings: Settings, now: float | None = None) -> tuple[str, str]:
    lines: list[str] = []
    doctor = Doctor(settings, echo=lines.append)
    doctor.report(check_backups(doctor.settings, now=now))
    return doctor.checks[-1].status, "\n".join(lines)


def test_doctor_reports_the_newest_backup_and_its_age(settings: Settings, tmp_path: Path) -> None:
    s = plan(tmp_path, keep=3, every_h=24)
    configured = settings.model_copy(
        update={"database_url": str(s.db), "backup_dir": str(s.directory)}
    )
    assert doctor_says(configured)[0] == "warn"  # none yet
    s.run_once(now=T0)
    status, text = doctor_says(configured, now=T0 + 3 * HOUR)
    assert status == "ok"
    assert f"newest {files.stamped_name(T0)}, 3.0 h old; 1 kept" in text
    status, text = doctor_says(configured, now=T0 + 50 * HOUR)
    assert status == "warn" and "overdue" in text


def test_doctor_reports_a_failed_backup(settings: Settings, tmp_path: Path) -> None:
    s = plan(tmp_path)
    s.run_once(now=T0)
    s.db.unlink()
    with pytest.raises(FileNotFoundError):
        s.run_once(now=T0 + HOUR)
    configured = settings.model_copy(
        update={"database_url": str(s.db), "backup_dir": str(s.directory)}
    )
    lines: list[str] = []
    doctor = Doctor(configured, echo=lines.append)
    doctor.report(check_backups(doctor.settings, now=T0 + HOUR))
    assert doctor.failed == 1
    assert "the last scheduled backup failed at" in "\n".join(lines)
    assert "no SQLite database" in "\n".join(lines)
    filled_store(s.db, n=5)  # the next attempt succeeds: no longer reported
    s.run_once(now=T0 + 2 * HOUR)
    assert doctor_says(configured, now=T0 + 2 * HOUR)[0] == "ok"


def test_doctor_without_a_schedule_and_on_postgresql(settings: Settings) -> None:
    status, text = doctor_says(settings)
    assert status == "ok" and "none scheduled" in text
    pg = settings.model_copy(
        update={"database_url": "postgresql+psycopg://u@h/db", "backup_dir": "/backups"}
    )
    status, text = doctor_says(pg)
    assert status == "warn" and "pg_dump" in text


def test_rotation_removes_temporaries_of_backups_cut_short(tmp_path: Path) -> None:
    s = plan(tmp_path, keep=2)
    s.directory.mkdir()
    stale = s.directory / f".{files.stamped_name(T0)}.tmp-4242-0a1b2c3d"
    fresh = s.directory / f".{files.stamped_name(T0 + HOUR)}.tmp-4243-0a1b2c3e"
    for path in (stale, fresh):
        path.write_bytes(b"half a copy")
    os.utime(stale, (T0, T0))
    s.run_once(now=T0 + 2 * HOUR)
    assert not stale.exists()
    assert fresh.exists()  # perhaps a backup still being written by another server
