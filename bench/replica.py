"""The AWS read replica at N experiments, against moto's server on this machine: the size of
the object, what one publication (a write) costs, the first download of a reader, a
conditional GET that finds nothing new, and the list queries over the copy.

    .venv/bin/python bench/replica.py [N]      (default 10,000)

moto is local: S3's own latency (tens of ms a request, more per MB) comes on top on AWS.
docs/aws.md ("The read replica") quotes a run.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUCKET = "codecdash-bench-read-model"
KEY = "read-model/codecdash.db"
STATUSES = ("completed", "completed", "failed", "running", "queued", "completed")


def experiments(n: int) -> list[Any]:
    from codecdash.models import ExperimentIn

    curve = [{"bitrate_kbps": 250.0 * k, "psnr_db": 30.0 + 1.6 * k} for k in range(1, 9)]
    out = []
    for i in range(n):
        status = STATUSES[i % len(STATUSES)]
        values: dict[str, Any] = {
            "id": f"e{i:07d}",
            "name": f"{['ssf', 'dcvc', 'elf'][i % 3]}2020 lambda={0.001 * (i % 7 + 1):.3f}",
            "status": status,
            "created_at": time.time() - 60 * (n - i),
            "tags": ["uvg", "mse"],
            "params": {"lambda": 0.001 * (i % 7 + 1)},
            "worker_id": f"train-{i % 8:02d}",
        }
        if status == "completed":
            shift = (i % 97) / 50
            values |= {
                "psnr_db": 30 + (i % 61) / 7,
                "bitrate_kbps": 900.0 + i % 500,
                "rd_points": [{**p, "psnr_db": p["psnr_db"] + shift} for p in curve],
            }
        values["created_at"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(values["created_at"])
        )
        out.append(ExperimentIn.model_validate(values))
    return out


def median_ms(call: Callable[[], Any], times: int = 10) -> float:
    taken = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        taken.append(time.perf_counter() - start)
    return round(statistics.median(taken) * 1000, 1)


def main(n: int) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3

    from codecdash.config import Settings
    from codecdash.experiments.anchors import save_anchor
    from codecdash.experiments.readmodel import ExperimentsReadModel
    from codecdash.experiments.service import ExperimentService
    from codecdash.sources.aws.replica import ReplicaCopy, publish
    from codecdash.store import ListQuery, Store
    from codecdash.store.reads import SqlExperiments

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    folder = Path(tempfile.mkdtemp(prefix="codecdash-bench-"))
    settings = Settings(database_url=str(folder / "writer.db"), aws_read_model_bucket=BUCKET)
    writer = Store(settings.database_url)
    anchor = [{"bitrate_kbps": 250.0 * k, "psnr_db": 30.5 + 1.6 * k} for k in range(1, 9)]
    save_anchor(writer, settings, "anchor", None, anchor)
    service = ExperimentService(writer, settings)
    items = experiments(n)
    for start in range(0, n, 1000):
        service.batch(items[start : start + 1000])

    started = time.perf_counter()
    etag = publish(writer, s3, BUCKET, KEY, None)
    print(f"experiments                        {n:,}")
    print(f"publish (backup copy + PUT), s     {time.perf_counter() - started:.3f}")
    started = time.perf_counter()
    service.put("one-more", items[0])
    etag = publish(writer, s3, BUCKET, KEY, etag)
    print(f"one write + publish, s             {time.perf_counter() - started:.3f}")

    reader = ReplicaCopy.from_settings(settings, s3, folder / "reader" / "replica.db")
    started = time.perf_counter()
    reader.refresh(force=True)
    print(f"first download + install, s        {time.perf_counter() - started:.3f}")
    print(f"replica size, MB                   {reader.path.stat().st_size / 1e6:.1f}")
    print(f"conditional GET (304), ms          {median_ms(lambda: reader.refresh(force=True))}")
    model = ExperimentsReadModel(SqlExperiments(reader.store), settings)
    for query in (
        ListQuery(limit=25),
        ListQuery(sort="-psnr_db", limit=25),
        ListQuery(q="dcvc", limit=25),
        ListQuery(sort="bd_rate_pct", status=["completed"], limit=50),
    ):
        label = f"list sort={query.sort} q={query.q or ''}"
        print(f"{label:<35}{median_ms(lambda q=query: model.list(q))} ms")
    reader.close()
    writer.close()
    server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
