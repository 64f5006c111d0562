"""The experiments' read replica on AWS, against moto: the page's every question answers the
same through the Lambda as over `codecdash serve` for the same data (parity), the stream
function keeps the replica current (insert, modify, remove, anchors), one writer at a time
wins over a concurrent one, the API refreshes with one conditional GET, S3's failures and a
newer schema keep the copy in hand. The commands: tests/test_aws_replica_cli.py."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

import codecdash
from aws_fixtures import *  # noqa: F403
from aws_fixtures import (
    AWS_WARNINGS,
    READ_MODEL,
    SITE,
    TABLE,
    AwsEnv,
    create_experiments_table,
    lambda_environment,
)
from codecdash import aws_clients, aws_lambda
from codecdash.api.app import create_app
from codecdash.config import Settings
from codecdash.experiments.anchors import save_anchor
from codecdash.experiments.query import SORTABLE
from codecdash.experiments.service import ExperimentService
from codecdash.models import ExperimentIn
from codecdash.results import read_result_file
from codecdash.sources.aws.replica import ReplicaConflict, ReplicaCopy, publish
from codecdash.sources.aws.replica_writer import ReplicaWriter, anchor_item, experiment_item
from codecdash.store import Store
from test_aws_lambda import body_of, http_event

pytestmark = [pytest.mark.aws, *(pytest.mark.filterwarnings(w) for w in AWS_WARNINGS)]

KEY = "read-model/codecdash.db"
UVG = Path(codecdash.__file__).parent / "data" / "rd-results" / "UVG-1080p"
ANCHOR = "x264-medium-tune-zerolatency"
START = 1_790_000_000.0  # 2026-09-21, fixed: both modes get the same times


def curve_of(name: str) -> list[dict[str, Any]]:
    points = read_result_file(UVG / f"{name}.json").points
    return [{k: v for k, v in p.items() if v is not None} for p in points]


CURVES = [p.stem for p in sorted(UVG.glob("*.json"))]


def dataset() -> list[ExperimentIn]:
    """36 experiments with everything the page filters, sorts and searches on."""
    statuses = ["completed", "completed", "failed", "running", "queued", "completed"]
    out = []
    for i in range(36):
        status = statuses[i % len(statuses)]
        done = status in ("completed", "failed")
        values: dict[str, Any] = {
            "id": f"exp-{i:02d}",
            "name": f"{['ssf', 'dcvc', 'elf'][i % 3]}2020 lambda={0.001 * (i % 7 + 1):.3f}",
            "status": status,
            "created_at": f"2026-09-21T{i // 4:02d}:{(i * 7) % 60:02d}:00Z",
            "started_at": f"2026-09-21T{i // 4:02d}:{(i * 7) % 60:02d}:30Z",
            "finished_at": f"2026-09-21T{i // 4 + 1:02d}:{(i * 11) % 60:02d}:00Z" if done else None,
            "worker_id": f"train-g5-{i % 4:02d}",
            "tags": [["uvg", "mse"], ["kodak"], ["uvg", "ms-ssim"]][i % 3],
            "params": {"lambda": 0.001 * (i % 7 + 1), "model": ["ssf", "dcvc", "elf"][i % 3]},
            "cost_usd": round(1.5 + i * 0.37, 2),
        }
        if status == "completed":
            values.update(
                psnr_db=round(30 + (i * 13 % 17) / 3, 3),
                ms_ssim=round(0.95 + (i % 5) / 200, 4),
                bpp=round(0.05 + (i % 9) / 50, 3),
                bitrate_kbps=900.0 + 37 * i,
                bitrate_reduction_pct=round(-20 + (i * 7 % 60), 1),
                rd_points=curve_of(CURVES[i % len(CURVES)]),
            )
        if status == "failed":
            values["error"] = "CUDA out of memory"
        out.append(ExperimentIn.model_validate(values))
    return out


# Every question the page asks of the list, and then some.
# Every sort the list offers but updated_at: when each store received the write, not the same
# instant in both modes.
SORTS = [field for field in SORTABLE if field != "updated_at"]
QUERIES: list[dict[str, Any]] = [
    {},
    *({"sort": s} for s in SORTS),
    *({"sort": f"-{s}"} for s in SORTS),
    {"status": "completed"},
    {"status": "failed,running"},
    {"q": "dcvc"},
    {"q": "exp-1"},
    {"q": "kodak"},
    {"tag": "uvg"},
    {"worker_id": "train-g5-02"},
    {"created_after": "2026-09-21T03:00:00Z", "created_before": "2026-09-21T06:00:00Z"},
    {"min_psnr_db": "33"},
    {"min_bitrate_reduction_pct": "10", "sort": "-bitrate_reduction_pct"},
    {"max_bd_rate_pct": "0", "sort": "bd_rate_pct"},
    {"status": "completed", "sort": "bd_rate_pct", "limit": "50"},  # the R-D section's
    {"q": "ssf", "status": "completed", "sort": "-psnr_db", "limit": "3"},
]

Get = Callable[[str, dict[str, Any] | None], tuple[int, Any]]


def normalized(body: Any) -> Any:
    """The answer less what differs by when each store received its writes or was asked
    (a running experiment's duration so far)."""
    if isinstance(body, dict):
        running = body.get("status") == "running"
        return {
            k: normalized(v)
            for k, v in body.items()
            if k not in ("updated_at", "generated_at") and not (running and k == "duration_s")
        }
    if isinstance(body, list):
        return [normalized(v) for v in body]
    if isinstance(body, float):
        return round(body, 9)
    return body


@pytest.fixture
def deployed(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AwsEnv]:
    """The table, its stream, the buckets and the functions' environment, on moto."""
    aws.client("s3").create_bucket(Bucket=SITE)
    aws.client("s3").create_bucket(Bucket=READ_MODEL)
    create_experiments_table(aws.client("dynamodb"), TABLE)
    lambda_environment(monkeypatch, tmp_path, CODECDASH_AWS_READ_MODEL_REFRESH_SECONDS="0")
    aws_clients._DEFAULT[None] = aws.factory()
    aws_lambda.reset()
    yield aws
    aws_lambda.reset()


def aws_get(path: str, query: dict[str, Any] | None = None) -> tuple[int, Any]:
    response = aws_lambda.handler(http_event(path, urlencode(query or {})), None)
    return response["statusCode"], json.loads(body_of(response))


def put_items(aws: AwsEnv, items: list[dict[str, Any]]) -> None:
    ddb = aws.client("dynamodb")
    for item in items:
        ddb.put_item(TableName=TABLE, Item=item)


def stream_records(aws: AwsEnv, write: Callable[[], None]) -> dict[str, Any]:
    """The stream's records of what `write` does, as the stream function receives them."""
    ddb, streams = aws.client("dynamodb"), aws.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    write()
    records = streams.get_records(ShardIterator=iterator)["Records"]
    return {
        "Records": [
            {**json.loads(json.dumps(r, default=str)), "eventSourceARN": arn} for r in records
        ]
    }


# -- parity ---------------------------------------------------------------------------------
@pytest.fixture
def both_modes(deployed: AwsEnv, tmp_path: Path) -> Iterator[tuple[Get, Get]]:
    """The same data in a local store behind `codecdash serve`'s app and in the table
    behind the Lambda; a request against each."""
    data = dataset()
    settings = Settings(database_url=str(tmp_path / "local.db"))
    store = Store(settings.database_url)
    save_anchor(store, settings, ANCHOR, "the anchor", curve_of(ANCHOR))
    writes = ExperimentService(store, settings)
    for item in data:
        writes.put(str(item.id), item)
    app = create_app(settings, store=store, sources=[], background=False)
    loop = asyncio.new_event_loop()  # not the thread's: mangum uses that one

    async def request(path: str, query: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            return await c.get(path, params=query)

    put_items(deployed, [anchor_item(ANCHOR, "the anchor", curve_of(ANCHOR))])
    put_items(deployed, [experiment_item(item, str(item.id)) for item in data])
    rebuilt = aws_lambda.stream_handler({"rebuild": True}, None)
    assert rebuilt == {"rebuilt": True, "total": len(data), "table": TABLE}

    def local_get(path: str, query: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = loop.run_until_complete(request(path, query or {}))
        return response.status_code, response.json()

    yield local_get, aws_get
    loop.close()
    store.close()


def every_page(get: Get, query: dict[str, Any]) -> list[Any]:
    """Each page of the list, following the cursors to the end."""
    pages = []
    params = {"limit": "7", **query}
    for _ in range(20):
        status, page = get("/api/v1/experiments", params)
        assert status == 200, page
        pages.append(page)
        if page["next_cursor"] is None:
            return pages
        params = {**params, "cursor": page["next_cursor"]}
    raise AssertionError(f"{query}: the pages never end")


def test_every_list_question_answers_the_same_on_aws(both_modes: tuple[Get, Get]) -> None:
    local_get, aws_get = both_modes
    for query in QUERIES:
        local_pages, aws_pages = every_page(local_get, query), every_page(aws_get, query)
        assert normalized(aws_pages) == normalized(local_pages), query
        ids = [e["id"] for page in local_pages for e in page["items"]]
        assert len(ids) == len(set(ids)) == local_pages[0]["total"] or "limit" in query, query
    total = every_page(aws_get, {})[0]["total"]
    assert total == 36


def test_one_experiment_anchors_and_bd_rates_answer_the_same_on_aws(
    both_modes: tuple[Get, Get],
) -> None:
    local_get, aws_get = both_modes
    paths: list[tuple[str, dict[str, Any] | None]] = [
        ("/api/v1/anchors", None),
        (f"/api/v1/anchors/{ANCHOR}", None),
        ("/api/v1/experiments/exp-05", None),
        ("/api/v1/experiments/exp-02", None),
        ("/api/v1/experiments/no-such-one", None),
        ("/api/v1/experiments/exp-05/bd-rate", {"anchor": ANCHOR, "quality": "psnr"}),
        ("/api/v1/experiments/exp-11/bd-rate", {"anchor": ANCHOR, "quality": "ms_ssim"}),
        ("/api/v1/experiments/exp-02/bd-rate", {"anchor": ANCHOR}),
    ]
    for path, query in paths:
        local_status, local_body = local_get(path, query)
        aws_status, aws_body = aws_get(path, query)
        assert (aws_status, normalized(aws_body)) == (local_status, normalized(local_body)), path
    status, anchors = aws_get("/api/v1/anchors", None)
    assert status == 200 and anchors["default"] == ANCHOR
    status, page = aws_get("/api/v1/experiments", {"sort": "bd_rate_pct", "status": "completed"})
    assert status == 200 and all(e["bd_rate_anchor"] == ANCHOR for e in page["items"])
    assert not math.isnan(page["items"][0]["bd_rate_pct"])


def test_the_snapshot_reads_the_same_read_model(both_modes: tuple[Get, Get]) -> None:
    local_get, aws_get = both_modes
    status, snapshot = aws_get("/api/v1/dashboard", None)
    assert status == 200
    summary = snapshot["summary"]
    assert summary["total_experiments"] == 36 and summary["completed"] == 18
    newest = local_get("/api/v1/experiments", {"limit": "20"})[1]["items"]
    assert [e["id"] for e in snapshot["recent_experiments"]] == [e["id"] for e in newest]
    source = next(s for s in snapshot["sources"] if s["name"] == "aws.experiments")
    assert source["ok"], source
    # The scheduled function: its own copy, the same figures in the snapshot CloudFront serves.
    written = aws_lambda.snapshot_handler({}, None)
    assert "aws.experiments" not in written["failing"]
    site = deployed_s3().get_object(Bucket=SITE, Key="api/v1/dashboard")["Body"].read()
    assert json.loads(site)["summary"]["total_experiments"] == 36


def deployed_s3() -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1")


# -- the stream keeps the replica current ---------------------------------------------------
def test_the_stream_keeps_the_replica_current(deployed: AwsEnv) -> None:
    ddb = deployed.client("dynamodb")
    first, second = dataset()[:2]

    def insert() -> None:
        put_items(deployed, [anchor_item(ANCHOR, None, curve_of(ANCHOR))])
        put_items(deployed, [experiment_item(first, "exp-00"), experiment_item(second, "b")])

    result = aws_lambda.stream_handler(stream_records(deployed, insert), None)
    assert result["experiments_written"] == 2 and result["anchors_changed"] == 1
    assert result["published"] and result["table"] == TABLE
    status, page = aws_get("/api/v1/experiments", {"sort": "id"})
    assert status == 200 and [e["id"] for e in page["items"]] == ["b", "exp-00"]
    assert page["items"][1]["bd_rate_anchor"] == ANCHOR

    modified = first.model_copy(update={"name": "renamed", "psnr_db": 41.0})

    def modify() -> None:
        put_items(deployed, [experiment_item(modified, "exp-00")])

    aws_lambda.stream_handler(stream_records(deployed, modify), None)
    status, one = aws_get("/api/v1/experiments/exp-00")
    assert status == 200 and one["name"] == "renamed" and one["psnr_db"] == 41.0
    status, best = aws_get("/api/v1/experiments", {"sort": "-psnr_db", "limit": "1"})
    assert best["items"][0]["id"] == "exp-00"

    def remove() -> None:
        ddb.delete_item(TableName=TABLE, Key={"id": {"S": "exp-00"}})
        ddb.delete_item(TableName=TABLE, Key={"id": {"S": f"__codecdash_anchor__/{ANCHOR}"}})

    result = aws_lambda.stream_handler(stream_records(deployed, remove), None)
    assert result["experiments_removed"] == 1 and result["anchors_changed"] == 1
    assert aws_get("/api/v1/experiments/exp-00")[0] == 404
    status, page = aws_get("/api/v1/experiments", {"sort": "-psnr_db"})
    assert page["total"] == 1 and [e["id"] for e in page["items"]] == ["b"]
    status, anchors = aws_get("/api/v1/anchors")
    assert anchors["items"] == [] and anchors["default"] is None


def test_the_snapshots_versions_follow_the_replica(deployed: AwsEnv) -> None:
    """The page reads its sections again on the snapshot's versions: a running experiment's
    progress moves `experiments_version` only, a completion `results_version` too, and a
    rebuilt replica never repeats a version an earlier one had."""

    def versions() -> tuple[str, str]:
        aws_lambda.snapshot_handler({}, None)
        body = deployed_s3().get_object(Bucket=SITE, Key="api/v1/dashboard")["Body"].read()
        snap = json.loads(body)
        return snap["experiments_version"], snap["results_version"]

    running = next(e for e in dataset() if e.status == "running")
    put_items(deployed, [experiment_item(running, "run")])
    aws_lambda.stream_handler({"rebuild": True}, None)
    seen = [versions()]
    for update in ({"psnr_db": 31.0}, {"status": "completed", "psnr_db": 33.0}):
        changed = running.model_copy(update=update)
        batch = stream_records(
            deployed,
            lambda c=changed: put_items(  # type: ignore[misc]
                deployed, [experiment_item(c, "run")]
            ),
        )
        aws_lambda.stream_handler(batch, None)
        seen.append(versions())
    assert seen[1][0] != seen[0][0] and seen[1][1] == seen[0][1]  # progress
    assert seen[2][0] != seen[1][0] and seen[2][1] != seen[1][1]  # a completion
    for _ in range(2):
        aws_lambda.stream_handler({"rebuild": True}, None)
        seen.append(versions())
    assert len({v for pair in seen[2:] for v in pair}) == 2 * len(seen[2:]), seen


def test_a_bad_item_is_skipped_not_blocking_the_stream(deployed: AwsEnv) -> None:
    ddb = deployed.client("dynamodb")

    def write() -> None:
        ddb.put_item(TableName=TABLE, Item={"id": {"S": "bad"}, "status": {"S": "exploded"}})
        ddb.put_item(TableName=TABLE, Item={"id": {"S": "good"}, "status": {"S": "queued"}})

    result = aws_lambda.stream_handler(stream_records(deployed, write), None)
    assert result["skipped"] == 1 and result["experiments_written"] == 1
    assert aws_get("/api/v1/experiments/good")[0] == 200
    assert aws_get("/api/v1/experiments/bad")[0] == 404


def test_a_retried_batch_changes_nothing(deployed: AwsEnv) -> None:
    first = dataset()[0]
    event = stream_records(
        deployed, lambda: put_items(deployed, [experiment_item(first, "exp-00")])
    )
    aws_lambda.stream_handler(event, None)
    status, before = aws_get("/api/v1/experiments/exp-00")
    aws_lambda.stream_handler(event, None)
    status, after = aws_get("/api/v1/experiments/exp-00")
    assert status == 200 and normalized(after) == normalized(before)
    assert aws_get("/api/v1/experiments")[1]["total"] == 1


# -- one writer wins; readers refresh cheaply -------------------------------------------------
def test_a_concurrent_writer_reapplies_on_the_new_version(deployed: AwsEnv, tmp_path: Path) -> None:
    settings = Settings(
        aws_read_model_bucket=READ_MODEL, aws_experiments_table=TABLE, database_url="x.db"
    )
    s3 = deployed.client("s3")
    one = ReplicaWriter(settings, s3, tmp_path / "one" / "replica.db")
    two = ReplicaWriter(settings, s3, tmp_path / "two" / "replica.db")
    a, b = dataset()[:2]

    def record(item: ExperimentIn, key: str) -> dict[str, Any]:
        return {
            "eventName": "INSERT",
            "dynamodb": {"Keys": {"id": {"S": key}}, "NewImage": experiment_item(item, key)},
        }

    assert one.apply([record(a, "a")])["published"]
    two.copy.refresh(force=True)
    assert one.apply([record(b, "b")])["published"]
    # `two` holds the version before b's: its publish conflicts, so it fetches b's and
    # applies its batch again on top of it.
    assert two.apply([record(a.model_copy(update={"name": "again"}), "c")])["published"]
    reader = ReplicaCopy.from_settings(settings, s3, tmp_path / "reader" / "replica.db")
    reader.refresh(force=True)
    assert {r["id"] for r in reader.store.list_experiments(_all())[0]} == {"a", "b", "c"}
    with pytest.raises(ReplicaConflict):
        publish(reader.store, s3, READ_MODEL, KEY, '"stale-etag"')
    for held in (one.copy, two.copy, reader):
        held.close()


def _all() -> Any:
    from codecdash.store import ListQuery

    return ListQuery(limit=100)


def test_the_api_refreshes_with_one_conditional_get(
    deployed: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODECDASH_AWS_READ_MODEL_REFRESH_SECONDS", "3600")
    first, second = dataset()[:2]
    put_items(deployed, [experiment_item(first, "exp-00")])
    aws_lambda.stream_handler({"rebuild": True}, None)
    assert aws_get("/api/v1/experiments")[1]["total"] == 1
    replica = aws_lambda._replica
    assert replica.downloads == 1
    deployed.calls.clear()
    for _ in range(5):
        assert aws_get("/api/v1/experiments", {"sort": "-psnr_db", "q": "ssf"})[0] == 200
    assert not any(c.startswith("s3.") for c in deployed.calls)  # within the interval
    assert not any(c.startswith("dynamodb.") for c in deployed.calls)  # never a scan

    # A new version: served once the interval passes, with one GET that downloads it.
    aws_lambda.stream_handler(
        stream_records(deployed, lambda: put_items(deployed, [experiment_item(second, "exp-01")])),
        None,
    )
    assert aws_get("/api/v1/experiments")[1]["total"] == 1  # stale within the interval
    replica.every_s = 0.0
    deployed.calls.clear()
    assert aws_get("/api/v1/experiments")[1]["total"] == 2
    assert deployed.calls["s3.get_object"] == 1 and replica.downloads == 2
    deployed.calls.clear()
    assert aws_get("/api/v1/experiments")[1]["total"] == 2
    assert deployed.calls["s3.get_object"] == 1 and replica.downloads == 2  # 304


def test_before_the_first_publication_the_lists_are_empty_and_the_snapshot_says_why(
    deployed: AwsEnv,
) -> None:
    status, page = aws_get("/api/v1/experiments")
    assert status == 200 and page["items"] == [] and page["total"] == 0
    status, snapshot = aws_get("/api/v1/dashboard")
    source = next(s for s in snapshot["sources"] if s["name"] == "aws.experiments")
    assert not source["ok"] and "rebuild-read-model" in source["error"]


def test_an_s3_outage_keeps_serving_the_copy_in_hand(
    deployed: AwsEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_items(deployed, [experiment_item(dataset()[0], "exp-00")])
    aws_lambda.stream_handler({"rebuild": True}, None)
    assert aws_get("/api/v1/experiments")[1]["total"] == 1
    monkeypatch.setattr(aws_lambda._replica, "bucket", "no-such-bucket")
    status, page = aws_get("/api/v1/experiments")
    assert status == 200 and page["total"] == 1
    error = aws_lambda._replica.error
    assert error and "NoSuchBucket" in error and "no-such-bucket" not in error


def test_a_replica_of_a_newer_schema_is_not_installed(deployed: AwsEnv, tmp_path: Path) -> None:
    """A half-deployed release: the writer's code is newer than a reader's. The reader keeps
    the copy it has and says why."""
    import sqlite3

    put_items(deployed, [experiment_item(dataset()[0], "exp-00")])
    aws_lambda.stream_handler({"rebuild": True}, None)
    assert aws_get("/api/v1/experiments")[1]["total"] == 1
    newer = tmp_path / "newer.db"
    newer.write_bytes(deployed.client("s3").get_object(Bucket=READ_MODEL, Key=KEY)["Body"].read())
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
        conn.execute("DELETE FROM experiments")
    deployed.client("s3").put_object(Bucket=READ_MODEL, Key=KEY, Body=newer.read_bytes())
    status, page = aws_get("/api/v1/experiments")
    assert status == 200 and page["total"] == 1  # the copy in hand
    assert "newer than this codecdash understands" in (aws_lambda._replica.error or "")
