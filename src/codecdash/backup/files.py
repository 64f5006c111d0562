"""Backup files: written beside their final name and renamed into place, named by their
UTC time, rotated."""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

STAMP = "%Y%m%dT%H%M%SZ"
NAME = re.compile(r"^codecdash-(\d{8}T\d{6}Z)\.db$")
SIDECARS = ("-journal", "-wal", "-shm")
LEFT_OVER = re.compile(r"^\.codecdash-\d{8}T\d{6}Z\.db\.tmp-\d+-[0-9a-f]+(-journal|-wal|-shm)?$")


def stamp(at: float) -> str:
    return time.strftime(STAMP, time.gmtime(at))


def stamped_name(at: float) -> str:
    """``codecdash-20261127T120000Z.db``: sorts by time, says it in UTC."""
    return f"codecdash-{stamp(at)}.db"


def backups_in(directory: Path) -> list[tuple[float, Path]]:
    """The stamped backups in a directory, newest first."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in directory.iterdir():
            match = NAME.match(entry.name)
            if match and entry.is_file():
                at = float(calendar.timegm(time.strptime(match.group(1), STAMP)))
                found.append((at, entry))
    return sorted(found, reverse=True)


def rotate(directory: Path, keep: int, now: float | None = None) -> list[Path]:
    """Delete all but the newest ``keep`` stamped backups, and temporary files of backups
    cut short more than a day ago (a process killed while copying); returns those deleted."""
    removed = [path for _at, path in backups_in(directory)[keep:]]
    cutoff = (time.time() if now is None else now) - 86400
    for entry in directory.iterdir():
        if LEFT_OVER.match(entry.name) and entry.stat().st_mtime < cutoff:
            removed.append(entry)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def written_atomically(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out``. When the block ends without an exception the file
    written there is flushed to disk and renamed to ``out`` (then the directory is
    flushed too); otherwise it is removed. ``out`` is never half-written: it is the old
    file or the complete new one."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, out)
        fsync(out.parent)
    finally:
        for path in (tmp, *(tmp.with_name(tmp.name + s) for s in SIDECARS)):
            path.unlink(missing_ok=True)


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
