"""Who uses a SQLite store file: each server holds a shared lock on ``<db>.lock`` while it
serves the file, and a restore takes the exclusive one, so neither happens under the other.

The lock is ``flock(2)``'s: the kernel drops it when its holder's process ends, however it
ends (a crash, ``kill -9``, a reboot), so a server that died never blocks a restore; the
empty ``.lock`` file it leaves behind is harmless. It conflicts between any two opens of
the file, in one process or in two. On file systems without working ``flock`` (some
network mounts) it may not hold: stop the server yourself there. Windows has no
``flock``: there the lease does nothing, and restore relies on its other check
(store/backup.py's ``in_use``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("codecdash")


class StoreInUse(Exception):
    """Another process uses the store file in a way that forbids this operation now."""


def lock_file(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


class Lease:
    """A shared (servers) or exclusive (restore) lock on ``<db>.lock``, never waited for."""

    def __init__(self, db: Path, *, exclusive: bool) -> None:
        self.db = db
        self.path = lock_file(db)
        self.exclusive = exclusive
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when held now; False when another holder forbids it. OSError when the lock
        file cannot be opened."""
        if sys.platform == "win32":  # pragma: no cover - no flock there
            return True
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = None


def hold_for_server(db: Path) -> Lease | None:
    """The lease a server holds while it serves ``db``. StoreInUse while a restore is
    replacing the file; None (with a warning) when the lock file cannot be made, which
    only costs restore this safeguard."""
    lease = Lease(db, exclusive=False)
    try:
        held = lease.acquire()
    except OSError as exc:
        log.warning(
            "cannot lock %s (%s): `codecdash restore` cannot tell this server runs", lease.path, exc
        )
        return None
    if not held:
        raise StoreInUse(
            f"a restore is replacing {db} right now; start the server again when it has finished"
        )
    return lease


@contextlib.contextmanager
def held_exclusively(db: Path) -> Iterator[None]:
    """No server uses ``db`` for as long as the block runs (or StoreInUse, at once)."""
    lease = Lease(db, exclusive=True)
    if not lease.acquire():
        raise StoreInUse(
            f"a codecdash server is using {db} (it holds {lease.path}); stop it, then restore"
        )
    try:
        yield
    finally:
        lease.release()
