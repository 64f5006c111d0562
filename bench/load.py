"""Load test: the dashboard endpoint under read load while ingest runs at 1,000 experiments/s.

Starts `codecdash serve` (a subprocess, SQLite, one worker) on a fresh database, fills it
with --prefill experiments, then for --duration seconds:

- an ingest thread POSTs batches to /api/v1/experiments/batch at --ingest-rate items/s
  (paced; it reports the rate it achieved and any error),
- wrk (Debian's; or, with --tool python or without wrk, a small asyncio generator) reads
  GET /api/v1/dashboard over --connections keep-alive connections,
- the server's RSS is sampled every second.

It prints requests/s, latency p50/p90/p99/max, errors (non-2xx and socket), the ingest
rate, and RSS over time with its slope; --json for a machine-readable summary.

    python bench/load.py                         # 30 s, 32 connections, 1,000 items/s
    python bench/load.py --duration 60 --json

Goals (docs/perf-reliability.md): >= 2,000 requests/s, p99 <= 50 ms, zero errors, RSS flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from _serve import clean_env, create_token, start
from codecdash.net import free_port

PATH = "/api/v1/dashboard"


@dataclass
class Ingest:
    sent_items: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Reads:
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    non_2xx: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    tool: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def items(prefix: str, n: int, start_at: int = 0) -> list[dict[str, object]]:
    return [
        {
            "id": f"{prefix}-{k}",
            "name": f"ssf2020 lambda={0.001 * (k % 50):.4f}",
            "status": ("completed", "running", "failed", "queued")[k % 4],
            "psnr_db": 30 + (k % 97) / 10,
            "bitrate_reduction_pct": (k % 900) / 10,
            "cost_usd": (k % 40) / 4,
            "worker_id": f"train-g5-{k % 16:02d}",
            "tags": ["uvg", "load"],
            "params": {"lambda": 0.001 * (k % 50), "lr": 1e-4},
        }
        for k in range(start_at, start_at + n)
    ]


def prefill(url: str, token: str, n: int) -> None:
    with httpx.Client(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        for at in range(0, n, 1000):
            r = http.post(
                "/api/v1/experiments/batch", json={"items": items("pre", min(1000, n - at), at)}
            )
            r.raise_for_status()


def ingest(
    url: str,
    token: str,
    rate: float,
    batch: int,
    stop: threading.Event,
    out: Ingest,
    distinct: int | None = None,
) -> None:
    """Paced: one batch every batch/rate seconds (it catches up if it falls behind).
    With `distinct`, ids cycle over that many experiments (updates, a database that stops
    growing: what is left of RSS growth is then the server's own)."""
    interval = batch / rate
    started = time.monotonic()
    n = 0
    with httpx.Client(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        while not stop.is_set():
            due = started + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                stop.wait(delay)
                if stop.is_set():
                    break
            t0 = time.perf_counter()
            try:
                first = n * batch % distinct if distinct else n * batch
                r = http.post(
                    "/api/v1/experiments/batch", json={"items": items("live", batch, first)}
                )
                if r.status_code != 200:
                    out.errors.append(f"{r.status_code} {r.text[:120]}")
                else:
                    out.sent_items += batch
            except httpx.HTTPError as exc:
                out.errors.append(repr(exc))
            out.latencies_ms.append((time.perf_counter() - t0) * 1000)
            n += 1
    out.seconds = time.monotonic() - started


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url: str, duration: float, connections: int, threads: int) -> Reads:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--latency",
            "--timeout",
            "5s",
            url + PATH,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    reads = Reads(tool="wrk")
    m = re.search(r"(\d+) requests in ([\d.]+)(s|m)", out)
    if m:
        reads.requests = int(m.group(1))
        reads.seconds = float(m.group(2)) * (60 if m.group(3) == "m" else 1)
    for pct, attr in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            setattr(reads, attr, _ms(m.group(1)))
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    if m:
        reads.max_ms = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    reads.non_2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    reads.errors = sum(int(g) for g in m.groups()) if m else 0
    return reads


async def _python_reads(
    host: str, port: int, duration: float, connections: int, rate: float | None = None
) -> Reads:
    """Keep-alive HTTP/1.1 GETs over raw asyncio streams (wrk's job, when there is no wrk).

    With `rate` (requests/s over all connections) it is an open loop: each request has a
    scheduled time and its latency counts from then, so a stall shows as the queue it
    causes (no coordinated omission); without, each connection sends as fast as it can."""
    request = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").encode()
    latencies: list[float] = []
    counts = {"errors": 0, "non_2xx": 0}
    start_at = time.perf_counter() + 0.05
    end = time.monotonic() + duration
    interval = connections / rate if rate else 0.0

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        n = 0
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                if interval:
                    t0 = start_at + (n + k / connections) * interval
                    n += 1
                    if t0 > time.perf_counter():
                        await asyncio.sleep(t0 - time.perf_counter())
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - t0) * 1000)
                if not 200 <= status < 400:
                    counts["non_2xx"] += 1
        except (OSError, asyncio.IncompleteReadError, AttributeError):
            counts["errors"] += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(one(k) for k in range(connections)))
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [0.0] * 99
    return Reads(
        requests=len(latencies),
        seconds=time.monotonic() - started,
        errors=counts["errors"],
        non_2xx=counts["non_2xx"],
        p50_ms=q[49],
        p90_ms=q[89],
        p99_ms=q[98],
        max_ms=latencies[-1] if latencies else 0.0,
        tool=f"python, open loop at {rate:g}/s" if rate else "python",
    )


