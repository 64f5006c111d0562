"""The store, run on both backends (SQLite and PostgreSQL) through the `store` fixture."""

from __future__ import annotations

import calendar
import itertools
import math
import random
import string
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from codecdash.config import Settings
from codecdash.experiments.query import SORTABLE
from codecdash.experiments.readmodel import experiment
from codecdash.models import CostRecord, ExperimentIn, ExperimentPatch, Heartbeat
from codecdash.snapshot import SnapshotBuilder
from codecdash.sources.local import local_sources
from codecdash.store import (
    BadCursor,
    Conflict,
    ListQuery,
    Store,
    TokenExists,
    progress,
    schema,
    summaries,
    tokens,
)
from codecdash.store import experiments as experiments_mod
from codecdash.timefmt import iso
from conftest import PgServer, writes

# A fixed "now" in the middle of a month, for the time-dependent figures.
NOW = float(calendar.timegm((2025, 3, 14, 12, 0, 0)))
T0 = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)


def exp(**fields: Any) -> ExperimentIn:
    return ExperimentIn.model_validate(fields)


def ts(dt: datetime) -> float:
    return dt.timestamp()


async def snapshot(store: Store, now: float = NOW, **settings: Any) -> dict[str, Any]:
    s = Settings(database_url="unused.db", **settings)
    return await SnapshotBuilder(s, local_sources(store, s)).build(now=now)


# -- experiments: create, get, put, patch ---------------------------------------------
def test_create_and_get_round_trip(store: Store) -> None:
    row = writes(store).create(
        exp(
            id="e-1",
            name="ssf λ=0.013",
            status="completed",
            created_at="2025-03-14T10:00:00Z",
            started_at="2025-03-14T10:00:00Z",
            finished_at="2025-03-14T11:30:00Z",
            bitrate_reduction_pct=41.5,
            psnr_db=35.25,
            ms_ssim=0.9712,
            bpp=0.12,
            bitrate_kbps=812.5,
            cost_usd=3.5,
            worker_id="w-1",
            params={"lambda": 0.013, "nested": {"a": [1, 2]}},
            tags=["uvg", "mse"],
            rd_points=[{"bitrate_kbps": 100.0, "psnr_db": 30.0}],
        )
    )
    assert row["id"] == "e-1"
    got = store.get_experiment("e-1")
    assert got is not None
    out = experiment(got)
    assert out["name"] == "ssf λ=0.013"
    assert out["status"] == "completed"
    assert out["created_at"] == "2025-03-14T10:00:00.000Z"
    assert out["finished_at"] == "2025-03-14T11:30:00.000Z"
    assert out["duration_s"] == 5400.0
    assert out["params"] == {"lambda": 0.013, "nested": {"a": [1, 2]}}
    assert out["tags"] == ["uvg", "mse"]
    assert [{k: v for k, v in p.items() if v is not None} for p in out["rd_points"]] == [
        {"bitrate_kbps": 100.0, "psnr_db": 30.0}
    ]
    for name in ("bitrate_reduction_pct", "psnr_db", "ms_ssim", "bpp", "bitrate_kbps", "cost_usd"):
        assert isinstance(out[name], float)
    assert store.get_experiment("missing") is None


def test_times_are_iso_to_the_millisecond_as_datetime_writes_them() -> None:
    """The looked-up formatting of ``iso`` against datetime's, at the edges and at random."""

    def reference(t: float) -> str:
        since = timedelta(milliseconds=round(t * 1000))
        return (datetime(1970, 1, 1) + since).isoformat(timespec="milliseconds") + "Z"

    rng = random.Random(7)
    edges = [0.0, 0.0005, 0.9995, 59.9996, 86399.9996, -0.25, -86400.5, 951782400.0]
    edges += [ts(datetime(y, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)) for y in (1999, 2024)]
    for t in edges + [rng.uniform(-2e9, 4e9) for _ in range(20_000)]:
        assert iso(t) == reference(t), t


def test_create_generates_an_id_and_refuses_a_duplicate(store: Store) -> None:
    first = writes(store).create(exp(name="a"))
    second = writes(store).create(exp(name="b"))
    assert first["id"] and second["id"] and first["id"] != second["id"]
    version = store.version()
    with pytest.raises(Conflict):
        writes(store).create(exp(id=first["id"], name="again"))
    assert store.version() == version
    got = store.get_experiment(first["id"])
    assert got is not None and got["name"] == "a"


def test_server_sets_times_by_status(store: Store) -> None:
    running = writes(store).create(exp(id="r", status="running"))
    assert running["started_at"] is not None and running["finished_at"] is None
    done = writes(store).create(exp(id="d", status="failed", error="CUDA OOM"))
    assert done["finished_at"] is not None
    queued = writes(store).create(exp(id="q"))
    assert queued["status"] == "queued"
    assert queued["started_at"] is None and queued["finished_at"] is None
    assert queued["created_at"] is not None


