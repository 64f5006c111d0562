"""Ingest cost in CPU seconds, in-process: the write path (validation, BD-rate derivation,
upsert, summaries) without HTTP, timed with the process' CPU clock so that a busy machine
moves it less than wall time.

    .venv/bin/python bench/ingest_cpu.py --n 20000
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python bench/ingest_cpu.py --n 20000

Writes N experiments (batches of 1,000, bodies as `bench/core.py` makes them, parsed as the
batch endpoint parses them) into a fresh SQLite file and prints experiments per CPU second
and per wall second.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import orjson

from codecdash.config import Settings
from codecdash.experiments.service import ExperimentService
from codecdash.models import ExperimentBatch
from codecdash.store import Store
from core import make_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(42)
    now = time.time()
    bodies = [make_batch(i, 1000, now, rng, args.n) for i in range(0, args.n, 1000)]
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "ingest.db")
        store = Store(url)
        service = ExperimentService(store, Settings(database_url=url))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for body in bodies:
            service.batch(ExperimentBatch.model_validate_json(body).items)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        store.close()
    print(
        orjson.dumps({"n": args.n, "per_cpu_s": args.n / cpu, "per_wall_s": args.n / wall}).decode()
    )


if __name__ == "__main__":
    main()
