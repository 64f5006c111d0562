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

from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
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
    # Version 7: the test set it was evaluated on (NULL: unspecified) and the method its
    # R-D points belong to (NULL: the experiment is its own method).
    Column("dataset", String(100)),
    Column("method", String(200)),
    Column("notes", Text),  # free text (Markdown shown as text), at most 10,000 characters
)
# Its column names as plain str, in table order: hand-written statements select these.
EXPERIMENT_FIELDS = tuple(str(c.name) for c in experiments.columns)


def marker(dialect: str) -> str:
    """The driver's parameter marker, for hand-written statements: psycopg's ``%s``,
    sqlite3's ``?``."""
    return "%s" if dialect == "postgresql" else "?"


# Default listing order and the 24 h count.
Index("ix_experiments_created", experiments.c.created_at, experiments.c.id)
# No index per ranked column (psnr_db, bitrate_reduction_pct, ms_ssim, bd_rate_pct): an
# index on a random-valued column rewrites pages all over itself on every batch, which at
# a million rows cost more than half of the ingest time. The best rows of each are kept
# in `leaders` instead (see store/leaders.py).

# Per ranked metric, every experiment whose value is at or better than the metric's
# bound in `leader_bounds` (a few thousand rows each): "best first" pages read these.
# Each row carries copies of the experiment's columns that list filters test (status,
# creation time, the threshold filters), so a filtered page is one range scan here.
leaders = Table(
    "leaders",
    metadata,
    Column("metric", String(32), primary_key=True),
    Column("value", Float, primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("psnr_db", Float),
    Column("bitrate_reduction_pct", Float),
    Column("bd_rate_pct", Float),
    Column("dataset", String(100)),
    Column("method", String(200)),
    sqlite_with_rowid=False,
)
leader_bounds = Table(
    "leader_bounds",
    metadata,
    Column("metric", String(32), primary_key=True),
    # NULL: every experiment with a value for the metric is in `leaders`.
    Column("bound", Float),
    Column("n", Integer, nullable=False),
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


def _reported() -> list[Column[Any]]:
    """What a heartbeat reports besides who, what and when: stored with every heartbeat,
    and the newest with its worker (fresh Column objects for each table)."""
    return [
        Column("instance_type", String(64)),
        Column("spot", Boolean),
        Column("hourly_cost_usd", Float),
        Column("cpu_pct", Float),
        Column("mem_pct", Float),
        Column("gpu_util_pct", Float),
        Column("gpu_mem_pct", Float),
        Column("fps", Float),
        Column("queue_depth", BigInteger),
    ]


heartbeats = Table(
    "heartbeats",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("worker_id", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", Float, nullable=False),
    *_reported(),
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
    *_reported(),
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

# An anchor is named within its test set: ("", name) is an anchor of the unspecified set
# (a key column cannot be NULL; the API says null).
anchors = Table(
    "anchors",
    metadata,
    Column("dataset", String(100), primary_key=True, server_default=text("''")),
    Column("name", String(200), primary_key=True),
    Column("description", Text),
    Column("rd_points", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Alerts (codecdash/alerts): the state of each alert, its history, the outbox of
# notifications still to deliver, and the lease that makes one replica the sender.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("labels_key", String(512), nullable=False),  # canonical JSON of the labels
    Column("labels", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # inactive, pending, firing, resolved
    Column("since", Float, nullable=False),  # when the current state began
    Column("fired_at", Float),
    Column("resolved_at", Float),
    Column("summary", Text, nullable=False),
    Column("value", Float),
    Column("notified", Boolean, nullable=False, server_default=text("false")),
    Column("last_notified_at", Float),
    Column("acknowledged_at", Float),
    Column("acknowledged_by", String(100)),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("rule", "labels_key", name="uq_alerts_rule_labels"),
)
Index("ix_alerts_state", alerts.c.state)

alert_history = Table(
    "alert_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, nullable=False),
    Column("rule", String(64), nullable=False),
    Column("labels", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),  # pending, firing, resolved, acknowledged
    Column("at", Float, nullable=False),
    Column("summary", Text, nullable=False),
    Column("notified", Boolean, nullable=False, server_default=text("false")),
    Column("actor", String(100)),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON: the grouped alerts
    Column("state", String(16), nullable=False),  # pending, sent, failed
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_try_at", Float, nullable=False),
    Column("last_try_at", Float),
    Column("last_error", Text),
    Column("sent_at", Float),
)
Index("ix_alert_outbox_due", alert_outbox.c.state, alert_outbox.c.next_try_at)
Index("ix_alert_outbox_sent", alert_outbox.c.channel, alert_outbox.c.sent_at)

alert_lease = Table(
    "alert_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)
ALERT_TABLES = (alerts, alert_history, alert_outbox, alert_lease)

# Training curves (store/curves.py). One row per metric of an experiment; `points`
# counts its raw points (distinct steps), kept when retention drops the raw points.
metric_series = Table(
    "metric_series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", String(128), nullable=False),
    Column("name", String(100), nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("first_step", BigInteger, nullable=False),
    Column("last_step", BigInteger, nullable=False),
    Column("last_at", Float, nullable=False),
    # Raw points up to this step were dropped by retention (the tiers keep their buckets).
    Column("raw_pruned_through", BigInteger),
)
Index(
    "ux_metric_series_experiment_name",
    metric_series.c.experiment_id,
    metric_series.c.name,
    unique=True,
)

# The points themselves, as packed little-endian arrays: tier 0 holds raw points (step,
# time, value) by chunks of steps; tier t >= 1 holds buckets of 8**t steps (last step,
# its time, last value, min, max) by chunks of 256 buckets. A write rewrites the few
# chunks its steps fall in, at every tier; a chart reads a few chunks of one tier.
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("tier", SmallInteger, primary_key=True, autoincrement=False),
    Column("chunk", BigInteger, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# Packed floats do not compress: PostgreSQL should not try (TOAST's default) on each write.
event.listen(
    metric_chunks,
    "after_create",
    DDL("ALTER TABLE metric_chunks ALTER COLUMN data SET STORAGE EXTERNAL").execute_if(  # type: ignore[no-untyped-call]
        dialect="postgresql"
    ),
)

# The newest step of each experiment that logged metrics and the state of its loss, kept
# current on write: the experiments table marks diverging runs from it, alert rules read
# it. `seq` orders the writes (the event stream follows other processes' writes by it).
training_summary = Table(
    "training_summary",
    metadata,
    Column("experiment_id", String(128), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("at", Float, nullable=False),  # the newest step's wall time (the client's)
    Column("received_at", Float, nullable=False),  # the newest write's (the server's)
    Column("seq", BigInteger, nullable=False),
    Column("loss_metric", String(100)),
    Column("loss_step", BigInteger),
    Column("loss", Float),  # the newest loss when finite
    Column("loss_state", String(9)),  # "NaN", "Infinity", "-Infinity"; NULL when finite
    Column("loss_ema", Float),  # smoothed (finite) loss, and its lowest after warm-up
    Column("loss_best", Float),
    Column("loss_n", Integer, nullable=False, server_default=text("0")),
    Column("non_finite_step", BigInteger),
    Column("alert", String(20)),
    Column("latest", Text, nullable=False),  # {metric: newest value} as JSON
)
Index("ix_training_summary_seq", training_summary.c.seq)

# Curation (store/trash.py, store/audit.py). A deleted experiment leaves `experiments`
# for the trash: every list, count, leaderboard and figure forgets it with no filter to
# remember, and a restore writes it back as it was. `stored_row` is the whole stored row as JSON
# (its columns at deletion time, so a later column needs no copy here); the other columns
# are what the trash is listed and purged by.
experiments_trash = Table(
    "experiments_trash",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("deleted_at", Float, nullable=False),
    Column("deleted_by", String(100)),
    Column("name", String(200)),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("stored_row", Text, nullable=False),
)
Index("ix_experiments_trash_deleted", experiments_trash.c.deleted_at, experiments_trash.c.id)

# Who deleted, restored, purged or edited what, and when: one row per operation.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(100)),  # the write token's name; null for the local CLI's user
    Column("action", String(16), nullable=False),  # delete, restore, purge, edit
    Column("count", Integer, nullable=False),
    Column("ids", Text, nullable=False),  # JSON list: the first AUDIT_IDS ids
    Column("details", Text),  # JSON object: the filter, the fields changed
)
Index("ix_audit_log_at", audit_log.c.at)
CURATION_TABLES = (experiments_trash, audit_log)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

__all__ = [
    "ALERT_TABLES",
    "CURATION_TABLES",
    "Integer",
    "alert_history",
    "alert_lease",
    "alert_outbox",
    "alerts",
    "anchors",
    "audit_log",
    "cost_daily",
    "cost_records",
    "counters",
    "experiments",
    "experiments_trash",
    "heartbeats",
    "leader_bounds",
    "leaders",
    "metadata",
    "metric_chunks",
    "metric_series",
    "progress_hourly",
    "schema_version",
    "tokens",
    "training_summary",
    "workers",
]
