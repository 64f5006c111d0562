"""Crash soak: kill -9 `codecdash serve` at random moments during sustained batch ingest.

Each round starts the real server (a subprocess, SQLite in WAL mode) on one database,
runs writer threads that POST batches to /api/v1/experiments/batch and log every batch
the server acknowledged (200), kills the server with SIGKILL after a random delay, and
then checks the database file directly:

- every acknowledged item is there (durability),
- every batch that was not acknowledged is there entirely or not at all (atomicity),
- ``PRAGMA integrity_check`` says ``ok``.

The next round restarts the server on the same file, so recovery is exercised too.

    python bench/soak.py --kills 200            # the long soak (docs/perf-reliability.md)
    python bench/soak.py --minutes 30 --json    # by time; JSON summary on stdout

tests/test_durability.py runs the same code with 5 kills.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from _serve import clean_env, create_token, serve
from codecdash.net import free_port, wait_healthy


@dataclass
class SoakResult:
    db: Path
    kills: int = 0
    acked: dict[str, list[str]] = field(default_factory=dict)  # batch id -> item ids
    unacked: dict[str, list[str]] = field(default_factory=dict)  # sent, no 200 seen
    refused: int = 0  # batches answered with a non-200 status (none expected)
    rounds: list[dict[str, float | int | str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def acked_items(self) -> int:
        return sum(len(ids) for ids in self.acked.values())


def make_token(db: Path) -> str:
    return create_token(db, f"soak-{os.getpid()}-{time.time_ns()}", env=clean_env())


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The server on ``db`` (not waited for: a round times its start-up)."""
    env = clean_env(CODECDASH_RATE_LIMIT_PER_MINUTE=str(10**9))
    return serve(db, port, log=log, env=env, cwd=db.parent)


def check_file(db: Path) -> tuple[str, set[str]]:
    """integrity_check's verdict and the stored ids, read straight from the file."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        verdict = "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
        ids = {row[0] for row in conn.execute("SELECT id FROM experiments")}
    finally:
        conn.close()
    return verdict, ids


def _writer(
    url: str,
    token: str,
    tag: str,
    batch_size: int,
    stop: threading.Event,
    result: SoakResult,
    lock: threading.Lock,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while not stop.is_set():
            batch_id = f"{tag}-{n}"
            n += 1
            ids = [f"{batch_id}-{i}" for i in range(batch_size)]
            items = [
                {
                    "id": i,
                    "name": i,
                    "status": "completed",
                    "psnr_db": 30 + (k % 100) / 10,
                    "bitrate_reduction_pct": k % 90,
                    "tags": ["soak"],
                    "params": {"k": k},
                }
                for k, i in enumerate(ids)
            ]
            with lock:
                result.unacked[batch_id] = ids
            try:
                r = http.post("/api/v1/experiments/batch", json={"items": items})
            except httpx.TransportError:
                return  # the server is gone: this batch stays unacknowledged
            if r.status_code == 200 and r.json() == {"accepted": batch_size}:
                with lock:
                    result.acked[batch_id] = result.unacked.pop(batch_id)
            else:
                with lock:
                    result.refused += 1
                    result.problems.append(f"batch {batch_id}: {r.status_code} {r.text[:200]}")


def one_round(
    result: SoakResult,
    token: str,
    rng: random.Random,
    *,
    writers: int,
    batch_size: int,
    kill_window: tuple[float, float],
    startup_timeout: float,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(result.db, port, result.db.with_suffix(".server.log"))
    try:
        startup_s = wait_healthy(url, startup_timeout, proc=proc)
        stop = threading.Event()
        lock = threading.Lock()
        tag = f"r{result.kills}"
        threads = [
            threading.Thread(
                target=_writer,
                args=(url, token, f"{tag}w{w}", batch_size, stop, result, lock),
                daemon=True,
            )
            for w in range(writers)
        ]
        acked_before = len(result.acked)
        for t in threads:
            t.start()
        # Kill after the first acknowledgement of this round plus a random delay.
        deadline = time.monotonic() + startup_timeout
        while len(result.acked) == acked_before and time.monotonic() < deadline:
            time.sleep(0.005)
        delay = rng.uniform(*kill_window)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    result.kills += 1
    verdict, stored = check_file(result.db)
    missing = [i for ids in result.acked.values() for i in ids if i not in stored]
    partial = [
        b for b, ids in result.unacked.items() if 0 < sum(i in stored for i in ids) < len(ids)
    ]
    result.rounds.append(
        {
            "kill": result.kills,
            "startup_s": round(startup_s, 3),
            "killed_after_s": round(delay, 3),
            "acked_batches_this_round": len(result.acked) - acked_before,
            "stored": len(stored),
            "integrity": verdict,
        }
    )
    if verdict != "ok":
        result.problems.append(f"kill {result.kills}: integrity_check: {verdict}")
    if missing:
        result.problems.append(f"kill {result.kills}: {len(missing)} acknowledged items lost")
    if partial:
        result.problems.append(f"kill {result.kills}: partial batches {partial[:5]}")


def soak(
    db: Path,
    *,
    kills: int = 5,
    minutes: float | None = None,
    seed: int = 1,
    writers: int = 2,
    batch_size: int = 100,
    kill_window: tuple[float, float] = (0.05, 1.0),
    startup_timeout: float = 60.0,
) -> SoakResult:
    rng = random.Random(seed)
    result = SoakResult(db=db)
    token = make_token(db)
    end = time.monotonic() + minutes * 60 if minutes else None
    while (result.kills < kills) if end is None else (time.monotonic() < end):
        one_round(
            result,
            token,
            rng,
            writers=writers,
            batch_size=batch_size,
            kill_window=kill_window,
            startup_timeout=startup_timeout,
        )
    return result


def _stored_unacked(result: SoakResult) -> int:
    if not result.db.exists():
        return 0
    _verdict, stored = check_file(result.db)
    return sum(all(i in stored for i in ids) for ids in result.unacked.values())


def summary(result: SoakResult) -> dict[str, object]:
    return {
        "kills": result.kills,
        "acknowledged_batches": len(result.acked),
        "acknowledged_items": result.acked_items,
        "unacknowledged_batches": len(result.unacked),
        "refused_batches": result.refused,
        # cut off by a kill after their commit, before the answer: stored, never acknowledged
        "unacknowledged_but_stored_batches": _stored_unacked(result),
        "median_startup_s": sorted(float(r["startup_s"]) for r in result.rounds)[
            len(result.rounds) // 2
        ]
        if result.rounds
        else None,
        "integrity_ok_rounds": sum(r["integrity"] == "ok" for r in result.rounds),
        "problems": result.problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=None, help="run by time instead")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--db", type=Path, default=None, help="default: a temporary file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="codecdash-soak-"))
    db = args.db or workdir / "soak.db"
    result = soak(
        db,
        kills=args.kills,
        minutes=args.minutes,
        seed=args.seed,
        writers=args.writers,
        batch_size=args.batch_size,
    )
    out = summary(result)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:>24}: {value}")
        print(f"{'database':>24}: {db}")
    return 0 if not result.problems else 1


if __name__ == "__main__":
    sys.exit(main())
