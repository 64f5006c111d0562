"""Core service benchmark (issue "Core"): ingest rate, dashboard latency, ranked query, RSS.

    .venv/bin/python bench/core.py --n 1000000 --db sqlite --out docs/bench-core-sqlite.md
    .venv/bin/python bench/core.py --n 1000000 --db postgres --out docs/bench-core-postgres.md

Starts `codecdash serve` as a subprocess on a free loopback port over a fresh database,
loads N experiments through the HTTP batch endpoint (batches of 1,000, two concurrent
clients), then measures medians of: the dashboard right after a write (cache miss), the
dashboard with nothing changed (cache hit), `status=completed&sort=-psnr_db&limit=100`,
and the server's RSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psutil

from _serve import create_token, start
from codecdash.net import free_port

ROOT = Path(__file__).resolve().parent.parent
STATUSES = (
    ["completed"] * 85 + ["failed"] * 8 + ["running"] * 3 + ["queued"] * 2 + ["cancelled"] * 2
)
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_batch(
    start: int, size: int, now: float, rng: random.Random, n: int = 0, created: str = "ordered"
) -> bytes:
    """A batch body. ``created``: "ordered" spreads creation times over the past year in
    the order the experiments arrive (as when they are logged, or imported oldest first),
    with up to an hour of jitter; "random" draws them anywhere in the year (worst case)."""
    items = []
    # The timeline ends early enough that no start or finish lies ahead of the server's
    # clock (the API refuses times beyond its allowed skew).
    end = now - 60 - 7200
    for i in range(start, start + size):
        status = rng.choice(STATUSES)
        if created == "random" or n <= 0:
            created_at = end - rng.uniform(0, 365 * 86400)
        else:
            created_at = end - 365 * 86400 * (1 - i / n) - rng.uniform(0, 3600)
        created_at = min(created_at, end)
        item: dict[str, object] = {
            "id": f"exp-{i:08d}",
            "name": f"ssf-variant-{i % 977} lambda={rng.choice([0.0018, 0.0035, 0.0067, 0.013])}",
            "status": status,
            "created_at": created_at,
            "params": {"model": "ssf2020", "lambda": rng.random() / 50, "lr": 1e-4},
            "tags": ["uvg", "bench"],
        }
        if status != "queued":
            item["started_at"] = created_at + 60
        if status in ("completed", "failed", "cancelled"):
            item["finished_at"] = created_at + rng.uniform(600, 7200)
        if status == "completed":
            item["psnr_db"] = round(rng.uniform(28, 38.5), 4)
            item["bitrate_reduction_pct"] = round(rng.uniform(5, 89), 4)
            item["cost_usd"] = round(rng.uniform(1, 40), 2)
        for key in ("created_at", "started_at", "finished_at"):
            if key in item:
                item[key] = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ",
                    time.gmtime(float(item[key])),  # type: ignore[arg-type]
                )
        items.append(item)
    return orjson.dumps({"items": items})


def median_ms(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run(
    n: int, backend: str, workdir: Path, repeats: int, created: str = "ordered"
) -> dict[str, object]:
    if backend == "sqlite":
        db = str(workdir / "bench.db")
    else:
        schema = "bench_" + uuid.uuid4().hex[:8]
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        db = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    token = create_token(db)
    port = free_port()
    env = {**os.environ, "CODECDASH_LOG_LEVEL": "warning"}
    try:
        proc = start(db, port, log=workdir / "server.log", env=env)
    except RuntimeError as exc:
        raise SystemExit(f"server did not start: {exc}") from None
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        rng = random.Random(42)
        now = time.time()
        batches = [make_batch(i, min(1000, n - i), now, rng, n, created) for i in range(0, n, 1000)]

        def send(chunk: list[bytes]) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
                for body in chunk:
                    r = c.post("/api/v1/experiments/batch", content=body)
                    r.raise_for_status()

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(send, [batches[0::2], batches[1::2]]))
        ingest_s = time.perf_counter() - t0

        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            c.get("/api/v1/dashboard").raise_for_status()
            counter = iter(range(10**9))

            def miss() -> None:
                c.patch(
                    "/api/v1/experiments/exp-00000001", json={"cost_usd": next(counter) / 100}
                ).raise_for_status()
                t = time.perf_counter()
                c.get("/api/v1/dashboard").raise_for_status()
                miss_times.append((time.perf_counter() - t) * 1000)

            miss_times: list[float] = []
            for _ in range(repeats):
                miss()
            hit = median_ms(lambda: c.get("/api/v1/dashboard").raise_for_status(), repeats * 3)
            ranked = median_ms(
                lambda: c.get(
                    "/api/v1/experiments?status=completed&sort=-psnr_db&limit=100"
                ).raise_for_status(),
                repeats,
            )
            total = c.get("/api/v1/experiments?limit=1").json()["total"]
        rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
        return {
            "backend": backend,
            "n": n,
            "created": created,
            "total": total,
            "ingest_per_s": n / ingest_s,
            "ingest_s": ingest_s,
            "dashboard_miss_ms": statistics.median(miss_times),
            "dashboard_hit_ms": hit,
            "ranked_ms": ranked,
            "rss_mb": rss_mb,
        }
    finally:
        proc.terminate()
        proc.wait(10)
        if backend == "postgres":
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
                c.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=None, help="write a markdown table here")
    parser.add_argument(
        "--created",
        choices=["ordered", "random"],
        default="ordered",
        help="creation times in arrival order (default) or random over the year (worst case)",
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            result = run(args.n, backend, Path(tmp), args.repeats, args.created)
            print(orjson.dumps(result).decode(), flush=True)
            rows.append(result)
    table = [
        "| store | experiments | creation times | batch ingest over HTTP "
        "| dashboard, cache miss (median) "
        "| dashboard, cache hit (median) | completed by -psnr_db, limit 100 (median) "
        "| server RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['backend']} | {r['n']:,} | {r['created']} | {r['ingest_per_s']:,.0f}/s | "
            f"{r['dashboard_miss_ms']:.1f} ms | {r['dashboard_hit_ms']:.2f} ms | "
            f"{r['ranked_ms']:.1f} ms | {r['rss_mb']:.0f} MB |"
        )
    text = "\n".join(table)
    env = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, command: `{' '.join(['.venv/bin/python', *sys.argv])}`"
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n\n" + env + "\n")


if __name__ == "__main__":
    main()
