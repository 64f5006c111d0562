"""Engines and transactions for SQLite and PostgreSQL, and schema migrations."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from codecdash.experiments.query import Unavailable
from codecdash.store import leaders, schema

LATEST_VERSION = 8
SQLITE_BUSY_TIMEOUT_MS = 5000


class StoreUnavailable(Unavailable):
    """The database cannot be used right now (locked, full, unreachable). Retry later."""


class InvalidData(ValueError):
    """The database refused a value of the request (a NUL byte in PostgreSQL text, a number
    out of its range): the client's input, answered 400, never a 500."""


def database_url(path_or_url: str) -> str:
    """A file path becomes a SQLite URL; URLs pass through unchanged."""
    if "://" in path_or_url:
        try:
            make_url(path_or_url)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {path_or_url!r} ({exc})") from None
        return path_or_url
    return f"sqlite:///{Path(path_or_url).expanduser()}"


def shown_url(url: str) -> str:
    """The store's URL as it may be printed or logged: the password masked (`***`)."""
    try:
        return make_url(database_url(url)).render_as_string(hide_password=True)
    except ValueError:
        return "(not a database URL)"


def postgres_target(url: str) -> tuple[str, str | None]:
    """A PostgreSQL store's URL for its own tools (``pg_dump``): no driver name, no password,
    no options; and the schema its ``search_path`` option names, if any."""
    parsed = make_url(database_url(url))
    options = unquote(str(parsed.query.get("options", "")))
    schema = next((o.split("=", 1)[1] for o in options.split() if "search_path=" in o), None)
    plain = URL.create(
        "postgresql", parsed.username, None, parsed.host, parsed.port, parsed.database
    )
    return plain.render_as_string(hide_password=False), schema


def make_engine(url: str, busy_timeout_ms: Callable[[], int] | None = None) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_timeout_ms or (lambda: SQLITE_BUSY_TIMEOUT_MS))
    if url.startswith("postgresql"):
        # A server that accepts but never answers (a partition) fails in 5 s, not minutes;
        # a URL's own connect_timeout wins.
        query = make_url(url).query
        connect_args = {} if "connect_timeout" in query else {"connect_timeout": 5}
        return create_engine(
            url,
            pool_size=8,
            max_overflow=8,
            pool_pre_ping=True,
            pool_timeout=5,
            connect_args=connect_args,
        )
    raise ValueError(f"unsupported database {url.split(':', 1)[0]!r}: use SQLite or PostgreSQL")


