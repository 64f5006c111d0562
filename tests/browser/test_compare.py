"""The Compare section in real Chromium: experiments ticked in Recent Experiments (and methods
in the BD-rate table) drawn together per test set with that set's anchors, the params/tags
diff showing only what differs, the selection in the URL, and the chart's SVG and PNG
downloads (checked as real SVG and PNG files)."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser.conftest import Dashboard, MakeDashboard, OpenPage, axe_violations, wait_for_data
from codecdash.results import read_result_file

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
UVG = ROOT / "src" / "codecdash" / "data" / "rd-results" / "UVG-1080p"
X265 = "x265-medium-tune-zerolatency"
SECTION = "#compare"
SVG_NS = "{http://www.w3.org/2000/svg}"


def put_anchor(dash: Dashboard, name: str, **extra: Any) -> None:
    result = read_result_file(UVG / f"{name}.json")
    points = [{k: v for k, v in p.items() if v is not None} for p in result.points]
    response = dash.api.put(f"/api/v1/anchors/{name}", json={"rd_points": points, **extra})
    assert response.status_code in (200, 201), response.text


@pytest.fixture
def anchored(make_dashboard: MakeDashboard) -> Dashboard:
    """The seeded dashboard (its experiments have no test set) with x265 as an anchor."""
    dash = make_dashboard()
    put_anchor(dash, X265)
    return dash


def box(page: Page, exp_id: str) -> Any:
    return page.locator(f'#experiments-body tr[data-id="{exp_id}"] input.compare-box')


def tick(page: Page, exp_id: str) -> None:
    box(page, exp_id).check()


def test_experiments_compared_with_their_anchor_and_diff(anchored: Dashboard, page: Page) -> None:
    page.goto(anchored.url)
    wait_for_data(page)
    expect(page.locator(f"{SECTION} .compare-hint")).to_be_visible()
    tick(page, "exp-024")
    # Ticking is not opening: the details dialog stays closed.
    expect(page.locator("#experiment-details")).to_be_hidden()
    tick(page, "exp-027")
    page.wait_for_url(re.compile(r"cmp_exp=exp-024&cmp_exp=exp-027"))
    expect(page.locator(f"{SECTION} .compare-hint")).to_be_hidden()
    expect(page.locator(f"{SECTION} .compare-chip")).to_have_count(2)

    figure = page.locator(f'{SECTION} .compare-set[data-set="unspecified"]')
    figure.scroll_into_view_if_needed()
    expect(figure.locator(".compare-chart canvas")).to_have_count(1)
    key = figure.locator(".rd-key li")
    expect(key).to_have_count(3)
    expect(key.nth(0)).to_contain_text(f"{X265} (anchor)")
    expect(figure.locator(".compare-chart")).to_have_attribute(
        "aria-label", re.compile(r"ssf2020 λ=0\.0250 run 24 \(experiment, 4 points\)")
    )

    # Only what differs: lambda and the tags (lr, model, method and set are the same).
    diff = page.locator(f"{SECTION} .compare-diff-table")
    rows = diff.locator("tbody tr th")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_text("lambda")
    expect(rows.nth(1)).to_have_text("Tags")
    expect(diff.locator("td.is-diff mark")).to_have_count(2)
    expect(diff.locator("td.is-diff").first).to_have_text("0.028")

    # The selection survives a reload; a chip's button takes one out.
    page.reload()
    wait_for_data(page)
    expect(
        page.locator('#experiments-body tr[data-id="exp-027"] input.compare-box')
    ).to_be_checked()
    expect(page.locator(f"{SECTION} .compare-chip")).to_have_count(2)
    page.locator(f'{SECTION} button[data-remove="experiment:exp-024"]').click()
    expect(page.locator(f"{SECTION} .compare-chip")).to_have_count(1)
    expect(
        page.locator('#experiments-body tr[data-id="exp-024"] input.compare-box')
    ).not_to_be_checked()
    assert "exp-024" not in page.url and "cmp_exp=exp-027" in page.url
    expect(page.locator(f"{SECTION} .compare-diff")).to_contain_text("Tick two or more")


def test_chart_downloads_as_svg_and_png(anchored: Dashboard, page: Page) -> None:
    page.goto(f"{anchored.url}?cmp_exp=exp-024&cmp_exp=exp-027")
    wait_for_data(page)
    figure = page.locator(f'{SECTION} .compare-set[data-set="unspecified"]')
    figure.scroll_into_view_if_needed()
    expect(figure.locator(".rd-key li")).to_have_count(3)

    with page.expect_download() as info:
        figure.locator('button[data-download="svg"]').click()
    assert info.value.suggested_filename == "rd-unspecified.svg"
    root = ET.parse(info.value.path()).getroot()
    assert root.tag == f"{SVG_NS}svg"
    assert root.get("width") == "720" and root.get("height") == "440"
    titles = [t.text for t in root.iter(f"{SVG_NS}title")]
    assert "unspecified: rate-distortion" in titles
    assert X265 in titles and "ssf2020 λ=0.0280 run 27" in titles
    paths = list(root.iter(f"{SVG_NS}path"))
    assert len(paths) == 3  # one line per curve
    assert any(p.get("stroke-dasharray") for p in paths)  # the anchor, dashed
    assert len(list(root.iter(f"{SVG_NS}circle"))) == 8 + 4 + 4  # x265's 8 points, 4 + 4

    with page.expect_download() as info:
        figure.locator('button[data-download="png"]').click()
    assert info.value.suggested_filename == "rd-unspecified.png"
    data = Path(info.value.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR: twice the SVG's size
    assert (width, height) == (1440, 880)
    assert len(data) > 5000  # drawn, not blank


def test_a_dark_page_downloads_a_dark_chart(anchored: Dashboard, open_page: OpenPage) -> None:
    page = open_page(f"{anchored.url}?cmp_exp=exp-027", color_scheme="dark")
    wait_for_data(page)
    figure = page.locator(f'{SECTION} .compare-set[data-set="unspecified"]')
    figure.scroll_into_view_if_needed()
    expect(figure.locator(".compare-chart canvas")).to_have_count(1)
    with page.expect_download() as info:
        figure.locator('button[data-download="svg"]').click()
    root = ET.parse(info.value.path()).getroot()
    background = next(root.iter(f"{SVG_NS}rect"))
    assert background.get("fill") == "#161c24"  # the dark theme's --surface


# -- accessibility and small screens ------------------------------------------------------------
def open_compared(open_page: OpenPage, url: str, **kwargs: Any) -> Page:
    page = open_page(f"{url}?cmp_exp=exp-024&cmp_exp=exp-027", **kwargs)
    wait_for_data(page)
    figure = page.locator(f'{SECTION} .compare-set[data-set="unspecified"]')
    figure.scroll_into_view_if_needed()
    expect(figure.locator(".compare-chart canvas")).to_have_count(1)
    figure.locator("summary").click()  # the data table
    expect(page.locator(f"{SECTION} .compare-diff-table")).to_be_visible()
    return page


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_axe_on_the_compare_view(
    anchored: Dashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    page = open_compared(open_page, anchored.url, color_scheme=theme)
    assert not axe_violations(page, axe_source, "#compare")


@pytest.mark.parametrize("width", [320, 390])
def test_a_phone_can_compare(anchored: Dashboard, open_page: OpenPage, width: int) -> None:
    page = open_compared(open_page, anchored.url, width=width, height=800)
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    for selector in (".compare-chart", 'button[data-download="png"]', ".compare-diff-table th"):
        box = page.locator(f"{SECTION} {selector}").first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, selector
