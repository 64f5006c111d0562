"""MLflow's SQLite database: the bulk copy into its schema, and the two databases the
queries run on.

- **As shipped**: the file as MLflow's API and the bulk copy leave it. MLflow never runs
  ``ANALYZE``, so SQLite's planner has no statistics (no ``sqlite_stat1`` table) and
  guesses.
- **With statistics**: a page-for-page copy of that file, then ``ANALYZE`` (the best case
  a careful administrator could give MLflow; the statistics change its query plans).

Both servers must be stopped while these functions run.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow_compare.data import MLFLOW_STATUS, Exp, metric_ts, mlflow_metrics, mlflow_params

KNOWN_TABLES = {"runs", "params", "metrics", "latest_metrics", "tags"}


def bulk_load(db: Path, experiment_id: str, exps: Sequence[Exp]) -> float:
    """Add `exps` to the experiment with SQL, from the rows MLflow's API wrote for its runs.

    A run the API wrote is the template: every column of `runs` and every tag is copied from
    it, with the run's own id, name, status, times, params and metrics (the same values
    codecdash receives). Plain INSERTs: nothing else (no ANALYZE, no index) is done."""
    t0 = time.perf_counter()
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        tmpl = con.execute(
            "SELECT * FROM runs WHERE experiment_id = ? AND status = 'FINISHED' LIMIT 1",
            (int(experiment_id),),
        ).fetchone()
        if tmpl is None:
            raise RuntimeError("no run written by MLflow's API to copy from")
        tmpl_id, tmpl_name = tmpl["run_uuid"], tmpl["name"]
        _check_no_unknown_rows(con, tmpl_id)
        tags = con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (tmpl_id,)).fetchall()
        mrow = con.execute(
            "SELECT * FROM metrics WHERE run_uuid = ? LIMIT 1", (tmpl_id,)
        ).fetchone()
        lrow = con.execute(
            "SELECT * FROM latest_metrics WHERE run_uuid = ? LIMIT 1", (tmpl_id,)
        ).fetchone()
        run_cols, metric_cols, latest_cols = list(tmpl.keys()), list(mrow.keys()), list(lrow.keys())
        runs: list[tuple[Any, ...]] = []
        params: list[tuple[Any, ...]] = []
        metrics: list[tuple[Any, ...]] = []
        latest: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[Any, ...]] = []
        for e in exps:
            rid = uuid.uuid4().hex
            run = dict(tmpl)
            run.update(
                run_uuid=rid,
                name=e.id,
                status=MLFLOW_STATUS[e.status],
                start_time=e.start_ms,
                end_time=e.end_ms,
                artifact_uri=str(tmpl["artifact_uri"]).replace(tmpl_id, rid),
            )
            runs.append(tuple(run[c] for c in run_cols))
            params.extend((p["key"], p["value"], rid) for p in mlflow_params(e))
            ts = metric_ts(e)
            for key, value in mlflow_metrics(e):
                row = {"key": key, "value": value, "timestamp": ts, "run_uuid": rid}
                row.update(step=0, is_nan=0)
                metrics.append(tuple({**dict(mrow), **row}[c] for c in metric_cols))
                latest.append(tuple({**dict(lrow), **row}[c] for c in latest_cols))
            tag_rows.extend(
                (t["key"], e.id if t["value"] == tmpl_name else t["value"], rid) for t in tags
            )
        with con:
            _insert(con, "runs", run_cols, runs)
            _insert(con, "params", ["key", "value", "run_uuid"], params)
            _insert(con, "metrics", metric_cols, metrics)
            _insert(con, "latest_metrics", latest_cols, latest)
            _insert(con, "tags", ["key", "value", "run_uuid"], tag_rows)
    finally:
        con.close()
    return time.perf_counter() - t0


def _check_no_unknown_rows(con: sqlite3.Connection, run_id: str) -> None:
    """Fail loudly if MLflow wrote a run's rows into a table this loader does not copy."""
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        columns = {row[1] for row in con.execute(f'PRAGMA table_info("{table}")')}
        if table not in KNOWN_TABLES and "run_uuid" in columns:
            n = con.execute(
                f'SELECT count(*) FROM "{table}" WHERE run_uuid = ?', (run_id,)
            ).fetchone()[0]
            if n:
                raise RuntimeError(
                    f"MLflow wrote rows in {table!r} this loader does not know; update bulk_load"
                )


def _insert(con: sqlite3.Connection, table: str, cols: list[str], rows: list[Any]) -> None:
    names = ", ".join(f'"{c}"' for c in cols)
    marks = ", ".join("?" for _ in cols)
    con.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)


def keep_only(db: Path, keep: str) -> None:
    """Remove the runs of the earlier ingest repeats, so the queries see exactly N runs,
    then VACUUM (which rewrites the file compactly and gathers no statistics)."""
    con = sqlite3.connect(db)
    try:
        with con:
            old = "SELECT run_uuid FROM runs WHERE experiment_id != ?"
            for table in ("params", "metrics", "latest_metrics", "tags"):
                con.execute(f"DELETE FROM {table} WHERE run_uuid IN ({old})", (int(keep),))
            con.execute("DELETE FROM runs WHERE experiment_id != ?", (int(keep),))
            con.execute(
                "UPDATE experiments SET lifecycle_stage = 'deleted' "
                "WHERE experiment_id NOT IN (?, 0)",
                (int(keep),),
            )
        con.execute("VACUUM")
    finally:
        con.close()


def statistics_rows(db: Path) -> int | None:
    """The rows of the planner's statistics (``sqlite_stat1``); None when it has none."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        exists = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
        ).fetchone()
        if not exists:
            return None
        return int(con.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0])
    finally:
        con.close()


def with_statistics(shipped: Path, copy: Path) -> float:
    """``copy``: the same pages as ``shipped`` (SQLite's backup), then ``ANALYZE``; the
    seconds ANALYZE took. ``shipped`` is only read."""
    copy.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{shipped}?mode=ro", uri=True)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)
        t0 = time.perf_counter()
        dst.execute("ANALYZE")
        dst.commit()
        return time.perf_counter() - t0
    finally:
        dst.close()
        src.close()
