"""BD-rate table benchmark (issue 18): `GET /api/v1/bd-rates` over 1,000 methods × 5 sets.

    .venv/bin/python bench/bdtable.py --db sqlite
    .venv/bin/python bench/bdtable.py --db postgres
    .venv/bin/python bench/bdtable.py --db both --out docs/bench-bdtable.md

Starts `codecdash serve` over a fresh database with one anchor per test set (5 sets), then
loads through the batch endpoint:

* 10,000 experiments of one R-D point each, the λ runs of 1,000 methods: every method has
  4 runs on each of 2 sets, and every other method 4 more on a third set;
* 100 experiments that carry a whole curve (6 points) and no method (each its own row).

That is 1,100 rows, 2,600 cells with a BD-rate and 5,500 cells in all. It then measures
the table (JSON) the first time (every cell computed), right after a write (one λ run's
point changed: that cell again, the rest from the cache), with nothing changed (the kept
answer), and CSV right after a write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

from _serve import create_token, start
from codecdash.net import free_port

SETS = ("UVG-1080p", "MCL-JCV", "HEVC-B", "HEVC-C", "HEVC-D")
METHODS = 1000
LAMBDAS = 4
CURVES = 100
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def anchor_points() -> list[dict[str, float]]:
    return [{"bitrate_kbps": 1000.0 * 2**j, "psnr_db": 30.0 + 2.5 * j} for j in range(5)]


def lambda_point(method: int, j: int) -> dict[str, float]:
    """Method `method`'s run at λ index `j`: near the anchor, a method-specific saving."""
    factor = 0.55 + 0.9 * ((method * 7919) % 1000) / 1000
    return {"bitrate_kbps": 1100.0 * 2**j * factor, "psnr_db": 30.4 + 2.4 * j}


def experiments() -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    for m in range(METHODS):
        sets = [SETS[m % 5], SETS[(m + 1) % 5]] + ([SETS[(m + 2) % 5]] if m % 2 == 0 else [])
        for s in sets:
            for j in range(LAMBDAS):
                items.append(
                    {
                        "id": f"m{m:04d}-{s}-{j}",
                        "name": f"method {m} λ{j}",
                        "status": "completed",
                        "dataset": s,
                        "method": f"method-{m:04d}",
                        "params": {"lambda": 0.0018 * 2**j},
                        "rd_points": [lambda_point(m, j)],
                    }
                )
    for k in range(CURVES):
        items.append(
            {
                "id": f"curve-{k:03d}",
                "name": f"variable-rate model {k}",
                "status": "completed",
                "dataset": SETS[k % 5],
                "rd_points": [lambda_point(k + 5000, j) for j in range(6)],
            }
        )
    return items


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - t0) * 1000


def run(backend: str, workdir: Path, repeats: int) -> dict[str, object]:
    if backend == "sqlite":
        db = str(workdir / "bdtable.db")
    else:
        schema = "bench_" + uuid.uuid4().hex[:8]
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        db = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    token = create_token(db)
    port = free_port()
    env = {**os.environ, "CODECDASH_LOG_LEVEL": "warning"}
    proc = start(db, port, log=workdir / "server.log", env=env)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as c:
            for s in SETS:
                c.put(
                    "/api/v1/anchors/x265-medium",
                    params={"dataset": s},
                    json={"rd_points": anchor_points()},
                ).raise_for_status()
            items = experiments()
            for i in range(0, len(items), 1000):
                body = orjson.dumps({"items": items[i : i + 1000]})
                c.post("/api/v1/experiments/batch", content=body).raise_for_status()

            def table() -> None:
                c.get("/api/v1/bd-rates").raise_for_status()

            first = timed(table)
            answer = c.get("/api/v1/bd-rates").json()
            cells = sum(len(r["cells"]) for r in answer["rows"])
            figures = sum(
                1 for r in answer["rows"] for cell in r["cells"].values() if "bd_rate_pct" in cell
            )
            after_write, csv_after_write = [], []
            for i in range(repeats):
                point = {**lambda_point(7, 1), "psnr_db": 32.8 + i / 1000}
                c.patch(
                    f"/api/v1/experiments/m0007-{SETS[2]}-1", json={"rd_points": [point]}
                ).raise_for_status()
                after_write.append(timed(table))
            for i in range(repeats):
                c.patch(
                    "/api/v1/experiments/curve-000", json={"cost_usd": i / 100}
                ).raise_for_status()
                csv_after_write.append(
                    timed(lambda: c.get("/api/v1/bd-rates?format=csv").raise_for_status())
                )
            cached = [timed(table) for _ in range(repeats * 3)]
        return {
            "backend": backend,
            "experiments": len(items),
            "rows": len(answer["rows"]),
            "cells": cells,
            "figures": figures,
            "first_ms": first,
            "after_write_ms": statistics.median(after_write),
            "after_write_p90_ms": sorted(after_write)[int(0.9 * (len(after_write) - 1))],
            "csv_after_write_ms": statistics.median(csv_after_write),
            "cached_ms": statistics.median(cached),
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
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=None, help="write a markdown table here")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(backend, Path(tmp), args.repeats)
        print(orjson.dumps(result).decode(), flush=True)
        results.append(result)
    lines = [
        "| store | experiments | rows | cells (with a BD-rate) | first answer | after a write "
        "(median, p90) | CSV after a write | cached |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['experiments']:,} | {r['rows']:,} | {r['cells']:,} "
            f"({r['figures']:,}) | {r['first_ms']:.0f} ms | {r['after_write_ms']:.1f} ms, "
            f"{r['after_write_p90_ms']:.1f} ms | {r['csv_after_write_ms']:.1f} ms | "
            f"{r['cached_ms']:.2f} ms |"
        )
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sys.exit(0)


if __name__ == "__main__":
    main()
