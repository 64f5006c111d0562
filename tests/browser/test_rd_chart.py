"""The Rate-Distortion section in real Chromium: anchors (the bundled UVG-1080p curves, written
through PUT /api/v1/anchors/{name}) and experiments with rd_points (written through the API),
the log-rate chart with its data table, the anchor switcher re-asking the server for BD-rates,
the overlap warning, the BD-rate column of the table, cost against BD-rate, the empty state,
a static export, and axe on the section in light and dark mode."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser.aws_mode import AwsDashboard
from browser.conftest import (
    Dashboard,
    MakeDashboard,
    OpenPage,
    StaticServer,
    axe_violations,
    page_problems,
    wait_for_data,
)
from codecdash.config import Settings
from codecdash.results import read_result_file

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
UVG = ROOT / "src" / "codecdash" / "data" / "rd-results" / "UVG-1080p"
X264 = "x264-medium-tune-zerolatency"
X265 = "x265-medium-tune-zerolatency"
SECTION = "#rate-distortion"


def curve(name: str) -> list[dict[str, Any]]:
    """The points of a bundled result file, nulls left out (as a client would send them)."""
    points = read_result_file(UVG / f"{name}.json").points
    return [{k: v for k, v in p.items() if v is not None} for p in points]


def scaled(name: str, factor: float) -> list[dict[str, Any]]:
    """A bundled curve with every rate multiplied by `factor` (same qualities)."""
    return [{**p, "bitrate_kbps": p["bitrate_kbps"] * factor} for p in curve(name)]


# id: (name, rd_points, cost_usd). Against x265, "learned-b" needs exactly 20 % fewer bits;
# against x264 (-34.87 % for x265) that is -47.90 %. "ssf-retrained" overlaps x264's quality
# range by only 62 % (the warning).
EXPERIMENTS: dict[str, tuple[str, list[dict[str, Any]], float]] = {
    "learned-a": ("learned A (VTM-like)", scaled("VTM-v15.0-lowdelay", 1.1), 420.0),
    "learned-b": ("learned B", scaled(X265, 0.8), 120.0),
    "learned-c": ("learned C", scaled(X264, 0.9), 40.0),
    "ssf-retrained": ("SSF re-trained", curve("ssf2020-mse-ans-vimeo"), 60.0),
}


def put_anchors(dash: Dashboard) -> list[str]:
    """Every bundled result file as an anchor, in file-name order (so x264 is not first)."""
    names = []
    for path in sorted(UVG.glob("*.json")):
        result = read_result_file(path)
        body = {
            "description": result.description,
            "rd_points": [{k: v for k, v in p.items() if v is not None} for p in result.points],
        }
        response = dash.api.put(f"/api/v1/anchors/{result.name}", json=body)
        assert response.status_code in (200, 201), response.text
        names.append(result.name)
    return names


def post_experiments(dash: Dashboard) -> None:
    for exp_id, (name, points, cost) in EXPERIMENTS.items():
        dash.post_experiment(
            id=exp_id, name=name, status="completed", rd_points=points, cost_usd=cost
        )
    # Running: not in the list until opened in the details dialog.
    dash.post_experiment(
        id="running-1", name="still training", status="running", rd_points=scaled(X265, 0.95)
    )


@pytest.fixture
def codec_dashboard(make_dashboard: MakeDashboard, settings: Settings) -> Dashboard:
    """Anchors and experiments; the configured default anchor is x264."""
    dash = make_dashboard(
        filled=False, app_settings=settings.model_copy(update={"default_anchor": X264})
    )
    put_anchors(dash)
    post_experiments(dash)
    return dash


@pytest.fixture(params=["serve", "aws"])
def codec_served(request: pytest.FixtureRequest) -> Dashboard | AwsDashboard:
    """The same, behind `codecdash serve`, then behind the AWS deployment (the anchors and
    experiments written into its table, the read replica built from it)."""
    if request.param == "serve":
        dash: Dashboard = request.getfixturevalue("codec_dashboard")
        return dash
    deployed: AwsDashboard = request.getfixturevalue("make_aws_dashboard")(default_anchor=X264)
    for path in sorted(UVG.glob("*.json")):
        result = read_result_file(path)
        deployed.put_anchor(result.name, result.description, curve(path.stem))
    running = {"name": "still training", "status": "running", "rd_points": scaled(X265, 0.95)}
    deployed.put_experiments(
        [
            {"id": i, "name": n, "status": "completed", "rd_points": p, "cost_usd": c}
            for i, (n, p, c) in EXPERIMENTS.items()
        ]
        + [{"id": "running-1", **running}]
    )
    deployed.publish()
    deployed.snapshot()  # the schedule's run: CloudFront serves /api/v1/dashboard from it
    return deployed


def open_section(page: Page) -> None:
    """Waits for the data, scrolls the section into view and for its charts to be drawn."""
    wait_for_data(page)
    section = page.locator(SECTION)
    section.locator(".rd-chart").scroll_into_view_if_needed()
    expect(section.locator(".rd-chart canvas")).to_have_count(1)
    section.locator(".rd-cost-chart").scroll_into_view_if_needed()
    expect(section.locator(".rd-cost-chart canvas")).to_have_count(1)


def pick(page: Page, exp_id: str) -> Any:
    return page.locator(f'{SECTION} .rd-pick[data-id="{exp_id}"]')


def test_chart_anchor_switcher_and_bd_rates(
    codec_served: Dashboard | AwsDashboard, page: Page
) -> None:
    dash = codec_served  # both modes
    page.goto(dash.url)
    open_section(page)
    section = page.locator(SECTION)
    expect(section.locator("h2")).to_have_text("Rate-Distortion")

    # The switcher: every anchor, the configured default chosen (and marked as the default).
    select = page.locator("#anchor-select")
    expect(select).to_be_visible()
    options = select.locator("option")
    expect(options).to_have_count(5)
    values = [o.get_attribute("value") or "" for o in options.all()]
    assert sorted(values) == sorted(p.stem for p in UVG.glob("*.json"))
    expect(select).to_have_value(X264)
    expect(select.locator("option:checked")).to_have_text(f"{X264} (default)")

    # The chart is a uPlot canvas with a log x axis, described for screen readers.
    chart = section.locator(".rd-chart")
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(r"PSNR \(dB\) against bitrate \(kbps, log scale\)")
    )
    expect(chart).to_have_attribute("aria-label", re.compile(r"Anchors, dashed: .*x264"))
    expect(chart).to_have_attribute("aria-label", re.compile(r"Experiments, solid: .*learned B"))
    expect(chart).to_have_attribute("aria-label", re.compile(r"Pareto frontier"))
    size = chart.locator("canvas").bounding_box()
    assert size is not None and size["width"] > 300 and size["height"] > 200
    assert page.evaluate(
        """() => {
          const c = document.querySelector("#rate-distortion .rd-chart canvas");
          const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
          return false;
        }"""
    ), "the chart canvas is blank"

    # The experiments list: the completed ones, best BD-rate first, each with its BD-rate
    # against the chosen anchor, and the overlap warning where the curves share < 75 %.
    ids = page.eval_on_selector_all(f"{SECTION} .rd-pick", "els => els.map((e) => e.dataset.id)")
    assert ids == ["learned-a", "learned-b", "learned-c", "ssf-retrained"]
    expect(pick(page, "learned-b")).to_contain_text(f"BD-rate -47.9 % vs {X264}")
    expect(pick(page, "learned-c")).to_contain_text("-10.0 % vs " + X264)
    expect(pick(page, "ssf-retrained").locator(".rd-warning")).to_contain_text("Overlap 62 %")
    expect(pick(page, "learned-b").locator(".rd-warning")).to_have_count(0)
    expect(section.locator(".rd-status")).to_contain_text(f"BD-rate against {X264}")

    # Switching the anchor asks the server again (GET .../bd-rate?anchor=NAME) for each one.
    with page.expect_response(
        lambda r: "/api/v1/experiments/learned-b/bd-rate" in r.url and f"anchor={X265}" in r.url
    ) as asked:
        select.select_option(X265)
    assert asked.value.status == 200
    expect(pick(page, "learned-b")).to_contain_text(f"BD-rate -20.0 % vs {X265}")
    expect(section.locator(".rd-status")).to_contain_text(f"BD-rate against {X265}")
    expect(section.locator(".rd-key")).to_contain_text(f"{X265} (anchor, BD-rate reference)")
    expect(chart).to_have_attribute(
        "aria-label", re.compile(rf"{re.escape(X265)} \(the BD-rate anchor\)")
    )

    # The text alternative: every plotted point in a data table, the frontier's marked.
    table = section.locator(".rd-table")
    table.locator("summary").click()
    rows = table.locator("tbody tr")
    # 5 anchors (37 points) + 4 experiments (30 points).
    expect(rows).to_have_count(67)
    expect(table.locator("tbody")).to_contain_text("learned B")
    expect(table.locator("caption")).to_have_text("Rate-distortion points")
    frontier = table.locator("tbody tr", has_text="Yes")
    assert frontier.count() >= 4
    for row in frontier.all():
        assert "Experiment" in row.inner_text()

    # Unticking an experiment takes it off the chart (and out of the table).
    pick(page, "learned-c").locator("input").uncheck()
    expect(chart).not_to_have_attribute("aria-label", re.compile("learned C"))
    expect(rows).to_have_count(59)
    expect(pick(page, "learned-c").locator("input")).not_to_be_checked()


def test_cost_against_bd_rate(codec_served: Dashboard | AwsDashboard, page: Page) -> None:
    page.goto(codec_served.url)
    open_section(page)
    cost = page.locator(f"{SECTION} .rd-cost")
    expect(cost.locator("h3")).to_have_text("Cost against BD-rate")
    # learned A saves the most against x264 (VTM -73.71 % with 10 % more bits: -71.1 %).
    line = cost.locator(".rd-cost-line")
    expect(line).to_contain_text("per point of saving")
    expect(line).to_contain_text("learned A (VTM-like)")
    line_text = line.inner_text()
    saving = -((1 - 0.7371) * 1.1 - 1) * 100
    per_point = re.search(r"\$([\d,.]+) per point of saving", line_text)
    assert per_point, line_text
    assert float(per_point.group(1)) == pytest.approx(420.0 / saving, abs=0.01)
    chart = cost.locator(".rd-cost-chart")
    expect(chart).to_have_attribute("role", "img")
    expect(chart).to_have_attribute("aria-label", re.compile(r"4 completed experiments"))
    cost.locator("summary").click()
    expect(cost.locator("tbody tr")).to_have_count(4)
    expect(cost.locator("tbody tr").first).to_contain_text("learned A (VTM-like)")
    expect(cost.locator("tbody tr").first).to_contain_text("$420.00")


def test_bd_rate_column_sorts_and_names_the_anchor(codec_dashboard: Dashboard, page: Page) -> None:
    codec_dashboard.post_experiment(id="no-curve", name="no curve", status="completed")
    page.goto(codec_dashboard.url)
    wait_for_data(page)
    header = page.locator('#experiments-table th[data-sort="bd_rate_pct"]')
    expect(header).to_have_text("BD-rate")
    cell = page.locator('tr[data-id="learned-b"] td[data-label="BD-rate"]')
    expect(cell).to_have_text("-47.9 %")
    expect(cell).to_have_attribute("title", f"BD-rate against {X264}")
    expect(page.locator('tr[data-id="no-curve"] td[data-label="BD-rate"]')).to_have_text(
        re.compile(r"—")
    )
    with page.expect_response(lambda r: "sort=bd_rate_pct" in r.url):
        header.locator("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    assert "sort=bd_rate_pct" in page.url
    # Most saving first; the running one (x265's curve, 5 % fewer bits) has a BD-rate too.
    first = page.eval_on_selector_all(
        "#experiments-body tr[data-id]", "rows => rows.slice(0, 4).map((r) => r.dataset.id)"
    )
    assert first == ["learned-a", "learned-b", "running-1", "learned-c"]


def test_the_experiment_open_in_details_joins_the_chart(
    codec_served: Dashboard | AwsDashboard, page: Page
) -> None:
    page.goto(codec_served.url + "?exp=running-1")
    wait_for_data(page)
    expect(page.locator("#experiment-details")).to_be_visible()
    expect(pick(page, "running-1")).to_contain_text("(open in details)")
    expect(pick(page, "running-1").locator("input")).to_be_checked()
    expect(page.locator(f"{SECTION} .rd-chart")).to_have_attribute(
        "aria-label", re.compile("still training")
    )
    page.keyboard.press("Escape")
    expect(page.locator("#experiment-details")).to_be_hidden()
    expect(pick(page, "running-1")).to_have_count(0)


def test_empty_state_without_anchors(make_dashboard: MakeDashboard, page: Page) -> None:
    dash = make_dashboard(filled=False)
    dash.post_experiment(id="e1", name="e1", status="completed", rd_points=scaled(X265, 0.9))
    page.goto(dash.url)
    wait_for_data(page)
    section = page.locator(SECTION)
    empty = section.locator(".rd-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text(
        "Import an anchor: codecdash import-results x265.json --anchor --url"
    )
    expect(empty).to_contain_text(dash.live.url)
    expect(page.locator("#anchor-select")).to_be_hidden()
    expect(section.locator(".rd-body")).to_be_hidden()

    # The first anchor arrives: the section follows (no reload).
    response = dash.api.put(f"/api/v1/anchors/{X264}", json={"rd_points": curve(X264)})
    assert response.status_code == 201, response.text
    expect(page.locator("#anchor-select")).to_be_visible(timeout=15_000)
    expect(empty).to_be_hidden()
    expect(pick(page, "e1")).to_contain_text(f"vs {X264}")


def test_static_export_draws_the_snapshot_without_a_switcher(
    codec_dashboard: Dashboard, page: Page, tmp_path: Path
) -> None:
    from codecdash.export import write_export

    site = tmp_path / "site"
    # In a thread: the export runs its own event loop, and Playwright's holds this thread's.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(write_export, site, codec_dashboard.live.settings).result()
    codec_dashboard.stop()  # no API anywhere now
    server = StaticServer(site)
    try:
        page_problems(page).allow(r"status of 404")  # api/v1/dashboard, asked first
        page.goto(server.url)
        open_section(page)
        expect(page.locator("#anchor-select")).to_be_hidden()
        expect(pick(page, "learned-b")).to_contain_text(f"-47.9 % vs {X264}")
        expect(page.locator(f"{SECTION} .rd-status")).to_contain_text("static export")
        expect(page.locator(f"{SECTION} .rd-chart")).to_have_attribute(
            "aria-label", re.compile("Experiments, solid: .*learned B")
        )
    finally:
        server.close()


@pytest.mark.parametrize("width", [320, 390])
def test_no_sideways_scroll_on_a_phone(
    codec_dashboard: Dashboard, open_page: OpenPage, width: int
) -> None:
    page = open_page(codec_dashboard.url, width=width, height=800)
    open_section(page)
    page.locator(f"{SECTION} .rd-table summary").click()
    page.locator(f"{SECTION} .rd-cost-table summary").click()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    box = page.locator(SECTION).bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_axe_on_the_section(
    codec_dashboard: Dashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    page = open_page(codec_dashboard.url, color_scheme=theme)
    open_section(page)
    expect(pick(page, "ssf-retrained").locator(".rd-warning")).to_be_visible()
    for summary in page.locator(f"{SECTION} summary").all():
        summary.click()
    assert not axe_violations(page, axe_source, SECTION)
    page.locator("#anchor-select").select_option(X265)
    expect(pick(page, "learned-b")).to_contain_text(X265)
    assert not axe_violations(page, axe_source, SECTION)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_axe_on_the_empty_section(
    make_dashboard: MakeDashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    dash = make_dashboard(filled=False)
    dash.post_experiment(id="e1", name="e1", status="completed")
    page = open_page(dash.url, color_scheme=theme)
    wait_for_data(page)
    expect(page.locator(f"{SECTION} .rd-empty")).to_be_visible()
    assert not axe_violations(page, axe_source, SECTION)


def test_the_section_says_while_stored_bd_rates_are_recomputed(
    make_dashboard: MakeDashboard, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An anchor write answers at once; until the stored BD-rates follow it (in the
    background, made to hang here), the section says "recomputing…"; then it stops."""
    import threading

    from codecdash.experiments import rederive

    release = threading.Event()
    original = rederive.rederive

    def hanging(*args: Any, **kwargs: Any) -> int:
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(rederive, "rederive", hanging)
    dash = make_dashboard(filled=False)
    post_experiments(dash)
    try:
        r = dash.api.put(f"/api/v1/anchors/{X264}", json={"rd_points": curve(X264)})
        assert r.status_code == 201 and r.json()["recomputing"] is True
        page.goto(dash.url)
        wait_for_data(page)
        status = page.locator(f"{SECTION} .rd-status")
        expect(status).to_contain_text("recomputing…")
    finally:
        release.set()
    expect(status).not_to_contain_text("recomputing")
    expect(status).to_contain_text(f"BD-rate against {X264}")
