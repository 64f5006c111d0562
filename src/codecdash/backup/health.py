"""What ``codecdash doctor`` says about backups: whether they are scheduled, the newest
one's age, and the last failure if it is newer than the last success."""

from __future__ import annotations

import time
from pathlib import Path

from codecdash.backup import files
from codecdash.backup.schedule import STATUS_FILE, from_iso, read_status
from codecdash.config import Settings
from codecdash.sources.checks import FAIL, OK, WARN, Finding
from codecdash.store.backup import NotSQLite, sqlite_file

WHAT = "backups"


def check_backups(s: Settings, now: float | None = None) -> list[Finding]:
    """What doctor reports about the scheduled backups, one finding a line."""
    now = time.time() if now is None else now
    if not s.backup_dir:
        return [
            Finding(
                OK,
                WHAT,
                "none scheduled (set backup_dir, or run `codecdash backup` from cron; "
                "docs/backups.md)",
            )
        ]
    try:
        sqlite_file(s.database_url)
    except NotSQLite:
        return [
            Finding(
                WARN,
                WHAT,
                "backup_dir is set, but the store is not a SQLite file: serve makes no backups",
                "back up PostgreSQL with pg_dump (docs/backups.md)",
            )
        ]
    findings: list[Finding] = []
    directory = Path(s.backup_dir).expanduser().absolute()
    status = read_status(directory)
    failure, success = status.get("last_failure"), status.get("last_success")
    if failure and (not success or from_iso(failure["at"]) >= from_iso(success["at"])):
        findings.append(
            Finding(
                FAIL,
                WHAT,
                f"the last scheduled backup failed at {failure['at']}: {failure['error']}",
                f"see the server's log; check that {directory} is writable and has room "
                f"({directory / STATUS_FILE} records each attempt)",
            )
        )
    found = files.backups_in(directory)
    if not found:
        findings.append(
            Finding(
                WARN,
                WHAT,
                f"none in {directory} yet",
                "`codecdash serve` makes the first one as it starts; is it running with "
                "this configuration?",
            )
        )
        return findings
    newest_at, newest = found[0]
    hours = (now - newest_at) / 3600
    detail = (
        f"newest {newest.name}, {hours:.1f} h old; {len(found)} kept in {directory} "
        f"(every {s.backup_every_hours:g} h, keep {s.backup_keep})"
    )
    if hours > 2 * s.backup_every_hours:
        findings.append(Finding(WARN, WHAT, f"overdue: {detail}", "is `codecdash serve` running?"))
    else:
        findings.append(Finding(OK, WHAT, detail))
    return findings
