"""Curation through the API, on both databases: DELETE and restore, bulk deletion by ids or
filter with a dry run, the trash and its purge, notes and tag edits, the audit log; and
what a deletion hides (lists, totals, the snapshot, BD-rate figures, training facts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.experiments.anchors import save_anchor
from codecdash.store import Store

pytestmark = pytest.mark.anyio
API = "/api/v1/experiments"
DASHBOARD = "/api/v1/dashboard"
T0 = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
CURVE = [
    {"bitrate_kbps": 900.0, "psnr_db": 30.5},
    {"bitrate_kbps": 1800.0, "psnr_db": 33.5},
    {"bitrate_kbps": 3600.0, "psnr_db": 36.4},
    {"bitrate_kbps": 7200.0, "psnr_db": 39.1},
]


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    auth: dict[str, str]

    @property
    def store(self) -> Store:
        store: Store = self.app.state.codecdash.store
        return store

    async def put(self, experiment_id: str, **fields: Any) -> dict[str, Any]:
        r = await self.client.put(f"{API}/{experiment_id}", json=fields, headers=self.auth)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    async def ids(self, **params: Any) -> list[str]:
        r = await self.client.get(API, params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        return sorted(item["id"] for item in r.json()["items"])


@pytest.fixture
async def api(make_app: Any, settings: Settings, store_url: str) -> AsyncIterator[Api]:
    app = await make_app(settings.model_copy(update={"database_url": store_url}))
    token = app.state.codecdash.store.create_token("curator")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield Api(app, client, {"Authorization": f"Bearer {token}"})


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


# -- one experiment ----------------------------------------------------------------------------
async def test_delete_hides_and_restore_brings_back_exactly(api: Api) -> None:
    await api.client.put(
        "/api/v1/anchors/hm",
        json={"rd_points": [{**p, "psnr_db": p["psnr_db"] - 1} for p in CURVE]},
        headers=api.auth,
    )
    best = await api.put(
        "best",
        status="completed",
        psnr_db=40.0,
        bitrate_reduction_pct=80.0,
        rd_points=CURVE,
        created_at=at(0),
        notes="keep *this*",
        tags=["uvg"],
    )
    await api.put("other", status="completed", psnr_db=33.0, bitrate_reduction_pct=20.0)
    assert best["bd_rate_pct"] is not None
    summary = (await api.client.get(DASHBOARD)).json()["summary"]
    assert summary["total_experiments"] == 2 and summary["best_quality"]["experiment_id"] == "best"

    r = await api.client.delete(f"{API}/best", headers=api.auth)
    assert r.status_code == 200, r.text
    deleted = r.json()
    assert deleted["id"] == "best" and deleted["deleted_by"] == "curator"
    assert deleted["deleted_at"].endswith("Z") and deleted["notes"] == "keep *this*"

    assert_error(await api.client.get(f"{API}/best"), 404, "not_found")
    shown = (
        await api.client.get(f"{API}/best", params={"include_deleted": "true"}, headers=api.auth)
    ).json()
    assert shown["deleted_at"] == deleted["deleted_at"] and shown["psnr_db"] == 40.0
    assert await api.ids() == ["other"]
    assert (await api.client.get(API, params={"sort": "-psnr_db"})).json()["total"] == 1
    snapshot = (await api.client.get(DASHBOARD)).json()
    summary = snapshot["summary"]
    assert summary["total_experiments"] == 1 and summary["completed"] == 1
    assert summary["best_quality"]["experiment_id"] == "other"
    assert summary["best_compression"]["experiment_id"] == "other"
    assert [e["id"] for e in snapshot["recent_experiments"]] == ["other"]
    assert await api.ids(sort="bd_rate_pct") == ["other"]
    assert_error(await api.client.get(f"{API}/best/bd-rate"), 404)

    assert_error(await api.client.delete(f"{API}/best", headers=api.auth), 404)
    r = await api.client.post(f"{API}/best/restore", headers=api.auth)
    assert r.status_code == 200, r.text
    back = (await api.client.get(f"{API}/best")).json()
    assert back == best == r.json()
    summary = (await api.client.get(DASHBOARD)).json()["summary"]
    assert summary["total_experiments"] == 2 and summary["best_quality"]["experiment_id"] == "best"
    assert_error(await api.client.post(f"{API}/best/restore", headers=api.auth), 409)  # live
    assert_error(await api.client.post(f"{API}/nothing/restore", headers=api.auth), 404)


async def test_writes_need_a_write_token(api: Api) -> None:
    await api.put("a")
    assert_error(await api.client.delete(f"{API}/a"), 401)
    assert_error(await api.client.post(f"{API}/a/restore"), 401)
    assert_error(await api.client.post(f"{API}/delete", json={"ids": ["a"]}), 401)
    assert_error(await api.client.post("/api/v1/trash/purge", json={}), 401)
    assert await api.ids() == ["a"]


async def test_an_id_in_the_trash_is_refused_with_a_pointer_to_restore(api: Api) -> None:
    await api.put("gone", status="failed")
    await api.client.delete(f"{API}/gone", headers=api.auth)
    for r in (
        await api.client.put(f"{API}/gone", json={"status": "queued"}, headers=api.auth),
        await api.client.post(API, json={"id": "gone"}, headers=api.auth),
        await api.client.post(f"{API}/batch", json={"items": [{"id": "gone"}]}, headers=api.auth),
    ):
        error = assert_error(r, 409, "conflict")
        assert "in the trash" in error["message"] and "/restore" in error["message"]
    error = assert_error(
        await api.client.patch(f"{API}/gone", json={"name": "x"}, headers=api.auth), 404
    )
    assert "restore it first" in error["message"]
    assert "include_deleted" in assert_error(await api.client.get(f"{API}/gone"), 404)["message"]


# -- bulk --------------------------------------------------------------------------------------
async def test_bulk_delete_by_filter_counts_first_then_moves(api: Api) -> None:
    for i in range(6):
        await api.put(f"f{i}", status="failed" if i % 2 else "completed", created_at=at(i))
    body = {"status": ["failed"], "created_before": at(4), "dry_run": True}
    r = await api.client.post(f"{API}/delete", json=body, headers=api.auth)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "dry_run": True,
        "matched": 2,
        "deleted": 0,
        "ids": ["f1", "f3"],
        "filter": {"status": ["failed"], "created_before": "2026-03-14T16:00:00.000Z"},
    }
    assert len(await api.ids()) == 6  # a dry run moves nothing
    r = await api.client.post(f"{API}/delete", json={**body, "dry_run": False}, headers=api.auth)
    assert r.json()["deleted"] == 2 and r.json()["ids"] == ["f1", "f3"]
    assert await api.ids() == ["f0", "f2", "f4", "f5"]
    # limit: the oldest first, call again for the rest
    r = await api.client.post(
        f"{API}/delete", json={"status": ["completed"], "limit": 2}, headers=api.auth
    )
    assert r.json()["matched"] == 3 and r.json()["ids"] == ["f0", "f2"]
    # by ids, unknown ones ignored; then restore in bulk
    r = await api.client.post(f"{API}/delete", json={"ids": ["f4", "zz"]}, headers=api.auth)
    assert r.json()["deleted"] == 1 and r.json()["ids"] == ["f4"]
    r = await api.client.post(f"{API}/restore", json={"ids": ["f0", "f1", "zz"]}, headers=api.auth)
    assert r.status_code == 200 and r.json()["restored"] == 2
    assert await api.ids() == ["f0", "f1", "f5"]


async def test_bulk_delete_refuses_no_filter_and_bad_bodies(api: Api) -> None:
    await api.put("a")
    for body in ({}, {"dry_run": True}, {"status": []}, {"q": ""}):
        assert_error(await api.client.post(f"{API}/delete", json=body, headers=api.auth), 422)
    for body in ({"status": ["lost"]}, {"ids": ["a"], "nope": 1}, {"limit": 0}):
        assert_error(await api.client.post(f"{API}/delete", json=body, headers=api.auth), 422)
    assert_error(await api.client.post(f"{API}/restore", json={"ids": []}, headers=api.auth), 422)
    assert await api.ids() == ["a"]


# -- the trash and its purge -------------------------------------------------------------------
async def test_trash_lists_newest_first_and_purge_drops_for_good(api: Api) -> None:
    for i in range(5):
        await api.put(f"t{i}")
        await api.client.delete(f"{API}/t{i}", headers=api.auth)
    page = (await api.client.get("/api/v1/trash", params={"limit": 3}, headers=api.auth)).json()
    assert page["total"] == 5 and [e["id"] for e in page["items"]] == ["t4", "t3", "t2"]
    rest = (
        await api.client.get(
            "/api/v1/trash", params={"cursor": page["next_cursor"]}, headers=api.auth
        )
    ).json()
    assert [e["id"] for e in rest["items"]] == ["t1", "t0"] and rest["next_cursor"] is None
    assert_error(
        await api.client.get("/api/v1/trash", params={"cursor": "bad!"}, headers=api.auth), 422
    )

    r = await api.client.post(
        "/api/v1/trash/purge", json={"older_than_days": 1, "dry_run": True}, headers=api.auth
    )
    assert r.json()["matched"] == 0  # all deleted just now
    r = await api.client.post(
        "/api/v1/trash/purge", json={"ids": ["t0"], "dry_run": True}, headers=api.auth
    )
    assert r.json() == {"dry_run": True, "matched": 1, "purged": 0, "ids": ["t0"]}
    r = await api.client.post("/api/v1/trash/purge", json={"ids": ["t0"]}, headers=api.auth)
    assert r.json()["purged"] == 1
    assert_error(
        await api.client.get(f"{API}/t0", params={"include_deleted": "true"}, headers=api.auth), 404
    )
    await api.put("t0")  # a purged id is free again
    r = await api.client.post("/api/v1/trash/purge", json={}, headers=api.auth)
    assert r.json()["purged"] == 4
    assert (await api.client.get("/api/v1/trash", headers=api.auth)).json()["total"] == 0


async def test_serve_purges_what_is_past_retention(make_app: Any, settings: Settings) -> None:
    from codecdash.experiments.curation import purge_periodically

    app = await make_app(settings.model_copy(update={"trash_retention_days": 10}))
    st = app.state.codecdash
    st.store.create_experiment({"id": "old", "status": "failed"})
    st.store.create_experiment({"id": "new", "status": "failed"})
    st.store.curation.delete(["old", "new"], None)
    with st.store.db.write() as conn:
        conn.exec_driver_sql(
            "UPDATE experiments_trash SET deleted_at = deleted_at - 11 * 86400 WHERE id = 'old'"
        )
    import asyncio

    task = asyncio.create_task(purge_periodically(st.extras["curation"], st.settings))
    try:
        for _ in range(200):  # the first pass runs at once; wait for it, not a sleep
            if st.store.curation.trash_count() == 1:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert [e["id"] for e in st.store.curation.trash_page(10)[0]] == ["new"]
    entries, _ = st.store.curation.audit(1)
    assert entries[0]["action"] == "purge" and entries[0]["details"] == {"older_than_days": 10}


# -- notes and tags ----------------------------------------------------------------------------
async def test_notes_and_tag_edits_without_resending_the_list(api: Api) -> None:
    await api.put("n", tags=["uvg", "wip"])
    r = await api.client.patch(
        f"{API}/n",
        json={
            "notes": "# Title\n<script>x</script>",
            "add_tags": ["mse", "uvg"],
            "remove_tags": ["wip", "absent"],
        },
        headers=api.auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["uvg", "mse"] and r.json()["notes"] == "# Title\n<script>x</script>"
    r = await api.client.patch(
        f"{API}/n", json={"tags": ["a"], "add_tags": ["b"]}, headers=api.auth
    )
    assert r.json()["tags"] == ["a", "b"]
    assert_error(
        await api.client.patch(f"{API}/n", json={"notes": "x" * 10_001}, headers=api.auth), 422
    )
    many = [f"t{i}" for i in range(50)]
    error = assert_error(
        await api.client.patch(f"{API}/n", json={"add_tags": many}, headers=api.auth), 422
    )
    assert "at most 50 tags" in error["message"]
    assert (await api.client.get(f"{API}/n")).json()["tags"] == ["a", "b"]  # unchanged
    await api.client.patch(f"{API}/n", json={"status": "running"}, headers=api.auth)
    entries = (
        await api.client.get("/api/v1/audit", params={"action": "edit"}, headers=api.auth)
    ).json()["items"]
    assert [e["details"] for e in entries] == [
        {"fields": ["tags"], "add_tags": ["b"]},
        {"fields": ["notes"], "add_tags": ["mse", "uvg"], "remove_tags": ["wip", "absent"]},
    ]  # the status change is not curation: not recorded
    assert all(e["actor"] == "curator" and e["ids"] == ["n"] for e in entries)


# -- the audit log -----------------------------------------------------------------------------
async def test_audit_log_records_who_what_when(api: Api) -> None:
    await api.put("a", status="failed")
    await api.put("b", status="failed")
    await api.client.delete(f"{API}/a", headers=api.auth)
    await api.client.post(f"{API}/delete", json={"status": ["failed"]}, headers=api.auth)
    await api.client.post(f"{API}/a/restore", headers=api.auth)
    await api.client.post("/api/v1/trash/purge", json={"ids": ["b"]}, headers=api.auth)
    page = (await api.client.get("/api/v1/audit", headers=api.auth)).json()
    assert [(e["action"], e["ids"], e["actor"]) for e in page["items"]] == [
        ("purge", ["b"], "curator"),
        ("restore", ["a"], "curator"),
        ("delete", ["b"], "curator"),
        ("delete", ["a"], "curator"),
    ]
    assert page["items"][2]["details"] == {"filter": {"status": ["failed"]}}
    assert all(e["at"].endswith("Z") for e in page["items"])
    first = (await api.client.get("/api/v1/audit", params={"limit": 3}, headers=api.auth)).json()
    rest = (
        await api.client.get(
            "/api/v1/audit", params={"before": first["next_before"]}, headers=api.auth
        )
    ).json()
    assert [e["seq"] for e in first["items"] + rest["items"]] == [e["seq"] for e in page["items"]]
    assert_error(
        await api.client.get("/api/v1/audit", params={"action": "nuke"}, headers=api.auth), 422
    )


async def test_private_mode_needs_a_token_to_read_the_trash_and_audit(
    make_app: Any, settings: Settings
) -> None:
    app = await make_app(settings.model_copy(update={"private": True}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for path in ("/api/v1/trash", "/api/v1/audit"):
            assert_error(await client.get(path), 401)


async def test_what_was_deleted_is_for_write_tokens_only(api: Api) -> None:
    """On a public dashboard too: the trash, the audit log and a trashed experiment need a
    write token; a read token or none gets 401/403, and a plain read still 404."""
    await api.put("secret-run", status="completed", name="wrongly named run")
    assert (await api.client.delete(f"{API}/secret-run", headers=api.auth)).status_code == 200
    reader = api.store.create_token("viewer", "read")
    for headers in ({}, {"Authorization": f"Bearer {reader}"}):
        for path, params in (
            ("/api/v1/trash", {}),
            ("/api/v1/audit", {}),
            (f"{API}/secret-run", {"include_deleted": "true"}),
        ):
            r = await api.client.get(path, params=params, headers=headers)
            assert r.status_code in (401, 403), (path, headers, r.text)
            assert "wrongly named run" not in r.text
    assert_error(await api.client.get(f"{API}/secret-run"), 404)
    shown = await api.client.get(
        f"{API}/secret-run", params={"include_deleted": "true"}, headers=api.auth
    )
    assert shown.json()["name"] == "wrongly named run"


async def test_restore_derives_the_bd_rate_against_the_anchor_in_force_now(api: Api) -> None:
    lower = [{**p, "psnr_db": p["psnr_db"] - 1} for p in CURVE]
    r = await api.client.put("/api/v1/anchors/hm", json={"rd_points": lower}, headers=api.auth)
    assert r.status_code == 201, r.text
    first = (await api.put("x", status="completed", rd_points=CURVE))["bd_rate_pct"]
    await api.client.delete(f"{API}/x", headers=api.auth)
    higher = [{**p, "psnr_db": p["psnr_db"] + 0.5} for p in CURVE]
    # replaced and settled at once (the API re-derives in the background)
    save_anchor(api.store, api.app.state.codecdash.settings, "hm", None, higher)
    fresh = (await api.put("y", status="completed", rd_points=CURVE))["bd_rate_pct"]
    restored = (await api.client.post(f"{API}/x/restore", headers=api.auth)).json()
    assert restored["bd_rate_pct"] == fresh != first
    assert restored["bd_rate_anchor"] == "hm"


async def test_long_notes_leave_the_snapshot_first(api: Api) -> None:
    await api.put("long", notes="n" * 10_000, params={"lr": 0.1})
    recent = (await api.client.get(DASHBOARD)).json()["recent_experiments"]
    assert recent[0]["notes"] is None and recent[0]["omitted"] == ["notes"]
    assert recent[0]["params"] == {"lr": 0.1}
    assert (await api.client.get(f"{API}/long")).json()["notes"] == "n" * 10_000
