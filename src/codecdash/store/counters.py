"""Named counters kept current in the same transaction as the rows they count."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.store import schema

C = schema.counters
DATA_VERSION = "data_version"


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
    stmt = select(C.c.name, C.c.n)
    if prefix:
        stmt = stmt.where(C.c.name.startswith(prefix, autoescape=True))
    return {str(row[0]): int(row[1]) for row in conn.execute(stmt)}


def bump_data_version(conn: Connection) -> None:
    """Every write transaction ends here; on PostgreSQL it also wakes other replicas."""
    bump_counters(conn, {DATA_VERSION: 1})
    if conn.dialect.name == "postgresql":
        # The payload names the schema: deployments sharing a database wake only their own.
        conn.execute(text("SELECT pg_notify('codecdash_changes', current_schema())"))


def data_version(conn: Connection) -> int:
    value = conn.execute(select(C.c.n).where(C.c.name == DATA_VERSION)).scalar()
    return int(value or 0)
