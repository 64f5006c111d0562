"""Abuse check: what anonymous clients hammering the write routes do to everyone else.

Starts `codecdash serve` (a subprocess, SQLite, default settings but for the database) on a
fresh database with --prefill experiments, then measures the latency of GET /api/v1/health
and GET /api/v1/dashboard (one keep-alive client each, a request every 10 ms) for
--duration seconds twice: first alone (baseline), then while, from other processes:

- --bodies clients send 4 MiB bodies of tiny JSON objects ({"id": "x"} x ~380,000) to the
  write routes in turn (experiments, batch, heartbeats, costs, anchors) without a token,
  over and over;
- --slow clients start uploads of a declared 4 MiB and trickle one byte a second (half
  without a token; half with a valid one, which the server must time out);
- --bad-tokens clients send small writes with made-up bearer tokens as fast as they can.

It prints, for both phases, each probe's request count, p50/p99/max latency and errors,
and what the abusers achieved (requests answered, by status). The goal (docs/security.md):
p99 of both probes under 50 ms during the abuse.

    python bench/abuse.py                    # 20 s per phase, 16 + 16 + 8 abusers
    python bench/abuse.py --duration 30 --json

Run it against another checkout of codecdash with PYTHONPATH=that/src (the server is
started with this interpreter's `-m codecdash`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import secrets
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from _serve import clean_env, create_token, start
from codecdash.net import free_port

FOUR_MIB = 4 * 1024 * 1024


def prefill(url: str, token: str, n: int) -> None:
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
        for at in range(0, n, 1000):
            items = [
                {
                    "id": f"pre-{k}",
                    "name": f"ssf2020 lambda={0.001 * (k % 50):.4f}",
                    "status": ("completed", "running", "failed", "queued")[k % 4],
                    "psnr_db": 30 + (k % 97) / 10,
                    "bitrate_reduction_pct": (k % 900) / 10,
                    "tags": ["uvg"],
                    "params": {"lambda": 0.001 * (k % 50)},
                }
                for k in range(at, min(n, at + 1000))
            ]
            c.post("/api/v1/experiments/batch", json={"items": items}).raise_for_status()


# -- the probes ---------------------------------------------------------------------------
def probe(url: str, path: str, seconds: float, out: list[float], errors: list[str]) -> None:
    """GET `path` every 10 ms on one keep-alive connection; latencies in ms."""
    with httpx.Client(base_url=url, timeout=10) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            try:
                r = http.get(path)
                if r.status_code != 200:
                    errors.append(str(r.status_code))
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            out.append((time.perf_counter() - began) * 1000)
            time.sleep(max(0.0, 0.01 - (time.perf_counter() - began)))


def measure(url: str, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    threads = []
    for path in ("/api/v1/health", "/api/v1/dashboard"):
        latencies: list[float] = []
        errors: list[str] = []
        results[path] = (latencies, errors)
        t = threading.Thread(target=probe, args=(url, path, seconds, latencies, errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    summary = {}
    for path, (latencies, errors) in results.items():
        ordered = sorted(latencies)
        summary[path] = {
            "requests": len(ordered),
            "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
            "max_ms": round(ordered[-1], 2),
            "errors": len(errors),
        }
    return summary


# -- the abusers (in other processes: their Python does not slow the probes) ----------------
def tiny_objects_body() -> bytes:
    one = b'{"id":"x"},'
    n = (FOUR_MIB - 32) // len(one)
    return b'{"items":[' + one * n + b'{"id":"y"}]}'


def _exchange(host: str, port: int, head: bytes, body: bytes) -> str:
    """Send one request (reconnecting each time) and read the status; 'reset' if cut off."""
    try:
        with socket.create_connection((host, port), timeout=30) as sock:
            sock.sendall(head)
            with contextlib.suppress(OSError):
                sock.sendall(body)  # a server that answered early may close meanwhile
            data = sock.recv(4096)
            return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
    except OSError:
        return "reset"


WRITE_ROUTES = (
    b"POST /api/v1/experiments",
    b"POST /api/v1/experiments/batch",
    b"PUT /api/v1/experiments/abuse-1",
    b"POST /api/v1/heartbeats",
    b"POST /api/v1/costs",
    b"PUT /api/v1/anchors/abuse",
)


def big_bodies(host: str, port: int, stop: Any, counts: Any) -> None:
    body = tiny_objects_body()
    heads = [
        route + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
        for route in WRITE_ROUTES
    ]
    sent = 0
    while not stop.is_set():
        status = _exchange(host, port, heads[sent % len(heads)], body)
        sent += 1
        counts[status] = counts.get(status, 0) + 1


def bad_tokens(host: str, port: int, stop: Any, counts: Any) -> None:
    body = b'{"worker_id": "w", "role": "training"}'
    while not stop.is_set():
        head = (
            b"POST /api/v1/heartbeats HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer cdt_" + secrets.token_urlsafe(32).encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        status = _exchange(host, port, head, body)
        counts[status] = counts.get(status, 0) + 1


def slow_upload(host: str, port: int, stop: Any, counts: Any, token: str | None) -> None:
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    head = (
        b"POST /api/v1/experiments/batch HTTP/1.1\r\nHost: localhost\r\n" + auth + b"Content-Type: "
        b"application/json\r\nContent-Length: %d\r\n\r\n{" % FOUR_MIB
    )
    while not stop.is_set():
        try:
            with socket.create_connection((host, port), timeout=60) as sock:
                sock.sendall(head)
                sock.settimeout(1.0)
                status = "open"
                while not stop.is_set():
                    try:
                        data = sock.recv(4096)
                    except TimeoutError:
                        sock.sendall(b" ")  # one byte a second
                        continue
                    status = (
                        data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                    )
                    break
        except OSError:
            status = "reset"
        counts[status] = counts.get(status, 0) + 1


def abuser(kind: str, n: int, host: str, port: int, token: str, stop: Any, queue: Any) -> None:
    per_thread: list[dict[str, int]] = [{} for _ in range(n)]  # each thread counts its own
    threads = []
    for i, counts in enumerate(per_thread):
        args: tuple[Any, ...] = (host, port, stop, counts)
        if kind == "bodies":
            target: Any = big_bodies
        elif kind == "bad-tokens":
            target = bad_tokens
        else:
            target, args = slow_upload, (*args, token if i % 2 else None)
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout=90)
    total: Counter[str] = Counter()
    for counts in per_thread:
        total.update(counts)
    queue.put((kind, dict(total)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--bodies", type=int, default=16, help="clients sending 4 MiB bodies")
    parser.add_argument("--slow", type=int, default=16, help="clients trickling uploads")
    parser.add_argument("--bad-tokens", type=int, default=8, help="clients with bad tokens")
    parser.add_argument("--prefill", type=int, default=2000, help="experiments in the store")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="codecdash-abuse-"))
    db = work / "abuse.db"
    env = clean_env()
    token = create_token(db, env=env)
    port = free_port()
    proc = start(db, port, timeout=60, log=work / "server.log", env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        prefill(url, token, args.prefill)
        baseline = measure(url, args.duration)
        ctx = mp.get_context("spawn")
        stop, queue = ctx.Event(), ctx.Queue()
        kinds = [("bodies", args.bodies), ("slow", args.slow), ("bad-tokens", args.bad_tokens)]
        workers = [
            ctx.Process(target=abuser, args=(kind, n, "127.0.0.1", port, token, stop, queue))
            for kind, n in kinds
            if n > 0
        ]
        for w in workers:
            w.start()
        time.sleep(2.0)  # the abuse under way before measuring
        abused = measure(url, args.duration)
        stop.set()
        abusers = dict(queue.get(timeout=120) for _ in workers)
        for w in workers:
            w.join(timeout=30)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    summary = {
        "duration_s": args.duration,
        "abusers": {"bodies": args.bodies, "slow": args.slow, "bad_tokens": args.bad_tokens},
        "baseline": baseline,
        "under_abuse": abused,
        "abuser_answers": {k: dict(Counter(v)) for k, v in abusers.items()},
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{args.duration:g} s per phase; server log: {work / 'server.log'}")
    print("| phase | probe | requests | p50 ms | p99 ms | max ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for phase, result in (("alone", baseline), ("under abuse", abused)):
        for path, r in result.items():
            print(
                f"| {phase} | `GET {path}` | {r['requests']} | {r['p50_ms']} | {r['p99_ms']} "
                f"| {r['max_ms']} | {r['errors']} |"
            )
    for kind, counts in summary["abuser_answers"].items():
        print(f"{kind}: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
