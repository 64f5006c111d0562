"""Leaderboards (store/leaders.py, read by store/ranking.py): after any mix of writes, "best
first" pages served from `leaders` equal the same pages computed by brute force, on both
databases.

KEEP is made tiny so a few hundred writes move the bound up (trim) and, when results are
withdrawn, rebuild it from the experiments table.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from codecdash.experiments.query import SORTABLE
from codecdash.models import ExperimentIn
from codecdash.store import ListQuery, Store, leaders
from conftest import PgServer, writes

STATUSES = ["completed"] * 6 + ["failed", "running", "queued"]


@pytest.fixture(autouse=True)
def small_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaders, "KEEP", 8)


T0 = datetime(2026, 11, 1, tzinfo=UTC)


def random_item(rng: random.Random, i: int) -> ExperimentIn:
    status = rng.choice(STATUSES)
    maybe = rng.random() < 0.8
    return ExperimentIn(
        id=f"e{i:04d}",
        status=status,
        # a rewrite may move the creation time too (a column leaders carry)
        created_at=T0 + timedelta(hours=rng.randrange(48)) if rng.random() < 0.5 else None,
        # few distinct values: ties at the bound and across pages
        psnr_db=rng.choice([30.0, 31.5, 33.0, 34.25, 35.0, 36.5]) if maybe else None,
        bitrate_reduction_pct=round(rng.uniform(0, 90), 1) if rng.random() < 0.9 else None,
        ms_ssim=round(rng.uniform(0.9, 1.0), 3) if rng.random() < 0.5 else None,
    )


def brute_force(
    rows: dict[str, dict[str, Any]], field: str, descending: bool, keep: Callable[..., bool]
) -> list[str]:
    """Expected ids: values best first (ties by id, same direction), NULLs last."""
    chosen = [r for r in rows.values() if keep(r)]
    valued = sorted(
        (r for r in chosen if r[field] is not None),
        key=lambda r: (r[field], r["id"]),
        reverse=descending,
    )
    empty = sorted((r for r in chosen if r[field] is None), key=lambda r: r["id"])
    if descending:
        empty.reverse()
    return [r["id"] for r in valued + empty]


def pages(store: Store, sort: str, limit: int, **filters: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        query = ListQuery(sort=sort, limit=limit, cursor=cursor, **filters)
        rows, cursor, _total = store.list_experiments(query)
        ids += [r["id"] for r in rows]
        if cursor is None:
            return ids


CUTOFF = (T0 + timedelta(hours=24)).timestamp()
# ListQuery filters and the same as a predicate on a stored row. All but the last are
# on columns that leaders carry (one scan of leaders); `q` makes the page check each
# leader in the experiments table.
FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda r: True),
    ({"status": ["completed"]}, lambda r: r["status"] == "completed"),
    (
        {"status": ["completed", "failed"], "min_bitrate_reduction_pct": 45.0},
        lambda r: (
            r["status"] in ("completed", "failed")
            and r["bitrate_reduction_pct"] is not None
            and r["bitrate_reduction_pct"] >= 45.0
        ),
    ),
    ({"min_psnr_db": 34.25}, lambda r: r["psnr_db"] is not None and r["psnr_db"] >= 34.25),
    ({"created_after": CUTOFF}, lambda r: r["created_at"] >= CUTOFF),
    (
        {"status": ["completed"], "q": "e00"},
        lambda r: r["status"] == "completed" and "e00" in r["id"],
    ),
]


def stored_rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.db.read() as conn:
        found = conn.exec_driver_sql("SELECT * FROM experiments").mappings()
        return {str(r["id"]): dict(r) for r in found}


def check_invariant(store: Store) -> None:
    """leaders holds exactly the experiments at or better than each metric's bound, with
    their current values of the carried columns."""
    carried = ", ".join(leaders.CARRIED)
    with store.db.read() as conn:
        stored = {
            (m, i): (v, *rest)
            for m, v, i, *rest in conn.exec_driver_sql(
                f"SELECT metric, value, id, {carried} FROM leaders"
            )
        }
        found = leaders.bounds(conn)
        for metric, larger in leaders.METRICS.items():
            bound, n = found[metric]
            expected = {}
            sql = f"SELECT id, {metric}, {carried} FROM experiments"
            for i, v, *rest in conn.exec_driver_sql(sql):
                if v is not None and (bound is None or (v >= bound if larger else v <= bound)):
                    expected[(metric, i)] = (v, *rest)
            got = {k: v for k, v in stored.items() if k[0] == metric}
            assert got == expected, metric
            assert n == len(expected), metric


def test_pages_match_brute_force_through_trims_and_rebuilds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("_trim", "rebuild"):
        real = getattr(leaders, name)
        monkeypatch.setattr(leaders, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = random.Random(7)
    rows: dict[str, dict[str, Any]] = {}
    for step in range(12):
        batch = [random_item(rng, rng.randrange(120)) for _ in range(40)]
        if step in (6, 9):  # withdraw most results: the leaderboards shrink, then rebuild
            batch = [
                ExperimentIn(id=r["id"], status="failed")
                for r in rows.values()
                if r["psnr_db"] is not None and rng.random() < 0.8
            ]
        writes(store).batch(batch)
        check_invariant(store)
        rows = stored_rows(store)
        for field in ("psnr_db", "bitrate_reduction_pct", "ms_ssim"):
            for filters, keep in FILTERS:
                expected = brute_force(rows, field, True, keep)
                assert pages(store, f"-{field}", 7, **filters) == expected, (step, field, filters)
    assert {"_trim", "rebuild"} <= set(calls)


def test_lower_is_better_metric_is_served_ascending(store: Store) -> None:
    writes(store).batch(
        [
            ExperimentIn(id=f"b{i:02d}", status="completed", bitrate_reduction_pct=float(i))
            for i in range(30)
        ]
    )
    with store.db.write() as conn:  # bd_rate_pct is derived; set it directly for the test
        conn.exec_driver_sql("UPDATE experiments SET bd_rate_pct = -bitrate_reduction_pct")
        leaders.rebuild(conn, "bd_rate_pct")
    rows, _cursor, _total = store.list_experiments(ListQuery(sort="bd_rate_pct", limit=3))
    assert [r["id"] for r in rows] == ["b29", "b28", "b27"]


def test_only_best_first_sorts_use_leaders() -> None:
    assert leaders.serves("psnr_db", descending=True)
    assert not leaders.serves("psnr_db", descending=False)
    assert leaders.serves("bd_rate_pct", descending=False)
    assert not leaders.serves("cost_usd", descending=True)
    assert set(leaders.METRICS) <= set(SORTABLE)


@pytest.mark.postgres
def test_replicas_writing_at_once_keep_the_leaderboards_exact(pg_server: PgServer) -> None:
    """Two stores on one PostgreSQL schema (two replicas) write concurrently; the
    leaderboards still hold exactly the experiments at or better than each bound."""
    url = pg_server.new_schema()
    stores = [Store(url), Store(url)]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        rng = random.Random(k)
        try:
            for step in range(25):
                writes(stores[k]).batch([random_item(rng, rng.randrange(200)) for _ in range(20)])
                if step % 5 == 4:  # withdraw some results too: the bound moves both ways
                    writes(stores[k]).batch(
                        [ExperimentIn(id=f"e{rng.randrange(200):04d}") for _ in range(20)]
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors, errors
        check_invariant(stores[0])
        with stores[0].db.read() as conn:  # and the status counters match the rows
            grouped = conn.exec_driver_sql(
                "SELECT status, count(*) FROM experiments GROUP BY status"
            )
            actual = {str(status): int(n) for status, n in grouped}
        for status in ("queued", "completed", "failed", "running"):
            total = stores[1].list_experiments(ListQuery(status=[status], limit=1))[2]
            assert total == actual.get(status, 0), status
    finally:
        for s in stores:
            s.close()
