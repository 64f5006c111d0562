"""Putting a backup back: verified first, never under a running server, the replaced
database kept, an older backup migrated to this codecdash's schema."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from codecdash.backup import files
from codecdash.backup.lease import StoreInUse, held_exclusively
from codecdash.backup.make import BackupDamaged
from codecdash.store.backup import Facts, connect, copy_online, in_use, read_facts
from codecdash.store.db import Database
from codecdash.store.integrity import verify


class NewerBackup(Exception):
    """The backup was made by a newer codecdash (a schema this one does not know)."""


@dataclass(frozen=True)
class Restored:
    backup: Path
    target: Path
    facts: Facts
    from_version: int
    to_version: int
    kept: Path | None

    def describe(self) -> str:
        lines = [f"restored {self.backup} to {self.target}: {self.facts.describe()}"]
        if self.from_version != self.to_version:
            lines.append(f"migrated from schema version {self.from_version} to {self.to_version}")
        if self.kept is not None:
            lines.append(f"the replaced database is kept as {self.kept}")
        lines.append(
            "tokens are those of the backup's moment: tokens made since are gone and tokens "
            "revoked since work again (`codecdash token list`)"
        )
        return "\n".join(lines)


def restore(backup: Path, target: Path, *, keep: bool = True) -> Restored:
    backup, target = backup.absolute(), target.absolute()
    if backup == target:
        raise ValueError(f"{backup} is the database to replace")
    verdict = verify(backup)
    if verdict.newer:
        raise NewerBackup(f"{backup} was {verdict.problems[0]}")
    if not verdict.ok:
        raise BackupDamaged(verdict)
    assert verdict.facts is not None and verdict.facts.schema_version is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    with held_exclusively(target):
        if target.exists() and in_use(target):
            raise StoreInUse(
                f"another program has {target} open (a script, `codecdash import-results`?); "
                "close it, then restore"
            )
        tmp = target.with_name(f".{target.name}.restore-{os.getpid()}")
        try:
            copy_online(backup, tmp)  # through SQLite: a WAL beside the backup counts too
            to_version = _migrate(tmp)
            like = target if target.exists() else backup  # keep who may read it
            os.chmod(tmp, stat.S_IMODE(like.stat().st_mode))
            files.fsync(tmp)
            with contextlib.closing(connect(tmp, read_only=True)) as conn:
                facts = read_facts(conn, tmp.stat().st_size)
            kept = _set_aside(target) if target.exists() else None
            try:
                os.replace(tmp, target)
            except OSError:
                if kept is not None:  # put the old one back as it was
                    os.replace(kept, target)
                raise
            files.fsync(target.parent)
        finally:
            for path in (tmp, *(tmp.with_name(tmp.name + s) for s in files.SIDECARS)):
                path.unlink(missing_ok=True)
    if kept is not None and not keep:
        for path in (kept, *(kept.with_name(kept.name + s) for s in files.SIDECARS)):
            path.unlink(missing_ok=True)
        kept = None
    return Restored(backup, target, facts, verdict.facts.schema_version, to_version, kept)


def _migrate(path: Path) -> int:
    """Bring the copy to this codecdash's schema, then leave it one file (no WAL)."""
    db = Database(str(path))
    try:
        version = db.migrate()
    finally:
        db.close()
    with contextlib.closing(connect(path, read_only=False)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    return version


def _set_aside(target: Path) -> Path:
    """Rename the database being replaced (and any journal, WAL or shared-memory file
    beside it, which belong to it) to ``<db>.before-restore-<UTC time>``."""
    name = f"{target.name}.before-restore-{files.stamp(time.time())}"
    kept, n = target.with_name(name), 1
    while kept.exists():  # two restores within a second
        n += 1
        kept = target.with_name(f"{name}-{n}")
    os.replace(target, kept)
    for suffix in files.SIDECARS:
        sidecar = target.with_name(target.name + suffix)
        if sidecar.exists():
            os.replace(sidecar, kept.with_name(kept.name + suffix))
    return kept
