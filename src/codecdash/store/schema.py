"""The SQL schema, one for SQLite and PostgreSQL (SQLAlchemy Core).

Times are stored as float seconds since the epoch (UTC): compact, fast to compare and
index, and the same on both databases. JSON-ish fields (params, tags, rd_points, extra)
are stored as JSON text.

Indexes are chosen for the queries the API makes, not per column: every secondary
index costs ingest speed (see docs/performance.md). Summary tables (``counters``,
``progress_hourly``, ``cost_daily``) are kept current on write so the dashboard never
aggregates the big tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(200)),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("updated_at", Float),
    Column("duration_s", Float),
    Column("bitrate_reduction_pct", Float),
    Column("psnr_db", Float),
    Column("ms_ssim", Float),
    Column("bpp", Float),
    Column("bitrate_kbps", Float),
    Column("cost_usd", Float),
    Column("worker_id", String(128)),
    Column("params", Text),
    Column("tags", Text),
    Column("error", Text),
    Column("rd_points", Text),
    Column("bd_rate_pct", Float),
    Column("bd_rate_anchor", String(200)),
)

COMPLETED = text("status = 'completed'")

# Default listing order and the 24 h count.
Index("ix_experiments_created", experiments.c.created_at, experiments.c.id)
# Ranked queries over completed experiments (best compression, best quality, the
# table's "completed, sorted by PSNR"). No index on finished_at: recomputing an hour of
# progress (rare: only when a stored best result is replaced by a worse one) scans.
for _name, _column in (
    ("ix_experiments_completed_psnr", experiments.c.psnr_db),
    ("ix_experiments_completed_compression", experiments.c.bitrate_reduction_pct),
):
    # Both databases scan these for "best first" (DESC, NULLs last). SQLite scans a plain
    # index backwards that way; PostgreSQL needs the order spelled out in the index.
    Index(_name, _column, experiments.c.id, sqlite_where=COMPLETED).ddl_if(dialect="sqlite")
    Index(
        _name,
        _column.desc().nulls_last(),
        experiments.c.id.desc(),
        postgresql_where=COMPLETED,
    ).ddl_if(dialect="postgresql")
BD_RATE_WHERE = text("bd_rate_pct IS NOT NULL")
Index(
    "ix_experiments_bd_rate",
    experiments.c.bd_rate_pct,
    experiments.c.id,
    sqlite_where=BD_RATE_WHERE,
    postgresql_where=BD_RATE_WHERE,
)

# Named integer counters kept current on write: experiments per status, row counts,
# the data version.
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("n", BigInteger, nullable=False),
)

# Best results of completed experiments per hour of finished_at.
progress_hourly = Table(
    "progress_hourly",
    metadata,
    Column("hour", Integer, primary_key=True, autoincrement=False),
    Column("best_compression_pct", Float),
    Column("best_psnr_db", Float),
    Column("best_ms_ssim", Float),
    Column("best_bd_rate_pct", Float),
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("worker_id", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("instance_type", String(64)),
    Column("spot", Boolean),
    Column("hourly_cost_usd", Float),
    Column("cpu_pct", Float),
    Column("mem_pct", Float),
    Column("gpu_util_pct", Float),
    Column("gpu_mem_pct", Float),
    Column("fps", Float),
    Column("queue_depth", BigInteger),
    Column("extra", Text),
)
Index("ix_heartbeats_role_at", heartbeats.c.role, heartbeats.c.at)
Index("ix_heartbeats_at", heartbeats.c.at)

# The newest state of each worker, for the infrastructure cards.
workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(128), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("instance_type", String(64)),
    Column("spot", Boolean),
    Column("hourly_cost_usd", Float),
    Column("cpu_pct", Float),
    Column("mem_pct", Float),
    Column("gpu_util_pct", Float),
    Column("gpu_mem_pct", Float),
    Column("fps", Float),
    Column("queue_depth", BigInteger),
    Column("clean_shutdown", Boolean, nullable=False, server_default=text("false")),
    Column("extra", Text),
)
Index("ix_workers_role_last_seen", workers.c.role, workers.c.last_seen)

cost_records = Table(
    "cost_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("component", String(16), nullable=False),
    Column("amount_usd", Float, nullable=False),
    Column("at", Float, nullable=False),
    Column("description", String(500)),
    Column("source", String(100)),
)
Index("ix_cost_records_at", cost_records.c.at)

# Dollars per UTC day and component: cost records plus accrued worker time.
cost_daily = Table(
    "cost_daily",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),
    Column("component", String(16), primary_key=True),
    Column("usd", Float, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

anchors = Table(
    "anchors",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("description", Text),
    Column("rd_points", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

__all__ = [
    "Integer",
    "anchors",
    "cost_daily",
    "cost_records",
    "counters",
    "experiments",
    "heartbeats",
    "metadata",
    "progress_hourly",
    "schema_version",
    "tokens",
    "workers",
]
