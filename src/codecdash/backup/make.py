"""Making one backup: an online copy of the store, verified if asked, renamed into place."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from codecdash.backup import files
from codecdash.store.backup import Copied, copy_online
from codecdash.store.integrity import Verdict, verify


class BackupDamaged(Exception):
    """The copy (or the file checked) is not a sound store; the verdict says why."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.describe())
        self.verdict = verdict


@dataclass(frozen=True)
class Made:
    source: Path
    out: Path
    copied: Copied
    verdict: Verdict | None

    def describe(self) -> str:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.copied.snapshot_at))
        line = (
            f"backed up {self.source} to {self.out}: {self.copied.facts.describe()}; "
            f"as of {at}, in {self.copied.seconds:.1f} s"
        )
        if self.verdict is not None:
            line += "\nverified: integrity ok, counters and leaderboards match the tables"
        return line


def destination(out: Path, now: float) -> Path:
    """OUT itself, or a stamped name inside it when it is a directory."""
    return out / files.stamped_name(now) if out.is_dir() else out


def make_backup(
    db: Path,
    out: Path,
    *,
    check: bool = False,
    pinned: Callable[[], None] | None = None,
) -> Made:
    """Copy the store at ``db`` to ``out`` (a file, or a directory to put a stamped file
    in). With ``check`` the copy is verified before it takes its name: ``out`` is then
    either a verified backup or untouched (BackupDamaged)."""
    db = db.absolute()
    out = destination(out.absolute(), time.time())
    if not db.is_file():
        raise FileNotFoundError(f"no SQLite database at {db}: nothing to back up")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no directory {out.parent} to write {out.name} in")
    for own in (db, *(db.with_name(db.name + s) for s in files.SIDECARS)):
        if out == own or (out.exists() and own.exists() and out.samefile(own)):
            raise ValueError(f"{out} is the database itself (or one of its files)")
    with files.written_atomically(out) as tmp:
        copied = copy_online(db, tmp, pinned=pinned)
        os.chmod(tmp, stat.S_IMODE(db.stat().st_mode))  # as private as the database
        verdict = None
        if check:
            verdict = verify(tmp)
            verdict.path = out
            if not verdict.ok:
                raise BackupDamaged(verdict)
    return Made(db, out, copied, verdict)
