"""The BD-rate table (GET /api/v1/bd-rates) on both databases, on real published curves:
every cell checked against the `bjontegaard` package, anchors per test set, methods from λ
sweeps and whole curves, reasons, sorting, filters, CSV and LaTeX."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.results import read_result_file
from conftest import MakeApp

pytestmark = pytest.mark.anyio
bd = pytest.importorskip("bjontegaard")

# The published UVG-1080p curves (CompressAI's files, byte for byte those of the shared
# data directory), read by the importer's own reader.
UVG_DIR = Path(__file__).parents[1] / "src" / "codecdash" / "data" / "rd-results" / "UVG-1080p"
X264 = "x264-medium-tune-zerolatency"
X265 = "x265-medium-tune-zerolatency"
VTM = "VTM-v15.0-lowdelay"
SSF = "ssf2020-mse-ans-vimeo"
UVG = "UVG-1080p"
OTHER = "MCL-JCV"  # a second set: the same curves serve to tell its anchor apart
TABLE = "/api/v1/bd-rates"


def curve(name: str) -> list[dict[str, Any]]:
    found = read_result_file(UVG_DIR / f"{name}.json")
    return [{k: v for k, v in p.items() if v is not None} for p in found.points]


def pairs(points: list[dict[str, Any]], key: str = "psnr_db") -> tuple[list[float], list[float]]:
    rates = [p["bitrate_kbps"] for p in points if key in p]
    return rates, [p[key] for p in points if key in p]


def reference(anchor: str, points: list[dict[str, Any]], what: str = "rate") -> float:
    """The bjontegaard package's figure (PCHIP, as JVET's sheets)."""
    function = bd.bd_rate if what == "rate" else bd.bd_psnr
    a, t = pairs(curve(anchor)), pairs(points)
    return float(function(*a, *t, method="pchip", require_matching_points=False, min_overlap=0))


@pytest.fixture
async def table_client(make_app: MakeApp, store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=store_url, default_anchors={UVG: X264, OTHER: X265})
    app = await make_app(settings)
    token = app.state.codecdash.store.create_token("writer")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://localhost",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        for dataset in (UVG, OTHER):
            for name in (X264, X265):
                body = {"rd_points": curve(name), "dataset": dataset}
                r = await client.put(f"/api/v1/anchors/{name}", json=body)
                assert r.status_code in (200, 201), r.text
        items: list[dict[str, Any]] = []
        # a λ sweep: one experiment per point of SSF's curve, on both sets
        for dataset in (UVG, OTHER):
            for i, point in enumerate(curve(SSF)):
                items.append(
                    {
                        "id": f"ssf-{dataset}-{i}",
                        "name": f"ssf λ{i}",
                        "status": "completed",
                        "dataset": dataset,
                        "method": "ssf-ours",
                        "rd_points": [point],
                    }
                )
        # whole curves: VTM as a method, x265 as its own (no method) on UVG only
        items.append(
            {
                "id": "vtm",
                "status": "completed",
                "dataset": UVG,
                "method": "VTM",
                "rd_points": curve(VTM),
            }
        )
        items.append(
            {
                "id": "x265-run",
                "name": "x265 run",
                "status": "completed",
                "dataset": UVG,
                "rd_points": curve(X265),
            }
        )
        r = await client.post("/api/v1/experiments/batch", json={"items": items})
        assert r.status_code == 200, r.text
        yield client


def by_method(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["method"]: row for row in table["rows"]}


async def test_every_cell_matches_the_bjontegaard_package(
    table_client: httpx.AsyncClient,
) -> None:
    r = await table_client.get(TABLE)
    assert r.status_code == 200, r.text
    table = r.json()
    assert table["datasets"] == [
        {"name": OTHER, "key": OTHER, "anchor": X265, "rate_unit": "kbps"},
        {"name": UVG, "key": UVG, "anchor": X264, "rate_unit": "kbps"},
    ]
    rows = by_method(table)
    assert sorted(rows) == ["VTM", "ssf-ours", "x265 run"]
    assert rows["ssf-ours"]["experiments"] == 2 * len(curve(SSF))
    assert rows["x265 run"]["experiment_id"] == "x265-run"
    expected = {
        ("ssf-ours", UVG): (X264, curve(SSF)),
        ("ssf-ours", OTHER): (X265, curve(SSF)),
        ("VTM", UVG): (X264, curve(VTM)),
        ("x265 run", UVG): (X264, curve(X265)),
    }
    checked = 0
    for (method, dataset), (anchor, points) in expected.items():
        cell = rows[method]["cells"][dataset]
        assert cell["bd_rate_pct"] == pytest.approx(reference(anchor, points), abs=1e-4)
        assert cell["bd_psnr_db"] == pytest.approx(reference(anchor, points, "psnr"), abs=1e-4)
        checked += 1
    assert checked == 4
    assert set(rows["VTM"]["cells"]) == {UVG}  # no results on the other set: no cell
    # the best (lowest) BD-rate of each column is marked, and only it
    uvg_best = [m for m, row in rows.items() if row["cells"].get(UVG, {}).get("best")]
    assert uvg_best == ["VTM"]
    # the λ sweep's SSF overlaps x264 on 62 % of the range: said
    assert "62%" in rows["ssf-ours"]["cells"][UVG]["warning"]


async def test_stored_bd_rates_follow_the_anchor_of_their_own_set(
    table_client: httpx.AsyncClient,
) -> None:
    r = await table_client.put(
        "/api/v1/experiments/vtm-other",
        json={"status": "completed", "dataset": OTHER, "rd_points": curve(VTM)},
    )
    stored = r.json()
    assert stored["bd_rate_anchor"] == X265
    assert stored["bd_rate_pct"] == pytest.approx(reference(X265, curve(VTM)), abs=1e-4)
    uvg = (await table_client.get("/api/v1/experiments/vtm")).json()
    assert uvg["bd_rate_anchor"] == X264
    assert uvg["bd_rate_pct"] == pytest.approx(reference(X264, curve(VTM)), abs=1e-4)
    # moving it to another set derives its figure again, against that set's anchor
    r = await table_client.patch("/api/v1/experiments/vtm-other", json={"dataset": UVG})
    assert r.json()["bd_rate_anchor"] == X264
    # a set with no anchor: no stored figure, and the table says why
    r = await table_client.put(
        "/api/v1/experiments/kodak",
        json={"status": "completed", "dataset": "HEVC-B", "rd_points": curve(VTM)},
    )
    assert r.json()["bd_rate_pct"] is None and r.json()["bd_rate_anchor"] is None
    cell = (await table_client.get(TABLE)).json()["rows"]
    [row] = [row for row in cell if row.get("experiment_id") == "kodak"]
    assert "no anchor in force on test set 'HEVC-B'" in row["cells"]["HEVC-B"]["reason"]
    # the list filters by set and method
    listed = (await table_client.get("/api/v1/experiments", params={"dataset": "HEVC-B"})).json()
    assert [e["id"] for e in listed["items"]] == ["kodak"]
    listed = (
        await table_client.get(
            "/api/v1/experiments",
            params={"method": "ssf-ours", "dataset": UVG, "sort": "-psnr_db", "limit": 100},
        )
    ).json()
    assert listed["total"] == len(curve(SSF))


async def test_the_anchor_in_force_can_be_chosen_per_set(
    table_client: httpx.AsyncClient,
) -> None:
    r = await table_client.get(TABLE, params={"anchor": f"{UVG}:{X265}"})
    table = r.json()
    assert [d["anchor"] for d in table["datasets"]] == [X265, X265]
    cell = by_method(table)["VTM"]["cells"][UVG]
    assert cell["bd_rate_pct"] == pytest.approx(reference(X265, curve(VTM)), abs=1e-4)
    # a plain name: every set
    table = (await table_client.get(TABLE, params={"anchor": X264})).json()
    assert [d["anchor"] for d in table["datasets"]] == [X264, X264]
    other = by_method(table)["ssf-ours"]["cells"][OTHER]
    assert other["bd_rate_pct"] == pytest.approx(reference(X264, curve(SSF)), abs=1e-4)
    # bad anchors and quality axes: clear refusals
    assert_error(await table_client.get(TABLE, params={"anchor": "nope"}), 404, "not_found")
    r = await table_client.get(TABLE, params={"anchor": f"{UVG}:nope"})
    assert "no anchor 'nope' in test set 'UVG-1080p'" in assert_error(r, 404)["message"]
    assert_error(await table_client.get(TABLE, params={"quality": "vmaf"}), 422)
    assert_error(await table_client.get(TABLE, params={"sort": "Kodak"}), 400)


async def test_ms_ssim_sorting_filters_and_per_experiment(
    table_client: httpx.AsyncClient,
) -> None:
    table = (await table_client.get(TABLE, params={"quality": "ms_ssim"})).json()
    assert table["quality_metric"] == "ms_ssim"
    cell = by_method(table)["VTM"]["cells"][UVG]
    a = pairs(curve(X264), "ms_ssim")
    t = pairs(curve(VTM), "ms_ssim")
    import math

    def db(values: list[float]) -> list[float]:
        return [-10 * math.log10(1 - v) for v in values]

    expected = bd.bd_rate(
        a[0],
        db(a[1]),
        t[0],
        db(t[1]),
        method="pchip",
        require_matching_points=False,
        min_overlap=0,
    )
    assert cell["bd_rate_pct"] == pytest.approx(expected, abs=1e-4)

    ordered = (await table_client.get(TABLE, params={"sort": UVG})).json()["rows"]
    assert [r["method"] for r in ordered] == ["VTM", "x265 run", "ssf-ours"]
    ordered = (await table_client.get(TABLE, params={"sort": f"-{UVG}"})).json()["rows"]
    assert [r["method"] for r in ordered] == ["ssf-ours", "x265 run", "VTM"]
    only = (await table_client.get(TABLE, params={"dataset": OTHER})).json()
    assert [d["name"] for d in only["datasets"]] == [OTHER]
    assert [r["method"] for r in only["rows"]] == ["ssf-ours"]
    assert [
        r["method"] for r in (await table_client.get(TABLE, params={"q": "X265"})).json()["rows"]
    ] == ["x265 run"]
    per = (await table_client.get(TABLE, params={"per": "experiment"})).json()
    assert per["per"] == "experiment"
    assert len(per["rows"]) == 2 * len(curve(SSF)) + 2
    single = next(r for r in per["rows"] if r.get("experiment_id") == "ssf-UVG-1080p-0")
    assert "1 distinct points" in single["cells"][UVG]["reason"]


async def test_reasons_cached_answers_and_writes(table_client: httpx.AsyncClient) -> None:
    bpp = [{"bpp": 0.1 * (i + 1), "psnr_db": 30.0 + i} for i in range(4)]
    r = await table_client.put(
        "/api/v1/experiments/image",
        json={"status": "completed", "dataset": UVG, "method": "image-codec", "rd_points": bpp},
    )
    assert r.status_code == 201
    first = (await table_client.get(TABLE)).json()
    reason = by_method(first)["image-codec"]["cells"][UVG]["reason"]
    assert "bpp" in reason and "kbps" in reason
    assert (await table_client.get(TABLE)).json() == first  # the kept answer
    # a write: the table follows at once
    r = await table_client.patch("/api/v1/experiments/vtm", json={"method": "VTM-renamed"})
    rows = by_method((await table_client.get(TABLE)).json())
    assert "VTM" not in rows and "VTM-renamed" in rows
    # failed runs stay out
    await table_client.patch("/api/v1/experiments/x265-run", json={"status": "failed"})
    assert "x265 run" not in by_method((await table_client.get(TABLE)).json())


async def test_per_sequence_breakdown(table_client: httpx.AsyncClient) -> None:
    anchor = curve(X264) + [{**p, "sequence": "Beauty"} for p in curve(X264)]
    r = await table_client.put(
        f"/api/v1/anchors/{X264}", json={"rd_points": anchor, "dataset": UVG}
    )
    assert r.status_code == 200, r.text
    points = curve(VTM) + [{**p, "sequence": "Beauty"} for p in curve(VTM)]
    points += [{**p, "sequence": "Jockey"} for p in curve(VTM)]
    await table_client.patch("/api/v1/experiments/vtm", json={"rd_points": points})
    plain = by_method((await table_client.get(TABLE)).json())["VTM"]["cells"][UVG]
    assert "sequences" not in plain
    assert plain["bd_rate_pct"] == pytest.approx(reference(X264, curve(VTM)), abs=1e-4)
    cell = by_method((await table_client.get(TABLE, params={"sequences": "true"})).json())["VTM"][
        "cells"
    ][UVG]
    assert cell["sequences"]["Beauty"]["bd_rate_pct"] == pytest.approx(
        reference(X264, curve(VTM)), abs=1e-4
    )
    assert "no PSNR points for sequence 'Jockey'" in cell["sequences"]["Jockey"]["reason"]


async def test_csv_and_latex_downloads(table_client: httpx.AsyncClient) -> None:
    r = await table_client.put(
        "/api/v1/experiments/tricky",
        json={
            "status": "completed",
            "dataset": UVG,
            "method": "=ours_v2 & 50% {best} #1 $x$ ~ ^ \\",
            "rd_points": curve(X265),
        },
    )
    assert r.status_code == 201
    r = await table_client.get(TABLE, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:3] == ["method", "experiments", f"{OTHER} BD-rate (%)"]
    by_name = {row[0]: row for row in rows[1:]}
    assert "'=ours_v2 & 50% {best} #1 $x$ ~ ^ \\" in by_name  # never a formula
    vtm = by_name["VTM"]
    uvg_at = rows[0].index(f"{UVG} BD-rate (%)")
    assert float(vtm[uvg_at]) == pytest.approx(reference(X264, curve(VTM)), abs=1e-4)
    assert (await table_client.get(TABLE, params={"format": "csv"})).text == r.text

    r = await table_client.get(TABLE, params={"format": "latex"})
    assert r.status_code == 200
    tex = r.text
    assert "\\begin{tabular}{lrr}" in tex and "\\end{tabular}" in tex
    assert (
        "=ours\\_v2 \\& 50\\% \\{best\\} \\#1 \\$x\\$ \\textasciitilde{} "
        "\\textasciicircum{} \\textbackslash{}" in tex
    )
    vtm_line = next(line for line in tex.splitlines() if line.startswith("VTM"))
    assert "\\textbf{" in vtm_line  # the best of its column


async def test_compressed_when_the_client_accepts_it(table_client: httpx.AsyncClient) -> None:
    plain = await table_client.get(TABLE, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    packed = await table_client.get(TABLE, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.json() == plain.json()  # httpx decodes it
    assert "Accept-Encoding" in packed.headers["vary"]