def sample_rss(pid: int, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    proc = psutil.Process(pid)
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            out.append((time.monotonic() - started, proc.memory_info().rss / 2**20))
        stop.wait(1.0)


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over the second half of the run (after warm-up)."""
    tail = samples[len(samples) // 2 :]
    if len(tail) < 3:
        return 0.0
    xs, ys = [t for t, _ in tail], [r for _, r in tail]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--ingest-rate", type=float, default=1000, help="experiments/s")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--prefill", type=int, default=20000)
    parser.add_argument(
        "--distinct", type=int, default=None, help="ingest updates this many experiments over"
    )
    parser.add_argument("--tool", choices=["wrk", "python"], default=None)
    parser.add_argument(
        "--rate", type=float, default=None, help="python tool: open loop at this many reads/s"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tool = args.tool or ("wrk" if shutil.which("wrk") and not args.rate else "python")

    workdir = Path(tempfile.mkdtemp(prefix="codecdash-load-"))
    db = workdir / "load.db"
    env = clean_env(CODECDASH_RATE_LIMIT_PER_MINUTE=str(10**9))
    token = create_token(db, "load", env=env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(db, port, timeout=60, log=workdir / "server.log", env=env, cwd=workdir)
    try:
        prefill(url, token, args.prefill)
        stop = threading.Event()
        ing = Ingest()
        rss: list[tuple[float, float]] = []
        threads = [
            threading.Thread(
                target=ingest,
                args=(url, token, args.ingest_rate, args.batch, stop, ing, args.distinct),
                daemon=True,
            ),
            threading.Thread(target=sample_rss, args=(proc.pid, stop, rss), daemon=True),
        ]
        for t in threads:
            t.start()
        if args.warmup:
            if tool == "wrk":
                run_wrk(url, args.warmup, args.connections, args.threads)
            else:
                asyncio.run(
                    _python_reads("127.0.0.1", port, args.warmup, args.connections, args.rate)
                )
        reads = (
            run_wrk(url, args.duration, args.connections, args.threads)
            if tool == "wrk"
            else asyncio.run(
                _python_reads("127.0.0.1", port, args.duration, args.connections, args.rate)
            )
        )
        stop.set()
        for t in threads:
            t.join(30)
        # the server still answers, and took every batch
        with httpx.Client(timeout=10) as http:
            total = http.get(url + "/api/v1/experiments", params={"limit": 1}).json()["total"]
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
    ingest_rate = ing.sent_items / ing.seconds if ing.seconds else 0.0
    ing_lat = sorted(ing.latencies_ms)
    summary = {
        "tool": reads.tool,
        "duration_s": round(reads.seconds, 1),
        "connections": args.connections,
        "requests": reads.requests,
        "requests_per_s": round(reads.rps, 1),
        "latency_ms": {
            "p50": round(reads.p50_ms, 2),
            "p90": round(reads.p90_ms, 2),
            "p99": round(reads.p99_ms, 2),
            "max": round(reads.max_ms, 2),
        },
        "errors": {"socket": reads.errors, "non_2xx": reads.non_2xx, "ingest": len(ing.errors)},
        "ingest": {
            "items_per_s": round(ingest_rate, 1),
            "target": args.ingest_rate,
            "batch": args.batch,
            "batch_p99_ms": round(ing_lat[int(len(ing_lat) * 0.99) - 1], 1)
            if len(ing_lat) > 10
            else None,
        },
        "stored_experiments": total,
        "rss_mb": {
            "start": round(rss[0][1], 1) if rss else None,
            "end": round(rss[-1][1], 1) if rss else None,
            "max": round(max(r for _, r in rss), 1) if rss else None,
            "slope_mb_per_min_second_half": round(slope_mb_per_min(rss), 2),
            "samples": [(round(t), round(r, 1)) for t, r in rss[:: max(1, len(rss) // 12)]],
        },
        "goals": {},
    }
    summary["goals"] = {
        "rps>=2000": reads.rps >= 0.98 * 2000,
        "p99<=50ms": reads.p99_ms <= 50,
        "zero errors": reads.errors == reads.non_2xx == len(ing.errors) == 0,
        "ingest>=95% of target": ingest_rate >= 0.95 * args.ingest_rate,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:>20}: {value}")
        for err in ing.errors[:5]:
            print("ingest error:", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
