#!/usr/bin/env python3
"""Side by side with MLflow: the same experiments, the same machine, one run.

A benchmark, not a test. It installs MLflow into a virtual environment of its own
(``<workdir>/mlflow-venv``, never the codecdash environment), starts ``mlflow server`` on
SQLite and ``codecdash serve`` on SQLite, both on loopback, loads the same experiments into
both and measures, alternating the two systems within each repeat:

* ingest through each one's fastest API (MLflow: runs/create + runs/log-batch + runs/update
  per run over REST; codecdash: ``POST /api/v1/experiments/batch`` with 1,000 items),
* the top 100 by PSNR,
* the top 100 among bitrate reduction > 80 %,
* counting all experiments,
* the first load of each one's page in Lighthouse (mobile defaults), with transfer size.

It writes a Markdown report (medians, the ratio codecdash ÷ MLflow, versions, the exact
command). Run from the repository root with the codecdash environment::

    .venv/bin/python bench/compare_mlflow.py --n 10000 100000 --repeats 9 \
        --mlflow-api-runs 250 --lighthouse-repeats 3 --lighthouse-n 100000

(the command behind docs/mlflow-comparison.md; about 10 minutes once MLflow is installed).

MLflow's REST API writes a run with three requests, each a few SQLite commits, so loading
10,000 or 100,000 runs through it takes hours here. Each repeat therefore times MLflow on
``--mlflow-api-runs`` runs written through its API into an empty experiment (its best
case), and the rest of the N runs are bulk-loaded with SQL from the rows its API wrote, for
the query and page measures. The report says so wherever it applies.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import importlib.util
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

try:
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - codecdash depends on orjson

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)


MLFLOW_VERSION = "3.17.2"
LIGHTHOUSE_VERSION = "12.2.3"
REPO = Path(__file__).resolve().parents[1]
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-background-networking "
    "--disable-component-update"
)
JSON_HEADERS = {"Content-Type": "application/json"}
MODELS = ("ssf2020", "dcvc", "dcvc-dc", "dcvc-fm", "elic", "hific", "cheng2020")
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932)
LRS = (1e-4, 5e-5, 2e-5, 1e-5)
STATUS_WEIGHTS = (("completed", 85), ("failed", 8), ("running", 4), ("queued", 2), ("cancelled", 1))
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "running": "RUNNING",
    "queued": "SCHEDULED",
    "cancelled": "KILLED",
}
BATCH = 1000  # codecdash's batch limit (docs/api.md)
MLFLOW_PAGE = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD
MEASURES = ("top_psnr", "top_br80", "count")
MEASURE_NAMES = {
    "ingest": "Ingest (experiments/s, higher is better)",
    "top_psnr": "Top 100 by PSNR (ms)",
    "top_br80": "Top 100 by PSNR among bitrate reduction > 80 % (ms)",
    "count": "Count all experiments (ms)",
}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the data --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exp:
    id: str
    status: str
    model: str
    lam: float
    lr: float
    psnr: float
    br: float
    cost: float
    start_ms: int
    end_ms: int | None


def make_experiments(n: int, seed: int) -> list[Exp]:
    """N deterministic experiments; no bitrate reduction equals 80 exactly (> vs >=)."""
    rng = random.Random(seed)
    statuses = [s for s, _ in STATUS_WEIGHTS]
    weights = [w for _, w in STATUS_WEIGHTS]
    base_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    out = []
    for i in range(n):
        status = rng.choices(statuses, weights)[0]
        start = base_ms + i * 60_000 + rng.randrange(60_000)
        end = (
            start + rng.randrange(600_000, 36_000_000)
            if status in ("completed", "failed", "cancelled")
            else None
        )
        br = round(rng.uniform(-20.0, 95.0), 4)
        if br == 80.0:
            br = 80.0001
        out.append(
            Exp(
                id=f"bench-{i:07d}",
                status=status,
                model=rng.choice(MODELS),
                lam=rng.choice(LAMBDAS),
                lr=rng.choice(LRS),
                psnr=round(rng.uniform(26.0, 42.0), 6),
                br=br,
                cost=round(rng.uniform(0.2, 60.0), 4),
                start_ms=start,
                end_ms=end,
            )
        )
    return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def codecdash_item(e: Exp) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": e.id,
        "name": e.id,
        "status": e.status,
        "created_at": iso(e.start_ms),
        "params": {"model": e.model, "lambda": e.lam, "lr": e.lr},
        "psnr_db": e.psnr,
        "bitrate_reduction_pct": e.br,
        "cost_usd": e.cost,
    }
    if e.status != "queued":
        item["started_at"] = iso(e.start_ms)
    if e.end_ms is not None:
        item["finished_at"] = iso(e.end_ms)
    return item


def mlflow_params(e: Exp) -> list[dict[str, str]]:
    return [
        {"key": "model", "value": e.model},
        {"key": "lambda", "value": str(e.lam)},
        {"key": "lr", "value": str(e.lr)},
    ]


def mlflow_metrics(e: Exp) -> list[tuple[str, float]]:
    return [("psnr", e.psnr), ("bitrate_reduction", e.br), ("cost_usd", e.cost)]


def metric_ts(e: Exp) -> int:
    return e.end_ms if e.end_ms is not None else e.start_ms


# -- processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process in its own session, stopped by its process group id."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        health: str,
        log_path: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.cmd, self.health, self.log_path = name, cmd, health, log_path
        self.cwd, self.env = cwd, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> float:
        t0 = time.perf_counter()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health, timeout=5).status_code == 200:
                    return time.perf_counter() - t0
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not answer {self.health} within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@contextlib.contextmanager
def running(server: Server, timeout: float) -> Iterator[float]:
    try:
        yield server.start(timeout)
    finally:
        server.stop()


# -- MLflow's own environment ------------------------------------------------------------------
def ensure_mlflow(workdir: Path, python: str) -> Path:
    """<workdir>/mlflow-venv with mlflow==MLFLOW_VERSION, made once and cached."""
    venv = workdir / "mlflow-venv"
    if Path(sys.prefix).resolve() in (venv.resolve(), *venv.resolve().parents):
        raise SystemExit("refusing to install MLflow into the environment running codecdash")
    marker = venv / f".codecdash-bench-mlflow-{MLFLOW_VERSION}"
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / ".mlflow-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            log(f"installing mlflow=={MLFLOW_VERSION} into {venv} (minutes, once)")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"mlflow=={MLFLOW_VERSION}",
                ],
                check=True,
            )
            marker.write_text(f"mlflow=={MLFLOW_VERSION}\n")
    return venv


def mlflow_versions(venv: Path) -> dict[str, str]:
    code = (
        "import json, sys, sqlite3, mlflow, sqlalchemy, uvicorn; print(json.dumps({"
        "'mlflow': mlflow.__version__, 'python': sys.version.split()[0], "
        "'sqlite': sqlite3.sqlite_version, 'sqlalchemy': sqlalchemy.__version__, "
        "'uvicorn': uvicorn.__version__}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def mlflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # The GenAI job runner (huey consumers) is not part of run tracking; off, it leaves
            # the CPUs to the tracking server.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    return env


def mlflow_server(venv: Path, db: Path, port: int, rundir: Path, workers: int) -> Server:
    cmd = [
        str(venv / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        str(rundir / "mlflow-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--uvicorn-opts",
        "--no-access-log",
    ]
    return Server(
        "mlflow",
        cmd,
        f"http://127.0.0.1:{port}/health",
        rundir / "mlflow.log",
        rundir,
        mlflow_env(),
    )


class MLflow:
    """MLflow's REST API, straight over httpx, as a logging client would use it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(
            base_url=f"{self.base}/api/2.0/mlflow/", timeout=600, headers=JSON_HEADERS
        )

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.client.post(path, content=dumps(body))
        if r.status_code != 200:
            raise RuntimeError(f"MLflow {path}: {r.status_code} {r.text[:500]}")
        return loads(r.content)

    def create_experiment(self, name: str) -> str:
        answer = self.post(
            "experiments/create",
            {
                "name": name,
                "tags": [{"key": "mlflow.experimentKind", "value": "custom_model_development"}],
            },
        )
        return str(answer["experiment_id"])

    def ingest(self, experiment_id: str, exps: Sequence[Exp]) -> float:
        """One create, one log-batch and (for finished runs) one update per run."""
        t0 = time.perf_counter()
        for e in exps:
            run = self.post(
                "runs/create",
                {"experiment_id": experiment_id, "run_name": e.id, "start_time": e.start_ms},
            )
            run_id = run["run"]["info"]["run_id"]
            ts = metric_ts(e)
            self.post(
                "runs/log-batch",
                {
                    "run_id": run_id,
                    "params": mlflow_params(e),
                    "metrics": [
                        {"key": k, "value": v, "timestamp": ts, "step": 0}
                        for k, v in mlflow_metrics(e)
                    ],
                },
            )
            if e.status != "running":
                update: dict[str, Any] = {"run_id": run_id, "status": MLFLOW_STATUS[e.status]}
                if e.end_ms is not None:
                    update["end_time"] = e.end_ms
                self.post("runs/update", update)
        return time.perf_counter() - t0

    def search(
        self,
        experiment_id: str,
        filter_: str | None,
        limit: int = 100,
        page_token: str | None = None,
        order: bool = True,
    ) -> Any:
        body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": limit}
        if order:
            body["order_by"] = ["metrics.psnr DESC"]
        if filter_:
            body["filter"] = filter_
        if page_token:
            body["page_token"] = page_token
        return self.post("runs/search", body)

    def top(self, experiment_id: str, filter_: str | None) -> list[str]:
        runs = self.search(experiment_id, filter_).get("runs", [])
        return [r["info"]["run_name"] for r in runs]

    def count(self, experiment_id: str) -> int:
        """MLflow has no count: page through runs/search at its largest page size."""
        total, token = 0, None
        while True:
            answer = self.search(experiment_id, None, MLFLOW_PAGE, token, order=False)
            total += len(answer.get("runs", []))
            token = answer.get("next_page_token")
            if not token:
                return total

    def close(self) -> None:
        self.client.close()


