"""The experiments API in-process: create, get, put, patch, batch, list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api_helpers import assert_error
from codecdash.experiments.query import SORTABLE

pytestmark = pytest.mark.anyio
API = "/api/v1/experiments"
T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


# -- create and get ----------------------------------------------------------------------
async def test_post_creates_with_a_generated_id(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(API, json={"name": "first", "params": {"lambda": 0.013}}, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] and body["name"] == "first" and body["status"] == "queued"
    assert body["params"] == {"lambda": 0.013}
    assert body["created_at"].endswith("Z")
    assert r.headers["location"] == f"{API}/{body['id']}"
    got = await client.get(f"{API}/{body['id']}")
    assert got.status_code == 200 and got.json() == body


async def test_post_answers_every_experiment_field(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(API, json={"id": "full"}, headers=auth)
    assert r.status_code == 201
    fields = {
        "id",
        "name",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "duration_s",
        "bitrate_reduction_pct",
        "psnr_db",
        "ms_ssim",
        "bpp",
        "bitrate_kbps",
        "cost_usd",
        "worker_id",
        "params",
        "tags",
        "error",
        "rd_points",
        "bd_rate_pct",
        "bd_rate_anchor",
    }
    assert fields <= set(r.json())


async def test_post_conflicts_when_the_id_exists(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(API, json={"id": "dup", "name": "one"}, headers=auth)
    assert r.status_code == 201
    r = await client.post(API, json={"id": "dup", "name": "two"}, headers=auth)
    assert_error(r, 409, "conflict")
    assert (await client.get(f"{API}/dup")).json()["name"] == "one"


async def test_get_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"{API}/nope"), 404, "not_found")
    assert_error(await client.get(f"{API}/bad%20id"), 422, "invalid")
    assert_error(await client.get(f"{API}/{'x' * 129}"), 422)


async def test_duration_is_derived(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.put(
        f"{API}/dur",
        headers=auth,
        json={
            "status": "completed",
            "started_at": "2025-03-14T10:00:00Z",
            "finished_at": "2025-03-14T10:30:00+00:00",
            "duration_s": 1.0,
        },
    )
    assert r.status_code == 201
    assert r.json()["duration_s"] == 1800.0
    # a naive time is taken as UTC; another offset is converted
    r = await client.put(
        f"{API}/tz",
        headers=auth,
        json={
            "created_at": "2025-03-14T10:00:00",
            "started_at": "2025-03-14T12:00:00+02:00",
            "status": "running",
        },
    )
    body = r.json()
    assert body["created_at"] == "2025-03-14T10:00:00.000Z"
    assert body["started_at"] == "2025-03-14T10:00:00.000Z"
    assert body["duration_s"] > 0  # running: measured until now


# -- put ---------------------------------------------------------------------------------
async def test_put_creates_then_replaces_idempotently(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"name": "p", "status": "completed", "psnr_db": 33.1, "tags": ["a", "b"]}
    first = await client.put(f"{API}/p-1", json=body, headers=auth)
    assert first.status_code == 201
    second = await client.put(f"{API}/p-1", json=body, headers=auth)
    assert second.status_code == 200
    a, b = first.json(), second.json()
    a.pop("updated_at"), b.pop("updated_at")
    assert a == b
    listing = (await client.get(API)).json()
    assert listing["total"] == 1
    replaced = await client.put(f"{API}/p-1", json={"name": "q"}, headers=auth)
    assert replaced.status_code == 200
    got = replaced.json()
    assert got["name"] == "q" and got["psnr_db"] is None and got["status"] == "queued"
    assert got["created_at"] == a["created_at"]


async def test_put_refuses_a_body_id_that_differs(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.put(f"{API}/a", json={"id": "b"}, headers=auth)
    assert_error(r, 422)
    assert (await client.get(API)).json()["total"] == 0
    r = await client.put(f"{API}/same", json={"id": "same"}, headers=auth)
    assert r.status_code == 201


# -- patch -------------------------------------------------------------------------------
async def test_patch_updates_the_given_fields_only(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.put(
        f"{API}/m", json={"name": "n", "status": "running", "tags": ["t"]}, headers=auth
    )
    r = await client.patch(f"{API}/m", json={"psnr_db": 34.2, "status": "completed"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["psnr_db"] == 34.2 and body["status"] == "completed"
    assert body["name"] == "n" and body["tags"] == ["t"]
    assert body["finished_at"] is not None and body["duration_s"] is not None
    r = await client.patch(f"{API}/m", json={"tags": None}, headers=auth)
    assert r.json()["tags"] is None and r.json()["name"] == "n"
    assert_error(await client.patch(f"{API}/ghost", json={"name": "x"}, headers=auth), 404)
    assert_error(await client.patch(f"{API}/m", json={"status": "exploded"}, headers=auth), 422)


# -- batch -------------------------------------------------------------------------------
async def test_batch_upserts_up_to_a_thousand(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    items = [
        {"id": f"b{i:04d}", "status": "completed", "psnr_db": 30 + i / 1000} for i in range(1000)
    ]
    r = await client.post(f"{API}/batch", json={"items": items}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1000}
    assert (await client.get(API, params={"limit": 1})).json()["total"] == 1000
    # upsert by id: sending some again replaces them
    r = await client.post(
        f"{API}/batch", headers=auth, json={"items": [{"id": "b0000", "name": "again"}]}
    )
    assert r.json() == {"accepted": 1}
    assert (await client.get(f"{API}/b0000")).json()["name"] == "again"
    assert (await client.get(API, params={"limit": 1})).json()["total"] == 1000


async def test_batch_over_a_thousand_changes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    items = [{"id": f"o{i}"} for i in range(1001)]
    r = await client.post(f"{API}/batch", json={"items": items}, headers=auth)
    assert_error(r, 422)
    assert (await client.get(API)).json()["total"] == 0


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.put(f"{API}/keep", json={"name": "before"}, headers=auth)
    items = [{"id": "keep", "name": "after"}, {"id": "n1"}, {"id": "n2", "psnr_db": "high"}]
    r = await client.post(f"{API}/batch", json={"items": items}, headers=auth)
    error = assert_error(r, 422)
    assert "items.2.psnr_db" in error["message"]
    assert (await client.get(f"{API}/keep")).json()["name"] == "before"
    assert_error(await client.get(f"{API}/n1"), 404)
    assert (await client.get(API)).json()["total"] == 1


async def test_batch_refuses_a_bad_body_shape(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for body in (b"", b"[]", b"{}", b'{"items": {}}', b"{not json", b'{"items": [1]}'):
        r = await client.post(
            f"{API}/batch", content=body, headers={**auth, "content-type": "application/json"}
        )
        assert_error(r, 422)


# -- list ------------------------------------------------------------------------------
async def _fill(client: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    statuses = ["completed", "failed", "running", "queued"]
    items = []
    for i in range(30):
        item: dict[str, Any] = {
            "id": f"l{i:02d}",
            "name": f"{'SSF' if i % 2 else 'dcvc'} run {i}",
            "status": statuses[i % 4],
            "worker_id": f"w{i % 3}",
            "created_at": (T0 - timedelta(minutes=7 * i)).isoformat(),
            "tags": ["even" if i % 2 == 0 else "odd"],
        }
        if i % 5:
            item.update(
                psnr_db=28 + (i * 7) % 10,
                bitrate_reduction_pct=float((i * 13) % 90),
                cost_usd=round(i * 0.37, 2),
            )
        items.append(item)
    r = await client.post(f"{API}/batch", json={"items": items}, headers=auth)
    assert r.status_code == 200
    return list((await client.get(API, params={"limit": 1000})).json()["items"])


async def test_list_defaults_newest_first(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    empty = (await client.get(API)).json()
    assert empty == {"items": [], "next_cursor": None, "total": 0}
    await _fill(client, auth)
    page = (await client.get(API)).json()
    assert set(page) == {"items", "next_cursor", "total"}
    assert page["total"] == 30 and len(page["items"]) == 30 and page["next_cursor"] is None
    assert [e["id"] for e in page["items"]] == [f"l{i:02d}" for i in range(30)]


async def test_list_filters(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    rows = await _fill(client, auth)

    async def ids(**params: Any) -> tuple[set[str], int]:
        page = (await client.get(API, params={"limit": 1000, **params})).json()
        return {e["id"] for e in page["items"]}, page["total"]

    got, total = await ids(status="completed")
    assert got == {r["id"] for r in rows if r["status"] == "completed"} and total == len(got)
    got, total = await ids(status="completed,failed")
    assert got == {r["id"] for r in rows if r["status"] in ("completed", "failed")}
    assert total == len(got)
    got, total = await ids(q="ssf")
    assert got == {r["id"] for r in rows if "ssf" in r["name"].lower()} and total == 15
    got, _ = await ids(worker_id="w1")
    assert got == {r["id"] for r in rows if r["worker_id"] == "w1"}
    got, _ = await ids(tag="odd")
    assert got == {r["id"] for r in rows if r["tags"] == ["odd"]}
    got, _ = await ids(min_psnr_db=35)
    assert got == {r["id"] for r in rows if (r["psnr_db"] or 0) >= 35}
    got, _ = await ids(min_bitrate_reduction_pct=50)
    assert got == {r["id"] for r in rows if (r["bitrate_reduction_pct"] or -1) >= 50}
    since = (T0 - timedelta(minutes=70)).isoformat()
    got, total = await ids(created_after=since)
    assert got == {f"l{i:02d}" for i in range(11)} and total == 11
    got, _ = await ids(created_before=since)
    assert got == {f"l{i:02d}" for i in range(11, 30)}
    got, total = await ids(status="running", q="dcvc")
    want = {r["id"] for r in rows if r["status"] == "running" and r["name"].startswith("dcvc")}
    assert got == want and total == len(want)


@pytest.mark.parametrize(
    "sort",
    [
        "psnr_db",
        "-psnr_db",
        "cost_usd",
        "-bitrate_reduction_pct",
        "created_at",
        "-finished_at",
        "name",
        "-status",
    ],
)
async def test_list_sorts_and_pages_with_a_cursor(
    client: httpx.AsyncClient, auth: dict[str, str], sort: str
) -> None:
    rows = await _fill(client, auth)
    name = sort.lstrip("-")
    descending = sort.startswith("-")
    present = sorted(
        (r for r in rows if r[name] is not None),
        key=lambda r: (r[name], r["id"]),
        reverse=descending,
    )
    missing = sorted(
        (r for r in rows if r[name] is None), key=lambda r: r["id"], reverse=descending
    )
    want = [r["id"] for r in present + missing]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(API, params=params)).json()
        assert page["total"] == 30
        assert len(page["items"]) <= 7
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == want


async def test_every_sortable_field_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _fill(client, auth)
    for name in SORTABLE:
        for sort in (name, f"-{name}"):
            r = await client.get(API, params={"sort": sort, "limit": 3})
            assert r.status_code == 200, (sort, r.text)


async def test_list_refuses_bad_parameters(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(API, params={"sort": "error"}), 400)
    assert_error(await client.get(API, params={"sort": "params"}), 400)
    assert_error(await client.get(API, params={"status": "exploded"}), 400)
    assert_error(await client.get(API, params={"cursor": "garbage"}), 400, "bad_cursor")
    assert_error(await client.get(API, params={"cursor": "garbage!"}), 422)  # not base64url
    assert_error(await client.get(API, params={"limit": 0}), 422)
    assert_error(await client.get(API, params={"limit": 1001}), 422)
    assert_error(await client.get(API, params={"limit": "many"}), 422)
    assert_error(await client.get(API, params={"min_psnr_db": "nan"}), 422)
    assert_error(await client.get(API, params={"min_psnr_db": "inf"}), 422)
    assert_error(await client.get(API, params={"created_after": "yesterday"}), 422)
    assert (await client.get(API, params={"limit": 1000})).status_code == 200
