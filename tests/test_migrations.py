"""Schema migrations: a version-1 database (frozen DDL in tests/data) opened by today's
Store is upgraded in place to the latest version, and nothing in it is lost."""

from __future__ import annotations

import calendar
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import inspect, text

from codecdash.config import Settings
from codecdash.curve_models import MetricPoint
from codecdash.models import ExperimentIn
from codecdash.snapshot import SnapshotBuilder
from codecdash.sources.local import local_sources
from codecdash.store import ListQuery, Store
from codecdash.store.db import LATEST_VERSION
from codecdash.store.rows import get as stored_row
from codecdash.store.tokens import hash_token
from conftest import PgServer, _libpq, writes

DATA = Path(__file__).parent / "data"
NOW = float(calendar.timegm((2025, 3, 14, 12, 0, 0)))
HOUR = 3600.0
TOKEN = "cdt_v1-token-made-before-the-upgrade-0123456789"

EXPERIMENTS: list[dict[str, Any]] = [
    {
        "id": "v1-a",
        "name": "ssf λ=0.013",
        "status": "completed",
        "created_at": NOW - 5 * HOUR,
        "started_at": NOW - 5 * HOUR,
        "finished_at": NOW - 4 * HOUR,
        "updated_at": NOW - 4 * HOUR,
        "duration_s": HOUR,
        "bitrate_reduction_pct": 41.5,
        "psnr_db": 34.25,
        "ms_ssim": 0.97,
        "bpp": 0.1,
        "bitrate_kbps": 800.0,
        "cost_usd": 2.5,
        "worker_id": "w1",
        "params": orjson.dumps({"lambda": 0.013}).decode(),
        "tags": '["uvg"]',
        "error": None,
        "rd_points": '[{"bitrate_kbps": 100.0, "psnr_db": 30.0}]',
    },
    {
        "id": "v1-b",
        "name": "diverged",
        "status": "failed",
        "created_at": NOW - 3 * HOUR,
        "started_at": NOW - 3 * HOUR,
        "finished_at": NOW - 2 * HOUR,
        "updated_at": NOW - 2 * HOUR,
        "duration_s": HOUR,
        "bitrate_reduction_pct": None,
        "psnr_db": None,
        "ms_ssim": None,
        "bpp": None,
        "bitrate_kbps": None,
        "cost_usd": None,
        "worker_id": None,
        "params": None,
        "tags": None,
        "error": "loss is NaN",
        "rd_points": None,
    },
    {
        "id": "v1-c",
        "name": None,
        "status": "running",
        "created_at": NOW - HOUR,
        "started_at": NOW - HOUR,
        "finished_at": None,
        "updated_at": NOW - HOUR,
        "duration_s": None,
        "bitrate_reduction_pct": 10.0,
        "psnr_db": 31.0,
        "ms_ssim": None,
        "bpp": None,
        "bitrate_kbps": None,
        "cost_usd": None,
        "worker_id": "w2",
        "params": "{}",
        "tags": "[]",
        "error": None,
        "rd_points": None,
    },
]
ROWS: dict[str, list[dict[str, Any]]] = {
    "schema_version": [{"version": 1, "applied_at": NOW - 30 * 24 * HOUR}],
    "experiments": EXPERIMENTS,
    "counters": [
        {"name": "experiments.completed", "n": 1},
        {"name": "experiments.failed", "n": 1},
        {"name": "experiments.running", "n": 1},
        {"name": "data_version", "n": 17},
        {"name": "rows.heartbeats", "n": 2},
        {"name": "rows.cost_records", "n": 1},
    ],
    "progress_hourly": [
        {
            "hour": int((NOW - 4 * HOUR) // HOUR),
            "best_compression_pct": 41.5,
            "best_psnr_db": 34.25,
            "best_ms_ssim": 0.97,
        }
    ],
    "heartbeats": [
        {
            "worker_id": "orch",
            "role": "orchestrator",
            "status": "ok",
            "at": NOW - 20,
            "cpu_pct": 10.0,
            "mem_pct": 20.0,
        },
        {
            "worker_id": "w1",
            "role": "training",
            "status": "ok",
            "at": NOW - 30,
            "spot": True,
            "queue_depth": 5,
            "hourly_cost_usd": 1.0,
        },
    ],
    "workers": [
        {
            "worker_id": "orch",
            "role": "orchestrator",
            "status": "ok",
            "first_seen": NOW - 20,
            "last_seen": NOW - 20,
            "cpu_pct": 10.0,
            "mem_pct": 20.0,
            "clean_shutdown": False,
        },
        {
            "worker_id": "w1",
            "role": "training",
            "status": "ok",
            "first_seen": NOW - 30,
            "last_seen": NOW - 30,
            "spot": True,
            "queue_depth": 5,
            "hourly_cost_usd": 1.0,
            "clean_shutdown": False,
        },
    ],
    "cost_records": [
        {
            "component": "storage",
            "amount_usd": 12.5,
            "at": NOW - 2 * 86400,
            "description": "S3",
            "source": "aws-cur",
        }
    ],
    "cost_daily": [{"day": int((NOW - 2 * 86400) // 86400), "component": "storage", "usd": 12.5}],
    "tokens": [
        {
            "name": "old-ci",
            "scope": "write",
            "token_hash": hash_token(TOKEN),
            "created_at": NOW - 10 * 86400,
            "revoked_at": None,
        }
    ],
}


def _insert_all(execute: Callable[[str, list[Any]], None], mark: str) -> None:
    for table, rows in ROWS.items():
        for row in rows:
            columns = ", ".join(row)
            marks = ", ".join([mark] * len(row))
            execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))


def make_v1_sqlite(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "schema_v1.sql").read_text(encoding="utf-8"))
        _insert_all(lambda sql, values: conn.execute(sql, values), "?")
    conn.close()
    return f"sqlite:///{path}"


def make_v1_postgres(server: PgServer) -> str:
    import psycopg

    url = server.new_schema()
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute((DATA / "schema_v1_postgresql.sql").read_text(encoding="utf-8"))
        _insert_all(lambda sql, values: conn.execute(sql, values), "%s")  # type: ignore[arg-type]
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v1_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return make_v1_sqlite(tmp_path / "v1.db")
    return make_v1_postgres(request.getfixturevalue("pg_server"))


def versions(store: Store) -> list[int]:
    from sqlalchemy import select

    from codecdash.store import schema

    with store.db.read() as conn:
        return [
            int(v)
            for (v,) in conn.execute(
                select(schema.schema_version.c.version).order_by(schema.schema_version.c.version)
            )
        ]


def test_v1_database_is_upgraded_in_place(v1_url: str) -> None:
    store = Store(v1_url, migrate=False)
    try:
        assert versions(store) == [1]
        assert "anchors" not in inspect(store.db.engine).get_table_names()
    finally:
        store.close()

    store = Store(v1_url)
    try:
        assert versions(store) == list(range(1, LATEST_VERSION + 1))
        assert LATEST_VERSION == 8
        inspector = inspect(store.db.engine)
        assert {"anchors", "leaders", "leader_bounds"} <= set(inspector.get_table_names())
        # version 8: curation
        assert {"experiments_trash", "audit_log"} <= set(inspector.get_table_names())
        # version 6: training curves
        assert {"metric_series", "metric_chunks", "training_summary"} <= set(
            inspector.get_table_names()
        )
        columns = {c["name"] for c in inspector.get_columns("experiments")}
        assert {"bd_rate_pct", "bd_rate_anchor", "dataset", "method", "notes"} <= columns
        assert "best_bd_rate_pct" in {c["name"] for c in inspector.get_columns("progress_hourly")}
        # version 3: leaderboards built from the rows, the ranked-column indexes dropped
        assert {i["name"] for i in inspector.get_indexes("experiments")} == {
            "ix_experiments_created"
        }
        with store.db.read() as conn:
            found = {
                (m, v, i)
                for m, v, i in conn.exec_driver_sql("SELECT metric, value, id FROM leaders")
            }
        assert found == {
            (metric, row[metric], row["id"])
            for row in EXPERIMENTS
            for metric in ("psnr_db", "bitrate_reduction_pct", "ms_ssim")
            if row.get(metric) is not None
        }

        # nothing lost: every stored value as it was
        for before in EXPERIMENTS:
            with store.db.read() as conn:
                after = stored_row(conn, before["id"])
            assert after is not None
            assert {k: after[k] for k in before} == before
            assert after["bd_rate_pct"] is None and after["bd_rate_anchor"] is None
        assert store.version() == 17
        _, _, total = store.list_experiments(ListQuery())
        assert total == 3
        assert store.check_token(TOKEN, ("write",)) == "old-ci"
        assert [t["name"] for t in store.list_tokens()] == ["old-ci"]
    finally:
        store.close()


@pytest.mark.anyio
async def test_upgraded_database_serves_and_takes_writes(v1_url: str) -> None:
    store = Store(v1_url)
    try:
        settings = Settings(database_url=v1_url)
        snap = await SnapshotBuilder(settings, local_sources(store, settings)).build(now=NOW)
        assert all(row["ok"] for row in snap["sources"]), snap["sources"]
        s = snap["summary"]
        assert (s["total_experiments"], s["completed"], s["failed"], s["running"]) == (3, 1, 1, 1)
        assert s["best_quality"]["experiment_id"] == "v1-a"
        assert s["month_to_date_usd"] == 12.5
        assert snap["infrastructure"]["orchestrator"]["status"] == "ok"
        assert snap["infrastructure"]["training_workers"]["queue_depth"] == 5
        assert [p["best_psnr_db"] for p in snap["progress"]["quality"]] == [34.25]
        # the version-2 features work on the upgraded database
        store.put_anchor("hm-16.20", "HEVC anchor", [{"bitrate_kbps": 100.0, "psnr_db": 30.0}])
        assert [a["name"] for a in store.anchors()] == ["hm-16.20"]
        writes(store).create(ExperimentIn(id="v2-new", status="completed", psnr_db=36.0))
        writes(store).batch([ExperimentIn(id="v1-c", status="completed", psnr_db=31.0)])
        _, _, total = store.list_experiments(ListQuery(status=["completed"]))
        assert total == 3
        # the version-5 features too: the running experiment logs a curve
        point = MetricPoint.model_validate({"step": 3, "values": {"loss": "NaN", "lr": 0.1}})
        assert store.log_metrics([("v1-a", [point])]) == 2
        curves = store.metric_history("v1-a", None, 10)
        assert curves is not None and curves["series"]["loss"]["value"] == ["NaN"]
        assert store.get_experiment("v1-a")["training"]["non_finite_step"] == 3  # type: ignore[index]
    finally:
        store.close()


def test_opening_again_is_a_no_op(v1_url: str) -> None:
    for _ in range(2):
        store = Store(v1_url)
        try:
            assert versions(store) == list(range(1, LATEST_VERSION + 1))
            assert store.get_experiment("v1-a") is not None
        finally:
            store.close()


def test_v3_leaderboards_gain_the_carried_columns(tmp_path: Path) -> None:
    """A version-3 database (leaders rows of metric, value and id only) is rebuilt with
    the columns that filtered pages read, and those pages answer from them."""
    path = tmp_path / "v3.db"
    store = Store(str(path))
    writes(store).batch(
        [
            ExperimentIn(id="a", status="completed", psnr_db=36.0, bitrate_reduction_pct=85.0),
            ExperimentIn(id="b", status="completed", psnr_db=38.0, bitrate_reduction_pct=20.0),
            ExperimentIn(id="c", status="failed", psnr_db=39.0, bitrate_reduction_pct=90.0),
        ]
    )
    store.close()
    with sqlite3.connect(path) as conn:  # version 3's table, as that release made it
        conn.executescript(
            """
            CREATE TABLE old_leaders (metric VARCHAR(32) NOT NULL, value FLOAT NOT NULL,
                id VARCHAR(128) NOT NULL, PRIMARY KEY (metric, value, id)) WITHOUT ROWID;
            INSERT INTO old_leaders SELECT metric, value, id FROM leaders;
            DROP TABLE leaders;
            ALTER TABLE old_leaders RENAME TO leaders;
            UPDATE schema_version SET version = 3;
            """
        )
    conn.close()

    store = Store(str(path))
    try:
        assert versions(store) == list(range(3, LATEST_VERSION + 1))
        columns = {c["name"] for c in inspect(store.db.engine).get_columns("leaders")}
        assert {"status", "created_at", "bitrate_reduction_pct"} <= columns
        query = ListQuery(
            status=["completed"], min_bitrate_reduction_pct=80.0, sort="-psnr_db", limit=5
        )
        rows, _cursor, total = store.list_experiments(query)
        assert ([r["id"] for r in rows], total) == (["a"], 1)
    finally:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'v4.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_schema()


def test_v4_database_gains_the_alert_tables(fresh_url: str) -> None:
    """Version 5's step: a version-4 database (no alert tables) gets them, and alerts work."""
    from codecdash.alerts.service import AlertService
    from codecdash.store import schema

    store = Store(fresh_url)
    writes(store).create(ExperimentIn(id="kept", status="completed", psnr_db=35.5))
    with store.db.write() as conn:  # as version 4 left it
        for table in reversed(schema.ALERT_TABLES):
            table.drop(conn)
        conn.execute(schema.schema_version.delete())
        conn.execute(schema.schema_version.insert(), {"version": 4, "applied_at": NOW})
    store.close()
    store = Store(fresh_url)
    try:
        assert versions(store) == list(range(4, LATEST_VERSION + 1))
        tables = set(inspect(store.db.engine).get_table_names())
        assert {t.name for t in schema.ALERT_TABLES} <= tables
        assert store.get_experiment("kept") is not None
        service = AlertService(Settings(database_url=fresh_url), store)
        down = {"infrastructure": {"orchestrator": {"status": "down", "last_seen": None}}}
        service.evaluate(down, NOW)
        assert [a.rule for a in service.alerts.current(["pending"])] == ["orchestrator_down"]
    finally:
        store.close()


def test_v4_database_gains_the_training_curve_tables(tmp_path: Path) -> None:
    """A version-4 database (before alerts and training curves) is upgraded, its data untouched,
    and the new tables work at once."""
    path = tmp_path / "v4.db"
    store = Store(str(path))
    writes(store).create(ExperimentIn(id="old", status="running", psnr_db=30.0))
    store.close()
    with sqlite3.connect(path) as conn:  # version 4 as that release left it
        conn.executescript(
            """
            DROP TABLE metric_series; DROP TABLE metric_chunks; DROP TABLE training_summary;
            DELETE FROM schema_version; INSERT INTO schema_version VALUES (4, 0);
            """
        )
    conn.close()

    store = Store(str(path))
    try:
        assert versions(store) == list(range(4, LATEST_VERSION + 1))
        assert store.get_experiment("old")["psnr_db"] == 30.0  # type: ignore[index]
        points = [
            MetricPoint.model_validate({"step": s, "values": {"loss": 1.0}}) for s in range(3)
        ]
        assert store.log_metrics([("old", points)]) == 3
        assert store.get_experiment("old")["training"]["step"] == 2  # type: ignore[index]
    finally:
        store.close()


V6_ANCHOR = [
    {"bitrate_kbps": 1000.0, "psnr_db": 30.0},
    {"bitrate_kbps": 2000.0, "psnr_db": 33.0},
    {"bitrate_kbps": 4000.0, "psnr_db": 36.0},
    {"bitrate_kbps": 8000.0, "psnr_db": 39.0},
]
V6_SQL = {
    "sqlite": """
        ALTER TABLE experiments DROP COLUMN dataset;
        ALTER TABLE experiments DROP COLUMN method;
        CREATE TABLE old_anchors (name VARCHAR(200) NOT NULL PRIMARY KEY, description TEXT,
            rd_points TEXT NOT NULL, created_at FLOAT NOT NULL);
        INSERT INTO old_anchors SELECT name, description, rd_points, created_at FROM anchors;
        DROP TABLE anchors;
        ALTER TABLE old_anchors RENAME TO anchors;
        CREATE TABLE old_leaders (metric VARCHAR(32) NOT NULL, value FLOAT NOT NULL,
            id VARCHAR(128) NOT NULL, status VARCHAR(16) NOT NULL, created_at FLOAT NOT NULL,
            psnr_db FLOAT, bitrate_reduction_pct FLOAT, bd_rate_pct FLOAT,
            PRIMARY KEY (metric, value, id)) WITHOUT ROWID;
        INSERT INTO old_leaders SELECT metric, value, id, status, created_at, psnr_db,
            bitrate_reduction_pct, bd_rate_pct FROM leaders;
        DROP TABLE leaders;
        ALTER TABLE old_leaders RENAME TO leaders;
        DELETE FROM schema_version; INSERT INTO schema_version VALUES (6, 0);
        """,
    "postgresql": """
        ALTER TABLE experiments DROP COLUMN dataset;
        ALTER TABLE experiments DROP COLUMN method;
        ALTER TABLE leaders DROP COLUMN dataset;
        ALTER TABLE leaders DROP COLUMN method;
        ALTER TABLE anchors DROP CONSTRAINT anchors_pkey;
        ALTER TABLE anchors DROP COLUMN dataset;
        ALTER TABLE anchors ADD PRIMARY KEY (name);
        DELETE FROM schema_version; INSERT INTO schema_version VALUES (6, 0);
        """,
}


def test_v6_database_gains_test_sets_and_methods(fresh_url: str) -> None:
    """Version 7's step on both databases: a version-6 store (no `dataset` or `method`,
    anchors keyed by name alone) keeps its experiments and anchors (now of the unspecified
    set), and sets, methods, per-set anchors and the new filters work at once."""
    store = Store(fresh_url)
    writes(store).create(
        ExperimentIn.model_validate(
            {"id": "old", "status": "completed", "psnr_db": 35.0, "rd_points": V6_ANCHOR}
        )
    )
    store.put_anchor("hm", "an anchor of version 6", V6_ANCHOR)
    with store.db.write() as conn:  # version 6 as that release left it
        for statement in V6_SQL[store.db.dialect].split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    store.close()

    store = Store(fresh_url)
    try:
        assert versions(store) == list(range(6, LATEST_VERSION + 1))
        inspector = inspect(store.db.engine)
        assert {"dataset", "method"} <= {c["name"] for c in inspector.get_columns("experiments")}
        assert {"dataset", "method"} <= {c["name"] for c in inspector.get_columns("leaders")}
        assert inspector.get_pk_constraint("anchors")["constrained_columns"] == ["dataset", "name"]
        old = store.get_experiment("old")
        assert old is not None and old["psnr_db"] == 35.0 and old["dataset"] is None
        [anchor] = store.anchors()
        assert (anchor["name"], anchor["dataset"], anchor["rd_points"]) == ("hm", None, V6_ANCHOR)
        # one name in two sets: two anchors
        store.put_anchor("hm", None, V6_ANCHOR, "UVG-1080p")
        assert sorted((a["dataset"] or "", a["name"]) for a in store.anchors()) == [
            ("", "hm"),
            ("UVG-1080p", "hm"),
        ]
        writes(store).batch(
            [
                ExperimentIn(id="u1", status="completed", psnr_db=36.0, dataset="UVG-1080p"),
                ExperimentIn(
                    id="u2", status="completed", psnr_db=37.0, dataset="UVG-1080p", method="ssf"
                ),
                ExperimentIn(
                    id="m1", status="completed", psnr_db=38.0, dataset="MCL-JCV", method="ssf"
                ),
            ]
        )
        for query, ids in (
            (ListQuery(dataset="UVG-1080p", sort="-psnr_db"), ["u2", "u1"]),
            (ListQuery(method="ssf", sort="-psnr_db"), ["m1", "u2"]),
            (ListQuery(dataset="UVG-1080p", method="ssf", sort="id"), ["u2"]),
        ):
            rows, _cursor, total = store.list_experiments(query)
            assert ([r["id"] for r in rows], total) == (ids, len(ids))
    finally:
        store.close()


def test_v6_database_gains_notes_the_trash_and_the_audit_log(fresh_url: str) -> None:
    """Version 8's step (_v8_curation): a version-6 database (no notes column, no trash, no
    audit log) is upgraded, its experiments untouched, and curation works at once."""
    from codecdash.store import schema

    store = Store(fresh_url)
    writes(store).create(ExperimentIn(id="kept", status="completed", psnr_db=35.5))
    before = store.get_experiment("kept")
    with store.db.write() as conn:  # as version 6 left it
        for table in reversed(schema.CURATION_TABLES):
            table.drop(conn)
        conn.execute(text("ALTER TABLE experiments DROP COLUMN notes"))
        conn.execute(schema.schema_version.delete())
        conn.execute(schema.schema_version.insert(), {"version": 6, "applied_at": NOW})
    store.close()
    store = Store(fresh_url)
    try:
        assert versions(store) == list(range(6, LATEST_VERSION + 1))
        tables = set(inspect(store.db.engine).get_table_names())
        assert {t.name for t in schema.CURATION_TABLES} <= tables
        columns = {c["name"] for c in inspect(store.db.engine).get_columns("experiments")}
        assert "notes" in columns
        after = store.get_experiment("kept")
        assert after == {**before, "notes": None}  # type: ignore[dict-item]
        store.patch_experiment("kept", {"notes": "checked"})
        assert store.curation.delete(["kept"], "t")[0]["notes"] == "checked"
        assert store.list_experiments(ListQuery())[2] == 0
        assert store.curation.restore(["kept"], "t")[0]["psnr_db"] == 35.5
        assert [e["action"] for e in store.curation.audit(10)[0]] == ["restore", "delete"]
    finally:
        store.close()
    store = Store(fresh_url)  # opening again changes nothing
    try:
        assert versions(store) == list(range(6, LATEST_VERSION + 1))
    finally:
        store.close()


def test_a_fresh_database_starts_at_the_latest_version(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "fresh.db"))
    try:
        assert versions(store) == [LATEST_VERSION]
    finally:
        store.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    url = make_v1_sqlite(tmp_path / "future.db")
    with sqlite3.connect(tmp_path / "future.db") as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, ?)", (LATEST_VERSION + 1, NOW))
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this codecdash"):
        Store(url)
