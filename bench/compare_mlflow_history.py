#!/usr/bin/env python3
"""Side by side with MLflow: one training curve of --steps steps, logged and read back.

A benchmark, not a test. Like bench/compare_mlflow.py (whose pieces it uses: MLflow in a
virtual environment of its own, both servers on SQLite on loopback), it loads the same
history of one metric (`loss`, one value per step) into both and times, the two systems
alternating within each repeat:

* the chart query: MLflow's ``GET /api/2.0/mlflow/metrics/get-history`` (its REST API's
  way to read a metric's history: every point) against codecdash's
  ``GET /api/v1/experiments/{id}/metrics?names=loss&max_points=1000`` (what the page asks
  for: at most 1,000 buckets, with min and max);
* the same against MLflow's sampled endpoint, ``/ajax-api/2.0/mlflow/metrics/
  get-history-bulk-interval?max_results=1000`` (what MLflow's own UI draws from);
* the whole history: MLflow's get-history against codecdash's raw points as CSV
  (``?format=csv``), every one of the --steps points;
* logging: MLflow's ``runs/log-batch`` (1,000 metrics a request, its limit) for
  --mlflow-api-points points against codecdash's ``POST …/metrics`` (10,000 points a
  request) for the whole history. MLflow's remaining points are bulk-loaded with SQL in
  the rows its API wrote, as compare_mlflow.py does for runs.

Run from the repository root with the codecdash environment::

    .venv/bin/python bench/compare_mlflow_history.py --steps 1000000 --repeats 9 \\
        --out docs/mlflow-history-comparison.md
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_mlflow import (
    MLFLOW_VERSION,
    MLflow,
    codecdash_server,
    codecdash_token,
    codecdash_versions,
    display_command,
    dumps,
    ensure_mlflow,
    free_port,
    fs_type,
    log,
    machine,
    mlflow_server,
    mlflow_versions,
    running,
    settle,
    timed,
)

MLFLOW_BATCH = 1000  # MLflow's log-batch limit on metrics
CODECDASH_BATCH = 10_000  # codecdash's points per request
T0_MS = 1_767_225_600_000  # 2026-01-01, the first step's time; a step every 100 ms


def history(steps: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [(0.3 + 2.0 / (1.0 + s / 20_000)) * math.exp(rng.gauss(0.0, 0.05)) for s in range(steps)]


# -- loading ---------------------------------------------------------------------------------
def mlflow_load(port: int, values: Sequence[float], api_points: int) -> tuple[str, float, int]:
    """An experiment and a run; the first `api_points` points through runs/log-batch.
    Returns (run id, seconds the API took, points it wrote)."""
    client = MLflow(port)
    try:
        experiment = client.create_experiment(f"history-{os.getpid()}")
        run = client.post(
            "runs/create", {"experiment_id": experiment, "run_name": "history", "start_time": T0_MS}
        )
        run_id = str(run["run"]["info"]["run_id"])
        n = min(api_points, len(values))
        t0 = time.perf_counter()
        for start in range(0, n, MLFLOW_BATCH):
            metrics = [
                {"key": "loss", "value": values[s], "timestamp": T0_MS + s * 100, "step": s}
                for s in range(start, min(n, start + MLFLOW_BATCH))
            ]
            client.post("runs/log-batch", {"run_id": run_id, "metrics": metrics})
        return run_id, time.perf_counter() - t0, n
    finally:
        client.close()


def mlflow_bulk_load(db: Path, run_id: str, values: Sequence[float], first: int) -> float:
    """The points from `first` on, with SQL, in the rows MLflow's API wrote (server stopped)."""
    t0 = time.perf_counter()
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        template = con.execute(
            "SELECT * FROM metrics WHERE run_uuid = ? AND key = 'loss' LIMIT 1", (run_id,)
        ).fetchone()
        if template is None:
            raise RuntimeError("no metric row written by MLflow's API to copy from")
        columns = list(template.keys())
        known = {"key", "value", "timestamp", "run_uuid", "step", "is_nan"}
        if set(columns) - known:
            raise RuntimeError(f"MLflow's metrics table has columns {columns}: update the loader")
        marks = ", ".join("?" for _ in columns)
        rows = (
            tuple(
                {
                    "key": "loss",
                    "value": values[s],
                    "timestamp": T0_MS + s * 100,
                    "run_uuid": run_id,
                    "step": s,
                    "is_nan": 0,
                }[c]
                for c in columns
            )
            for s in range(first, len(values))
        )
        with con:
            con.executemany(
                f"INSERT INTO metrics ({', '.join(columns)}) VALUES ({marks})",
                rows,
            )
            last = len(values) - 1
            con.execute(
                "UPDATE latest_metrics SET value = ?, timestamp = ?, step = ? "
                "WHERE run_uuid = ? AND key = 'loss'",
                (values[last], T0_MS + last * 100, last, run_id),
            )
    finally:
        con.close()
    return time.perf_counter() - t0


