"""Whole-database housekeeping for commands that own a database (`codecdash demo`): what a
database holds before it is used, and emptying it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, func, inspect, select, text

from codecdash.store import schema
from codecdash.store.counters import DATA_VERSION
from codecdash.store.db import Database

DATA_TABLES: Final = ("experiments", "heartbeats", "workers", "cost_records", "tokens", "anchors")
"""The tables that hold what users wrote (the others are derived from these, or bookkeeping)."""


@dataclass(frozen=True)
class Survey:
    """What a database holds, read without changing it (nor migrating it)."""

    foreign: bool
    """It has tables, but not codecdash's: another program's database."""
    used: tuple[str, ...]
    """The tables of :data:`DATA_TABLES` that hold rows."""
    has_token: bool
    """A token of the name asked about exists."""


def survey(db: Database, token: str) -> Survey:
    """What `db` holds, and whether it has a token named `token`."""
    with db.read() as conn:
        tables = set(inspect(conn).get_table_names())
        if tables and "schema_version" not in tables:
            return Survey(foreign=True, used=(), has_token=False)  # never read another's tables
        has_token = (
            "tokens" in tables
            and conn.execute(
                select(schema.tokens.c.name).where(schema.tokens.c.name == token)
            ).first()
            is not None
        )
        used = tuple(
            name
            for name in DATA_TABLES
            if name in tables
            and conn.execute(
                select(func.count()).select_from(schema.metadata.tables[name])
            ).scalar_one()
        )
    return Survey(foreign=False, used=used, has_token=has_token)


def empty(db: Database) -> None:
    """Deletes every row but the schema's version and the data version (ETags stay unique)."""
    with db.write() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            if table is schema.schema_version:
                continue
            if table is schema.counters:
                conn.execute(table.delete().where(table.c.name != DATA_VERSION))
            else:
                conn.execute(table.delete())


def database_bytes(conn: Connection, url: str) -> int | None:
    """The store's size on disk: its SQLite files (with the WAL), or its PostgreSQL tables."""
    if conn.dialect.name == "postgresql":
        return _postgres_bytes(conn)
    return _sqlite_bytes(url)


def _sqlite_bytes(url: str) -> int | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.path.getsize(path + suffix)
        except OSError:
            continue
    return total or None


def _postgres_bytes(conn: Connection) -> int | None:
    """The store's tables in its schema, with their indexes and TOAST."""
    names = [table.name for table in schema.metadata.sorted_tables]
    total = conn.execute(
        text(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
            "AND c.relname = ANY(:names)"
        ),
        {"names": names},
    ).scalar()
    return int(total) if total else None
