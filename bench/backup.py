"""Backups of a live SQLite store: how long they take, and what writers see meanwhile.

    .venv/bin/python bench/backup.py --n 100000 --n 1000000

For each N: starts `codecdash serve` over a fresh database and loads N experiments through
the HTTP batch endpoint (bench/core.py's bodies), then keeps one client adding batches of
100 new experiments through the API, --write-rate experiments a second (2,000 by default:
a busy team's campaign logs far fewer), for the whole run, timing every request. While it
writes, three ways of copying the file are measured:

- the online backup API in one step inside one read transaction (what `codecdash backup`
  does: store/backup.py's ``copy_online``), then the same copy verified
  (store/integrity.py), as `--verify` does;
- ``VACUUM INTO``, the other one-transaction copy SQLite offers;
- the online backup API in steps of 1,024 pages, which SQLite restarts whenever another
  connection writes (stopped after --step-limit seconds).

The first two and the check run --rounds times, alternated. For each: the median seconds,
the CPU seconds of the copying thread, the copy's contents, and the writer's latency
(median, 99th percentile, maximum) and rate during the copies, against the stretches of
--quiet-seconds before each, when the writer was alone. The WAL file's largest size
during a copy is noted too (a reader holding a snapshot keeps checkpoints from recycling
it). The store grows as the writer goes on: each row says what its copies held.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codecdash.store.backup import connect, copy_online, read_facts
from codecdash.store.integrity import verify
from core import free_port, make_batch, start_server, token_for

WRITE_BATCH = 100


@dataclass
class Writer:
    url: str
    token: str
    rate: float  # experiments a second, at most
    done: list[tuple[float, float]] = field(default_factory=list)  # (start, end) per request
    stop: threading.Event = field(default_factory=threading.Event)
    error: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        rng = random.Random(7)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        began = time.monotonic()
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=60) as http:
                for k in itertools.count():
                    pause = began + k * WRITE_BATCH / self.rate - time.monotonic()
                    if self.stop.wait(max(0.0, pause)):
                        return
                    now = time.time() - 3 * 3600  # as in load(): finished_at never ahead
                    body = make_batch(90_000_000 + k * WRITE_BATCH, WRITE_BATCH, now, rng)
                    t0 = time.monotonic()
                    response = http.post("/api/v1/experiments/batch", content=body)
                    response.raise_for_status()
                    self.done.append((t0, time.monotonic()))
        except BaseException as exc:
            self.error.append(exc)

    def window(self, start: float, end: float) -> tuple[list[float], int]:
        """Latencies (ms) of the requests that overlapped [start, end], and how many
        ended inside it."""
        inside = [(s, e) for s, e in self.done if e >= start and s <= end]
        return [(e - s) * 1000 for s, e in inside], sum(1 for _s, e in inside if e <= end)


def figures(latencies: list[float], ended: int, seconds: float) -> str:
    """p50 / p99 / max ms, items/s."""
    if not latencies:
        return "no write ended"
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    rate = ended * WRITE_BATCH / max(seconds, 1e-9)
    return f"{statistics.median(lat):.0f} / {p99:.0f} / {lat[-1]:.0f}, {rate:,.0f}"


class WalWatch:
    """The largest size of <db>-wal while it runs."""

    def __init__(self, db: Path) -> None:
        self.wal = db.with_name(db.name + "-wal")
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.largest = max(self.largest, self.wal.stat().st_size)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def vacuum_into(db: Path, out: Path) -> None:
    with contextlib.closing(connect(db, read_only=False)) as conn:
        conn.execute("VACUUM INTO ?", (str(out),))


def stepped(db: Path, out: Path, limit_s: float) -> int:
    """The backup API in steps of 1,024 pages; returns how often SQLite restarted it.
    Raises TimeoutError past limit_s."""
    restarts, last, started = 0, None, time.monotonic()

    def progress(_status: int, remaining: int, _total: int) -> None:
        nonlocal restarts, last
        if last is not None and remaining > last:
            restarts += 1
        last = remaining
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"not done after {limit_s:g} s ({restarts} restarts)")

    src, dst = connect(db, read_only=False), sqlite3.connect(out)
    with contextlib.closing(src), contextlib.closing(dst):
        src.backup(dst, pages=1024, progress=progress, sleep=0.001)
    return restarts


@dataclass
class Runs:
    """One way of copying, measured one or more times."""

    method: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # CPU seconds of the copying thread
    notes: list[str] = field(default_factory=list)
    wal_mb: float = 0.0
    quiet: tuple[list[float], int, float] = ([], 0, 0.0)
    during: tuple[list[float], int, float] = ([], 0, 0.0)

    def row(self) -> str:
        return (
            f"| {self.method} | {statistics.median(self.seconds):.2f} | "
            f"{statistics.median(self.cpu):.2f} | {self.notes[-1]} | {figures(*self.quiet)} | "
            f"{figures(*self.during)} | {self.wal_mb:.0f} MB |"
        )


def described(copy: Path) -> str:
    with contextlib.closing(connect(copy, read_only=True)) as conn:
        facts = read_facts(conn, copy.stat().st_size)
    return f"{facts.total_experiments:,} experiments, {facts.size_bytes / 1e6:.0f} MB"


def measure(
    runs: Runs, writer: Writer, db: Path, action: Callable[[], str], quiet_s: float
) -> None:
    """A quiet stretch of writes alone, then the action while the writer goes on."""
    time.sleep(quiet_s)
    q_end = time.monotonic()
    lat, ended = writer.window(q_end - quiet_s, q_end)
    runs.quiet = (runs.quiet[0] + lat, runs.quiet[1] + ended, runs.quiet[2] + quiet_s)
    with WalWatch(db) as wal:
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            note = action()
        except TimeoutError as exc:
            note = str(exc)
        t1, c1 = time.monotonic(), time.thread_time()
    lat, ended = writer.window(t0, t1)
    runs.during = (runs.during[0] + lat, runs.during[1] + ended, runs.during[2] + t1 - t0)
    runs.seconds.append(t1 - t0)
    runs.cpu.append(c1 - c0)
    runs.notes.append(note)
    runs.wal_mb = max(runs.wal_mb, wal.largest / 1e6)
    print(f"  {runs.method}: {t1 - t0:.2f} s, {c1 - c0:.2f} s CPU, {note}", flush=True)


def load(url: str, token: str, n: int) -> float:
    rng = random.Random(1)
    now = time.time() - 3 * 3600  # finished_at up to 2 h after created_at: never ahead
    bodies = [make_batch(i, min(1000, n - i), now, rng, n) for i in range(0, n, 1000)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    t0 = time.monotonic()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for body in bodies:
            http.post("/api/v1/experiments/batch", content=body).raise_for_status()
    return n / (time.monotonic() - t0)


def run(
    n: int, workdir: Path, quiet_s: float, step_limit: float, rounds: int, write_rate: float
) -> str:
    db = workdir / f"live-{n}.db"
    token = token_for(str(db))
    port = free_port()
    proc = start_server(str(db), port)
    try:
        url = f"http://127.0.0.1:{port}"
        rate = load(url, token, n)
        print(f"N={n:,}: loaded at {rate:,.0f}/s; {db.stat().st_size / 1e6:.0f} MB", flush=True)
        writer = Writer(url, token, write_rate)
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        online = Runs("backup API, one step (`codecdash backup`)")
        check = Runs("verify the copy (`--verify`)")
        vacuum = Runs("`VACUUM INTO`")
        steps = Runs("backup API, steps of 1,024 pages")
        out = workdir / f"copy-{n}.db"

        def copy() -> str:
            out.unlink(missing_ok=True)
            facts = copy_online(db, out).facts
            return f"{facts.total_experiments:,} experiments, {facts.size_bytes / 1e6:.0f} MB"

        def checked() -> str:
            verdict = verify(out)
            return "ok" if verdict.ok else "; ".join(verdict.problems)

        def vacuumed() -> str:
            out.unlink(missing_ok=True)
            vacuum_into(db, out)
            return described(out)

        def stepped_copy() -> str:
            out.unlink(missing_ok=True)
            restarts = stepped(db, out, step_limit)
            return f"{described(out)}, after {restarts} restarts"

        for _ in range(rounds):  # alternated: the store grows as the writer goes on
            measure(online, writer, db, copy, quiet_s)
            measure(check, writer, db, checked, quiet_s)
            measure(vacuum, writer, db, vacuumed, quiet_s)
        measure(steps, writer, db, stepped_copy, quiet_s)
        writer.stop.set()
        thread.join(60)
        if writer.error:
            raise writer.error[0]
    finally:
        proc.terminate()
        proc.wait(30)
    header = (
        "| copy | seconds | CPU s | result | writes before: p50 / p99 / max ms, items/s | "
        "writes during: p50 / p99 / max ms, items/s | WAL peak |\n"
        "|---|---|---|---|---|---|---|"
    )
    rows = "\n".join(r.row() for r in (online, check, vacuum, steps))
    return f"N = {n:,} (loaded at {rate:,.0f}/s):\n\n{header}\n{rows}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="experiments (repeatable)")
    parser.add_argument("--quiet-seconds", type=float, default=3.0)
    parser.add_argument(
        "--write-rate", type=float, default=2000, help="experiments a second the writer adds"
    )
    parser.add_argument("--step-limit", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each one-step copy")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    outputs = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in args.n or [100_000]:
            outputs.append(
                run(
                    n,
                    Path(tmp),
                    args.quiet_seconds,
                    args.step_limit,
                    args.rounds,
                    args.write_rate,
                )
            )
            for path in Path(tmp).iterdir():  # room for the next N
                path.unlink()
    print("\n\n".join(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