def _sqlite_engine(url: str, busy_timeout_ms: Callable[[], int]) -> Engine:
    parsed = make_url(url)
    memory = parsed.database in (None, "", ":memory:")
    if not memory and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        poolclass=NullPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (deferred or immediate).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms())}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """An engine plus the write discipline: one writer at a time per process."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self._busy_timeout_ms = SQLITE_BUSY_TIMEOUT_MS
        self.engine = make_engine(self.url, lambda: self._busy_timeout_ms)
        self.dialect = self.engine.dialect.name
        self._write_lock = threading.Lock()

    @property
    def busy_timeout_ms(self) -> int:
        """How long a write waits for a lock (this process' writers, then SQLite's)."""
        return self._busy_timeout_ms

    @busy_timeout_ms.setter
    def busy_timeout_ms(self, value: int) -> None:
        self._busy_timeout_ms = int(value)
        self.engine.dispose()  # pooled connections were made with the old PRAGMA

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite); commits on success."""
        # Bounded: behind a writer that hangs (a lock held elsewhere), queued requests give
        # up with 503 after the busy timeout instead of piling up in the thread pool.
        if not self._write_lock.acquire(timeout=max(0.001, self._busy_timeout_ms / 1000)):
            raise StoreUnavailable("the database is busy with another write; retry shortly")
        try:
            with _unavailable_on_operational_error(), self.engine.connect() as plain:
                conn = (
                    plain.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else plain
                )
                with conn.begin():
                    yield conn
        finally:
            self._write_lock.release()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with _unavailable_on_operational_error(), self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> int:
        """Create or upgrade the schema in place; returns the version now in force."""
        with self.write() as conn:
            current = _current_version(conn)
            if current is None:
                schema.metadata.create_all(conn)
                leaders.rebuild_all(conn)  # the bound rows, which writers lock
                conn.execute(
                    schema.schema_version.insert(),
                    {"version": LATEST_VERSION, "applied_at": time.time()},
                )
                return LATEST_VERSION
            if current > LATEST_VERSION:
                raise RuntimeError(
                    f"database schema version {current} is newer than this codecdash "
                    f"understands ({LATEST_VERSION}): upgrade codecdash"
                )
            for version in range(current + 1, LATEST_VERSION + 1):
                MIGRATIONS[version](conn)
                conn.execute(
                    schema.schema_version.insert(),
                    {"version": version, "applied_at": time.time()},
                )
            return LATEST_VERSION

    def close(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def _unavailable_on_operational_error() -> Iterator[None]:
    """Lost, refused, locked, full: the database's troubles become StoreUnavailable (503);
    a value it refuses (DataError) becomes InvalidData (400). No driver error is a 500."""
    try:
        yield
    except DataError as exc:
        raise InvalidData("the database refused a value of this request: " + _first(exc)) from exc
    except (OperationalError, InterfaceError) as exc:
        raise StoreUnavailable(_describe(exc)) from exc
    except PoolTimeout as exc:
        raise StoreUnavailable("every database connection is busy; retry shortly") from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise StoreUnavailable(_describe(exc)) from exc


def _first(exc: DBAPIError) -> str:
    message = str(exc.orig) if exc.orig is not None else str(exc)
    return message.strip().splitlines()[0][:200] if message.strip() else type(exc).__name__


def _describe(exc: DBAPIError) -> str:
    message = str(exc.orig) if exc.orig is not None else str(exc)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return "the database is locked by another writer"
    if "disk" in lowered and "full" in lowered:
        return "the disk holding the database is full"
    first = message.strip().splitlines()[0][:200] if message.strip() else type(exc).__name__
    return "the database is unavailable: " + first


def _current_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    version = conn.execute(
        select(schema.schema_version.c.version)
        .order_by(schema.schema_version.c.version.desc())
        .limit(1)
    ).scalar()
    return int(version) if version is not None else None


def _v2_bd_rate(conn: Connection) -> None:
    """Version 2: anchors, BD-rate per experiment and its best-per-hour."""
    columns = {c["name"] for c in inspect(conn).get_columns("experiments")}
    if "bd_rate_pct" not in columns:
        conn.execute(text("ALTER TABLE experiments ADD COLUMN bd_rate_pct FLOAT"))
    if "bd_rate_anchor" not in columns:
        conn.execute(text("ALTER TABLE experiments ADD COLUMN bd_rate_anchor VARCHAR(200)"))
    hourly = {c["name"] for c in inspect(conn).get_columns("progress_hourly")}
    if "best_bd_rate_pct" not in hourly:
        conn.execute(text("ALTER TABLE progress_hourly ADD COLUMN best_bd_rate_pct FLOAT"))
    schema.anchors.create(conn, checkfirst=True)
    for index in schema.experiments.indexes:
        if index.name == "ix_experiments_bd_rate":
            index.create(conn, checkfirst=True)


def _v3_leaders(conn: Connection) -> None:
    """Version 3: leaderboards replace the indexes on ranked columns (store/leaders.py)."""
    _v7_experiment_columns(conn)  # today's leaders carry them
    schema.leaders.create(conn, checkfirst=True)
    schema.leader_bounds.create(conn, checkfirst=True)
    leaders.rebuild_all(conn)
    for name in (
        "ix_experiments_completed_psnr",
        "ix_experiments_completed_compression",
        "ix_experiments_bd_rate",
        "ix_experiments_completed_finished",  # version 1's; today's schema has none
    ):
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))  # constant names