def mlflow_bulk_load(db: Path, experiment_id: str, exps: Sequence[Exp]) -> float:
    """Add `exps` to the experiment with SQL, from the rows MLflow's API wrote for its runs.

    The server must be stopped. A run the API wrote is the template: every column of `runs`
    and every tag is copied from it, with the run's own id, name, status, times, params and
    metrics (the same values codecdash receives).
    """
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
        known = {"runs", "params", "metrics", "latest_metrics", "tags"}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            columns = {row[1] for row in con.execute(f'PRAGMA table_info("{table}")')}
            if table not in known and "run_uuid" in columns:
                n = con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE run_uuid = ?', (tmpl_id,)
                ).fetchone()[0]
                if n:
                    raise RuntimeError(
                        f"MLflow wrote rows in {table!r} this loader "
                        "does not know; update mlflow_bulk_load"
                    )
        tags = con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (tmpl_id,)).fetchall()
        mrow = con.execute(
            "SELECT * FROM metrics WHERE run_uuid = ? LIMIT 1", (tmpl_id,)
        ).fetchone()
        metric_cols = list(mrow.keys())
        lrow = con.execute(
            "SELECT * FROM latest_metrics WHERE run_uuid = ? LIMIT 1", (tmpl_id,)
        ).fetchone()
        latest_cols = list(lrow.keys())
        run_cols = list(tmpl.keys())
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
                m = dict(mrow)
                m.update(key=key, value=value, timestamp=ts, run_uuid=rid, step=0, is_nan=0)
                metrics.append(tuple(m[c] for c in metric_cols))
                lm = dict(lrow)
                lm.update(key=key, value=value, timestamp=ts, run_uuid=rid, step=0, is_nan=0)
                latest.append(tuple(lm[c] for c in latest_cols))
            tag_rows.extend(
                (t["key"], e.id if t["value"] == tmpl_name else t["value"], rid) for t in tags
            )

        def insert(table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
            names = ", ".join(f'"{c}"' for c in cols)
            marks = ", ".join("?" for _ in cols)
            con.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)

        with con:
            insert("runs", run_cols, runs)
            insert("params", ["key", "value", "run_uuid"], params)
            insert("metrics", metric_cols, metrics)
            insert("latest_metrics", latest_cols, latest)
            insert("tags", ["key", "value", "run_uuid"], tag_rows)
    finally:
        con.close()
    return time.perf_counter() - t0