def test_put_creates_then_replaces_and_keeps_created_at(store: Store) -> None:
    body = exp(name="x", status="running", psnr_db=30.0, created_at="2025-03-01T00:00:00Z")
    row, created = writes(store).put("p-1", body)
    assert created and row["name"] == "x"
    row, created = writes(store).put("p-1", exp(name="y", status="completed"))
    assert not created
    got = store.get_experiment("p-1")
    assert got is not None
    assert got["name"] == "y" and got["status"] == "completed"
    assert got["psnr_db"] is None  # replaced, not merged
    assert got["created_at"] == ts(datetime(2025, 3, 1, tzinfo=UTC))
    _, _, total = store.list_experiments(ListQuery(status=["running"]))
    assert total == 0
    _, _, total = store.list_experiments(ListQuery(status=["completed"]))
    assert total == 1


def test_put_twice_is_idempotent(store: Store) -> None:
    body = exp(
        name="retry", status="completed", psnr_db=31.0, bitrate_reduction_pct=20.0, tags=["a"]
    )
    first, _ = writes(store).put("idem", body)
    version = store.version()
    second, created = writes(store).put("idem", body)
    assert not created
    a, b = dict(first), dict(second)
    a.pop("updated_at"), b.pop("updated_at")
    assert a == b
    assert store.version() == version + 1  # a write, but nothing else changed
    _, _, total = store.list_experiments(ListQuery())
    assert total == 1


def test_patch_changes_only_the_given_fields(store: Store) -> None:
    writes(store).create(exp(id="m", name="n", status="running", psnr_db=30.0, tags=["t"]))
    row = writes(store).patch("m", ExperimentPatch.model_validate({"psnr_db": 31.5}))
    assert row is not None
    got = store.get_experiment("m")
    assert got is not None
    assert got["psnr_db"] == 31.5 and got["name"] == "n" and got["status"] == "running"
    # null clears a field; status cannot be cleared
    writes(store).patch("m", ExperimentPatch.model_validate({"name": None, "status": None}))
    got = store.get_experiment("m")
    assert got is not None and got["name"] is None and got["status"] == "running"
    writes(store).patch("m", ExperimentPatch.model_validate({"status": "completed"}))
    got = store.get_experiment("m")
    assert got is not None and got["status"] == "completed" and got["finished_at"] is not None
    assert got["duration_s"] is not None and got["duration_s"] >= 0
    assert writes(store).patch("nope", ExperimentPatch()) is None


def test_the_same_patch_twice_gives_the_same_result(store: Store) -> None:
    writes(store).create(exp(id="pp", status="running"))
    patch = ExperimentPatch.model_validate({"status": "completed", "psnr_db": 33.0})
    first = writes(store).patch("pp", patch) or {}
    second = writes(store).patch("pp", patch) or {}
    first.pop("updated_at"), second.pop("updated_at")
    assert first == second