def _v4_leaders_carry_filters(conn: Connection) -> None:
    """Version 4: leaders rows carry the columns that list filters test."""
    columns = {c["name"] for c in inspect(conn).get_columns("leaders")}
    if set(leaders.CARRIED) <= columns:  # made by version 3's step of this release
        return
    _v7_experiment_columns(conn)  # today's leaders carry them
    schema.leaders.drop(conn)
    schema.leaders.create(conn)
    leaders.rebuild_all(conn)


def _v5_alerts(conn: Connection) -> None:
    """Version 5: alert state, history, the notification outbox and the sender's lease."""
    for table in schema.ALERT_TABLES:
        table.create(conn, checkfirst=True)


def _v6_training_curves(conn: Connection) -> None:
    """Version 6: training curves (per-step metrics, their tiers, the newest-step summary)."""
    for table in (schema.metric_series, schema.metric_chunks, schema.training_summary):
        table.create(conn, checkfirst=True)
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _v7_experiment_columns(conn: Connection) -> None:
    """Version 7's new experiment columns (also made by the steps of versions 3 and 4,
    whose leaderboards of today's shape copy them)."""
    columns = {c["name"] for c in inspect(conn).get_columns("experiments")}
    if "dataset" not in columns:
        conn.execute(text("ALTER TABLE experiments ADD COLUMN dataset VARCHAR(100)"))
    if "method" not in columns:
        conn.execute(text("ALTER TABLE experiments ADD COLUMN method VARCHAR(200)"))


def _v7_datasets_methods(conn: Connection) -> None:
    """Version 7: test sets and methods. Experiments gain `dataset` and `method` (the
    leaderboards carry both, for the list's filters); an anchor is named within its set:
    the anchors' key becomes (dataset, name), the existing ones in the unspecified set."""
    _v7_experiment_columns(conn)
    columns = {c["name"] for c in inspect(conn).get_columns("anchors")}
    if "dataset" not in columns:
        if conn.dialect.name == "postgresql":
            key = inspect(conn).get_pk_constraint("anchors").get("name") or "anchors_pkey"
            conn.execute(
                text("ALTER TABLE anchors ADD COLUMN dataset VARCHAR(100) NOT NULL DEFAULT ''")
            )
            conn.execute(text(f'ALTER TABLE anchors DROP CONSTRAINT "{key}"'))
            conn.execute(text("ALTER TABLE anchors ADD PRIMARY KEY (dataset, name)"))
        else:  # SQLite cannot change a table's key: the table is made again
            conn.execute(text("ALTER TABLE anchors RENAME TO anchors_v6"))
            schema.anchors.create(conn)
            conn.execute(
                text(
                    "INSERT INTO anchors (dataset, name, description, rd_points, created_at) "
                    "SELECT '', name, description, rd_points, created_at FROM anchors_v6"
                )
            )
            conn.execute(text("DROP TABLE anchors_v6"))
    carried = {c["name"] for c in inspect(conn).get_columns("leaders")}
    if not set(leaders.CARRIED) <= carried:
        schema.leaders.drop(conn)
        schema.leaders.create(conn)
        leaders.rebuild_all(conn)


def _v8_curation(conn: Connection) -> None:
    """Version 8: experiments' notes, the trash of deleted experiments, the audit log."""
    columns = {c["name"] for c in inspect(conn).get_columns("experiments")}
    if "notes" not in columns:
        conn.execute(text("ALTER TABLE experiments ADD COLUMN notes TEXT"))
    for table in schema.CURATION_TABLES:
        table.create(conn, checkfirst=True)
        for index in table.indexes:
            index.create(conn, checkfirst=True)


MIGRATIONS = {
    2: _v2_bd_rate,
    3: _v3_leaders,
    4: _v4_leaders_carry_filters,
    5: _v5_alerts,
    6: _v6_training_curves,
    7: _v7_datasets_methods,
    8: _v8_curation,
}
