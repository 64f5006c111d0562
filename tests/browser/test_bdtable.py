"""The BD-rate Table section in real Chromium: methods down, test sets across, the anchor of
each set in its header, the best cell per column marked, reasons and warnings shown; sorting,
filtering, the quality switch and per-set anchor overrides, all in the URL (a reload and
Back restore them); the per-sequence breakdown; the CSV and LaTeX downloads; axe in light and
dark mode, and a phone's width."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser.bd_fixture import CSV, LATEX, MCL, UVG, VTM, X265, X265_MCL, FakeBdRates
from browser.conftest import (
    Dashboard,
    MakeDashboard,
    OpenPage,
    StaticServer,
    axe_violations,
    deadline,
    page_problems,
    wait_for_data,
    wait_live,
)
from codecdash.config import Settings
from codecdash.results import read_result_file

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "src" / "codecdash" / "data" / "rd-results" / "UVG-1080p"  # published curves
SECTION = "#bd-table"


def open_table(open_page: OpenPage, url: str, **kwargs: Any) -> tuple[Page, FakeBdRates]:
    page = open_page(**kwargs)
    fake = FakeBdRates()
    fake.install(page)
    page.goto(url)
    wait_for_data(page)
    expect(page.locator(f"{SECTION} tbody tr[data-method]")).to_have_count(3)
    return page, fake


def methods(page: Page) -> list[str]:
    found: list[str] = page.eval_on_selector_all(
        f"{SECTION} tbody tr[data-method]", "rows => rows.map((r) => r.dataset.method)"
    )
    return found


def cell(page: Page, method: str, dataset: str) -> Any:
    return page.locator(f'{SECTION} tr[data-method="{method}"] td[data-set="{dataset}"]')


def test_the_table_shows_anchors_best_cells_reasons_and_warnings(
    dashboard: Dashboard, open_page: OpenPage
) -> None:
    page, _ = open_table(open_page, dashboard.url)
    head = page.locator(f"{SECTION} thead")
    expect(head.locator(f'th[data-sort="set:{UVG}"]')).to_contain_text(f"vs {X265}")
    expect(head.locator(f'th[data-sort="set:{MCL}"]')).to_contain_text(f"vs {X265_MCL}")
    expect(cell(page, "vtm-15", UVG)).to_contain_text("-30.1 %")
    expect(cell(page, "vtm-15", UVG)).to_contain_text("+1.20 dB")
    # The best (lowest) BD-rate of each column, marked in text as well as colour.
    expect(page.locator(f"{SECTION} td.is-best")).to_have_count(2)
    expect(cell(page, "vtm-15", UVG)).to_have_class(re.compile(r"\bis-best\b"))
    expect(cell(page, "ssf2020-mse", MCL)).to_have_class(re.compile(r"\bis-best\b"))
    expect(cell(page, "ssf2020-mse", MCL)).to_contain_text("best in column")
    # A warning is visible; a cell without a figure says why (text and title).
    expect(cell(page, "vtm-15", MCL).locator(".bd-warning")).to_contain_text("62 %")
    reason = cell(page, "x264-medium", MCL)
    expect(reason).to_contain_text("no R-D points on this test set")
    expect(reason).to_have_attribute("title", "no R-D points on this test set")
    expect(page.locator("#bd-summary")).to_have_text("3 of 3 methods · 2 test sets · PSNR")


def test_sort_filter_and_the_url_round_trip(dashboard: Dashboard, open_page: OpenPage) -> None:
    page, fake = open_table(open_page, dashboard.url)
    assert methods(page) == ["ssf2020-mse", "vtm-15", "x264-medium"]  # by name at first

    uvg = page.locator(f'{SECTION} th[data-sort="set:{UVG}"]')
    uvg.locator("button").click()  # best (lowest BD-rate) first
    expect(uvg).to_have_attribute("aria-sort", "ascending")
    assert methods(page) == ["vtm-15", "ssf2020-mse", "x264-medium"]
    uvg.locator("button").click()
    expect(uvg).to_have_attribute("aria-sort", "descending")
    assert methods(page) == ["x264-medium", "ssf2020-mse", "vtm-15"]
    # A missing figure sorts last either way.
    page.locator(f'{SECTION} th[data-sort="set:{MCL}"] button').click()
    assert methods(page) == ["ssf2020-mse", "vtm-15", "x264-medium"]
    page.locator(f'{SECTION} th[data-sort="set:{MCL}"] button').click()
    assert methods(page) == ["vtm-15", "ssf2020-mse", "x264-medium"]

    page.fill("#bd-filter", "SSF")
    expect(page.locator(f"{SECTION} tbody tr[data-method]")).to_have_count(1)
    expect(page.locator("#bd-summary")).to_contain_text("1 of 3 methods")
    page.wait_for_url(re.compile(r"bd_filter=SSF"))

    page.select_option("#bd-quality", "ms_ssim")
    expect(cell(page, "vtm-15", UVG)).to_have_count(0)  # filtered out
    expect(cell(page, "ssf2020-mse", UVG)).to_contain_text("-6.2 %")
    assert fake.last("quality") == "ms_ssim"

    page.select_option(f'{SECTION} select[data-dataset="{UVG}"]', VTM)
    expect(page.locator(f'{SECTION} th[data-sort="set:{UVG}"]')).to_contain_text(f"vs {VTM}")
    assert fake.last("anchor") == f"{UVG}:{VTM}"
    url = page.url
    assert "bd_quality=ms_ssim" in url and f"bd_anchor={UVG}%3A{VTM}" in url
    assert f"bd_sort=-set%3A{MCL}" in url

    # A reload (or the shared link) restores everything.
    again, fake2 = open_table_at(open_page, url)
    expect(again.locator("#bd-filter")).to_have_value("SSF")
    expect(again.locator("#bd-quality")).to_have_value("ms_ssim")
    expect(again.locator(f'{SECTION} select[data-dataset="{UVG}"]')).to_have_value(VTM)
    expect(again.locator(f'{SECTION} th[data-sort="set:{MCL}"]')).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(cell(again, "ssf2020-mse", UVG)).to_contain_text("+18.8 %")
    assert fake2.last("anchor") == f"{UVG}:{VTM}" and fake2.last("quality") == "ms_ssim"

    # Back undoes the anchor override.
    page.go_back()
    expect(page.locator(f'{SECTION} th[data-sort="set:{UVG}"]')).to_contain_text(f"vs {X265}")
    expect(page.locator(f'{SECTION} select[data-dataset="{UVG}"]')).to_have_value("")


def open_table_at(open_page: OpenPage, url: str) -> tuple[Page, FakeBdRates]:
    page = open_page()
    fake = FakeBdRates()
    fake.install(page)
    page.goto(url)
    wait_for_data(page)
    expect(page.locator(f"{SECTION} tbody tr[data-method]").first).to_be_visible()
    return page, fake


def test_per_sequence_breakdown_on_demand(dashboard: Dashboard, open_page: OpenPage) -> None:
    page, fake = open_table(open_page, dashboard.url)
    assert fake.last("sequences") is None  # nothing asked until a row is opened
    toggle = page.locator(f'{SECTION} button[data-open="ssf2020-mse"]')
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(toggle).to_be_focused()
    breakdown = page.locator(f'{SECTION} tr[data-breakdown="ssf2020-mse"]')
    expect(breakdown.locator("caption")).to_contain_text(f"ssf2020-mse on {UVG}, per sequence")
    expect(breakdown.locator("tbody tr")).to_have_count(3)
    expect(breakdown).to_contain_text("Bosphorus")
    expect(breakdown).to_contain_text("-15.5 %")
    expect(breakdown).to_contain_text("fewer than 4 points")
    assert fake.last("sequences") == "true" and fake.last("method") == "ssf2020-mse"
    assert "bd_open=ssf2020-mse" in page.url
    toggle.click()
    expect(breakdown).to_have_count(0)


def test_csv_and_latex_downloads(dashboard: Dashboard, open_page: OpenPage) -> None:
    page, fake = open_table(open_page, dashboard.url)
    page.select_option("#bd-quality", "ms_ssim")
    expect(page.locator("#bd-quality")).to_have_value("ms_ssim")
    with page.expect_download() as info:
        page.click("#bd-download-csv")
    download = info.value
    assert download.suggested_filename == "bd-rates.csv"
    assert Path(download.path()).read_text(encoding="utf-8") == CSV
    with page.expect_download() as info:
        page.click("#bd-download-latex")
    assert info.value.suggested_filename == "bd-rates.tex"
    assert Path(info.value.path()).read_text(encoding="utf-8") == LATEX
    formats = [q for q in fake.queries if "format" in q]
    assert [q["format"] for q in formats] == [["csv"], ["latex"]]
    assert all(q["quality"] == ["ms_ssim"] for q in formats)  # the view on screen


# -- the real endpoint over published results -----------------------------------------------
def points(name: str) -> list[dict[str, Any]]:
    found = read_result_file(RESULTS / f"{name}.json").points
    return [{k: v for k, v in p.items() if v is not None} for p in found]


@pytest.fixture
def published(make_dashboard: MakeDashboard, settings: Settings) -> Dashboard:
    """The published UVG-1080p curves: x264, x265 and VTM as the set's anchors (x265 in
    force); SSF as its authors report it, as a λ sweep (one experiment per point, method
    "ssf2020-authors"); SSF re-trained as one whole curve; and a run with no test set.
    Per-sequence rows (the set's curves again, under a sequence's name: the published files
    hold averages only): "Beauty" for x265 and SSF re-trained, "Bosphorus" for SSF only."""
    dash = make_dashboard(
        filled=False,
        app_settings=settings.model_copy(update={"default_anchors": {UVG: X265}}),
    )
    for name in (X265, "x264-medium-tune-zerolatency", VTM):
        extra = [{**p, "sequence": "Beauty"} for p in points(name)] if name == X265 else []
        response = dash.api.put(
            f"/api/v1/anchors/{name}", json={"rd_points": points(name) + extra, "dataset": UVG}
        )
        assert response.status_code in (200, 201), response.text
    for i, point in enumerate(points("ssf2020-from-authors")):
        dash.post_experiment(
            id=f"ssf-l{i}",
            name=f"SSF λ{i}",
            status="completed",
            dataset=UVG,
            method="ssf2020-authors",
            rd_points=[point],
        )
    vimeo = points("ssf2020-mse-ans-vimeo")
    dash.post_experiment(
        id="ssf-vimeo",
        name="SSF re-trained",
        status="completed",
        dataset=UVG,
        method="ssf2020-vimeo",
        rd_points=points("ssf2020-mse-ans-vimeo")
        + [{**p, "sequence": seq} for seq in ("Beauty", "Bosphorus") for p in vimeo],
    )
    dash.post_experiment(
        id="no-set", name="no set", status="completed", rd_points=points("ssf2020-mse-ans-vimeo")
    )
    return dash


def signed(value: float) -> str:
    return f"{'+' if value > 0 else ''}{value:.1f} %"


def test_real_results_through_the_api(published: Dashboard, open_page: OpenPage) -> None:
    page = open_page(published.url)
    wait_for_data(page)
    rows = page.locator(f"{SECTION} tbody tr[data-method]")
    expect(rows).to_have_count(3)

    def check_against(query: dict[str, str]) -> dict[str, Any]:
        answer: dict[str, Any] = published.api.get("/api/v1/bd-rates", params=query).json()
        keys = [d["key"] for d in answer["datasets"]]
        assert keys == [UVG, ""]  # UVG-1080p, then the unspecified set
        for row in answer["rows"]:
            for key in keys:
                found = row["cells"].get(key)
                shown = cell(page, row["method"], key)
                if found is None:
                    expect(shown).to_contain_text("no result on this set")
                elif found.get("bd_rate_pct") is None:
                    expect(shown).to_have_attribute("title", found["reason"])
                else:
                    expect(shown.locator(".bd-rate")).to_contain_text(signed(found["bd_rate_pct"]))
        return answer

    answer = check_against({"quality": "psnr"})
    assert answer["datasets"][0]["anchor"] == X265
    expect(page.locator(f'{SECTION} th[data-sort="set:{UVG}"]')).to_contain_text(f"vs {X265}")
    expect(page.locator(f'{SECTION} th[data-sort="set:"]')).to_contain_text("unspecified")
    lam = next(r for r in answer["rows"] if r["method"] == "ssf2020-authors")
    assert lam["experiments"] == 7  # the λ sweep is one method
    own = next(r for r in answer["rows"] if r["method"] == "no set")
    assert own["experiment_id"] == "no-set"  # no method: the experiment is its own
    expect(cell(page, "no set", "")).to_contain_text(own["cells"][""]["reason"])

    # The per-sequence breakdown, as the API computes it.
    page.locator(f'{SECTION} button[data-open="ssf2020-vimeo"]').click()
    seqs = published.api.get(
        "/api/v1/bd-rates",
        params={
            "quality": "psnr",
            "method": "ssf2020-vimeo",
            "sequences": "true",
        },
    ).json()["rows"][0]["cells"][UVG]["sequences"]
    assert set(seqs) == {"Beauty", "Bosphorus"}
    assert seqs["Beauty"]["bd_rate_pct"] is not None and "Bosphorus" in seqs["Bosphorus"]["reason"]
    breakdown = page.locator(f'{SECTION} tr[data-breakdown="ssf2020-vimeo"]')
    for name, found in seqs.items():
        line = breakdown.locator("tbody tr", has=page.locator(f'th:text-is("{name}")'))
        if found.get("bd_rate_pct") is None:
            expect(line).to_contain_text(found["reason"])
        else:
            expect(line).to_contain_text(signed(found["bd_rate_pct"]))

    page.select_option(f'{SECTION} select[data-dataset="{UVG}"]', VTM)
    expect(page.locator(f'{SECTION} th[data-sort="set:{UVG}"]')).to_contain_text(f"vs {VTM}")
    check_against({"quality": "psnr", "anchor": f"{UVG}:{VTM}"})
    page.select_option("#bd-quality", "ms_ssim")
    expect(page.locator("#bd-summary")).to_contain_text("MS-SSIM")
    check_against({"quality": "ms_ssim", "anchor": f"{UVG}:{VTM}"})

    with page.expect_download() as info:
        page.click("#bd-download-csv")
    expected = published.api.get(
        "/api/v1/bd-rates", params={"quality": "ms_ssim", "anchor": f"{UVG}:{VTM}", "format": "csv"}
    ).content
    assert Path(info.value.path()).read_bytes() == expected  # byte for byte, CRLF and all
    with page.expect_download() as info:
        page.click("#bd-download-latex")
    latex = Path(info.value.path()).read_text(encoding="utf-8")
    assert "\\begin{tabular}" in latex and VTM in latex

    # Ticking the λ-sweep method draws its curve (its seven runs' points) over the anchors.
    page.locator(f'{SECTION} tr[data-method="ssf2020-authors"] input.compare-box').check()
    figure = page.locator(f'#compare .compare-set[data-set="{UVG}"]')
    figure.scroll_into_view_if_needed()
    expect(figure.locator(".compare-chart canvas")).to_have_count(1)
    # SSF's authors report no MS-SSIM: on that axis only the three anchors, and a note.
    expect(figure.locator(".rd-key li")).to_have_count(3)
    expect(figure.locator(".compare-left")).to_contain_text("ssf2020-authors")
    page.select_option("#bd-quality", "psnr")
    expect(figure.locator(".rd-key li")).to_have_count(4)
    expect(figure.locator(".compare-left")).to_have_text("")
    expect(figure.locator(".compare-chart")).to_have_attribute(
        "aria-label", re.compile(r"ssf2020-authors \(method, 7 points\)")
    )
    assert "cmp_method=ssf2020-authors" in page.url


def test_a_static_export_shows_its_table(
    published: Dashboard, open_page: OpenPage, tmp_path: Path
) -> None:
    from codecdash.export import write_export

    out = tmp_path / "site"
    with ThreadPoolExecutor(1) as pool:  # not in Playwright's event-loop thread
        pool.submit(write_export, out, published.live.settings).result()
    static = StaticServer(out)
    try:
        page = open_page()
        page_problems(page).allow(r"status of 404")  # the API tried first, then dashboard.json
        page.goto(static.url)
        wait_for_data(page)
        expect(page.locator(f"{SECTION} tbody tr[data-method]")).to_have_count(3)
        expect(page.locator(f'{SECTION} th[data-sort="set:{UVG}"]')).to_contain_text(f"vs {X265}")
        expect(page.locator("#bd-quality")).to_be_disabled()  # one table: no other quality
        expect(page.locator(f'{SECTION} select[data-dataset="{UVG}"]')).to_be_disabled()
        with page.expect_download() as info:
            page.click("#bd-download-csv")
        assert Path(info.value.path()).read_bytes() == (out / "bd-rates.csv").read_bytes()
        page.locator(f'{SECTION} button[data-open="ssf2020-vimeo"]').click()
        expect(page.locator(f'{SECTION} tr[data-breakdown="ssf2020-vimeo"]')).to_contain_text(
            "needs the API"
        )
    finally:
        static.close()


# -- accessibility and small screens ------------------------------------------------------------
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_axe_on_the_table(
    dashboard: Dashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    page, _ = open_table(open_page, dashboard.url, color_scheme=theme)
    page.locator(f'{SECTION} button[data-open="vtm-15"]').click()
    expect(page.locator(f'{SECTION} tr[data-breakdown="vtm-15"] tbody tr')).to_have_count(3)
    assert not axe_violations(page, axe_source, SECTION)


@pytest.mark.parametrize("width", [320, 390])
def test_a_phone_can_read_the_table(dashboard: Dashboard, open_page: OpenPage, width: int) -> None:
    page, _ = open_table(open_page, dashboard.url, width=width, height=800)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    # The table scrolls inside its box, the method names stay in view.
    name = page.locator(f'{SECTION} tr[data-method="vtm-15"] th.bd-method')
    box = name.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    dl = page.locator("#bd-download-csv").bounding_box()
    assert dl is not None and dl["x"] + dl["width"] <= width


def test_a_long_table_draws_its_first_hundred_rows(
    dashboard: Dashboard, open_page: OpenPage
) -> None:
    """A thousand-row table takes seconds to lay out: 100 rows first, more on demand."""
    rows = [
        {
            "method": f"method-{m:03d}",
            "experiments": 1,
            "cells": {UVG: {"bd_rate_pct": -m / 10, "bd_psnr_db": 0.1, "overlap": 1.0}},
        }
        for m in range(150)
    ]
    body = {
        "quality_metric": "psnr",
        "per": "method",
        "datasets": [{"name": UVG, "key": UVG, "anchor": X265, "rate_unit": "kbps"}],
        "rows": rows,
    }
    page = open_page()
    page.route(
        "**/api/v1/bd-rates*",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(body)
        ),
    )
    page.goto(dashboard.url)
    wait_for_data(page)
    shown = page.locator(f"{SECTION} tbody tr[data-method]")
    expect(shown).to_have_count(100)
    expect(page.locator("#bd-summary")).to_have_text(
        "100 shown, 150 of 150 methods · 1 test set · PSNR"
    )
    more = page.locator(f"{SECTION} button[data-more]")
    expect(more).to_have_text("Show 50 more of 50")
    more.click()
    expect(shown).to_have_count(150)
    expect(page.locator(f'{SECTION} button[data-open="method-100"]')).to_be_focused()
    # Sorting still covers every row: the best of all 150 comes first.
    page.locator(f'{SECTION} th[data-sort="set:{UVG}"] button').click()
    expect(shown.first).to_have_attribute("data-method", "method-149")


RESULT_READS = re.compile(r"/api/v1/(anchors|bd-rates)|sort=bd_rate_pct")


def test_the_sections_read_again_only_when_the_results_change(
    dashboard: Dashboard, open_page: OpenPage
) -> None:
    """R-D, the BD-rate table and Compare read again when the snapshot's results_version
    moves: a heartbeat or a running experiment's progress redraws the cards and the table
    but costs none of their requests; a completion does."""
    page = open_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if RESULT_READS.search(r.url) else None)
    page.goto(dashboard.url)
    wait_for_data(page)
    wait_live(page)
    expect(page.locator(f"{SECTION} tbody tr[data-method]").first).to_be_visible()
    page.wait_for_timeout(6000)  # past the sections' 5 s gap between reads: all settled
    assert any("sort=bd_rate_pct" in url for url in asked), "the R-D section read nothing"
    settled = len(asked)
    beat = {"worker_id": "w-new", "role": "training", "status": "ok", "cpu_pct": 12.0}
    assert dashboard.api.post("/api/v1/heartbeats", json=beat).status_code < 300
    dashboard.post_experiment(id="in-progress", name="still training", status="running")
    expect(page.locator("#experiments-body")).to_contain_text("still training")
    page.wait_for_timeout(6000)  # what a section would have read by now
    assert asked[settled:] == [], asked[settled:]
    points = [{"bpp": 0.1, "psnr_db": 30.0}, {"bpp": 0.2, "psnr_db": 33.0}]
    dashboard.post_experiment(
        id="done", name="just finished", status="completed", psnr_db=33.0, rd_points=points
    )
    expect(page.locator("#experiments-body")).to_contain_text("just finished")
    until = deadline(10)
    while not any("bd-rates" in url for url in asked[settled:]) and until() > 1:
        page.wait_for_timeout(100)
    assert any("bd-rates" in url for url in asked[settled:]), "the completion was not read"