def codecdash_load(port: int, token: str, values: Sequence[float]) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as c:
        c.put("/api/v1/experiments/history", content=dumps({"status": "running"}))
        bodies = [
            dumps(
                {
                    "points": [
                        {
                            "step": s,
                            "at": datetime.fromtimestamp((T0_MS + s * 100) / 1000, UTC).isoformat(),
                            "values": {"loss": values[s]},
                        }
                        for s in range(start, min(len(values), start + CODECDASH_BATCH))
                    ]
                }
            )
            for start in range(0, len(values), CODECDASH_BATCH)
        ]
        t0 = time.perf_counter()
        for body in bodies:
            r = c.post("/api/v1/experiments/history/metrics", content=body)
            if r.status_code != 202:
                raise RuntimeError(f"codecdash: {r.status_code} {r.text[:300]}")
        return time.perf_counter() - t0


# -- measuring --------------------------------------------------------------------------------
def fetch(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[int, int]:
    """(bytes, points) of one answer."""
    r = client.get(path, params=params)
    if r.status_code != 200:
        raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
    if r.headers.get("content-type", "").startswith("text/csv"):
        return len(r.content), r.content.count(b"\n") - 1
    data = r.json()
    if "metrics" in data:
        return len(r.content), len(data["metrics"])
    return len(r.content), sum(len(s["step"]) for s in data["series"].values())


def measure(
    pairs: dict[str, tuple[Callable[[], tuple[int, int]], Callable[[], tuple[int, int]]]],
    repeats: int,
    slow_s: float,
    slow_repeats: int,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label, (mlflow_call, codecdash_call) in pairs.items():
        times: dict[str, list[float]] = {"mlflow": [], "codecdash": []}
        sizes: dict[str, tuple[int, int]] = {}
        n = repeats
        for k in range(repeats):
            if k >= n:
                break
            order = [("mlflow", mlflow_call), ("codecdash", codecdash_call)]
            for name, call in order if k % 2 == 0 else order[::-1]:
                settle()
                seconds, sizes[name] = timed(call)
                times[name].append(seconds * 1000)
                if k == 0 and seconds > slow_s:
                    n = min(n, slow_repeats)
            log(f"{label}: repeat {k + 1}/{n}")
        out[label] = {
            name: {
                "median_ms": statistics.median(ts),
                "repeats": len(ts),
                "bytes": sizes[name][0],
                "points": sizes[name][1],
            }
            for name, ts in times.items()
        }
    return out


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    def ms(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}" if v >= 10 else f"{v:,.2f}"

    lines = [
        "# Training curves: codecdash and MLflow side by side",
        "",
        f"Generated by `bench/compare_mlflow_history.py` on {r['started']} in {r['minutes']:.0f} "
        "min. A benchmark, not a test: rerun it with the command below.",
        "",
        "```",
        r["command"],
        "```",
        "",
        "## Versions and machine",
        "",
        f"- MLflow {r['versions']['mlflow']['mlflow']} (own venv, `--workers 1`), Python "
        f"{r['versions']['mlflow']['python']}, SQLite {r['versions']['mlflow']['sqlite']}",
        f"- codecdash {r['versions']['codecdash']['codecdash']}, Python "
        f"{r['versions']['codecdash']['python']}, SQLite {r['versions']['codecdash']['sqlite']}",
        f"- {machine()}; both servers and the client on the same machine, loopback only; "
        f"databases on {r['fs']}; load average {r['load'][0]:.1f} at the start, "
        f"{r['load'][1]:.1f} at the end",
        "",
        f"One metric (`loss`), {args.steps:,} steps, one value per step, the same values and "
        "times in both. Medians of the repeats shown, the two systems alternating; times are "
        "wall-clock at the client, request sent to answer read.",
        "",
        "| measure | MLflow | codecdash | MLflow ÷ codecdash |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, row in r["measures"].items():
        m, c = row["mlflow"], row["codecdash"]
        lines.append(
            f"| {label} | {ms(m['median_ms'])} ms ({m['points']:,} points, {m['bytes']:,} bytes; "
            f"{m['repeats']} repeats) | {ms(c['median_ms'])} ms ({c['points']:,} points, "
            f"{c['bytes']:,} bytes; {c['repeats']} repeats) | "
            f"**{m['median_ms'] / c['median_ms']:,.0f}×** |"
        )
    li = r["ingest"]
    lines += [
        f"| logging (points/s; MLflow {li['mlflow_points']:,} points through `runs/log-batch`, "
        f"codecdash all {li['codecdash_points']:,} through `POST …/metrics`) | "
        f"{li['mlflow_per_s']:,.0f}/s | {li['codecdash_per_s']:,.0f}/s | "
        f"**{li['codecdash_per_s'] / li['mlflow_per_s']:,.0f}×** (codecdash faster) |",
        "",
        f"MLflow's other {args.steps - li['mlflow_points']:,} points were bulk-loaded with SQL "
        f"({li['mlflow_bulk_s']:.1f} s) into the rows its API wrote.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--slow-call-s", type=float, default=20.0)
    p.add_argument("--slow-repeats", type=int, default=3)
    p.add_argument("--mlflow-api-points", type=int, default=50_000)
    p.add_argument("--max-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("CODECDASH_BENCH_WORKDIR", "/tmp/cdbench")),
        help="MLflow's venv (cached, shared with compare_mlflow.py) and the run's databases",
    )
    p.add_argument("--python", default=sys.executable, help="Python that makes MLflow's venv")
    p.add_argument("--out", type=Path, default=Path("docs/mlflow-history-comparison.md"))
    args = p.parse_args(argv)

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    venv = ensure_mlflow(args.workdir.resolve(), args.python)
    versions = {"mlflow": mlflow_versions(venv), "codecdash": codecdash_versions()}
    rundir = args.workdir.resolve() / f"history-{os.getpid()}-{int(time.time())}"
    rundir.mkdir(parents=True)
    values = history(args.steps, args.seed)
    try:
        mdb, cdb = rundir / "mlflow.db", rundir / "codecdash.db"
        mport, cport = free_port(), free_port()
        token = codecdash_token(cdb, rundir)
        with running(mlflow_server(venv, mdb, mport, rundir, 1), 180):
            run_id, api_s, api_n = mlflow_load(mport, values, args.mlflow_api_points)
        log(f"MLflow: {api_n:,} points through its API in {api_s:.1f} s; bulk-loading the rest")
        bulk_s = mlflow_bulk_load(mdb, run_id, values, api_n)
        with (
            running(mlflow_server(venv, mdb, mport, rundir, 1), 180),
            running(codecdash_server(cdb, cport, rundir), 60),
        ):
            codecdash_s = codecdash_load(cport, token, values)
            log(f"codecdash: {args.steps:,} points in {codecdash_s:.1f} s")
            m = httpx.Client(base_url=f"http://127.0.0.1:{mport}", timeout=600)
            c = httpx.Client(base_url=f"http://127.0.0.1:{cport}", timeout=600)
            history_path = "/api/2.0/mlflow/metrics/get-history"
            history_params = {"run_id": run_id, "metric_key": "loss"}
            chart = "/api/v1/experiments/history/metrics"
            chart_params = {"names": "loss", "max_points": args.max_points}
            mp = args.max_points

            def mlflow_history() -> tuple[int, int]:
                return fetch(m, history_path, history_params)

            def mlflow_sampled() -> tuple[int, int]:
                return fetch(
                    m,
                    "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                    {"run_ids": run_id, "metric_key": "loss", "max_results": mp},
                )

            def codecdash_chart() -> tuple[int, int]:
                return fetch(c, chart, chart_params)

            def codecdash_csv() -> tuple[int, int]:
                return fetch(c, chart, {"names": "loss", "format": "csv"})

            measures = measure(
                {
                    f"a chart: MLflow get-history, codecdash max_points={mp}": (
                        mlflow_history,
                        codecdash_chart,
                    ),
                    f"a chart: MLflow get-history-bulk-interval max_results={mp}, "
                    f"codecdash max_points={mp}": (mlflow_sampled, codecdash_chart),
                    "the whole history: MLflow get-history, codecdash CSV of the raw points": (
                        mlflow_history,
                        codecdash_csv,
                    ),
                },
                args.repeats,
                args.slow_call_s,
                args.slow_repeats,
            )
            m.close()
            c.close()
        result = {
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": (time.perf_counter() - started) / 60,
            "command": display_command(),
            "versions": versions,
            "fs": fs_type(rundir),
            "load": (load_start, os.getloadavg()[0]),
            "measures": measures,
            "ingest": {
                "mlflow_points": api_n,
                "mlflow_per_s": api_n / api_s,
                "mlflow_bulk_s": bulk_s,
                "codecdash_points": args.steps,
                "codecdash_per_s": args.steps / codecdash_s,
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(args, result))
        log(f"wrote {args.out}")
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    assert MLFLOW_VERSION  # the venv's version, from compare_mlflow.py
    sys.exit(main())
