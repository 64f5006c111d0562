"""Named counters kept current in the same transaction as the rows they count."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.store import schema

C = schema.counters
DATA_VERSION = "data_version"
RESULTS_VERSION = "results_version"
"""Moved by every write that may change what the results read: a completed experiment or
one with R-D points stored, replaced or removed, an anchor written or removed
(summaries.ResultsVersion, Store.put_anchor and delete_anchor)."""


def bump_counters(conn: Connection, deltas: Mapping[str, int]) -> None:
    rows = [{"name": name, "n": n} for name, n in sorted(deltas.items()) if n]
    if not rows:
        return
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(C)
    stmt = insert.on_conflict_do_update(
        index_elements=[C.c.name], set_={"n": C.c.n + insert.excluded.n}
    )
    conn.execute(stmt, rows)


def read_counters(conn: Connection, prefix: str = "") -> dict[str, int]:
    """The counters whose names start with ``prefix``. The table holds a few dozen rows:
    read them all with a constant statement (cheaper than building a filtered one)."""
    rows = conn.exec_driver_sql("SELECT name, n FROM counters").all()
    return {str(row[0]): int(row[1]) for row in rows if str(row[0]).startswith(prefix)}


def bump_data_version(conn: Connection) -> None:
    """Every write transaction ends here; on PostgreSQL it also wakes other replicas."""
    bump_counters(conn, {DATA_VERSION: 1})
    if conn.dialect.name == "postgresql":
        # The payload names the schema: deployments sharing a database wake only their own.
        conn.execute(text("SELECT pg_notify('codecdash_changes', current_schema())"))


def data_version(conn: Connection, name: str = DATA_VERSION) -> int:
    """Read on every listing (the key of cached totals): one constant statement, not
    one SQLAlchemy builds and compiles each time (a third of the cost). `name`: another
    version counter (RESULTS_VERSION)."""
    mark = schema.marker(conn.dialect.name)
    sql = f"SELECT n FROM counters WHERE name = {mark}"  # noqa: S608 # constant
    value = conn.exec_driver_sql(sql, (name,)).scalar()
    return int(value or 0)
