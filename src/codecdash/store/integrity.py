"""Is this SQLite file a sound codecdash store? (``codecdash backup --verify``, restore.)

Checked, read-only, in this order (a later check is skipped when an earlier one shows the
file cannot be read):

1. the file is a SQLite database whose size matches its header (a truncated copy);
2. ``PRAGMA integrity_check`` (every page, index and constraint);
3. the schema version: known to this codecdash (an older one is fine: restoring
   migrates it; a newer one is refused);
4. the summaries kept on write against the rows they summarise: experiments per status
   from the counters against the table, the heartbeat and cost-record counters against
   their tables, and each leaderboard (store/leaders.py) against the experiments at or
   better than its bound. Deleted experiments are in the trash (``experiments_trash``),
   not in the experiments table: the summaries count only the live ones, and no id may
   be in both (an experiment both live and deleted).
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from codecdash.store import leaders
from codecdash.store.backup import (
    HEADER,
    ROW_COUNTERS,
    STATUS_PREFIX,
    Facts,
    connect,
    counters,
    read_facts,
    schema_version,
    tables,
)
from codecdash.store.db import LATEST_VERSION

MAX_REPORTED = 20  # integrity_check's problems shown at most


@dataclass
class Verdict:
    path: Path
    facts: Facts | None = None
    problems: list[str] = field(default_factory=list)
    newer: bool = False  # made by a newer codecdash (a schema this one does not know)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        if self.ok:
            return (
                f"OK {self.path}: integrity ok, schema version "
                f"{self.facts.schema_version if self.facts else '?'}, counters and "
                "leaderboards match the tables"
            )
        lines = [f"DAMAGED {self.path}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def verify(path: Path, latest_version: int = LATEST_VERSION) -> Verdict:
    verdict = Verdict(path)
    if not path.is_file():
        verdict.problems.append("no such file")
        return verdict
    problem = _header_problem(path)
    if problem is not None:
        verdict.problems.append(problem)
        return verdict
    try:
        with contextlib.closing(connect(path, read_only=True)) as conn:
            _check(conn, path, verdict, latest_version)
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed", I/O
        verdict.problems.append(f"cannot be read: {exc}")
    return verdict


def _header_problem(path: Path) -> str | None:
    """Why this file is not a whole SQLite database, judged by its header; None if it is."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(HEADER):
        return "not a SQLite database (no SQLite header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"damaged header (page size {page_size})"
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid when its change counter matches (SQLite ≥ 3.7.0).
    counted = header[24:28] == header[92:96]
    if size % page_size:
        return f"truncated: {size} bytes is not a whole number of {page_size}-byte pages"
    if counted and size < pages * page_size:
        return (
            f"truncated: {size:,} bytes, but the header counts {pages:,} pages of "
            f"{page_size} bytes ({pages * page_size:,} bytes)"
        )
    return None


def _check(conn: sqlite3.Connection, path: Path, verdict: Verdict, latest: int) -> None:
    found = [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({MAX_REPORTED})")]
    if found != ["ok"]:
        verdict.problems += [f"integrity_check: {line}" for line in found]
        return
    version = schema_version(conn)
    if version is None:
        verdict.problems.append("not a codecdash store (no schema_version table)")
        return
    if version > latest:
        verdict.newer = True
        verdict.problems.append(
            f"made by a newer codecdash: schema version {version}, and this codecdash "
            f"knows versions up to {latest} (upgrade codecdash to use it)"
        )
        return
    verdict.facts = read_facts(conn, path.stat().st_size)
    present = tables(conn)
    verdict.problems += _counter_problems(conn, present)
    if {"experiments", "experiments_trash"} <= present:
        verdict.problems += _trash_problems(conn)
    if {"leaders", "leader_bounds"} <= present and _carries_filters(conn):
        verdict.problems += _leader_problems(conn)


def _counter_problems(conn: sqlite3.Connection, present: set[str]) -> list[str]:
    kept = counters(conn)
    problems = []
    if "experiments" in present:
        actual = {
            str(status): int(n)
            for status, n in conn.execute(
                "SELECT status, count(*) FROM experiments GROUP BY status"
            )
        }
        named = {n.removeprefix(STATUS_PREFIX) for n in kept if n.startswith(STATUS_PREFIX)}
        for status in sorted(named | set(actual)):
            said, rows = kept.get(STATUS_PREFIX + status, 0), actual.get(status, 0)
            if said != rows:
                problems.append(
                    f"counter experiments.{status} says {said:,}, the table holds {rows:,}"
                )
    for name, table in ROW_COUNTERS.items():
        if table not in present:
            continue
        rows = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        if kept.get(name, 0) != rows:
            problems.append(f"counter {name} says {kept.get(name, 0):,}, the table holds {rows:,}")
    return problems


def _trash_problems(conn: sqlite3.Connection) -> list[str]:
    both = _count(conn, "SELECT id FROM experiments INTERSECT SELECT id FROM experiments_trash", ())
    if both:
        verb = "experiment is" if both == 1 else "experiments are"
        return [f"{both:,} {verb} both live and in the trash"]
    return []


def _carries_filters(conn: sqlite3.Connection) -> bool:
    """Leaderboards of version 3 lack the carried columns; migrating rebuilds them."""
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(leaders)")}
    return set(leaders.CARRIED) <= columns


def _leader_problems(conn: sqlite3.Connection) -> list[str]:
    """Each metric's leaders rows are exactly the experiments at or better than its bound,
    with the current values of the carried columns, and its row count is right."""
    problems = []
    carried = ", ".join(leaders.CARRIED)
    bounds = {
        str(m): (b, int(n))
        for m, b, n in conn.execute("SELECT metric, bound, n FROM leader_bounds")
    }
    for metric, larger in leaders.METRICS.items():
        if metric not in bounds:
            problems.append(f"leaderboard {metric}: no bound row")
            continue
        bound, n = bounds[metric]
        better = ">=" if larger else "<="
        # constant names from store/leaders.py; the bound is a parameter
        theirs = (
            f"SELECT {metric}, id, {carried} FROM experiments WHERE {metric} IS NOT NULL "  # noqa: S608
            f"AND (? IS NULL OR {metric} {better} ?)"
        )
        ours = f"SELECT value, id, {carried} FROM leaders WHERE metric = ?"  # noqa: S608
        missing = _count(conn, f"{theirs} EXCEPT {ours}", (bound, bound, metric))
        extra = _count(conn, f"{ours} EXCEPT {theirs}", (metric, bound, bound))
        held = _count(conn, ours, (metric,))
        if missing or extra:
            problems.append(
                f"leaderboard {metric}: {missing:,} experiments missing from it, "
                f"{extra:,} rows that do not match an experiment"
            )
        if held != n:
            problems.append(f"leaderboard {metric}: bound row counts {n:,}, it holds {held:,}")
    return problems


def _count(conn: sqlite3.Connection, sql: str, parameters: tuple[object, ...]) -> int:
    return int(conn.execute(f"SELECT count(*) FROM ({sql})", parameters).fetchone()[0])  # noqa: S608
