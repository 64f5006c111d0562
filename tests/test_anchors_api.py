"""Anchors over the API: write, read, delete; stored BD-rates follow the anchor in force."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.codec_metrics import bd_report
from codecdash.config import Settings
from codecdash.experiments.rederive import rederive, sync_bd_rates
from codecdash.experiments.service import bd_rates_for
from codecdash.models import ExperimentIn
from codecdash.results import bundled_result_curves, rd_pairs
from codecdash.store import Store, schema
from conftest import writes

pytestmark = pytest.mark.anyio
ANCHORS = "/api/v1/anchors"
EXPERIMENTS = "/api/v1/experiments"
X264 = "x264-medium-tune-zerolatency"
X265 = "x265-medium-tune-zerolatency"
VTM = "VTM-v15.0-lowdelay"
SSF = "ssf2020-mse-ans-vimeo"
SSF_AUTHORS = "ssf2020-from-authors"
# BD-rate (PSNR-RGB) against x264 of the published UVG-1080p curves (tests/test_codec_metrics.py).
VS_X264 = {X265: -34.87, VTM: -73.71, SSF: 93.77, X264: 0.0}

MakeApp = Callable[..., Awaitable[FastAPI]]


def curve(name: str) -> list[dict[str, Any]]:
    """A bundled curve as rd_points (nulls dropped)."""
    found = {c.name: c for c in bundled_result_curves()}[name]
    return [{k: v for k, v in p.items() if v is not None} for p in found.points]


def anchor_body(name: str, description: str | None = "published") -> dict[str, Any]:
    return {"description": description, "rd_points": curve(name)}


def experiment_body(name: str, **fields: Any) -> dict[str, Any]:
    """A completed experiment with the bundled curve of that name (rd_points=None: none)."""
    if "rd_points" not in fields:
        fields["rd_points"] = curve(name)
    return {"name": name, "status": "completed", **fields}


async def settled(client: httpx.AsyncClient, auth: dict[str, str] | None = None) -> None:
    """Once the server has derived the stored BD-rates again (it does so in the background
    after an anchor write, or on start): GET /anchors says `recomputing: false`."""
    for _ in range(1000):
        if not (await client.get(ANCHORS, headers=auth)).json()["recomputing"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the BD-rates are still being derived again after 10 s")


async def put_anchor(
    client: httpx.AsyncClient, auth: dict[str, str], name: str, points_of: str | None = None
) -> httpx.Response:
    r = await client.put(f"{ANCHORS}/{name}", json=anchor_body(points_of or name), headers=auth)
    assert r.status_code in (200, 201), r.text
    await settled(client, auth)
    return r


async def delete_anchor(
    client: httpx.AsyncClient, auth: dict[str, str], name: str
) -> httpx.Response:
    r = await client.delete(f"{ANCHORS}/{name}", headers=auth)
    await settled(client, auth)
    return r


async def put_experiment(
    client: httpx.AsyncClient, auth: dict[str, str], experiment_id: str, **fields: Any
) -> dict[str, Any]:
    body = experiment_body(experiment_id, **fields)
    r = await client.put(f"{EXPERIMENTS}/{experiment_id}", json=body, headers=auth)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def bd_of(client: httpx.AsyncClient, experiment_id: str) -> tuple[float | None, str | None]:
    body = (await client.get(f"{EXPERIMENTS}/{experiment_id}")).json()
    return body["bd_rate_pct"], body["bd_rate_anchor"]


async def app_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def token_of(app: FastAPI, scope: str = "write") -> dict[str, str]:
    store: Store = app.state.codecdash.store
    return {"Authorization": f"Bearer {store.create_token(f'{scope}-token', scope)}"}  # type: ignore[arg-type]


# -- write, read, delete --------------------------------------------------------------------
async def test_put_get_delete_round_trip(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.put(f"{ANCHORS}/{X264}", json=anchor_body(X264, "x264 medium"), headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body == {
        "name": X264,
        "dataset": None,
        "description": "x264 medium",
        "rd_points": curve(X264),
        "rate_unit": "kbps",
        "created": True,
        "default": X264,
        "recomputed": None,  # the stored BD-rates now follow X264: in the background
        "recomputing": True,
    }
    await settled(client)
    r = await client.put(f"{ANCHORS}/{X264}", json=anchor_body(X264, "again"), headers=auth)
    assert r.status_code == 200 and r.json()["created"] is False
    assert r.json()["recomputed"] == 0 and r.json()["recomputing"] is False  # same curve

    listing = (await client.get(ANCHORS)).json()
    assert listing == {
        "items": [
            {
                "name": X264,
                "dataset": None,
                "description": "again",
                "rd_points": curve(X264),
                "rate_unit": "kbps",
            }
        ],
        "default": X264,
        "in_force": [{"dataset": None, "anchor": X264, "configured": None}],
        "configured_default": None,
        "quality_metric": "psnr",
        "recomputing": False,
    }
    one = await client.get(f"{ANCHORS}/{X264}")
    assert one.status_code == 200 and one.json() == listing["items"][0]

    # What GET answers can be sent back as it is.
    r = await client.put(f"{ANCHORS}/{X264}", json=one.json(), headers=auth)
    assert r.status_code == 200, r.text

    r = await delete_anchor(client, auth, X264)
    assert r.status_code == 200
    assert r.json() == {
        "deleted": X264,
        "dataset": None,
        "default": None,
        "recomputed": None,
        "recomputing": True,
    }
    assert_error(await client.get(f"{ANCHORS}/{X264}"), 404, "not_found")
    assert_error(await client.delete(f"{ANCHORS}/{X264}", headers=auth), 404, "not_found")
    assert (await client.get(ANCHORS)).json()["items"] == []


async def test_names_with_spaces_and_punctuation(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    name = "HM 16.20 (random access)"
    r = await client.put(f"{ANCHORS}/{quote(name)}", json=anchor_body(X265), headers=auth)
    assert r.status_code == 201, r.text
    assert (await client.get(ANCHORS)).json()["default"] == name
    assert (await client.get(f"{ANCHORS}/{quote(name)}")).json()["name"] == name


async def test_the_first_imported_anchor_stays_in_force_when_replaced(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await put_anchor(client, auth, X264)
    r = await put_anchor(client, auth, X265)
    assert r.json()["default"] == X264
    r = await put_anchor(client, auth, X264)  # imported again: keeps its place
    assert r.json()["default"] == X264
    listing = (await client.get(ANCHORS)).json()
    assert [a["name"] for a in listing["items"]] == [X264, X265]
    assert listing["default"] == X264


# -- auth ----------------------------------------------------------------------------------------
async def test_writes_need_a_write_token(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    url = f"{ANCHORS}/{X264}"
    assert_error(await client.put(url, json=anchor_body(X264)), 401, "unauthorized")
    bad = {"Authorization": "Bearer not-a-token"}
    assert_error(await client.put(url, json=anchor_body(X264), headers=bad), 401)
    read_only = token_of(app, "read")
    assert_error(await client.put(url, json=anchor_body(X264), headers=read_only), 401)
    await put_anchor(client, auth, X264)
    assert_error(await client.delete(url), 401)
    assert_error(await client.delete(url, headers=read_only), 401)
    assert (await client.get(ANCHORS)).json()["default"] == X264  # reads are public


async def test_private_mode_needs_a_token_for_reads(make_app: MakeApp, tmp_path: Path) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "private.db"), private=True))
    write, read = token_of(app), token_of(app, "read")
    async with await app_client(app) as client:
        await put_anchor(client, write, X264)
        await put_experiment(client, write, X265)
        for path in (
            ANCHORS,
            f"{ANCHORS}/{X264}",
            f"{ANCHORS}/{X264}/bd-rate?experiment_id={X265}",
            f"{EXPERIMENTS}/{X265}/bd-rate",
        ):
            assert_error(await client.get(path), 401, "unauthorized")
            assert (await client.get(path, headers=read)).status_code == 200, path


# -- validation -------------------------------------------------------------------------------
def _points(n: int, unit: str = "bitrate_kbps") -> list[dict[str, Any]]:
    return [{unit: 100.0 * (i + 1), "psnr_db": 30.0 + i} for i in range(n)]


BAD_BODIES = [
    pytest.param({"rd_points": _points(3)}, "rd_points", id="three-points"),
    pytest.param({"rd_points": _points(513)}, "rd_points", id="five-hundred-thirteen-points"),
    pytest.param({}, "rd_points", id="no-points"),
    pytest.param({"rd_points": "x264"}, "rd_points", id="points-not-a-list"),
    pytest.param(
        {"rd_points": [*_points(3), {"bpp": 0.5, "psnr_db": 40.0}]}, "mix", id="mixed-units"
    ),
    pytest.param(
        {"rd_points": [*_points(3), {"bitrate_kbps": -5.0, "psnr_db": 40.0}]},
        "greater than 0",
        id="negative-rate",
    ),
    pytest.param(
        {"rd_points": [*_points(3), {"bitrate_kbps": 500.0, "psnr_db": 400.0}]},
        "psnr_db",
        id="psnr-too-high",
    ),
    pytest.param(
        {"rd_points": [*_points(3), {"bitrate_kbps": 500.0}]}, "needs psnr_db", id="no-quality"
    ),
    pytest.param({"rd_points": [*_points(3), {"psnr_db": 40.0}]}, "needs bitrate", id="no-rate"),
    pytest.param({"rd_points": _points(4), "colour": "blue"}, "colour", id="unknown-field"),
    pytest.param({"rd_points": _points(4), "name": "other"}, "differs", id="name-differs"),
    pytest.param({"rd_points": _points(4), "rate_unit": "bpp"}, "rate_unit", id="unit-differs"),
    pytest.param(
        {"rd_points": [{"bitrate_kbps": 100.0 * (i + 1), "psnr_db": 30.0} for i in range(4)]},
        "two points at quality",
        id="one-quality-for-every-rate",
    ),
    pytest.param(
        {
            "rd_points": [
                {"bitrate_kbps": 100.0 * (i + 1), "ms_ssim": 0.9 + i / 100} for i in range(4)
            ]
        },
        "PSNR",
        id="no-psnr-when-bd-rates-are-in-psnr",
    ),
    pytest.param({"rd_points": _points(4), "description": "x" * 10_001}, "description", id="long"),
]


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
async def test_invalid_anchors_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], words: str
) -> None:
    error = assert_error(
        await client.put(f"{ANCHORS}/anchor", json=body, headers=auth), 422, "invalid"
    )
    assert words.lower() in (error["message"] + str(error.get("detail", ""))).lower(), error
    assert (await client.get(ANCHORS)).json()["items"] == []


async def test_non_finite_numbers_are_422(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    raw = (
        b'{"rd_points": [{"bitrate_kbps": NaN, "psnr_db": 30}, {"bitrate_kbps": 2, "psnr_db": 31},'
        b' {"bitrate_kbps": 3, "psnr_db": 32}, {"bitrate_kbps": 4, "psnr_db": Infinity}]}'
    )
    headers = {**auth, "Content-Type": "application/json"}
    r = await client.put(f"{ANCHORS}/anchor", content=raw, headers=headers)
    assert_error(r, 422)


@pytest.mark.parametrize("name", ["%20x264", "x264%20", "a%09b", "x" * 201])
async def test_unusable_names_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], name: str
) -> None:
    assert_error(await client.put(f"{ANCHORS}/{name}", json=anchor_body(X264), headers=auth), 422)


# -- BD-rate derived on write and on anchor change ---------------------------------------------
async def test_experiments_before_and_after_the_first_anchor_get_bd_rates(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = await put_experiment(client, auth, X265)
    assert before["bd_rate_pct"] is None and before["bd_rate_anchor"] is None
    await put_experiment(client, auth, "no-curve", rd_points=None)

    r = await put_anchor(client, auth, X264)
    assert r.json()["recomputing"] is True
    pct, anchor = await bd_of(client, X265)
    assert pct == pytest.approx(VS_X264[X265], abs=0.005) and anchor == X264

    after = await put_experiment(client, auth, VTM)
    assert after["bd_rate_pct"] == pytest.approx(VS_X264[VTM], abs=0.005)
    assert after["bd_rate_anchor"] == X264
    assert await bd_of(client, "no-curve") == (None, None)


async def test_the_server_ignores_bd_rates_sent_by_clients(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await put_anchor(client, auth, X264)
    sent = await put_experiment(client, auth, X265, bd_rate_pct=-99.0, bd_rate_anchor="mine")
    assert sent["bd_rate_pct"] == pytest.approx(VS_X264[X265], abs=0.005)
    assert sent["bd_rate_anchor"] == X264


async def test_a_patch_derives_the_bd_rate_from_the_curve_it_sends(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """A patched curve gets its BD-rate at once; a patch without one keeps the stored
    figure, whatever BD-rate the client sends; a cleared curve clears it."""
    await put_anchor(client, auth, X264)
    await put_experiment(client, auth, X265)
    url = f"{EXPERIMENTS}/{X265}"
    r = await client.patch(url, json={"rd_points": curve(VTM)}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["bd_rate_pct"] == pytest.approx(VS_X264[VTM], abs=0.005)
    r = await client.patch(
        url, json={"name": "n", "bd_rate_pct": 5.0, "bd_rate_anchor": "mine"}, headers=auth
    )
    assert (r.json()["name"], r.json()["bd_rate_anchor"]) == ("n", X264)
    assert r.json()["bd_rate_pct"] == pytest.approx(VS_X264[VTM], abs=0.005)
    assert await bd_of(client, X265) == (r.json()["bd_rate_pct"], X264)
    r = await client.patch(url, json={"rd_points": None}, headers=auth)
    assert (r.json()["bd_rate_pct"], r.json()["bd_rate_anchor"]) == (None, None)


async def test_sort_and_filter_by_bd_rate(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await put_anchor(client, auth, X264)
    for name in (SSF, X265, VTM, X264):
        await put_experiment(client, auth, name)
    await put_experiment(client, auth, "no-curve", rd_points=None)

    ascending = (await client.get(f"{EXPERIMENTS}?sort=bd_rate_pct")).json()["items"]
    assert [e["id"] for e in ascending] == [VTM, X265, X264, SSF, "no-curve"]  # nulls last
    for e in ascending[:4]:
        assert e["bd_rate_pct"] == pytest.approx(VS_X264[e["id"]], abs=0.005)
    descending = (await client.get(f"{EXPERIMENTS}?sort=-bd_rate_pct")).json()["items"]
    assert [e["id"] for e in descending] == [SSF, X264, X265, VTM, "no-curve"]

    page = (await client.get(f"{EXPERIMENTS}?sort=bd_rate_pct&limit=2")).json()
    assert [e["id"] for e in page["items"]] == [VTM, X265]
    rest = (await client.get(f"{EXPERIMENTS}?sort=bd_rate_pct&cursor={page['next_cursor']}")).json()
    assert [e["id"] for e in rest["items"]] == [X264, SSF, "no-curve"]

    saving = (await client.get(f"{EXPERIMENTS}?max_bd_rate_pct=-10&sort=bd_rate_pct")).json()
    assert [e["id"] for e in saving["items"]] == [VTM, X265] and saving["total"] == 2


async def test_a_configured_default_anchor_and_its_replacement(
    make_app: MakeApp, tmp_path: Path
) -> None:
    settings = Settings(database_url=str(tmp_path / "d.db"), default_anchor=VTM)
    app = await make_app(settings)
    auth = token_of(app)
    async with await app_client(app) as client:
        r = await put_anchor(client, auth, X264)
        assert r.json()["default"] is None  # the configured anchor is not there yet
        await put_experiment(client, auth, X265)
        assert await bd_of(client, X265) == (None, None)
        assert (await client.get(ANCHORS)).json()["configured_default"] == VTM

        r = await put_anchor(client, auth, VTM)
        assert r.json()["default"] == VTM and r.json()["recomputing"] is True
        pct, anchor = await bd_of(client, X265)
        expected = bd_report(rd_pairs(curve(VTM)), rd_pairs(curve(X265))).bd_rate_pct
        assert pct == pytest.approx(expected, abs=1e-4) and anchor == VTM

        # The anchor in force gets other points: every stored figure follows.
        version = (await client.get("/api/v1/health")).json()["data_version"]
        r = await put_anchor(client, auth, VTM, points_of=X264)
        assert r.json()["recomputing"] is True
        pct, anchor = await bd_of(client, X265)
        assert pct == pytest.approx(VS_X264[X265], abs=0.005) and anchor == VTM
        assert (await client.get("/api/v1/health")).json()["data_version"] > version


async def test_deleting_the_anchor_in_force_falls_back_to_the_next(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await put_anchor(client, auth, X264)
    await put_anchor(client, auth, X265)
    await put_experiment(client, auth, VTM)
    assert (await bd_of(client, VTM))[1] == X264

    r = await delete_anchor(client, auth, X264)
    assert r.json() == {
        "deleted": X264,
        "dataset": None,
        "default": X265,
        "recomputed": None,
        "recomputing": True,
    }
    pct, anchor = await bd_of(client, VTM)
    expected = bd_report(rd_pairs(curve(X265)), rd_pairs(curve(VTM))).bd_rate_pct
    assert pct == pytest.approx(expected, abs=1e-4) and anchor == X265

    r = await delete_anchor(client, auth, X265)
    assert r.json() == {
        "deleted": X265,
        "dataset": None,
        "default": None,
        "recomputed": None,
        "recomputing": True,
    }
    assert await bd_of(client, VTM) == (None, None)


async def test_writing_an_anchor_not_in_force_changes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await put_anchor(client, auth, X264)
    await put_experiment(client, auth, VTM)
    stored = (await client.get(f"{EXPERIMENTS}/{VTM}")).json()
    r = await put_anchor(client, auth, X265)
    assert r.json()["recomputed"] == 0 and r.json()["recomputing"] is False
    assert (await client.get(f"{EXPERIMENTS}/{VTM}")).json() == stored


# -- Best Compression from BD-rate ------------------------------------------------------------
async def test_best_compression_is_the_best_bd_saving_when_configured(
    make_app: MakeApp, tmp_path: Path
) -> None:
    app = await make_app(
        Settings(database_url=str(tmp_path / "bd.db"), compression_metric="bd_rate")
    )
    auth = token_of(app)
    async with await app_client(app) as client:
        await put_anchor(client, auth, X264)
        # x265 reports the larger saving; VTM has the better BD-rate.
        await put_experiment(client, auth, X265, bitrate_reduction_pct=95.0)
        await put_experiment(client, auth, VTM, bitrate_reduction_pct=10.0)
        await put_experiment(client, auth, SSF)
        running = experiment_body(X265, status="running")
        await client.put(f"{EXPERIMENTS}/running-one", json=running, headers=auth)

        snap = (await client.get("/api/v1/dashboard")).json()
        best = snap["summary"]["best_compression"]
        assert best["metric"] == "bd_rate" and best["experiment_id"] == VTM
        assert best["value_pct"] == pytest.approx(-VS_X264[VTM], abs=0.005)
        assert best["anchor"] == X264
        assert snap["targets"]["compression_metric"] == "bd_rate"
        assert snap["progress"]["compression"][-1]["best_pct"] == best["value_pct"]

        # The anchor in force gets VTM's curve: nothing saves bits against it any more, VTM
        # itself is the best at 0 %, and the per-hour best follows though it got worse.
        await put_anchor(client, auth, X264, points_of=VTM)
        snap = (await client.get("/api/v1/dashboard")).json()
        best = snap["summary"]["best_compression"]
        assert best["experiment_id"] == VTM and best["value_pct"] == pytest.approx(0.0, abs=1e-6)
        assert snap["progress"]["compression"][-1]["best_pct"] == best["value_pct"]

        await delete_anchor(client, auth, X264)
        snap = (await client.get("/api/v1/dashboard")).json()
        assert snap["summary"]["best_compression"] is None
        assert snap["progress"]["compression"] == []


async def test_best_compression_stays_the_reported_figure_by_default(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await put_anchor(client, auth, X264)
    await put_experiment(client, auth, X265, bitrate_reduction_pct=95.0)
    await put_experiment(client, auth, VTM, bitrate_reduction_pct=10.0)
    best = (await client.get("/api/v1/dashboard")).json()["summary"]["best_compression"]
    assert best == {
        "value_pct": 95.0,
        "experiment_id": X265,
        "metric": "reported",
        "per": "experiment",
    }


# -- the BD report --------------------------------------------------------------------------
async def test_bd_report_against_any_anchor(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await put_anchor(client, auth, X264)
    await put_anchor(client, auth, X265)
    for name in (VTM, SSF):
        await put_experiment(client, auth, name)

    r = await client.get(f"{EXPERIMENTS}/{VTM}/bd-rate")
    assert r.status_code == 200, r.text
    report = r.json()
    expected = bd_report(rd_pairs(curve(X264)), rd_pairs(curve(VTM)))
    assert report == {
        "anchor": X264,
        "experiment_id": VTM,
        "dataset": None,
        "quality_metric": "psnr",
        "rate_unit": "kbps",
        "bd_rate_pct": round(expected.bd_rate_pct, 4),
        "bd_psnr_db": pytest.approx(expected.bd_psnr_db, abs=1e-4),
        "overlap": pytest.approx(expected.overlap),
        "warning": None,
    }
    assert report["bd_rate_pct"] == (await bd_of(client, VTM))[0]  # the stored figure

    # The page switches anchors: both routes answer the same.
    by_experiment = (await client.get(f"{EXPERIMENTS}/{VTM}/bd-rate?anchor={X265}")).json()
    by_anchor = (await client.get(f"{ANCHORS}/{X265}/bd-rate?experiment_id={VTM}")).json()
    assert by_experiment == by_anchor and by_anchor["anchor"] == X265
    vs_x265 = bd_report(rd_pairs(curve(X265)), rd_pairs(curve(VTM))).bd_rate_pct
    assert by_anchor["bd_rate_pct"] == pytest.approx(vs_x265, abs=1e-4)

    warned = (await client.get(f"{ANCHORS}/{X264}/bd-rate?experiment_id={SSF}")).json()
    assert warned["bd_rate_pct"] == pytest.approx(VS_X264[SSF], abs=0.005)
    assert warned["overlap"] < 0.75
    assert "under 75%" in warned["warning"]

    ms_ssim = (await client.get(f"{EXPERIMENTS}/{VTM}/bd-rate?quality=ms_ssim")).json()
    expected_ms = bd_report(
        rd_pairs(curve(X264), quality="ms_ssim"), rd_pairs(curve(VTM), quality="ms_ssim")
    )
    assert ms_ssim["quality_metric"] == "ms_ssim"
    assert ms_ssim["bd_rate_pct"] == pytest.approx(expected_ms.bd_rate_pct, abs=1e-4)


async def test_bd_report_errors(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await put_experiment(client, auth, VTM)
    error = assert_error(await client.get(f"{EXPERIMENTS}/{VTM}/bd-rate"), 404)
    assert "no anchor in force" in error["message"]

    await put_anchor(client, auth, X264)
    await put_experiment(client, auth, SSF_AUTHORS)  # PSNR only
    await put_experiment(client, auth, "no-curve", rd_points=None)
    bpp = [{"bpp": 0.1 * (i + 1), "psnr_db": 30.0 + i} for i in range(4)]
    await client.put(f"{EXPERIMENTS}/image", json={"rd_points": bpp}, headers=auth)

    assert_error(await client.get(f"{EXPERIMENTS}/nope/bd-rate"), 404)
    assert_error(await client.get(f"{EXPERIMENTS}/{VTM}/bd-rate?anchor=nope"), 404)
    assert_error(await client.get(f"{ANCHORS}/nope/bd-rate?experiment_id={VTM}"), 404)
    assert_error(await client.get(f"{ANCHORS}/{X264}/bd-rate"), 422)  # experiment_id missing
    assert_error(await client.get(f"{EXPERIMENTS}/{VTM}/bd-rate?quality=vmaf"), 422)
    error = assert_error(await client.get(f"{EXPERIMENTS}/no-curve/bd-rate"), 422)
    assert "no rd_points" in error["message"]
    error = assert_error(await client.get(f"{EXPERIMENTS}/image/bd-rate"), 422)
    assert "bpp" in error["message"] and "kbps" in error["message"]
    error = assert_error(
        await client.get(f"{EXPERIMENTS}/{SSF_AUTHORS}/bd-rate?quality=ms_ssim"), 422
    )
    assert "MS-SSIM" in error["message"]


async def test_stored_bd_rates_follow_the_quality_metric(make_app: MakeApp, tmp_path: Path) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "m.db"), quality_metric="ms_ssim"))
    auth = token_of(app)
    async with await app_client(app) as client:
        await put_anchor(client, auth, X264)
        await put_experiment(client, auth, X265)
        expected = bd_report(
            rd_pairs(curve(X264), quality="ms_ssim"), rd_pairs(curve(X265), quality="ms_ssim")
        )
        assert (await bd_of(client, X265))[0] == pytest.approx(expected.bd_rate_pct, abs=1e-4)
        report = (await client.get(f"{EXPERIMENTS}/{X265}/bd-rate")).json()
        assert report["quality_metric"] == "ms_ssim"
        # An anchor without MS-SSIM cannot anchor MS-SSIM BD-rates.
        r = await client.put(f"{ANCHORS}/authors", json=anchor_body(SSF_AUTHORS), headers=auth)
        assert "MS-SSIM" in assert_error(r, 422)["message"]


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths[ANCHORS]) == {"get"}
    assert set(paths[ANCHORS + "/{name}"]) == {"get", "put", "delete"}
    assert set(paths[ANCHORS + "/{name}/bd-rate"]) == {"get"}
    assert set(paths[EXPERIMENTS + "/{experiment_id}/bd-rate"]) == {"get"}


# -- the store: recomputing in batches (both backends) ------------------------------------------
def test_recompute_in_batches_keeps_the_hourly_bests(store: Store) -> None:
    from codecdash.experiments.anchors import save_anchor

    settings = Settings(database_url="unused.db")
    finished = "2025-03-14T10:30:00Z"
    for name in (X265, VTM, SSF):
        writes(store, settings).put(
            name, ExperimentIn.model_validate(experiment_body(name, finished_at=finished))
        )
    writes(store, settings).put("queued", ExperimentIn.model_validate({"rd_points": curve(X265)}))
    version = store.version()

    def hourly_best() -> float | None:
        with store.db.read() as conn:
            rows = conn.execute(schema.progress_hourly.select()).mappings().all()
        values = [r["best_bd_rate_pct"] for r in rows if r["best_bd_rate_pct"] is not None]
        return min(values) if values else None

    assert hourly_best() is None
    change = save_anchor(store, settings, X264, None, curve(X264))
    assert (change.created, change.previous, change.in_force, change.recomputed) == (
        True,
        None,
        X264,
        4,
    )
    assert store.version() > version
    assert hourly_best() == pytest.approx(VS_X264[VTM], abs=0.005)

    store.put_anchor(X264, None, curve(VTM))  # behind the deriver's back: nothing follows
    assert hourly_best() == pytest.approx(VS_X264[VTM], abs=0.005)
    bd_rates_for(store, settings).reload()
    assert rederive(store, settings, batch_size=1) == 4
    assert hourly_best() == pytest.approx(0.0, abs=1e-6)  # VTM against itself; the rest worse
    assert rederive(store, settings, batch_size=3) == 0  # nothing left to change

    rows = {r: store.get_experiment(r) or {} for r in (X265, VTM, SSF, "queued")}
    assert all(row["bd_rate_anchor"] == X264 for row in rows.values())
    assert rows[VTM]["bd_rate_pct"] == pytest.approx(0.0, abs=1e-6)
    assert rows[X265]["updated_at"] == rows[X265]["created_at"]  # not an update by its worker


def test_a_curve_rewritten_during_a_rederivation_is_derived_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The figures are derived outside the write transaction: a curve rewritten between the
    read and the write is not given figures derived from its old points."""
    settings = Settings(database_url="unused.db")
    writes(store, settings).put(X265, ExperimentIn.model_validate(experiment_body(X265)))
    store.put_anchor(X264, None, curve(X264))  # behind the deriver's back
    bd_rates_for(store, settings).reload()
    read = store.curves_after

    def then_rewritten(after: str | None, limit: int) -> list[tuple[str, str]]:
        found = read(after, limit)
        if found:  # the experiment's worker sends VTM's curve meanwhile (no anchor yet)
            with monkeypatch.context() as m:
                m.setattr(store, "anchors", list)
                writes(store, settings).bd_rates.reload()
                body = experiment_body(X265, rd_points=curve(VTM))
                writes(store, settings).put(X265, ExperimentIn.model_validate(body))
            bd_rates_for(store, settings).reload()
        return found

    monkeypatch.setattr(store, "curves_after", then_rewritten)
    assert rederive(store, settings) == 1
    stored = store.get_experiment(X265) or {}
    assert stored["rd_points"] == curve(VTM)
    assert stored["bd_rate_pct"] == pytest.approx(VS_X264[VTM], abs=0.005)
    assert stored["bd_rate_anchor"] == X264


