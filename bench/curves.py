"""Training curves benchmark (issue "Live training curves"): ingest over HTTP, the
dashboard's latency under a steady ingest, charts of a 1,000,000-step history, the SDK's
cost per `log_step`, and a live point's way to an open page in Chromium.

    .venv/bin/python bench/curves.py --live --out docs/bench-curves.md

A *point* is one (step, metric, value); each step here logs four metrics (loss, bpp,
psnr_db, lr), so a step is four points. Starts `codecdash serve` (a subprocess, SQLite, one
worker, rate limit lifted) on a fresh database with --prefill experiments, then:

1. reads alone: an open-loop reader (bench/load.py's: latency counted from each request's
   scheduled time) GETs /api/v1/dashboard at --read-rate requests/s for 10 s;
2. ingest, flat out: two client threads POST `POST /api/v1/experiments/{id}/metrics`
   bodies of --steps-per-request steps (made before the clock starts): the first
   --history-steps steps of one experiment (the long history of step 4), then
   --other-runs experiments of --other-steps steps each;
3. ingest, paced at --paced-rate points/s for --paced-seconds, into new experiments, with
   the same reader at --read-rate: the dashboard's p99 while training runs log;
4. charts: `GET …/metrics?names=loss&max_points=1000` (and 2,000, all four metrics, a
   live `after_step` tail) of the long history, --repeats times each, medians and p95;
5. SDK: `exp.log_step(step, loss=…, bpp=…, psnr_db=…, lr=…)` --sdk-calls times against
   the server, µs per call (the sender thread runs meanwhile, as in training), then flush;
6. live (with --live, needs Chromium): the page open on a running experiment's curves
   (its event stream open), a point POSTed, the time until its chart shows that step
   (Playwright polling the chart's `data-last-step`), --live-repeats times.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import _python_reads, free_port, prefill, start

METRICS = ("loss", "bpp", "psnr_db", "lr")


def body(first: int, steps: int, rng: random.Random) -> bytes:
    points = []
    for s in range(first, first + steps):
        decay = 2.0 / (1.0 + s / 5000.0)
        points.append(
            {
                "step": s,
                "values": {
                    "loss": round(decay * rng.uniform(0.9, 1.1) + 0.3, 6),
                    "bpp": round(0.2 + decay / 4 * rng.uniform(0.95, 1.05), 6),
                    "psnr_db": round(36.0 - decay * rng.uniform(0.9, 1.1), 4),
                    "lr": 1e-4 if s < 800_000 else 1e-5,
                },
            }
        )
    return orjson.dumps({"points": points})


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ingest(
    url: str, token: str, jobs: list[tuple[str, bytes]], threads: int
) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []

    def send(part: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            for experiment_id, content in part:
                t0 = time.perf_counter()
                r = http.post(f"/api/v1/experiments/{experiment_id}/metrics", content=content)
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code} {r.text[:300]}")

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, [jobs[k::threads] for k in range(threads)]))
    return time.perf_counter() - t0, latencies


def reads_during(port: int, seconds: float, rate: float, connections: int) -> dict[str, Any]:
    reads = asyncio.run(_python_reads("127.0.0.1", port, seconds, connections, rate))
    return {
        "requests": reads.requests,
        "per_s": round(reads.rps, 1),
        "p50_ms": round(reads.p50_ms, 2),
        "p99_ms": round(reads.p99_ms, 2),
        "max_ms": round(reads.max_ms, 2),
        "errors": reads.errors + reads.non_2xx,
    }


def paced_ingest(
    url: str,
    token: str,
    jobs: list[tuple[str, bytes]],
    points_per_job: int,
    rate: float,
    stop: threading.Event,
) -> dict[str, Any]:
    """One job every points_per_job / rate seconds (catching up when behind) until `stop`."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    interval = points_per_job / rate
    sent, errors, latencies = 0, 0, []
    started = time.monotonic()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for n, (experiment_id, content) in enumerate(jobs):
            delay = started + n * interval - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            if stop.is_set():
                break
            t0 = time.perf_counter()
            r = http.post(f"/api/v1/experiments/{experiment_id}/metrics", content=content)
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code == 202:
                sent += points_per_job
            else:
                errors += 1
    seconds = time.monotonic() - started
    return {
        "points_per_s": round(sent / seconds) if seconds else 0,
        "target_points_per_s": rate,
        "request_p99_ms": round(quantile(latencies, 0.99), 1) if latencies else None,
        "errors": errors,
    }


