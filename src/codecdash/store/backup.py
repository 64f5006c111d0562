"""Online copies of a SQLite store, and what a copy holds.

A copy is made with SQLite's online backup API in one step
(``sqlite3.Connection.backup``, every page at once) inside a read transaction that this
module opens first: the copy is the database as of that transaction's first read, one
commit, whatever is written meanwhile. The store keeps its files in WAL mode, where a
reader never blocks a writer, so the server goes on accepting writes while the pages are
copied (their latency during a backup is measured in docs/backups.md).

Why not in several steps, letting writers in between: SQLite restarts a stepped backup
from the first page whenever another connection writes to the source, so under steady
ingest it would never end. Why not ``VACUUM INTO``: it gives the same one-transaction
snapshot but rebuilds every table and index on the way, 1.5 times the CPU of copying pages
at a million experiments, holding the snapshot that much longer (docs/backups.md has the
figures).

The copy is switched out of WAL mode (``journal_mode=DELETE``): a backup is one
self-contained file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from codecdash.experiments.vocabulary import STATUSES
from codecdash.store.db import SQLITE_BUSY_TIMEOUT_MS, database_url

# Counters kept current on write (store/counters.py) and the table each one counts.
ROW_COUNTERS = {"rows.heartbeats": "heartbeats", "rows.cost_records": "cost_records"}
STATUS_PREFIX = "experiments."
HEADER = b"SQLite format 3\x00"


class NotSQLite(ValueError):
    """The store is not a SQLite file (PostgreSQL, or SQLite in memory)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


def sqlite_file(path_or_url: str) -> Path:
    """The file of a SQLite store, from a path or a ``sqlite:///`` URL."""
    url = database_url(path_or_url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise NotSQLite(f"{parsed.get_backend_name()} is not a SQLite file", url)
    name = parsed.database
    if name is None or name in ("", ":memory:") or "mode=memory" in url:
        raise NotSQLite("an in-memory SQLite database has no file to copy", url)
    return Path(name).expanduser().absolute()


@dataclass(frozen=True)
class Facts:
    """What a store file holds, from its counters and small tables (no big scans)."""

    schema_version: int | None
    size_bytes: int
    experiments: dict[str, int] = field(default_factory=dict)  # per status
    tokens: int = 0
    anchors: int = 0
    heartbeats: int = 0
    cost_records: int = 0
    trashed: int = 0  # deleted experiments in the trash (not in `experiments`)

    @property
    def total_experiments(self) -> int:
        return sum(self.experiments.values())

    def describe(self) -> str:
        statuses = ", ".join(f"{s} {n:,}" for s, n in self.experiments.items() if n)
        parts = [
            f"{_size(self.size_bytes)}",
            f"schema version {self.schema_version}",
            f"{self.total_experiments:,} experiments" + (f" ({statuses})" if statuses else ""),
            _count(self.tokens, "token"),
            _count(self.anchors, "anchor"),
            _count(self.heartbeats, "heartbeat"),
            _count(self.cost_records, "cost record"),
            *([f"{self.trashed:,} in the trash"] if self.trashed else []),
        ]
        return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def connect(
    path: Path, *, read_only: bool, timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """A plain sqlite3 connection to an existing file (never creates one)."""
    mode = "ro" if read_only else "rw"
    return sqlite3.connect(
        f"{path.absolute().as_uri()}?mode={mode}",
        uri=True,
        timeout=timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
    )


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(r[0]) for r in rows}


def schema_version(conn: sqlite3.Connection) -> int | None:
    if "schema_version" not in tables(conn):
        return None
    value = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return int(value) if value is not None else None


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    if "counters" not in tables(conn):
        return {}
    return {str(n): int(v) for n, v in conn.execute("SELECT name, n FROM counters")}


def read_facts(conn: sqlite3.Connection, size_bytes: int) -> Facts:
    present = tables(conn)
    found = counters(conn)
    named = {n.removeprefix(STATUS_PREFIX) for n in found if n.startswith(STATUS_PREFIX)}
    by_status = {
        s: found.get(STATUS_PREFIX + s, 0) for s in (*STATUSES, *sorted(named - {*STATUSES}))
    }

    def rows(table: str) -> int:
        if table not in present:
            return 0
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    return Facts(
        schema_version=schema_version(conn),
        size_bytes=size_bytes,
        experiments=by_status,
        tokens=rows("tokens"),
        anchors=rows("anchors"),
        heartbeats=found.get("rows.heartbeats", 0),
        cost_records=found.get("rows.cost_records", 0),
        trashed=rows("experiments_trash"),
    )


@dataclass(frozen=True)
class Copied:
    facts: Facts
    snapshot_at: float  # when the copied state was fixed (seconds since the epoch)
    seconds: float  # how long the copy took, the snapshot held for all of it


def copy_online(
    source: Path,
    dest: Path,
    *,
    pinned: Callable[[], None] | None = None,
    timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> Copied:
    """Copy the live store at ``source`` into a new file ``dest`` (which must not exist).

    ``pinned`` is called once the snapshot is fixed and before any page is copied: what
    is written after that is not in the copy (the tests write there to show that writers
    go on meanwhile)."""
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite database at {source}: nothing to back up")
    if dest.exists():
        raise FileExistsError(f"{dest} exists")
    started = time.monotonic()
    src = connect(source, read_only=False, timeout_ms=timeout_ms)
    with contextlib.closing(src), _read_transaction(src):
        snapshot_at = time.time()
        if schema_version(src) is None:
            raise ValueError(f"{source} is not a codecdash store (no schema_version table)")
        if pinned is not None:
            pinned()
        with contextlib.closing(sqlite3.connect(dest, isolation_level=None)) as out:
            src.backup(out)  # one step: every page inside the read transaction
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            facts = read_facts(out, 0)
    facts = dataclasses.replace(facts, size_bytes=dest.stat().st_size)
    return Copied(facts, snapshot_at, time.monotonic() - started)


@contextlib.contextmanager
def _read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction whose snapshot is fixed by its first read (this one)."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        yield
    finally:
        conn.execute("COMMIT")


def in_use(path: Path) -> bool:
    """Whether another connection has this store open (any process).

    Leaving WAL mode needs the only connection to the file: SQLite answers "locked" while
    any other is open, idle or not. When this succeeds the file is left in rollback-journal
    mode, its WAL folded in (the store's next connection switches back to WAL). A file
    without SQLite's header is not in use by a store, and is not opened at all (SQLite
    would delete the WAL beside it, which a restore sets aside with it)."""
    with path.open("rb") as fh:
        if fh.read(len(HEADER)) != HEADER:
            return False
    try:
        with contextlib.closing(connect(path, read_only=False, timeout_ms=0)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE").fetchall()
    except sqlite3.OperationalError as exc:
        message = str(exc).lower()
        return "locked" in message or "busy" in message
    except sqlite3.DatabaseError:
        return False
    return False