# -- on start: a changed default_anchor or quality_metric -----------------------------------------
async def test_a_restart_with_another_default_anchor_or_quality(
    make_app: MakeApp, tmp_path: Path
) -> None:
    url = str(tmp_path / "restart.db")
    first = await make_app(Settings(database_url=url))
    auth = token_of(first)
    async with await app_client(first) as client:
        await put_anchor(client, auth, X264)
        await put_anchor(client, auth, X265)
        await put_experiment(client, auth, VTM)
        assert (await bd_of(client, VTM))[1] == X264

    second = await make_app(Settings(database_url=url, default_anchor=X265))
    async with await app_client(second) as client:
        await settled(client)  # derived again in the background on start
        pct, anchor = await bd_of(client, VTM)
        expected = bd_report(rd_pairs(curve(X265)), rd_pairs(curve(VTM))).bd_rate_pct
        assert pct == pytest.approx(expected, abs=1e-4) and anchor == X265
        assert (await client.get(ANCHORS)).json()["default"] == X265

    third = await make_app(
        Settings(database_url=url, default_anchor=X265, quality_metric="ms_ssim")
    )
    async with await app_client(third) as client:
        await settled(client)
        expected = bd_report(
            rd_pairs(curve(X265), quality="ms_ssim"), rd_pairs(curve(VTM), quality="ms_ssim")
        ).bd_rate_pct
        assert (await bd_of(client, VTM))[0] == pytest.approx(expected, abs=1e-4)


