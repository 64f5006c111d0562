"""Curation in the store (store/trash.py, store/curation.py): through any mix of writes,
deletions to the trash, restores and purges, every summary kept on write (status counts,
leaderboards, per-hour bests), every figure the read model gives (totals, best results,
best-first pages, the 24 h count) and the rows themselves equal a recomputation from a
model of the rows, on both databases.

KEEP is made tiny so deletions shrink the leaderboards below their rebuild threshold and
writes trim them again.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codecdash.curve_models import MetricPoint
from codecdash.experiments.query import ListQuery
from codecdash.experiments.vocabulary import LARGER_IS_BETTER, STATUSES
from codecdash.models import ExperimentIn
from codecdash.store import Store, leaders
from codecdash.store.integrity import verify
from codecdash.store.reads import SqlRows
from codecdash.store.trash import InTrash
from conftest import writes
from test_leaders import FILTERS, brute_force, check_invariant, pages, stored_rows

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KINDS = ["completed"] * 5 + ["failed", "running", "queued", "cancelled"]


@pytest.fixture(autouse=True)
def small_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaders, "KEEP", 8)


def random_item(rng: random.Random, i: int) -> ExperimentIn:
    status = rng.choice(KINDS)
    created = T0 + timedelta(hours=rng.randrange(72))
    finished = created + timedelta(minutes=rng.randrange(1, 600))
    return ExperimentIn(
        id=f"x{i:03d}",
        name=f"run {i}",
        status=status,
        created_at=created,
        finished_at=finished if status in ("completed", "failed", "cancelled") else None,
        psnr_db=rng.choice([30.0, 31.5, 33.0, 34.25, 35.0, 36.5]) if rng.random() < 0.8 else None,
        bitrate_reduction_pct=round(rng.uniform(0, 90), 1) if rng.random() < 0.9 else None,
        ms_ssim=round(rng.uniform(0.9, 1.0), 3) if rng.random() < 0.5 else None,
        tags=rng.sample(["uvg", "mse", "wip", "baseline"], rng.randrange(3)),
        notes="*bold* <b>not html</b>" if rng.random() < 0.2 else None,
    )


def hourly_bests(rows: dict[str, dict[str, Any]]) -> dict[int, dict[str, float | None]]:
    """progress_hourly computed from the rows: per hour of finished_at, the best value of
    each ranked metric among completed experiments."""
    columns = {
        "best_compression_pct": "bitrate_reduction_pct",
        "best_psnr_db": "psnr_db",
        "best_ms_ssim": "ms_ssim",
        "best_bd_rate_pct": "bd_rate_pct",
    }
    out: dict[int, dict[str, float | None]] = {}
    for r in rows.values():
        if r["status"] != "completed" or r["finished_at"] is None:
            continue
        slot = out.setdefault(int(r["finished_at"] // 3600), dict.fromkeys(columns))
        for target, source in columns.items():
            v = r[source]
            if v is None:
                continue
            held = slot[target]
            if held is None or (v > held if LARGER_IS_BETTER[source] else v < held):
                slot[target] = v
    return out


def stored_hourly(store: Store) -> dict[int, dict[str, float | None]]:
    with store.db.read() as conn:
        found = conn.exec_driver_sql("SELECT * FROM progress_hourly").mappings()
        return {int(r["hour"]): {k: v for k, v in r.items() if k != "hour"} for r in found}


def check_everything(store: Store, live: dict[str, dict[str, Any]], trashed: set[str]) -> None:
    """Every figure against the model: `live` (id -> stored row) and the trashed ids."""
    assert stored_rows(store) == live
    with store.db.read() as conn:
        found = {str(r[0]) for r in conn.exec_driver_sql("SELECT id FROM experiments_trash")}
    assert found == trashed
    assert store.curation.trash_count() == len(trashed)
    check_invariant(store)
    assert stored_hourly(store) == hourly_bests(live)
    with store.db.read() as conn:
        rows = SqlRows(conn)
        counts = rows.status_counts()
        assert counts == {s: sum(r["status"] == s for r in live.values()) for s in STATUSES}
        since = (T0 + timedelta(hours=36)).timestamp()
        assert rows.created_since(since) == sum(r["created_at"] >= since for r in live.values())
        for metric in ("psnr_db", "bitrate_reduction_pct", "ms_ssim"):
            best = rows.best(metric)
            expected = brute_force(
                live, metric, True, lambda r: r["status"] == "completed" and r[metric] is not None
            )
            assert (best.experiment_id if best else None) == (expected[0] if expected else None)
    for filters, keep in FILTERS:
        _, _, total = store.list_experiments(ListQuery(limit=1, **filters))
        assert total == sum(keep(r) for r in live.values()), filters
    for field in ("psnr_db", "bitrate_reduction_pct"):
        for filters, keep in FILTERS[:3]:
            assert pages(store, f"-{field}", 9, **filters) == brute_force(live, field, True, keep)


def test_every_figure_stays_exact_through_delete_restore_and_purge(
    store: Store, store_url: str
) -> None:
    rng = random.Random(24)
    trashed: dict[str, dict[str, Any]] = {}  # id -> the row as it was when deleted
    live: dict[str, dict[str, Any]] = {}
    for step in range(14):
        op = "write" if step < 2 else rng.choice(["write", "delete", "delete", "restore", "purge"])
        if op == "write":
            items = [random_item(rng, rng.randrange(150)) for _ in range(40)]
            items = [item for item in items if item.id not in trashed]
            writes(store).batch(items)
            live = stored_rows(store)
        elif op == "delete" and rng.random() < 0.5:
            chosen = rng.sample(sorted(live), min(len(live), rng.randrange(5, 40)))
            moved = store.curation.delete(chosen, "tester")
            assert sorted(r["id"] for r in moved) == sorted(chosen)
            for i in chosen:
                trashed[i] = live.pop(i)
        elif op == "delete":  # by a filter
            query = ListQuery(status=[rng.choice(KINDS)], min_psnr_db=33.0)
            expected = [
                i
                for i, r in live.items()
                if r["status"] == query.status[0]
                and r["psnr_db"] is not None
                and r["psnr_db"] >= 33.0
            ]
            moved, total = store.curation.delete_matching(query, 10_000, None)
            assert total == len(expected)
            assert sorted(r["id"] for r in moved) == sorted(expected)
            for i in expected:
                trashed[i] = live.pop(i)
        elif op == "restore" and trashed:
            chosen = rng.sample(sorted(trashed), min(len(trashed), rng.randrange(1, 30)))
            back = store.curation.restore([*chosen, "never-deleted"], "tester")
            assert sorted(r["id"] for r in back) == sorted(chosen)
            for i in chosen:
                live[i] = trashed.pop(i)  # exactly as it was, updated_at included
        elif op == "purge" and trashed:
            chosen = rng.sample(sorted(trashed), min(len(trashed), rng.randrange(1, 20)))
            assert sorted(store.curation.purge("tester", ids=chosen)) == sorted(chosen)
            for i in chosen:
                del trashed[i]
        check_everything(store, live, set(trashed))
        if store.db.is_sqlite:
            verdict = verify(Path(store_url.removeprefix("sqlite:///")))
            assert verdict.ok, verdict.describe()
    assert trashed and live  # the mix did something of each


def test_an_id_in_the_trash_cannot_be_written_again_until_restored_or_purged(
    store: Store,
) -> None:
    w = writes(store)
    w.batch([ExperimentIn(id="a", status="completed", psnr_db=33.0), ExperimentIn(id="b")])
    store.curation.delete(["a"], "tester")
    with pytest.raises(InTrash, match="'a' is in the trash: restore it"):
        w.create(ExperimentIn(id="a"))
    with pytest.raises(InTrash):
        w.put("a", ExperimentIn(id="a", status="running"))
    with pytest.raises(InTrash):
        w.batch([ExperimentIn(id="b", status="running"), ExperimentIn(id="a")])
    assert store.get_experiment("b")["status"] == "queued"  # the batch wrote nothing
    assert store.patch_experiment("a", {"name": "x"}) is None
    store.curation.purge("tester", ids=["a"])
    w.create(ExperimentIn(id="a", status="queued"))
    assert store.get_experiment("a")["psnr_db"] is None  # a new experiment, not the old one


def test_purge_by_age_takes_only_the_old_and_drops_training_curves(store: Store) -> None:
    writes(store).batch([ExperimentIn(id=i, status="running") for i in ("old", "new")])
    point = MetricPoint.model_validate({"step": 1, "values": {"loss": 1.0}})
    store.log_metrics([(i, [point]) for i in ("old", "new")])
    store.curation.delete(["old"], "tester")
    with store.db.write() as conn:  # deleted 40 days ago
        conn.exec_driver_sql("UPDATE experiments_trash SET deleted_at = deleted_at - 40 * 86400")
    store.curation.delete(["new"], "tester")
    cutoff = datetime.now(UTC).timestamp() - 30 * 86400
    assert store.curation.trash_count(cutoff) == 1
    assert store.curation.purge("tester", before=cutoff) == ["old"]
    assert store.curation.trash_count() == 1
    with store.db.read() as conn:
        left = {str(r[0]) for r in conn.exec_driver_sql("SELECT experiment_id FROM metric_series")}
        summaries = {
            str(r[0]) for r in conn.exec_driver_sql("SELECT experiment_id FROM training_summary")
        }
    assert left == summaries == {"new"}
    back = store.curation.restore(["new"], "tester")
    assert back[0]["training"] is not None  # its curves were kept while in the trash
    assert [e["experiment_id"] for e in store.training_latest()] == ["new"]


def test_every_operation_is_in_the_audit_log(store: Store) -> None:
    writes(store).batch([ExperimentIn(id=f"e{i}", status="failed") for i in range(3)])
    store.curation.delete(["e0"], "alice")
    store.curation.delete_matching(ListQuery(status=["failed"]), 100, "bob", {"filter": "f"})
    store.curation.restore(["e1"], None)
    store.curation.purge("carol", ids=["e0"])
    entries, more = store.curation.audit(10)
    assert more is None
    assert [(e["action"], e["actor"], sorted(e["ids"]), e["count"]) for e in entries] == [
        ("purge", "carol", ["e0"], 1),
        ("restore", None, ["e1"], 1),
        ("delete", "bob", ["e1", "e2"], 2),
        ("delete", "alice", ["e0"], 1),
    ]
    assert entries[2]["details"] == {"filter": "f"}
    first, before = store.curation.audit(2)
    assert before is not None
    rest, end = store.curation.audit(10, before=before)
    assert [e["seq"] for e in first + rest] == [e["seq"] for e in entries] and end is None
    assert [e["actor"] for e in store.curation.audit(10, action="delete")[0]] == ["bob", "alice"]
    # nothing matched: no entry
    store.curation.delete(["nope"], "dave")
    assert len(store.curation.audit(10)[0]) == 4


def test_verify_reports_an_experiment_both_live_and_trashed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store(str(path))
    try:
        writes(store).batch([ExperimentIn(id="x", status="queued"), ExperimentIn(id="y")])
        store.curation.delete(["x"], "tester")
        assert verify(path).ok
        with store.db.write() as conn:  # what no codecdash write does
            conn.exec_driver_sql(
                "INSERT INTO experiments (id, status, created_at) VALUES ('x', 'queued', 0)"
            )
            conn.exec_driver_sql("UPDATE counters SET n = n + 1 WHERE name = 'experiments.queued'")
    finally:
        store.close()
    verdict = verify(path)
    assert verdict.problems == ["1 experiment is both live and in the trash"]
    assert verdict.facts is not None and verdict.facts.trashed == 1