def test_a_new_summary_is_one_entry(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write hands each summary of SUMMARIES the rows it stores and, by id, the rows
    they replace with the columns the summary needs, inside the write's transaction."""
    seen: list[tuple[list[str], dict[str, dict[str, Any]]]] = []

    class CostSeen:
        needs = ("cost_usd",)

        def apply(self, conn: Any, rows: Any, old: Any) -> None:
            seen.append(([r["id"] for r in rows], {i: dict(o) for i, o in old.items()}))
            conn.exec_driver_sql("SELECT 1")  # the write's own connection

    monkeypatch.setattr(summaries, "SUMMARIES", (*summaries.SUMMARIES, CostSeen()))
    writes(store).batch([exp(id="s1", cost_usd=1.5), exp(id="s2")])
    writes(store).put("s1", exp(cost_usd=2.0))
    assert seen[0] == (["s1", "s2"], {})
    assert seen[1][0] == ["s1"] and seen[1][1]["s1"]["cost_usd"] == 1.5
    assert writes(store).create(exp(id="s3"))["id"] == "s3"  # the others still kept
    _, _, total = store.list_experiments(ListQuery(status=["queued"]))
    assert total == 3


# -- batch ---------------------------------------------------------------------------
def test_batch_upserts_and_the_last_duplicate_wins(store: Store) -> None:
    writes(store).create(exp(id="b-0", name="old"))
    n = writes(store).batch(
        [
            exp(id="b-0", name="new"),
            exp(id="b-1", name="one"),
            exp(id="b-1", name="one again", status="completed"),
        ]
    )
    assert n == 3
    assert (store.get_experiment("b-0") or {})["name"] == "new"
    got = store.get_experiment("b-1") or {}
    assert got["name"] == "one again" and got["status"] == "completed"
    _, _, total = store.list_experiments(ListQuery())
    assert total == 2
    _, _, completed = store.list_experiments(ListQuery(status=["completed"]))
    assert completed == 1


def test_batch_is_all_or_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    writes(store).create(exp(id="keep", name="before", status="running"))
    version = store.version()

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    # Fail after the rows were written, inside the same transaction.
    monkeypatch.setattr(progress, "recompute_hours", boom)
    with pytest.raises(RuntimeError):
        writes(store).batch(
            [
                exp(id="keep", name="after", status="completed", psnr_db=40.0),
                exp(id="new-1", status="completed"),
            ]
        )
    monkeypatch.undo()
    assert store.version() == version
    assert (store.get_experiment("keep") or {})["name"] == "before"
    assert store.get_experiment("new-1") is None
    _, _, total = store.list_experiments(ListQuery())
    assert total == 1
    _, _, running = store.list_experiments(ListQuery(status=["running"]))
    assert running == 1


def test_every_write_bumps_the_data_version_and_tells_listeners(store: Store) -> None:
    calls: list[int] = []
    store.on_change(lambda: calls.append(1))
    v0 = store.version()
    writes(store).create(exp(id="v"))
    writes(store).put("v", exp(name="x"))
    writes(store).patch("v", ExperimentPatch.model_validate({"name": "y"}))
    writes(store).batch([exp(id="v2")])
    store.heartbeat(Heartbeat(worker_id="w", role="training").model_dump())
    store.add_costs([CostRecord(component="other", amount_usd=1.0).model_dump()])
    assert store.version() == v0 + 6
    assert len(calls) == 6


@pytest.mark.anyio
async def test_the_results_version_moves_only_with_what_the_results_read(store: Store) -> None:
    """The snapshot's `results_version` (what the page reads R-D, BD-rates and Compare again
    on) moves with completed experiments, R-D points and anchors; a running experiment's
    progress moves only `experiments_version`."""

    async def versions() -> tuple[str, str]:
        snap = await snapshot(store)
        return snap["experiments_version"], snap["results_version"]

    points = [{"bpp": 0.1, "psnr_db": 30.0}, {"bpp": 0.2, "psnr_db": 32.0}]
    start = await versions()
    writes(store).create(exp(id="run", status="running", psnr_db=30.0))
    writes(store).put("run", exp(status="running", psnr_db=31.0))  # progress
    progress = await versions()
    assert progress[0] != start[0] and progress[1] == start[1]
    steps: list[tuple[str, Any]] = [
        (
            "R-D points of a running one",
            lambda: writes(store).put("run", exp(status="running", rd_points=points)),
        ),
        ("its points dropped again", lambda: writes(store).put("run", exp(status="running"))),
        ("a completion", lambda: writes(store).put("run", exp(status="completed", psnr_db=33.0))),
        (
            "a completed one changed",
            lambda: writes(store).patch("run", ExperimentPatch.model_validate({"name": "renamed"})),
        ),
        ("an anchor", lambda: store.put_anchor("x264", None, points)),
        ("an anchor removed", lambda: store.delete_anchor("x264")),
        ("a completed one deleted", lambda: store.curation.delete(["run"], "me")),
    ]
    before = progress
    for what, step in steps:
        step()
        now = await versions()
        assert now[0] != before[0] and now[1] != before[1], what
        before = now
    writes(store).create(exp(id="other", status="queued"))
    store.heartbeat(Heartbeat(worker_id="w", role="training").model_dump())
    after = await versions()
    assert after[0] != before[0] and after[1] == before[1]


# -- listing: filters, sort, keyset pagination ---------------------------------------
def _fill_for_listing(store: Store) -> list[dict[str, Any]]:
    items = []
    statuses = ["queued", "running", "completed", "failed", "cancelled"]
    for i in range(23):
        fields: dict[str, Any] = {
            "id": f"x-{i:02d}",
            "name": f"Run {'Alpha' if i % 3 == 0 else 'beta'} {i}",
            "status": statuses[i % 5],
            # ties on created_at (pairs), so the id tie-break matters
            "created_at": (T0 - timedelta(hours=i // 2)).isoformat(),
            "worker_id": f"w-{i % 4}",
            "tags": ["even"] if i % 2 == 0 else ["odd", "x"],
        }
        if i % 4 != 0:  # some nulls in every numeric column
            fields.update(
                psnr_db=30.0 + (i % 7),
                bitrate_reduction_pct=float(i % 6) * 10,
                ms_ssim=0.9 + (i % 5) / 100,
                bpp=0.1 * (i % 3 + 1),
                bitrate_kbps=100.0 * (i % 8 + 1),
                cost_usd=float(i % 3),
            )
        if fields["status"] in ("completed", "failed", "cancelled", "running"):
            fields["started_at"] = (T0 - timedelta(hours=i // 2, minutes=-5)).isoformat()
        if fields["status"] in ("completed", "failed", "cancelled"):
            fields["finished_at"] = (T0 - timedelta(hours=i // 2, minutes=-5 - i)).isoformat()
        items.append(fields)
    writes(store).batch([exp(**f) for f in items])
    rows = []
    for f in items:
        got = store.get_experiment(f["id"])
        assert got is not None
        rows.append(got)
    return rows


def _expected_order(rows: list[dict[str, Any]], sort: str) -> list[str]:
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    present = [r for r in rows if r[name] is not None]
    missing = [r for r in rows if r[name] is None]
    present.sort(key=lambda r: (r[name], r["id"]), reverse=descending)
    missing.sort(key=lambda r: r["id"], reverse=descending)
    return [r["id"] for r in present + missing]


def _all_pages(store: Store, query: ListQuery) -> tuple[list[str], int]:
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        query.cursor = cursor
        items, cursor, _total = store.list_experiments(query)
        ids += [r["id"] for r in items]
        pages += 1
        assert pages < 100, "pagination does not end"
        if cursor is None:
            return ids, pages


def test_every_sort_pages_through_every_row_once_in_order(store: Store) -> None:
    rows = _fill_for_listing(store)
    for sort in [f"{d}{n}" for n in SORTABLE for d in ("", "-")]:
        ids, pages = _all_pages(store, ListQuery(sort=sort, limit=6))
        assert ids == _expected_order(rows, sort), sort
        assert pages == math.ceil(len(rows) / 6), sort


def test_filters_and_total(store: Store) -> None:
    rows = _fill_for_listing(store)

    def ids(**kwargs: Any) -> tuple[set[str], int]:
        items, _, total = store.list_experiments(ListQuery(limit=1000, **kwargs))
        return {r["id"] for r in items}, total

    got, total = ids(status=["completed", "failed"])
    want = {r["id"] for r in rows if r["status"] in ("completed", "failed")}
    assert got == want and total == len(want)
    got, total = ids(q="alpha")  # case-insensitive, in the name
    want = {r["id"] for r in rows if "alpha" in r["name"].lower()}
    assert got == want and total == len(want) and want
    got, _ = ids(q="x-1")  # in the id
    assert got == {r["id"] for r in rows if "x-1" in r["id"]}
    got, _ = ids(worker_id="w-2")
    assert got == {r["id"] for r in rows if r["worker_id"] == "w-2"}
    got, _ = ids(tag="odd")
    assert got == {r["id"] for r in rows if "odd" in r["tags"]}
    got, _ = ids(tag="od")  # whole tags only
    assert got == set()
    got, _ = ids(min_psnr_db=34.0)
    assert got == {r["id"] for r in rows if r["psnr_db"] is not None and r["psnr_db"] >= 34}
    got, _ = ids(min_bitrate_reduction_pct=30.0)
    assert got == {
        r["id"]
        for r in rows
        if r["bitrate_reduction_pct"] is not None and r["bitrate_reduction_pct"] >= 30
    }
    cut = ts(T0 - timedelta(hours=3))
    got, total = ids(created_after=cut)
    assert got == {r["id"] for r in rows if r["created_at"] >= cut} and total == len(got)
    got, _ = ids(created_before=cut)
    assert got == {r["id"] for r in rows if r["created_at"] < cut}
    got, total = ids(status=["completed"], q="beta")
    want = {r["id"] for r in rows if r["status"] == "completed" and "beta" in r["name"]}
    assert got == want and total == len(want)
    # the total counts every match, not the page
    items, cursor, total = store.list_experiments(ListQuery(limit=2))
    assert len(items) == 2 and cursor is not None and total == len(rows)


def test_q_treats_wildcards_as_text(store: Store) -> None:
    writes(store).batch(
        [
            exp(id="a", name="100% done"),
            exp(id="b", name="1000 done"),
            exp(id="c", name="snake_case"),
            exp(id="d", name="snakeXcase"),
        ]
    )
    items, _, total = store.list_experiments(ListQuery(q="0%"))
    assert [r["id"] for r in items] == ["a"] and total == 1
    items, _, _ = store.list_experiments(ListQuery(q="e_c"))
    assert [r["id"] for r in items] == ["c"]


def test_a_foreign_cursor_is_refused(store: Store) -> None:
    writes(store).batch([exp(id=f"c{i}") for i in range(3)])
    for bad in ("not-a-cursor!", "e30", "WzEsMl0"):  # garbage, {}, [1,2]
        with pytest.raises(BadCursor):
            store.list_experiments(ListQuery(cursor=bad))
    with pytest.raises(ValueError):
        store.list_experiments(ListQuery(sort="error"))


def test_pagination_is_stable_while_rows_are_added(store: Store) -> None:
    writes(store).batch(
        [exp(id=f"s{i:02d}", created_at=(T0 - timedelta(minutes=i)).isoformat()) for i in range(10)]
    )
    items, cursor, _ = store.list_experiments(ListQuery(limit=4))
    seen = [r["id"] for r in items]
    # a newer row arrives between pages: keyset pages neither repeat nor skip rows
    writes(store).create(exp(id="s-new", created_at=(T0 + timedelta(minutes=1)).isoformat()))
    while cursor:
        items, cursor, _ = store.list_experiments(ListQuery(limit=4, cursor=cursor))
        seen += [r["id"] for r in items]
    assert seen == [f"s{i:02d}" for i in range(10)]


# -- the snapshot's experiment figures --------------------------------------------------
@pytest.mark.anyio
async def test_summary_counts_and_bests_count_completed_only(store: Store) -> None:
    snap = await snapshot(store)
    assert snap["summary"]["success_rate"] is None
    assert snap["summary"]["best_compression"] is None
    assert snap["summary"]["best_quality"] is None
    writes(store).batch(
        [
            exp(
                id="c1",
                status="completed",
                psnr_db=33.0,
                bitrate_reduction_pct=50.0,
                created_at=(T0 - timedelta(hours=1)).isoformat(),
            ),
            exp(
                id="c2",
                status="completed",
                psnr_db=34.5,
                bitrate_reduction_pct=40.0,
                created_at=(T0 - timedelta(hours=2)).isoformat(),
            ),
            exp(
                id="f1",
                status="failed",
                psnr_db=50.0,
                bitrate_reduction_pct=99.0,
                created_at=(T0 - timedelta(hours=30)).isoformat(),
            ),
            exp(
                id="r1",
                status="running",
                psnr_db=60.0,
                bitrate_reduction_pct=99.5,
                created_at=(T0 - timedelta(hours=3)).isoformat(),
            ),
        ]
    )
    s = (await snapshot(store))["summary"]
    assert (s["total_experiments"], s["running"], s["completed"], s["failed"]) == (4, 1, 2, 1)
    assert s["success_rate"] == pytest.approx(2 / 3)
    assert s["experiments_24h"] == 3
    assert s["best_compression"]["value_pct"] == 50.0
    assert s["best_compression"]["experiment_id"] == "c1"
    assert s["best_quality"]["psnr_db"] == 34.5
    assert s["best_quality"]["experiment_id"] == "c2"


@pytest.mark.anyio
async def test_recent_experiments_are_the_newest_twenty(store: Store) -> None:
    writes(store).batch(
        [exp(id=f"n{i:02d}", created_at=(T0 - timedelta(minutes=i)).isoformat()) for i in range(25)]
    )
    recent = (await snapshot(store))["recent_experiments"]
    assert [r["id"] for r in recent] == [f"n{i:02d}" for i in range(20)]


@pytest.mark.anyio
async def test_progress_is_best_so_far_and_never_decreases(store: Store) -> None:
    values = [(40.0, 31.0), (35.0, 33.0), (55.0, 30.0), (50.0, 34.0), (20.0, 29.0)]
    writes(store).batch(
        [
            exp(
                id=f"g{i}",
                status="completed",
                bitrate_reduction_pct=c,
                psnr_db=q,
                created_at=(T0 - timedelta(hours=10)).isoformat(),
                finished_at=(T0 - timedelta(hours=5 - i)).isoformat(),
            )
            for i, (c, q) in enumerate(values)
        ]
        + [exp(id="running-high", status="running", bitrate_reduction_pct=99.0, psnr_db=99.0)]
    )
    progress = (await snapshot(store))["progress"]
    compression = [p["best_pct"] for p in progress["compression"]]
    quality = [p["best_psnr_db"] for p in progress["quality"]]
    assert compression == [40.0, 40.0, 55.0, 55.0, 55.0]
    assert quality == [31.0, 33.0, 33.0, 34.0, 34.0]
    times = [p["t"] for p in progress["compression"]]
    assert times == sorted(times)
    # a completed result replaced by a worse one: the series follows, still never decreasing
    writes(store).put(
        "g2",
        exp(
            status="completed",
            bitrate_reduction_pct=10.0,
            psnr_db=30.0,
            finished_at=(T0 - timedelta(hours=3)).isoformat(),
        ),
    )
    progress = (await snapshot(store))["progress"]
    compression = [p["best_pct"] for p in progress["compression"]]
    assert compression == [40.0, 40.0, 40.0, 50.0, 50.0]
    assert all(a <= b for a, b in itertools.pairwise(compression))


# -- heartbeats -----------------------------------------------------------------------
def beat(worker: str, role: str, seconds_ago: float, **fields: Any) -> dict[str, Any]:
    """A validated heartbeat as the store takes it (plain values)."""
    return Heartbeat.model_validate(
        {
            "worker_id": worker,
            "role": role,
            "at": datetime.fromtimestamp(NOW - seconds_ago, UTC).isoformat(),
            **fields,
        }
    ).model_dump()


@pytest.mark.anyio
async def test_orchestrator_status(store: Store) -> None:
    orch = (await snapshot(store))["infrastructure"]["orchestrator"]
    assert orch["status"] == "unknown" and orch["last_seen"] is None
    store.heartbeat(beat("orch-a", "orchestrator", 200, status="ok", cpu_pct=10.0))
    store.heartbeat(
        beat("orch-b", "orchestrator", 20, status="degraded", cpu_pct=55.0, mem_pct=70.0)
    )
    orch = (await snapshot(store))["infrastructure"]["orchestrator"]
    assert orch["status"] == "degraded"
    assert orch["cpu_pct"] == 55.0 and orch["mem_pct"] == 70.0
    assert orch["last_seen"] == datetime.fromtimestamp(NOW - 20, UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    # older than 3 × refresh (90 s): down, whatever it last said
    orch = (await snapshot(store, now=NOW + 71))["infrastructure"]["orchestrator"]
    assert orch["status"] == "down"
    # the window follows the refresh interval
    orch = (await snapshot(store, now=NOW + 71, refresh_seconds=60))["infrastructure"]
    assert orch["orchestrator"]["status"] == "degraded"


@pytest.mark.anyio
async def test_workers_active_spot_share_queue_depth_and_fps(store: Store) -> None:
    store.heartbeat(beat("t1", "training", 30, spot=True, queue_depth=7, gpu_util_pct=80.0))
    store.heartbeat(beat("t2", "training", 85, spot=True))
    store.heartbeat(beat("t3", "training", 10, spot=False, queue_depth=4))  # newest depth
    store.heartbeat(beat("t4", "training", 95, spot=True))  # older than 90 s: not active
    store.heartbeat(beat("t5", "training", 5, status="down", spot=True))  # says it is down
    store.heartbeat(beat("i1", "inference", 10, fps=24.5, queue_depth=2))
    store.heartbeat(beat("i2", "inference", 20, fps=30.0))
    store.heartbeat(beat("i3", "inference", 300, fps=99.0))
    infra = (await snapshot(store))["infrastructure"]
    training = infra["training_workers"]
    assert training["active"] == 3
    assert training["spot_pct"] == pytest.approx(200 / 3)
    assert training["queue_depth"] == 4
    inference = infra["inference_workers"]
    assert inference["active"] == 2
    assert inference["fps"] == pytest.approx(54.5)
    assert inference["queue_depth"] == 2
    # a worker's newer heartbeat replaces its state; a late, older one does not
    store.heartbeat(beat("t4", "training", 1, spot=False))
    store.heartbeat(beat("t1", "training", 60, spot=False))  # out of order: history only
    training = (await snapshot(store))["infrastructure"]["training_workers"]
    assert training["active"] == 4
    assert training["spot_pct"] == pytest.approx(50.0)


@pytest.mark.anyio
async def test_no_workers_means_zero_active_and_no_spot_share(store: Store) -> None:
    infra = (await snapshot(store))["infrastructure"]
    assert infra["training_workers"]["active"] == 0
    assert infra["training_workers"]["spot_pct"] is None
    assert infra["training_workers"]["queue_depth"] is None
    assert infra["inference_workers"]["fps"] is None


# -- costs ------------------------------------------------------------------------------
def cost(component: str, usd: float, at: datetime) -> dict[str, Any]:
    """A validated cost record as the store takes it (plain values)."""
    return CostRecord(component=component, amount_usd=usd, at=at).model_dump()  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_month_to_date_by_component_from_records_and_worker_time(store: Store) -> None:
    snap = await snapshot(store)
    assert snap["summary"]["month_to_date_usd"] == 0
    assert snap["summary"]["forecast_month_usd"] == 0
    assert snap["cost_breakdown"] == []
    store.add_costs(
        [
            cost("storage", 12.5, datetime(2025, 3, 2, tzinfo=UTC)),
            cost("storage", 2.5, datetime(2025, 3, 3, tzinfo=UTC)),
            cost("other", 100.0, datetime(2025, 2, 27, tzinfo=UTC)),  # last month
        ]
    )
    # a training worker at $3.60/h, alive 60 s between heartbeats: $0.06;
    # then silent for 10 minutes: billed only up to the 90 s window, $0.09
    store.heartbeat(beat("gpu-1", "training", 800, hourly_cost_usd=3.6))
    store.heartbeat(beat("gpu-1", "training", 740, hourly_cost_usd=3.6))
    store.heartbeat(beat("gpu-1", "training", 140, hourly_cost_usd=3.6))
    # an inference worker at $6/h, 10 minutes of heartbeats every 60 s: $1.00
    for i in range(11):
        store.heartbeat(beat("inf-1", "inference", 700 - 60 * i, hourly_cost_usd=6.0))
    # an orchestrator without an hourly cost accrues nothing
    store.heartbeat(beat("orch", "orchestrator", 100))
    store.heartbeat(beat("orch", "orchestrator", 40))
    snap = await snapshot(store)
    by = {c["component"]: c["usd"] for c in snap["cost_breakdown"]}
    assert by == {"storage": 15.0, "training": pytest.approx(0.15), "inference": 1.0}
    assert snap["summary"]["month_to_date_usd"] == pytest.approx(16.15)
    assert [c["component"] for c in snap["cost_breakdown"]] == ["storage", "inference", "training"]


@pytest.mark.anyio
async def test_forecast_projects_the_last_seven_days_to_the_month_end(store: Store) -> None:
    # Early-month spending only: nothing in the last 7 days, so no burn to project.
    store.add_costs([cost("training", 100.0, datetime(2025, 3, 1, 6, tzinfo=UTC))])
    s = (await snapshot(store))["summary"]
    assert s["month_to_date_usd"] == 100.0
    assert s["forecast_month_usd"] == 100.0
    # $1 every hour for the last 7 days (168 records, from 2025-03-07 12:00 to 03-14 11:00).
    start = datetime(2025, 3, 7, 12, tzinfo=UTC)
    store.add_costs([cost("inference", 1.0, start + timedelta(hours=h)) for h in range(168)])
    s = (await snapshot(store))["summary"]
    assert s["month_to_date_usd"] == 268.0
    # burn $1/h; 17.5 days (420 h) remain from 2025-03-14 12:00 to 04-01 00:00
    assert s["forecast_month_usd"] == pytest.approx(268.0 + 420.0, abs=0.01)
    assert s["forecast_month_usd"] >= s["month_to_date_usd"]


@pytest.mark.anyio
async def test_a_new_fleets_rate_counts_from_its_first_cost(store: Store) -> None:
    """Costs that began yesterday at 18:00 ($1 every hour): the burn is $1/h, not diluted
    over the hours since that day's midnight."""
    start = datetime(2025, 3, 13, 18, tzinfo=UTC)
    store.add_costs([cost("training", 1.0, start + timedelta(hours=h)) for h in range(18)])
    s = (await snapshot(store))["summary"]
    assert s["month_to_date_usd"] == 18.0
    # 18 h of records up to 2025-03-14 11:00, seen at 12:00: 18 h elapsed; 420 h remain
    assert s["forecast_month_usd"] == pytest.approx(18.0 + 420.0, abs=0.01)


# -- tokens ---------------------------------------------------------------------------
def test_tokens_are_random_hashed_and_revocable(store: Store) -> None:
    token = store.create_token("ci")
    other = store.create_token("reader", "read")
    assert token != other
    secret = token.removeprefix(tokens.TOKEN_PREFIX)
    # at least 128 bits of randomness: ≥ 22 URL-safe base64 characters
    assert len(secret) >= 22 and set(secret) <= set(string.ascii_letters + string.digits + "-_")
    with store.db.read() as conn:
        stored = [dict(r) for r in conn.execute(schema.tokens.select()).mappings()]
    assert all(token not in str(row.values()) and secret not in str(row.values()) for row in stored)
    assert store.check_token(token, ("write",)) == "ci"
    assert store.check_token(other, ("write",)) is None
    assert store.check_token(other, ("read", "write")) == "reader"
    assert store.check_token(token + "x", ("write",)) is None
    assert store.check_token("", ("write",)) is None
    listed = store.list_tokens()
    assert [r["name"] for r in listed] == ["ci", "reader"]
    assert all(set(r) == {"name", "scope", "created_at", "revoked_at"} for r in listed)
    with pytest.raises(TokenExists):
        store.create_token("ci")
    assert store.revoke_token("ci") is True
    assert store.revoke_token("ci") is False
    assert store.revoke_token("never") is False
    assert store.check_token(token, ("write",)) is None
    # a revoked name can be reused; the new token differs and the old stays dead
    again = store.create_token("ci")
    assert again != token
    assert store.check_token(again, ("write",)) == "ci"
    assert store.check_token(token, ("write",)) is None


def test_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    import hmac

    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    token = store.create_token("a")
    store.create_token("b")
    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert store.check_token(token, ("write",)) == "a"
    # compared with hmac.compare_digest against every stored hash
    assert len(calls) == 2


# -- store errors ------------------------------------------------------------------------
def test_a_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Store("mysql://localhost/x")


@pytest.mark.postgres
def test_postgres_statistics_follow_a_bulk_load(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a bulk load the planner gets fresh statistics without waiting for
    autovacuum (a stale plan made a 24 h count 100× slower)."""
    import psycopg

    from codecdash.store import store as store_module
    from conftest import _libpq

    monkeypatch.setattr(store_module, "ANALYZE_AFTER_ROWS", 50)
    url = pg_server.new_schema()
    schema = url.rsplit("%3D", 1)[-1]

    def last_analyze() -> Any:
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT last_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = %s AND relname = 'experiments'",
                (schema,),
            ).fetchone()
        return row[0] if row else None

    s = Store(url)
    try:
        assert last_analyze() is None
        writes(s).batch(
            [ExperimentIn(id=f"a{i}", status="completed", psnr_db=30.0) for i in range(60)]
        )
        deadline = time.monotonic() + 10
        while last_analyze() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last_analyze() is not None
    finally:
        s.close()


def test_filtered_totals_are_reused_until_the_next_write(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes(store).batch([exp(id=f"t{i}", status="completed", psnr_db=30.0 + i) for i in range(10)])
    query = ListQuery(min_psnr_db=35.0, limit=2)
    counted: list[int] = []
    real_count = experiments_mod.TotalCache.put

    def spy(self: Any, key: Any, total: int) -> None:
        counted.append(total)
        real_count(self, key, total)

    monkeypatch.setattr(experiments_mod.TotalCache, "put", spy)
    first = store.list_experiments(query)
    _, cursor, _ = first
    second = store.list_experiments(ListQuery(min_psnr_db=35.0, limit=2, cursor=cursor))
    assert first[2] == second[2] == 5
    assert counted == [5]  # the second page reused the count
    writes(store).batch([exp(id="t-new", status="failed", psnr_db=99.0)])
    assert store.list_experiments(query)[2] == 6  # a write invalidates it
    assert counted == [5, 6]


def test_q_matches_a_tag_too(store: Store) -> None:
    """The search box's "Name, id or tag": `q` is text in the id, the name or any one tag
    (case-insensitive as the name match), never in the JSON around the tags."""
    writes(store).batch(
        [
            exp(id="a", name="first", tags=["UVG-1080p", "mse"], status="completed", psnr_db=33),
            exp(id="b", name="second", tags=["kodak"], status="completed", psnr_db=34),
            exp(id="c", name="third", tags=["50%_off\\now"]),
            exp(id="d", name="fourth"),
            exp(id="e", name="fifth", tags=["ab", "cd"]),
        ]
    )

    def ids(q: str) -> tuple[list[str], int]:
        items, _, total = store.list_experiments(ListQuery(q=q, sort="id"))
        return [r["id"] for r in items], total

    assert ids("uvg") == (["a"], 1)  # a substring of a tag, case-insensitive
    assert ids("1080P") == (["a"], 1)
    assert ids("kod") == (["b"], 1)
    assert ids("0%_") == (["c"], 1)  # wildcards are text
    assert ids("_o") == (["c"], 1)
    assert ids("f\\n") == (["c"], 1)
    assert ids("%") == (["c"], 1)
    assert ids('b", "c') == ([], 0)  # never across two tags or into the JSON
    assert ids('"') == ([], 0)
    assert ids(",") == ([], 0)
    assert ids("fourt") == (["d"], 1)  # the name still matches (and d has no tags)
    assert ids("ir") == (["a", "c"], 2)
    # Sorted by a leaderboard's field: the same filter on that path.
    for sort in ("-psnr_db", "psnr_db"):
        items, _, total = store.list_experiments(ListQuery(q="KOD", sort=sort))
        assert [r["id"] for r in items] == ["b"] and total == 1


def test_remove_experiment_keeps_every_summary_as_if_it_never_was(store: Store) -> None:
    """A read replica follows deleted items: counts, leaderboards, hourly bests."""
    service = writes(store)
    for i in range(6):
        service.put(
            f"r{i}",
            ExperimentIn(
                status="completed" if i % 3 else "failed",
                created_at=T0 + timedelta(minutes=i),
                started_at=T0 + timedelta(minutes=i),
                finished_at=T0 + timedelta(minutes=10 + i),
                psnr_db=30.0 + i,
                bitrate_reduction_pct=10.0 + i,
            ),
        )
    best = store.list_experiments(ListQuery(sort="-psnr_db", status=["completed"], limit=1))
    assert best[0][0]["id"] == "r5"
    version = store.version()

    assert store.remove_experiment("r5") is True
    assert store.remove_experiment("r5") is False
    assert store.get_experiment("r5") is None
    assert store.version() > version
    items, _, total = store.list_experiments(ListQuery(sort="-psnr_db", limit=10))
    assert [e["id"] for e in items] == ["r4", "r3", "r2", "r1", "r0"] and total == 5
    with store.db.read() as conn:
        counts = experiments_mod.status_counts(conn)
        assert counts["completed"] == 3 and counts["failed"] == 2
        hourly = progress.best_per_bucket(conn, ["best_psnr_db"], 1)["best_psnr_db"]
    assert [value for _t, value in hourly] == [34.0]
    page = store.list_experiments(ListQuery(sort="-bitrate_reduction_pct", limit=2))[0]
    assert [e["id"] for e in page] == ["r4", "r3"]