def test_an_interrupted_rederivation_is_finished_by_the_next_sync(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codecdash.experiments import rederive as module
    from codecdash.experiments.anchors import save_anchor
    from codecdash.store import StoreUnavailable

    settings = Settings(database_url="unused.db")
    writes(store, settings).put(X265, ExperimentIn.model_validate(experiment_body(X265)))

    def interrupted(*_args: Any, **_kwargs: Any) -> int:
        raise StoreUnavailable("the database is locked by another writer")

    with monkeypatch.context() as patched:
        patched.setattr(module, "rederive", interrupted)
        with pytest.raises(StoreUnavailable):
            save_anchor(store, settings, X264, None, curve(X264))
    assert (store.get_experiment(X265) or {})["bd_rate_pct"] is None
    assert sync_bd_rates(store, settings) == 1
    pct = (store.get_experiment(X265) or {})["bd_rate_pct"]
    assert pct == pytest.approx(VS_X264[X265], abs=0.005)
    assert sync_bd_rates(store, settings) == 0  # done: nothing left to do


@pytest.mark.anyio
async def test_anchor_names_a_url_path_cannot_address_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """An anchor named `.` or `..` could never be read back (clients resolve dot segments);
    the CLI's import refuses it as the API does."""
    from codecdash.experiments.anchors import check_anchor_name

    for dots in (".", ".."):
        with pytest.raises(ValueError, match=r"not '\.' or '\.\.'"):
            check_anchor_name(dots)
    for fine in ("...", ".x264", "x264.."):
        assert check_anchor_name(fine) == fine
    r = await client.put("/api/v1/anchors/...", json={"rd_points": _points(4)}, headers=auth)
    assert r.status_code == 201, r.text
    assert (await client.get("/api/v1/anchors/...")).json()["name"] == "..."