def mlflow_drop_experiments(db: Path, keep: str) -> None:
    """Remove the runs of the earlier ingest repeats, so the queries see exactly N runs."""
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
        con.execute("ANALYZE")
    finally:
        con.close()


# -- codecdash ---------------------------------------------------------------------------------
def codecdash_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "codecdash"
    if exe.exists():
        return [str(exe)]
    if importlib.util.find_spec("codecdash") is None:
        raise SystemExit("run this with the codecdash environment (.venv/bin/python)")
    return [sys.executable, "-c", "from codecdash.cli import main; main()"]


def codecdash_page_present() -> bool:
    if (REPO / "src" / "codecdash" / "dashboard" / "index.html").exists():
        return True
    spec = importlib.util.find_spec("codecdash")
    origin = spec.origin if spec else None
    return bool(origin) and (Path(str(origin)).parent / "dashboard" / "index.html").exists()


def codecdash_versions() -> dict[str, str]:
    import sqlalchemy

    import codecdash

    return {
        "codecdash": str(getattr(codecdash, "__version__", "?")),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "httpx": httpx.__version__,
    }


def codecdash_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CODECDASH_")}


def codecdash_token(db: Path, cwd: Path) -> str:
    out = subprocess.run(
        [*codecdash_cmd(), "token", "create", "bench", "--db", str(db)],
        cwd=cwd,
        env=codecdash_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


def codecdash_server(db: Path, port: int, rundir: Path) -> Server:
    cmd = [*codecdash_cmd(), "serve", "--db", str(db), "--port", str(port)]
    return Server(
        "codecdash",
        cmd,
        f"http://127.0.0.1:{port}/api/v1/health",
        rundir / "codecdash.log",
        rundir,
        codecdash_env(),
    )


class Codecdash:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        headers = dict(JSON_HEADERS)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(base_url=self.base, timeout=600, headers=headers)

    def ingest(self, items: Sequence[dict[str, Any]]) -> float:
        t0 = time.perf_counter()
        for start in range(0, len(items), BATCH):
            body = dumps({"items": items[start : start + BATCH]})
            r = self.client.post("/api/v1/experiments/batch", content=body)
            if r.status_code != 200:
                raise RuntimeError(f"codecdash batch: {r.status_code} {r.text[:500]}")
        return time.perf_counter() - t0

    def list_page(self, params: dict[str, Any]) -> Any:
        r = self.client.get("/api/v1/experiments", params=params)
        if r.status_code != 200:
            raise RuntimeError(f"codecdash list: {r.status_code} {r.text[:500]}")
        return loads(r.content)

    def top(self, min_br: float | None) -> list[str]:
        params: dict[str, Any] = {"sort": "-psnr_db", "limit": 100}
        if min_br is not None:
            params["min_bitrate_reduction_pct"] = min_br
        return [item["id"] for item in self.list_page(params)["items"]]

    def count(self) -> int:
        return int(self.list_page({"limit": 1})["total"])

    def close(self) -> None:
        self.client.close()


# -- Lighthouse --------------------------------------------------------------------------------
def ensure_lighthouse(workdir: Path) -> list[str]:
    binary = workdir / "node_modules" / ".bin" / "lighthouse"
    pkg = workdir / "node_modules" / "lighthouse" / "package.json"
    with (workdir / ".lighthouse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (
            binary.exists()
            and pkg.exists()
            and json.loads(pkg.read_text()).get("version") == LIGHTHOUSE_VERSION
        ):
            return [str(binary)]
        npm = shutil.which("npm")
        if npm:
            log(f"installing lighthouse@{LIGHTHOUSE_VERSION} into {workdir}/node_modules")
            done = subprocess.run(
                [
                    npm,
                    "i",
                    "-E",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(workdir),
                    f"lighthouse@{LIGHTHOUSE_VERSION}",
                ],
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 and binary.exists():
                return [str(binary)]
            log(f"npm i failed ({done.returncode}); falling back to npx")
    npx = shutil.which("npx")
    if not npx:
        raise SystemExit("Lighthouse needs Node.js (npm/npx); or pass --skip-lighthouse")
    return [npx, "-y", f"lighthouse@{LIGHTHOUSE_VERSION}"]


def lighthouse(cmd: list[str], url: str, out: Path, chrome: str) -> dict[str, Any]:
    env = dict(os.environ, CHROME_PATH=chrome)
    args = [
        *cmd,
        url,
        "--output=json",
        f"--output-path={out}",
        "--quiet",
        f"--chrome-flags={CHROME_FLAGS}",
    ]
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 300 s"}
    if not out.exists():
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    report = json.loads(out.read_text())
    audits = report.get("audits", {})

    def num(name: str) -> float | None:
        value = audits.get(name, {}).get("numericValue")
        return float(value) if value is not None else None

    requests = audits.get("network-requests", {}).get("details", {}).get("items", [])
    scores = {
        k: (round(v["score"] * 100) if v.get("score") is not None else None)
        for k, v in report.get("categories", {}).items()
    }
    runtime = report.get("runtimeError") or {}
    return {
        "performance": scores.get("performance"),
        "accessibility": scores.get("accessibility"),
        "best-practices": scores.get("best-practices"),
        "seo": scores.get("seo"),
        "transfer_bytes": num("total-byte-weight"),
        "requests": len(requests),
        "fcp_ms": num("first-contentful-paint"),
        "lcp_ms": num("largest-contentful-paint"),
        "tbt_ms": num("total-blocking-time"),
        "final_url": report.get("finalDisplayedUrl"),
        "lighthouse": report.get("lighthouseVersion"),
        "runtime_error": runtime.get("code"),
        "benchmark_index": report.get("environment", {}).get("benchmarkIndex"),
    }


PAGE_FIELDS = (
    ("performance", "Performance score", "higher"),
    ("accessibility", "Accessibility score", "higher"),
    ("best-practices", "Best-practices score", "higher"),
    ("seo", "SEO score", "higher"),
    ("transfer_bytes", "Transfer size (KiB)", "lower"),
    ("requests", "Requests", "lower"),
    ("fcp_ms", "First contentful paint (ms, simulated)", "lower"),
    ("lcp_ms", "Largest contentful paint (ms, simulated)", "lower"),
    ("tbt_ms", "Total blocking time (ms, simulated)", "lower"),
)


# -- one N -------------------------------------------------------------------------------------
@dataclass
class Result:
    n: int
    api_runs: int
    ingest: dict[str, list[float]] = field(default_factory=lambda: {"mlflow": [], "codecdash": []})
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    first: dict[str, dict[str, float]] = field(default_factory=dict)
    agree: dict[str, bool] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    bulk_loaded: int = 0
    bulk_s: float = 0.0
    startup_s: dict[str, float] = field(default_factory=dict)
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_note: str | None = None
    load: list[float] = field(default_factory=list)


def settle(max_wait_s: float = 3.0, busy_pct: float = 15.0, quiet_windows: int = 2) -> None:
    """Wait until the CPUs are nearly idle (at most ``max_wait_s``) before a timed query:
    ``quiet_windows`` windows of 50 ms in a row under ``busy_pct``.

    On a small machine the work one server leaves behind after answering (MLflow's
    workers freeing a large result, a collector pass) otherwise lands in the other
    system's next measurement; both systems get the same wait."""
    import psutil  # a dependency of codecdash (its agent), so in this environment

    deadline = time.monotonic() + max_wait_s
    psutil.cpu_percent(None)
    quiet = 0
    while time.monotonic() < deadline and quiet < quiet_windows:
        time.sleep(0.05)
        quiet = quiet + 1 if psutil.cpu_percent(None) < busy_pct else 0


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """One call's wall time, with this client's garbage collector off while it runs (as
    ``timeit`` does): the benchmark holds every experiment in memory, and a full
    collection of that heap would land in whichever system's call triggered it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        value = fn()
        return time.perf_counter() - t0, value
    finally:
        if enabled:
            gc.enable()


def run_n(
    args: argparse.Namespace, n: int, venv: Path, rundir: Path, lh_cmd: list[str] | None
) -> Result:
    exps = make_experiments(n, args.seed)
    items = [codecdash_item(e) for e in exps]
    api_runs = min(n, args.mlflow_api_runs)
    res = Result(n=n, api_runs=api_runs)
    res.load.append(os.getloadavg()[0])
    nd = rundir / f"n{n}"
    nd.mkdir(parents=True, exist_ok=True)
    mdb = nd / "mlflow.db"
    mport = free_port()

    # ingest: MLflow writes api_runs runs into a new, empty experiment each repeat;
    # codecdash writes all N into a new, empty database each repeat.
    ml_server = mlflow_server(venv, mdb, mport, nd, args.mlflow_workers)
    experiment_id = ""
    with running(ml_server, args.start_timeout) as ml_start:
        res.startup_s["mlflow"] = ml_start
        ml = MLflow(mport)
        for r in range(args.repeats):
            order = ("mlflow", "codecdash") if r % 2 == 0 else ("codecdash", "mlflow")
            for system in order:
                if system == "mlflow":
                    experiment_id = ml.create_experiment(f"codec-bench-n{n}-r{r}")
                    t = ml.ingest(experiment_id, exps[:api_runs])
                    res.ingest["mlflow"].append(api_runs / t)
                    log(
                        f"N={n} repeat {r + 1}: MLflow ingested {api_runs} runs via its API "
                        f"in {t:.1f} s ({api_runs / t:.1f}/s)"
                    )
                else:
                    cdb = nd / f"codecdash-r{r}.db"
                    token = codecdash_token(cdb, nd)
                    cport = free_port()
                    with running(codecdash_server(cdb, cport, nd), args.start_timeout) as s:
                        res.startup_s["codecdash"] = s
                        cd = Codecdash(cport, token)
                        t = cd.ingest(items)
                        cd.close()
                    res.ingest["codecdash"].append(n / t)
                    log(
                        f"N={n} repeat {r + 1}: codecdash ingested {n} experiments via its "
                        f"batch API in {t:.2f} s ({n / t:.0f}/s)"
                    )
                    if r != args.repeats - 1:
                        for suffix in ("", "-wal", "-shm"):
                            Path(f"{cdb}{suffix}").unlink(missing_ok=True)
        ml.close()
    codecdash_db = nd / f"codecdash-r{args.repeats - 1}.db"

    # the same N runs in MLflow: the last repeat's experiment, plus SQL bulk load past api_runs
    mlflow_drop_experiments(mdb, experiment_id)
    if api_runs < n:
        res.bulk_s = mlflow_bulk_load(mdb, experiment_id, exps[api_runs:])
        res.bulk_loaded = n - api_runs
        log(f"N={n}: bulk-loaded {res.bulk_loaded} runs into MLflow with SQL in {res.bulk_s:.1f} s")
    with sqlite3.connect(mdb) as con:
        con.execute("ANALYZE")

    # queries, then pages: both servers fresh on the final data
    cport = free_port()
    ml_server = mlflow_server(venv, mdb, mport, nd, args.mlflow_workers)
    with (
        running(ml_server, args.start_timeout),
        running(codecdash_server(codecdash_db, cport, nd), args.start_timeout),
    ):
        ml, cd = MLflow(mport), Codecdash(cport)
        calls: dict[str, dict[str, Callable[[], Any]]] = {
            "top_psnr": {
                "mlflow": lambda: ml.top(experiment_id, None),
                "codecdash": lambda: cd.top(None),
            },
            "top_br80": {
                "mlflow": lambda: ml.top(experiment_id, "metrics.bitrate_reduction > 80"),
                "codecdash": lambda: cd.top(80),
            },
            "count": {"mlflow": lambda: ml.count(experiment_id), "codecdash": cd.count},
        }
        expected_top = [e.id for e in sorted(exps, key=lambda e: -e.psnr)[:100]]
        expected_br = [
            e.id for e in sorted((e for e in exps if e.br > 80), key=lambda e: -e.psnr)[:100]
        ]
        expected = {"top_psnr": expected_top, "top_br80": expected_br, "count": n}
        for m in MEASURES:
            res.samples[m] = {"mlflow": [], "codecdash": []}
            res.first[m] = {}
            for system in ("mlflow", "codecdash"):  # the first call after start, kept apart
                settle()
                t, value = timed(calls[m][system])
                res.first[m][system] = t
                res.agree[f"{m}:{system}"] = value == expected[m]
                if m == "count":
                    res.counts[system] = int(value)
        for r in range(args.repeats):
            order = ("mlflow", "codecdash") if r % 2 == 0 else ("codecdash", "mlflow")
            for m in MEASURES:
                for system in order:
                    if (
                        res.first[m][system] > args.slow_call_s
                        and len(res.samples[m][system]) >= args.slow_repeats
                    ):
                        continue  # a call slower than --slow-call-s: fewer repeats
                    settle()
                    t, _ = timed(calls[m][system])
                    res.samples[m][system].append(t)
            log(
                f"N={n} repeat {r + 1}: "
                + ", ".join(
                    f"{m} MLflow {res.samples[m]['mlflow'][-1] * 1000:.0f} ms / codecdash "
                    f"{res.samples[m]['codecdash'][-1] * 1000:.1f} ms (samples "
                    f"{len(res.samples[m]['mlflow'])}/{len(res.samples[m]['codecdash'])})"
                    for m in MEASURES
                )
            )
        ml.close()
        cd.close()

        if lh_cmd is not None and (not args.lighthouse_n or n in args.lighthouse_n):
            if not codecdash_page_present():
                res.page_note = "n/a (page missing)"
            pages = {
                "mlflow": f"http://127.0.0.1:{mport}/#/experiments/{experiment_id}/runs",
                "codecdash": f"http://127.0.0.1:{cport}/",
            }
            res.pages = {"mlflow": [], "codecdash": []}
            for r in range(args.lighthouse_repeats):
                order = ("mlflow", "codecdash") if r % 2 == 0 else ("codecdash", "mlflow")
                for system in order:
                    if system == "codecdash" and res.page_note:
                        continue
                    page = lighthouse(
                        lh_cmd, pages[system], nd / f"lh-{system}-{r}.json", args.chrome
                    )
                    res.pages[system].append(page)
                    log(
                        f"N={n} Lighthouse {system} {r + 1}: "
                        + json.dumps(
                            {
                                k: page.get(k)
                                for k in ("performance", "transfer_bytes", "runtime_error", "error")
                            }
                        )
                    )
    res.load.append(os.getloadavg()[0])
    return res


# -- the report ------------------------------------------------------------------------------
def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio_text(r: float) -> str:
    if r != r:
        return "n/a"
    return f"{r:.3g}" if r < 1000 else f"{r:,.0f}"


def page_median(pages: list[dict[str, Any]], key: str) -> float | None:
    values = [float(p[key]) for p in pages if p.get(key) is not None and not p.get("error")]
    return statistics.median(values) if values else None


def n_section(res: Result, repeats: int) -> tuple[list[str], dict[str, Any]]:
    lines = [f"### N = {res.n:,}", ""]
    goals: dict[str, Any] = {}
    lines.append(
        "| measure | MLflow (median) | codecdash (median) | codecdash ÷ MLflow "
        "| codecdash better by |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    ml_rate, cd_rate = med(res.ingest["mlflow"]), med(res.ingest["codecdash"])
    ingest_ratio = cd_rate / ml_rate
    goals["ingest"] = ingest_ratio
    ml_note = "" if res.api_runs == res.n else " ¹"
    lines.append(
        f"| {MEASURE_NAMES['ingest']} | {fmt(ml_rate)}{ml_note} | {fmt(cd_rate)} | "
        f"{ratio_text(ingest_ratio)} | {ratio_text(ingest_ratio)}× |"
    )
    lines.append(
        f"| Time to ingest N (s) | {fmt(res.n / ml_rate)}{ml_note} | "
        f"{fmt(res.n / cd_rate, 2)} | {ratio_text(ml_rate / cd_rate)} | "
        f"{ratio_text(ingest_ratio)}× |"
    )
    for m in MEASURES:
        ml_ms = med(res.samples[m]["mlflow"]) * 1000
        cd_ms = med(res.samples[m]["codecdash"]) * 1000
        goals[m] = ml_ms / cd_ms
        lines.append(
            f"| {MEASURE_NAMES[m]} | {fmt(ml_ms)} | {fmt(cd_ms, 2)} | "
            f"{ratio_text(cd_ms / ml_ms)} | {ratio_text(ml_ms / cd_ms)}× |"
        )
    if res.pages or res.page_note:
        for key, name, better in PAGE_FIELDS:
            ml_v = page_median(res.pages.get("mlflow", []), key)
            cd_v = None if res.page_note else page_median(res.pages.get("codecdash", []), key)
            if key == "transfer_bytes":
                ml_v = ml_v / 1024 if ml_v is not None else None
                cd_v = cd_v / 1024 if cd_v is not None else None
            goals[f"page:{key}"] = (ml_v, cd_v)
            if cd_v is None or ml_v is None or ml_v == 0:
                r_txt = by = res.page_note or "n/a"
            else:
                r_txt = ratio_text(cd_v / ml_v) if cd_v else "0"
                if better == "higher":
                    by = f"{cd_v - ml_v:+.0f} points"
                else:
                    by = f"{ml_v / cd_v:.3g}×" if cd_v else "∞"
            lines.append(
                f"| Page (Lighthouse, mobile): {name} | {fmt(ml_v)} | "
                f"{res.page_note or fmt(cd_v)} | {r_txt} | {by} |"
            )
    lines.append("")
    notes = []
    if res.api_runs < res.n:
        notes.append(
            f"¹ MLflow's ingest rate is measured on {res.api_runs:,} runs written through its "
            f"REST API into an empty experiment in each repeat (its best case: the tables "
            f"grow no further); the time for N is that rate extrapolated. The other "
            f"{res.bulk_loaded:,} runs were **bulk-loaded with SQL** from the rows its API "
            f"wrote (runs, params, metrics, latest_metrics, tags; {res.bulk_s:.1f} s, not "
            f"timed as ingest), so that its queries and page see the same N experiments as "
            f"codecdash. codecdash ingested all {res.n:,} through its API in every repeat."
        )
    agree = all(res.agree.values())
    notes.append(
        f"Both systems answered the same: top-100 lists identical to the expected ids and "
        f"counts {res.counts.get('mlflow')} (MLflow) / {res.counts.get('codecdash')} "
        f"(codecdash): **{'yes' if agree else 'NO'}**"
        + ("" if agree else f" ({', '.join(k for k, v in res.agree.items() if not v)})")
        + "."
    )
    few = [
        f"{m} {s} ({len(v)})"
        for m in MEASURES
        for s, v in res.samples[m].items()
        if len(v) < repeats
    ]
    if few:
        notes.append(
            "Calls slower than --slow-call-s were repeated fewer times: " + ", ".join(few) + "."
        )
    notes.append(
        "First call after a server start (not in the medians): "
        + "; ".join(
            f"{m} MLflow {res.first[m]['mlflow'] * 1000:,.0f} ms, codecdash "
            f"{res.first[m]['codecdash'] * 1000:,.1f} ms"
            for m in MEASURES
        )
        + "."
    )
    if res.pages:
        errors = [
            f"{s} {p.get('runtime_error') or p.get('error')}"
            for s, ps in res.pages.items()
            for p in ps
            if p.get("runtime_error") or p.get("error")
        ]
        urls = {s: ps[0].get("final_url") for s, ps in res.pages.items() if ps}
        notes.append(
            f"Lighthouse runs per system: {len(res.pages.get('mlflow', []))}; final "
            f"URLs {urls}" + (f"; runtime errors: {errors}" if errors else "") + "."
        )
    notes.append(
        f"Load average (1 min) at start / end of this N: "
        f"{res.load[0]:.1f} / {res.load[-1]:.1f} on {os.cpu_count()} CPUs."
    )
    lines.extend(f"- {n}" for n in notes)
    lines.append("")
    lines.append("<details><summary>All samples</summary>")
    lines.append("")
    lines.append(f"- ingest/s MLflow: {[round(v, 2) for v in res.ingest['mlflow']]}")
    lines.append(f"- ingest/s codecdash: {[round(v) for v in res.ingest['codecdash']]}")
    for m in MEASURES:
        for system in ("mlflow", "codecdash"):
            lines.append(
                f"- {m} {system} ms: {[round(v * 1000, 2) for v in res.samples[m][system]]}"
            )
    for system, ps in res.pages.items():
        for p in ps:
            lines.append(f"- page {system}: {json.dumps(p)}")
    lines.append("")
    lines.append("</details>")
    lines.append("")
    return lines, goals


def goal_lines(results: list[Result], goals: dict[int, dict[str, Any]]) -> list[str]:
    lines = ["## Goals", ""]
    for res in results:
        g = goals[res.n]
        met = "met" if g["ingest"] >= 100 else "not met"
        lines.append(
            f"- Ingest ≥ 100× MLflow's at N = {res.n:,}: **{met}** ({ratio_text(g['ingest'])}×)."
        )
    big = [r for r in results if r.n >= 100_000]
    if big:
        res = max(big, key=lambda r: r.n)
        g = goals[res.n]
        for m in ("top_psnr", "top_br80"):
            met = "met" if g[m] >= 100 else "not met"
            lines.append(
                f"- {MEASURE_NAMES[m].split(' (')[0]} at N = {res.n:,} ≥ 100× "
                f"faster: **{met}** ({ratio_text(g[m])}×)."
            )
    else:
        lines.append(
            "- Ranked queries at 100,000 ≥ 100× faster: **not measured** "
            "(no N ≥ 100,000 in this run)."
        )
    paged = [r for r in results if r.pages or r.page_note]
    if not paged:
        lines.append("- Page lighter and scoring higher: **not measured** (--skip-lighthouse).")
    for res in paged:
        g = goals[res.n]
        ml_t, cd_t = g["page:transfer_bytes"]
        ml_p, cd_p = g["page:performance"]
        if res.page_note or cd_t is None or ml_t is None or cd_p is None or ml_p is None:
            lines.append(
                f"- Page lighter and scoring higher at N = {res.n:,}: **{res.page_note or 'n/a'}**."
            )
            continue
        others = [k for k, _, b in PAGE_FIELDS if b == "higher" and k != "performance"]
        higher = [k for k in others if (g[f"page:{k}"][1] or 0) >= (g[f"page:{k}"][0] or 0)]
        met = "met" if cd_t < ml_t and cd_p > ml_p else "not met"
        lines.append(
            f"- Page lighter and scoring higher at N = {res.n:,}: **{met}** (transfer "
            f"{cd_t:,.0f} KiB vs {ml_t:,.0f} KiB; performance {cd_p:.0f} vs {ml_p:.0f}; "
            f"codecdash at least equal on {len(higher)} of {len(others)} other categories)."
        )
    lines.append("")
    return lines


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem}"


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "n/a"


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "--output=fstype", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
        return out[-1] if len(out) > 1 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def display_command() -> str:
    py = Path(sys.executable)
    with contextlib.suppress(ValueError):
        py = py.relative_to(Path.cwd())
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.join([str(py), str(script), *sys.argv[1:]])


def report(
    args: argparse.Namespace,
    results: list[Result],
    versions: dict[str, Any],
    started: datetime,
    elapsed: float,
) -> str:
    ml, cd = versions["mlflow"], versions["codecdash"]
    lines = [
        "# codecdash and MLflow, side by side",
        "",
        f"Generated by `bench/compare_mlflow.py` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{elapsed / 60:.0f} min. A benchmark, not a test: rerun it with the command below.",
        "",
        "```",
        display_command(),
        "```",
        "",
        "## Versions and machine",
        "",
        f"- MLflow {ml['mlflow']} (own venv, `--workers {args.mlflow_workers}`, uvicorn "
        f"{ml['uvicorn']}, SQLAlchemy {ml['sqlalchemy']}), Python {ml['python']}, "
        f"SQLite {ml['sqlite']}",
        f"- codecdash {cd['codecdash']} (SQLAlchemy {cd['sqlalchemy']}), Python "
        f"{cd['python']}, SQLite {cd['sqlite']}; client httpx {cd['httpx']}",
        f"- Lighthouse {versions.get('lighthouse', 'not run')}, "
        f"{versions.get('chromium', 'n/a')}, Node.js {versions.get('node', 'n/a')}",
        f"- {machine()}; both servers and the client on the same machine, loopback only",
        f"- Both databases in `{args.dbdir or args.workdir}` ({versions.get('fs', '?')})",
        "",
        "## Medians",
        "",
        f"{args.repeats} repeats per measure (Lighthouse: {args.lighthouse_repeats}), the two "
        "systems alternating within each repeat (MLflow first in odd repeats, codecdash "
        "first in even ones). Times are wall-clock at the client, request sent to answer "
        'parsed. "codecdash ÷ MLflow" divides the two medians as shown (for times, below 1 '
        "means codecdash is faster; for ingest rates and scores, above 1 means codecdash "
        "is better).",
        "",
    ]
    goals: dict[int, dict[str, Any]] = {}
    for res in results:
        section, goals[res.n] = n_section(res, args.repeats)
        lines.extend(section)
    lines.extend(goal_lines(results, goals))
    lines.extend(
        [
            "## What was measured, and how fair it is",
            "",
            "- **Data.** The same N experiments in both (seeded): params `model`, `lambda`, "
            "`lr`; metrics `psnr`, `bitrate_reduction`, `cost_usd`; a status (85 % completed, "
            "8 % failed, 4 % running, 2 % queued, 1 % cancelled). In MLflow, one run per "
            "experiment in one experiment; in codecdash, one experiment each.",
            "- **Ingest.** Each one's fastest API over HTTP from the same Python client (httpx, "
            "one keep-alive connection, bodies serialised with orjson inside the timed loop). "
            "MLflow has no multi-run write: a run takes `runs/create`, `runs/log-batch` "
            "(3 params + 3 metrics) and `runs/update` (final status and end time; runs still "
            "running skip it). codecdash takes `POST /api/v1/experiments/batch` with 1,000 "
            "experiments a request. Each repeat starts from an empty experiment (MLflow) or an "
            "empty database (codecdash).",
            '- **Queries.** MLflow `runs/search` with `order_by=["metrics.psnr DESC"]`, '
            '`max_results=100` and, for the second, `filter="metrics.bitrate_reduction > 80"`; '
            "codecdash `GET /api/v1/experiments?sort=-psnr_db&limit=100` and "
            "`&min_bitrate_reduction_pct=80` (≥ 80: no value equals 80 exactly, and the answers "
            "are checked against each other). MLflow has no count endpoint: the count pages "
            f"through `runs/search` at its largest page ({MLFLOW_PAGE:,} runs), as a script "
            "would; codecdash reads `total` from `GET /api/v1/experiments?limit=1`.",
            "- **Pages.** Lighthouse's first load with its mobile defaults (simulated throttling) "
            "of MLflow's runs page of the experiment (`#/experiments/<id>/runs`, the experiment "
            "tagged as classic ML so the runs table shows rather than the GenAI overview) and "
            "of codecdash's dashboard at `/`. Chromium flags: `" + CHROME_FLAGS + "`.",
            "- **Servers.** Both on SQLite files on the same disk, each in its default journal "
            "mode (MLflow: rollback journal, a sync per commit; codecdash: WAL with "
            "`synchronous=NORMAL`). That choice is part of each product; `--dbdir /dev/shm` "
            "puts both databases in memory to take the disk's syncs out of the comparison. "
            "MLflow runs with `--workers 1` (its default is "
            "4 uvicorn workers; the client is sequential, SQLite has one writer and the machine "
            "two cores, so more workers would not help a single client), without access log, "
            "telemetry or its GenAI job runner (all in MLflow's favour); codecdash runs "
            "`codecdash serve --db PATH --port P` as shipped (one uvicorn process, no access "
            "log).",
            "- **Noise.** The machine is shared (the load average is given for each N); both "
            "systems see the same noise because they alternate within each repeat, and each "
            "timed query starts once the CPUs are nearly idle (two 50 ms windows in a row "
            "under 15 % busy, waiting at most 3 s), so work one server leaves behind after "
            "answering does not land in the other's measurement. The client's garbage "
            "collector is off during each timed call (as in `timeit`; it holds all N "
            "experiments, and a full collection would land in whichever call triggered it). "
            "Medians, not means; all samples are listed.",
            "- **Not compared.** MLflow stores each metric as a history (steps, timestamps) and "
            "does far more than experiment tracking (artifacts, models, traces); codecdash keeps "
            "one value per field. That difference is the point of the comparison for this job, "
            "but it is a difference of scope as well as of speed.",
            "",
        ]
    )
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="numbers of experiments (default: 10000 100000)",
    )
    p.add_argument("--repeats", type=int, default=5, help="repeats per measure (default 5)")
    p.add_argument(
        "--lighthouse-repeats",
        type=int,
        default=3,
        help="Lighthouse loads per system and N (default 3)",
    )
    p.add_argument(
        "--lighthouse-n",
        type=int,
        nargs="*",
        default=[],
        help="the N at which to run Lighthouse (default: every N)",
    )
    p.add_argument(
        "--slow-call-s",
        type=float,
        default=20.0,
        help="a measure whose first call took longer is repeated only "
        "--slow-repeats times (default 20 s)",
    )
    p.add_argument("--slow-repeats", type=int, default=3)
    p.add_argument(
        "--mlflow-api-runs",
        type=int,
        default=1000,
        help="runs written through MLflow's API per ingest repeat; the rest of N "
        "is bulk-loaded with SQL from those rows (default 1000)",
    )
    p.add_argument(
        "--mlflow-workers",
        type=int,
        default=1,
        help="mlflow server --workers (MLflow's default is 4; default here 1)",
    )
    p.add_argument("--out", type=Path, default=Path("docs/mlflow-comparison.md"))
    p.add_argument("--skip-lighthouse", action="store_true")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/cdbench"),
        help="MLflow's venv and Lighthouse are cached here (default /tmp/cdbench)",
    )
    p.add_argument(
        "--dbdir",
        type=Path,
        default=None,
        help="where both databases live (default: the workdir; /dev/shm takes "
        "the disk's syncs out of the comparison)",
    )
    p.add_argument("--python", default="python3", help="interpreter for MLflow's venv")
    p.add_argument(
        "--chrome",
        default=os.environ.get("CHROME_PATH") or shutil.which("chromium") or "/usr/bin/chromium",
    )
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument(
        "--start-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a server to answer (MLflow starts slowly)",
    )
    p.add_argument("--keep", action="store_true", help="keep the databases and logs")
    p.add_argument(
        "--install-only",
        action="store_true",
        help="install (or check) MLflow's venv and Lighthouse, then exit",
    )
    args = p.parse_args(argv)
    if any(n < 1 for n in args.n) or args.repeats < 1 or args.mlflow_api_runs < 1:
        p.error("--n, --repeats and --mlflow-api-runs must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    args.workdir = args.workdir.resolve()
    venv = ensure_mlflow(args.workdir, args.python)
    versions: dict[str, Any] = {"mlflow": mlflow_versions(venv), "codecdash": codecdash_versions()}
    lh_cmd = None
    if not args.skip_lighthouse:
        lh_cmd = ensure_lighthouse(args.workdir)
    if args.install_only:
        log(f"MLflow {versions['mlflow']['mlflow']} in {venv}; Lighthouse: {lh_cmd}")
        return 0
    if not args.skip_lighthouse:
        versions["lighthouse"] = LIGHTHOUSE_VERSION
        versions["chromium"] = tool_version([args.chrome, "--version"])
        versions["node"] = tool_version(["node", "--version"])
    rundir = (args.dbdir or args.workdir).resolve() / f"run-{os.getpid()}-{int(time.time())}"
    rundir.mkdir(parents=True)
    versions["fs"] = fs_type(rundir)
    log(f"work in {rundir}")
    results = []
    try:
        for n in args.n:
            results.append(run_n(args, n, venv, rundir, lh_cmd))
            text = report(args, results, versions, started, time.perf_counter() - t0)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
            log(f"wrote {args.out} (N = {', '.join(str(r.n) for r in results)})")
    finally:
        if not args.keep:
            shutil.rmtree(rundir, ignore_errors=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