def chart_queries(url: str, experiment_id: str, last_step: int, repeats: int) -> dict[str, Any]:
    queries = {
        "loss, max_points=1000": {"names": "loss", "max_points": 1000},
        "loss, max_points=2000": {"names": "loss", "max_points": 2000},
        "4 metrics, max_points=1000": {"max_points": 1000},
        "live tail (after_step, 100 steps)": {"after_step": last_step - 100},
    }
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        path = f"/api/v1/experiments/{experiment_id}/metrics"
        for label, params in queries.items():
            http.get(path, params=params).raise_for_status()  # warm
            times = []
            answer: dict[str, Any] = {}
            for _ in range(repeats):
                t0 = time.perf_counter()
                r = http.get(path, params=params)
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                answer = r.json()
            lengths = {n: len(s["step"]) for n, s in answer["series"].items()}
            out[label] = {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(quantile(times, 0.95), 2),
                "points_per_series": lengths,
                "bucket_steps": {n: s["bucket_steps"] for n, s in answer["series"].items()},
                "bytes": len(r.content),
            }
    return out


def sdk_cost(url: str, token: str, calls: int) -> dict[str, Any]:
    from codecdash import Client

    # A buffer as large as the calls: this measures a call's cost, not the drop policy.
    client = Client(url, token, metrics_buffer=calls)
    client.put_experiment("sdk-run", status="running")
    rounds = []
    step = 0
    per_round = max(1, calls // 5)
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per_round):
            client.log_step("sdk-run", step, loss=0.5, bpp=0.31, psnr_db=33.2, lr=1e-4)
            step += 1
        rounds.append((time.perf_counter() - t0) / per_round * 1e6)
    t0 = time.perf_counter()
    sent = client.flush(120)
    flush_s = time.perf_counter() - t0
    client.close()
    with httpx.Client(base_url=url, timeout=30) as http:
        stored = http.get("/api/v1/experiments/sdk-run/metrics", params={"names": "loss"}).json()
    return {
        "calls": per_round * 5,
        "us_per_call_median_of_5": round(statistics.median(rounds), 2),
        "us_per_call_rounds": [round(r, 2) for r in rounds],
        "flushed": sent,
        "flush_s": round(flush_s, 2),
        "stored_steps": stored["series"]["loss"]["points"],
        "dropped": client.dropped_steps,
    }


def live_latency(url: str, token: str, repeats: int) -> dict[str, Any]:
    from playwright.sync_api import expect, sync_playwright

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        http.put("/api/v1/experiments/live-run", json={"status": "running"}).raise_for_status()
        points = [{"step": s, "values": {"loss": 1.0 / (s + 1)}} for s in range(1000)]
        http.post("/api/v1/experiments/live-run/metrics", json={"points": points})
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("CODECDASH_CHROMIUM", "/usr/bin/chromium"),
                args=["--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/?exp=live-run")
            chart = page.locator("#experiment-details .curve[data-metric='loss'] .chart-curve")
            expect(chart).to_have_attribute("data-last-step", "999", timeout=20_000)
            expect(page.locator("#connection-status .conn-text")).to_have_text("Live")
            times = []
            for k in range(repeats):
                step = 1000 + k
                time.sleep(0.3)  # spacing: each point is its own event, not a coalesced one
                t0 = time.perf_counter()
                http.post(
                    "/api/v1/experiments/live-run/metrics",
                    json={"points": [{"step": step, "values": {"loss": 0.001}}]},
                ).raise_for_status()
                expect(chart).to_have_attribute("data-last-step", str(step), timeout=10_000)
                times.append((time.perf_counter() - t0) * 1000)
            browser.close()
    return {
        "repeats": repeats,
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(quantile(times, 0.95), 1),
        "max_ms": round(max(times), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=int, default=20_000, help="experiments")
    parser.add_argument("--history-steps", type=int, default=1_000_000)
    parser.add_argument("--other-runs", type=int, default=8)
    parser.add_argument("--other-steps", type=int, default=125_000)
    parser.add_argument("--steps-per-request", type=int, default=5_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--read-rate", type=float, default=2000.0, help="dashboard reads/s")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paced-rate", type=float, default=200_000.0, help="points/s")
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=51)
    parser.add_argument("--sdk-calls", type=int, default=200_000)
    parser.add_argument("--live", action="store_true", help="also the page's live latency")
    parser.add_argument("--live-repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="codecdash-curves-"))
    db = workdir / "curves.db"
    from codecdash.store import Store

    store = Store(f"sqlite:///{db}")
    token = store.create_token("bench")
    store.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(db, port, workdir / "server.log")
    result: dict[str, Any] = {"history_steps": args.history_steps}
    try:
        prefill(url, token, args.prefill)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(args.other_runs + 1):
                http.put(f"/api/v1/experiments/run-{i}", json={"status": "running"})
        rng = random.Random(1)
        per = args.steps_per_request
        jobs = [("run-0", body(f, per, rng)) for f in range(0, args.history_steps, per)]
        for i in range(1, args.other_runs + 1):
            jobs += [(f"run-{i}", body(f, per, rng)) for f in range(0, args.other_steps, per)]
        steps = args.history_steps + args.other_runs * args.other_steps
        result["reads_alone"] = reads_during(port, 10, args.read_rate, args.connections)
        seconds, latencies = ingest(url, token, jobs, args.threads)
        result["ingest"] = {
            "points": steps * len(METRICS),
            "steps": steps,
            "requests": len(jobs),
            "points_per_request": per * len(METRICS),
            "seconds": round(seconds, 2),
            "points_per_s": round(steps * len(METRICS) / seconds),
            "request_p50_ms": round(statistics.median(latencies), 1),
            "request_p99_ms": round(quantile(latencies, 0.99), 1),
        }
        # Paced: enough bodies for the whole period, into experiments of their own.
        per_job = per * len(METRICS)
        needed = int(args.paced_rate * args.paced_seconds / per_job) + 2
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(needed):
                http.put(f"/api/v1/experiments/paced-{i}", json={"status": "running"})
        paced_jobs = [(f"paced-{i}", body(0, per, rng)) for i in range(needed)]
        stop = threading.Event()
        paced: dict[str, Any] = {}
        sender = threading.Thread(
            target=lambda: paced.update(
                paced_ingest(url, token, paced_jobs, per_job, args.paced_rate, stop)
            )
        )
        sender.start()
        result["reads_during_paced_ingest"] = reads_during(
            port, args.paced_seconds, args.read_rate, args.connections
        )
        stop.set()
        sender.join()
        result["paced_ingest"] = paced
        result["chart"] = chart_queries(url, "run-0", args.history_steps - 1, args.repeats)
        result["sdk"] = sdk_cost(url, token, args.sdk_calls)
        if args.live:
            result["live"] = live_latency(url, token, args.live_repeats)
        result["database_mb"] = round(
            sum(p.stat().st_size for p in workdir.glob("curves.db*")) / 2**20, 1
        )
    finally:
        proc.terminate()
        proc.wait(15)
    result["machine"] = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}"
    )
    result["command"] = " ".join([".venv/bin/python", *sys.argv])
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(report(result))
    return 0


def report(r: dict[str, Any]) -> str:
    i, alone = r["ingest"], r["reads_alone"]
    paced, during = r["paced_ingest"], r["reads_during_paced_ingest"]
    lines = [
        "# Training curves benchmark",
        "",
        f"`{r['command']}` — {r['machine']}.",
        "",
        "| measure | result |",
        "| --- | --- |",
        f"| ingest over HTTP, SQLite, flat out ({i['points']:,} points = {i['steps']:,} steps × "
        f"4 metrics, {i['requests']} requests of {i['points_per_request']:,} points, 2 threads) "
        f"| **{i['points_per_s']:,} points/s** ({i['seconds']} s; request p50 "
        f"{i['request_p50_ms']} ms, p99 {i['request_p99_ms']} ms) |",
        f"| /api/v1/dashboard alone, open loop at {alone['per_s']:,.0f}/s | p50 "
        f"{alone['p50_ms']} ms, p99 {alone['p99_ms']} ms ({alone['errors']} errors) |",
        f"| /api/v1/dashboard, open loop, while {paced['target_points_per_s']:,.0f} points/s "
        f"are ingested (achieved {paced['points_per_s']:,}/s, request p99 "
        f"{paced['request_p99_ms']} ms, {paced['errors']} errors) | {during['per_s']:,.0f} "
        f"requests/s, p50 {during['p50_ms']} ms, **p99 {during['p99_ms']} ms**, "
        f"{during['errors']} errors |",
    ]
    for label, q in r["chart"].items():
        lines.append(
            f"| chart of the {r['history_steps']:,}-step history: {label} | "
            f"median **{q['median_ms']} ms**, "
            f"p95 {q['p95_ms']} ms ({q['points_per_series']} points, buckets "
            f"{q['bucket_steps']}, {q['bytes']:,} bytes) |"
        )
    s = r["sdk"]
    lines.append(
        f"| SDK `exp.log_step()` with 4 metrics ({s['calls']:,} calls) | "
        f"**{s['us_per_call_median_of_5']} µs** a call (rounds {s['us_per_call_rounds']}); "
        f"flush {s['flush_s']} s, "
        f"{s['stored_steps']:,} steps stored, {s['dropped']} dropped |"
    )
    if "live" in r:
        v = r["live"]
        lines.append(
            f"| a point POSTed → its chart on an open page (Chromium, {v['repeats']} times) | "
            f"median **{v['median_ms']} ms**, p95 {v['p95_ms']} ms, max {v['max_ms']} ms |"
        )
    lines.append(f"| database after all this | {r['database_mb']} MB |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
