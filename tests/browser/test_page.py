"""The dashboard page in real Chromium against a real server: every section, live updates,
URL state, the details dialog, offline, themes, the empty state, demo data, failing sources,
narrow screens and a static export. The `page` fixtures fail a test on any console error or
CSP violation it did not announce (tests/browser/conftest.py)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import uvicorn
from playwright.sync_api import Page, expect

from browser.aws_mode import AwsDashboard
from browser.conftest import (
    NETWORK_ERRORS,
    BrokenSource,
    Dashboard,
    MakeDashboard,
    OpenPage,
    StaticServer,
    deadline,
    page_problems,
    seed_experiments,
    wait_for_data,
    wait_live,
)
from codecdash.api.app import create_app
from codecdash.config import Settings, load_settings
from codecdash.sources.local import local_sources
from codecdash.store import Store

pytestmark = pytest.mark.browser
Served = Dashboard | AwsDashboard

SECTIONS = [
    "total-experiments",
    "best-compression",
    "best-quality",
    "monthly-cost",
    "orchestrator",
    "training-workers",
    "inference-workers",
    "storage",
    "recent-experiments",
    "cost-breakdown",
    "compression-progress",
    "quality-progress",
]


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def row_ids(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#experiments-body tr[data-id]", "rows => rows.map((r) => r.dataset.id)"
    )
    return ids


def expect_rows(page: Page, ids: list[str]) -> None:
    """Waits until the table shows exactly these experiments, in this order.

    Locators rather than `wait_for_function`, whose polling evaluates a string: the
    page's Content-Security-Policy refuses that whenever the first check is not yet true.
    """
    rows = page.locator("#experiments-body tr[data-id]")
    expect(rows).to_have_count(len(ids))
    for i, experiment_id in enumerate(ids):
        expect(rows.nth(i)).to_have_attribute("data-id", experiment_id)


def api_ids(dash: Served, **params: Any) -> list[str]:
    response = dash.api.get("/api/v1/experiments", params={"limit": 20, **params})
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["items"]]


def stat(page: Page, section: str) -> str:
    return page.locator(f"#{section} .stat-value").inner_text()


# -- every section ------------------------------------------------------------------------
def test_every_section_shows_data(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    wait_for_data(page)

    for section in SECTIONS:
        expect(page.locator(f"#{section}")).to_be_visible()
        expect(page.locator(f"#{section} h2")).not_to_be_empty()
    # Thirty experiments: 15 completed, 5 failed, 5 running, 5 queued; the best completed one
    # is exp-027 (67 % bitrate reduction, 35.05 dB).
    expect(page.locator("#total-experiments .stat-value")).to_have_text("30")
    expect(page.locator("#total-experiments")).to_contain_text("75.0 %")  # success rate
    expect(page.locator("#best-compression .stat-value")).to_have_text("67.0 %")
    expect(page.locator("#best-compression")).to_contain_text("of 90.0 % target")
    expect(page.locator("#best-compression progress")).to_have_attribute("value", "67")
    expect(page.locator("#best-quality .stat-value")).to_have_text("35.05 dB")
    expect(page.locator("#best-quality")).to_contain_text("Target reached")
    expect(page.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
    expect(page.locator("#monthly-cost")).to_contain_text("of $5,000.00 budget")
    expect(page.locator("#orchestrator .badge")).to_have_text("ok")
    expect(page.locator("#orchestrator")).to_contain_text("12.5 %")
    expect(page.locator("#training-workers .stat-value")).to_have_text("2")
    expect(page.locator("#training-workers")).to_contain_text("50.0 %")  # spot share
    expect(page.locator("#inference-workers .stat-value")).to_have_text("1")
    expect(page.locator("#inference-workers")).to_contain_text("24.5")  # fps
    expect(page.locator("#storage .stat-value")).to_have_text(re.compile(r"^[\d.]+ (KiB|MiB)$"))
    expect(page.locator("#storage")).to_contain_text("Database items")

    # The table: the snapshot's 20 newest, newest first.
    expect(page.locator("#experiments-body tr[data-id]")).to_have_count(20)
    assert row_ids(page) == api_ids(dashboard)
    expect(page.locator("#table-summary")).to_have_text("Showing 20 of 30 experiments")
    expect(page.locator("#load-more")).to_be_visible()
    failed = page.locator('tr[data-id="exp-026"]')
    expect(failed.locator(".badge")).to_have_text("failed")

    # The cost donut and its legend table (its text alternative).
    legend = page.locator("#cost-breakdown .legend-table")
    expect(legend.locator("tbody tr")).to_have_count(4)
    expect(legend.locator("tbody tr").first).to_contain_text("Training")
    expect(legend.locator("tbody tr").first).to_contain_text("$1,200.00")
    expect(legend.locator("tfoot")).to_contain_text("$1,620.00")
    expect(page.locator("#cost-breakdown svg.donut")).to_have_attribute(
        "aria-label", re.compile(r"total \$1,620\.00")
    )

    # Charts: their text alternatives exist before they scroll into view; then they draw.
    for section, best in (("compression-progress", "67.0 %"), ("quality-progress", "35.05 dB")):
        box = page.locator(f"#{section} .chart")
        expect(box).to_have_attribute("aria-label", re.compile(f"best {re.escape(best)}"))
        expect(page.locator(f"#{section} .chart-summary")).to_contain_text(best)
        expect(page.locator(f"#{section} .chart-table tbody tr")).to_have_count(15)
        box.scroll_into_view_if_needed()
        expect(box.locator("canvas")).to_have_count(1)

    # Nothing says "not available" where the data has a figure, and no demo banner.
    for section in SECTIONS[:8]:
        assert stat(page, section) != "—", section
    expect(page.locator("#demo-banner")).to_be_hidden()
    expect(page.locator("#empty-state")).to_be_hidden()
    expect(page.locator("#stale-note")).to_be_hidden()
    expect(page.locator("#source-alerts")).to_be_hidden()
    expect(page.locator("#last-updated")).to_contain_text("Updated")


# -- live -----------------------------------------------------------------------------------
def test_new_experiment_appears_within_2_s_without_reload(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    wait_for_data(page)
    wait_live(page)
    page.evaluate("window.__sameDocument = true")

    sent = time.monotonic()
    dashboard.post_experiment(id="exp-live", name="appears live", status="running")
    left = deadline(2.0)
    expect(page.locator('tr[data-id="exp-live"]')).to_be_visible(timeout=left())
    expect(page.locator("#total-experiments .stat-value")).to_have_text("31", timeout=left())
    took = time.monotonic() - sent
    assert took <= 2.0, f"the new experiment took {took:.2f} s"
    assert row_ids(page)[0] == "exp-live"  # newest first
    assert page.evaluate("window.__sameDocument") is True  # no reload

    # An update to an existing experiment shows too.
    dashboard.api.patch(
        "/api/v1/experiments/exp-live", json={"status": "completed", "psnr_db": 40.0}
    ).raise_for_status()
    row = page.locator('tr[data-id="exp-live"]')
    expect(row.locator(".badge")).to_have_text("completed", timeout=2000)
    expect(row).to_contain_text("40.00 dB")
    expect(page.locator("#best-quality .stat-value")).to_have_text("40.00 dB", timeout=2000)


# -- the table's URL state ------------------------------------------------------------------
def test_filter_sort_url_state_reload_and_history(served: Served, page: Page) -> None:
    dashboard = served  # both modes: `codecdash serve` and the AWS deployment
    page.goto(dashboard.url)
    wait_for_data(page)

    page.select_option("#filter-status", "completed")
    page.wait_for_url(re.compile(r"\?status=completed$"))
    expect(page.locator("#experiments-body tr[data-id]")).to_have_count(15)
    statuses = page.eval_on_selector_all(
        "#experiments-body tr[data-id]", "rows => rows.map((r) => r.dataset.status)"
    )
    assert set(statuses) == {"completed"}

    page.fill("#filter-q", "run 1")
    page.wait_for_url(re.compile(r"q=run\+1"))
    expected = api_ids(dashboard, status="completed", q="run 1")
    assert expected and len(expected) < 15
    expect(page.locator("#experiments-body tr[data-id]")).to_have_count(len(expected))
    assert row_ids(page) == expected
    expect(page.locator("#table-summary")).to_contain_text("matching")

    page.select_option("#filter-sort", "psnr_db")
    page.wait_for_url(re.compile(r"sort=psnr_db"))
    by_psnr = api_ids(dashboard, status="completed", q="run 1", sort="psnr_db")
    assert by_psnr != expected
    expect_rows(page, by_psnr)
    expect(page.locator('th[data-sort="psnr_db"]')).to_have_attribute("aria-sort", "ascending")
    assert query(page) == {"status": ["completed"], "q": ["run 1"], "sort": ["psnr_db"]}

    # A reload restores the view from the URL alone.
    page.reload()
    wait_for_data(page)
    expect(page.locator("#filter-status")).to_have_value("completed")
    expect(page.locator("#filter-q")).to_have_value("run 1")
    expect(page.locator("#filter-sort")).to_have_value("psnr_db")
    expect_rows(page, by_psnr)

    # Back and forward step through the views.
    page.go_back()
    page.wait_for_url(re.compile(r"\?status=completed&q=run\+1$"))
    expect(page.locator("#filter-sort")).to_have_value("-created_at")
    expect(page.locator('th[data-sort="psnr_db"]')).not_to_have_attribute("aria-sort", "ascending")
    expect_rows(page, expected)
    page.go_back()
    page.wait_for_url(re.compile(r"\?status=completed$"))
    expect(page.locator("#filter-q")).to_have_value("")
    expect(page.locator("#experiments-body tr[data-id]")).to_have_count(15)
    page.go_forward()
    page.wait_for_url(re.compile(r"q=run\+1"))
    expect(page.locator("#filter-q")).to_have_value("run 1")
    expect(page.locator("#experiments-body tr[data-id]")).to_have_count(len(expected))

    # A header button sorts too, and a filter that matches nothing says so.
    page.click('th[data-sort="cost_usd"] button')
    page.wait_for_url(re.compile(r"sort=-cost_usd"))
    expect(page.locator('th[data-sort="cost_usd"]')).to_have_attribute("aria-sort", "descending")
    page.fill("#filter-q", "no such experiment")
    expect(page.locator("#experiments-body .table-empty")).to_contain_text("No experiment matches")
    page.click("#experiments-body .table-empty button")
    expect(page.locator("#filter-status")).to_have_value("")
    expect(page.locator("#experiments-body tr[data-id]")).to_have_count(20)


# -- details ---------------------------------------------------------------------------------
def test_row_opens_details_with_params_tags_error_and_rd_points(served: Served, page: Page) -> None:
    page.goto(served.url)
    wait_for_data(page)
    dialog = page.locator("#experiment-details")

    # A failed experiment: its error, tags and parameters.
    page.click('tr[data-id="exp-026"] td.col-status')  # anywhere on the row
    expect(dialog).to_be_visible()
    page.wait_for_url(re.compile(r"exp=exp-026"))
    expect(dialog.locator("#details-title")).to_have_text("ssf2020 λ=0.0270 run 26")
    expect(dialog.locator(".error-box")).to_have_text("CUDA out of memory (run 26)")
    expect(dialog.locator(".tag-list li")).to_have_text(["uvg", "ms-ssim"])
    params = dialog.locator(".params-table tbody tr")
    expect(params).to_have_count(3)
    expect(dialog.locator(".params-table")).to_contain_text("lambda")
    expect(dialog.locator(".params-table")).to_contain_text("0.027")
    expect(dialog).to_contain_text("No rate-distortion points recorded.")
    assert page.evaluate("document.getElementById('experiment-details').open") is True

    page.click("#details-close")
    expect(dialog).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"[?&]exp="))
    expect(page.locator('tr[data-id="exp-026"] a.exp-link')).to_be_focused()

    # A completed experiment: its figures and rate-distortion points (table and chart).
    page.click('tr[data-id="exp-027"] a.exp-link')
    expect(dialog).to_be_visible()
    page.wait_for_url(re.compile(r"exp=exp-027"))
    expect(dialog).to_contain_text("67.0 %")
    expect(dialog).to_contain_text("35.05 dB")
    rd = dialog.locator("table.data-table:not(.params-table) tbody tr")
    expect(rd).to_have_count(4)
    expect(rd.first).to_contain_text("250")
    expect(dialog.locator(".chart-rd")).to_have_attribute("aria-label", re.compile("4 points"))
    expect(dialog.locator(".chart-rd canvas")).to_have_count(1)
    expect(dialog.locator(".error-box")).to_have_count(0)

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"[?&]exp="))


def test_opening_an_experiment_asks_for_it_once(served: Served, page: Page) -> None:
    """The table's rows are in a card: the cards' link handler leaves them to the table's
    own (one opening, one request: on AWS each is billed)."""
    asked: list[str] = []
    wanted = re.compile(r"/api/v1/experiments/exp-019(\?|$)")
    page.on("request", lambda r: asked.append(r.url) if wanted.search(r.url) else None)
    page.goto(served.url)
    wait_for_data(page)
    page.click('tr[data-id="exp-019"] a.exp-link')
    expect(page.locator("#details-title")).to_have_text("ssf2020 λ=0.0200 run 19")
    assert len(asked) == 1, asked


def test_exp_deep_link_opens_details(served: Served, page: Page) -> None:
    dashboard = served
    page.goto(dashboard.url + "?exp=exp-027")
    dialog = page.locator("#experiment-details")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#details-title")).to_have_text("ssf2020 λ=0.0280 run 27")
    expect(dialog.locator("table.data-table:not(.params-table) tbody tr")).to_have_count(4)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.wait_for_url(re.compile(r"/$"))  # a shared link's exp is dropped, no history step

    # An unknown id says so in the dialog.
    page_problems(page).allow(r"status of 404")
    page.goto(dashboard.url + "?exp=no-such-exp")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("There is no experiment with this id")


# -- offline ---------------------------------------------------------------------------------
@contextlib.contextmanager
def restarted(dash: Dashboard) -> Iterator[None]:
    """A new server for the same database on the same port, stopped on leaving."""
    port = int(dash.live.url.rsplit(":", 1)[1])
    app = create_app(dash.live.settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.codecdash.store.close()


def test_offline_keeps_data_marks_it_stale_and_recovers(dashboard: Dashboard, page: Page) -> None:
    page_problems(page).allow(NETWORK_ERRORS)
    page.goto(dashboard.url)
    wait_for_data(page)
    wait_live(page)
    before = row_ids(page)

    dashboard.stop()
    status = page.locator("#connection-status")
    expect(status).to_have_attribute("data-state", "offline", timeout=8000)
    expect(status).to_contain_text("Offline")
    expect(page.locator("#stale-note")).to_be_visible()
    expect(page.locator("html")).to_have_class(re.compile(r"\bis-stale\b"))
    # The last data stays on screen.
    expect(page.locator("#total-experiments .stat-value")).to_have_text("30")
    expect(page.locator("#best-compression .stat-value")).to_have_text("67.0 %")
    assert row_ids(page) == before

    # When the server is back, the page reconnects on its own.
    with restarted(dashboard):
        expect(status).to_have_attribute("data-state", "live", timeout=15000)
        expect(page.locator("#stale-note")).to_be_hidden()
        expect(page.locator("html")).not_to_have_class(re.compile(r"\bis-stale\b"))
        page.close()  # before the server goes: no error from a stream cut at the end


# -- themes ----------------------------------------------------------------------------------
DARK_BG = "rgb(14, 19, 25)"  # --bg of the dark theme
LIGHT_BG = "rgb(244, 246, 249)"


def background(page: Page) -> str:
    colour: str = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return colour


def test_dark_mode_follows_the_system(dashboard: Dashboard, open_page: OpenPage) -> None:
    page = open_page(dashboard.url, color_scheme="dark")
    wait_for_data(page)
    assert background(page) == DARK_BG
    expect(page.locator("#theme-toggle")).to_have_attribute("aria-pressed", "true")
    page.locator("#compression-progress .chart").scroll_into_view_if_needed()
    expect(page.locator("#compression-progress canvas")).to_have_count(1)


def test_dark_mode_toggle_is_remembered(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    wait_for_data(page)
    toggle = page.locator("#theme-toggle")
    assert background(page) == LIGHT_BG
    expect(toggle).to_have_attribute("aria-pressed", "false")

    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.locator("body")).to_have_css("background-color", DARK_BG)
    assert page.evaluate("localStorage.getItem('codecdash-theme')") == "dark"

    page.reload()
    wait_for_data(page)
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert background(page) == DARK_BG

    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("localStorage.getItem('codecdash-theme')") == "light"
    expect(page.locator("body")).to_have_css("background-color", LIGHT_BG)


# -- empty, demo, failing sources ------------------------------------------------------------
def test_empty_state_on_an_empty_database(empty_dashboard: Dashboard, page: Page) -> None:
    page.goto(empty_dashboard.url)
    empty = page.locator("#empty-state")
    expect(empty).to_be_visible()
    expect(empty.locator("h2")).to_contain_text("No experiments yet")
    # The snippets name this server.
    urls = page.eval_on_selector_all(".js-server-url", "els => els.map((e) => e.textContent)")
    assert urls and set(urls) == {empty_dashboard.live.url}
    expect(page.locator("#experiments-body .table-empty")).to_contain_text("No experiments yet")
    expect(page.locator("#total-experiments .stat-value")).to_have_text("0")
    expect(page.locator("#best-compression")).to_contain_text("No completed experiment yet")
    expect(page.locator("#compression-progress .chart-empty")).to_be_visible()
    expect(page.locator("#cost-breakdown")).to_contain_text("No costs recorded")

    # The first experiment replaces the empty state, live.
    wait_live(page)
    empty_dashboard.post_experiment(id="first", name="first one", status="queued")
    expect(page.locator('tr[data-id="first"]')).to_be_visible(timeout=2000)
    expect(empty).to_be_hidden()


def test_demo_banner_with_demo_data(
    make_dashboard: MakeDashboard, page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./codecdash.toml is read
    settings = load_settings(env={"CODECDASH_DEMO": "true"}, database_url=str(tmp_path / "demo.db"))
    assert settings.demo
    dash = make_dashboard(app_settings=settings)
    page.goto(dash.url)
    wait_for_data(page)
    banner = page.locator("#demo-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Demo data")


def test_failing_source_shows_in_its_section(
    make_dashboard: MakeDashboard, settings: Settings, page: Page
) -> None:
    store = Store(settings.database_url)
    sources = [s for s in local_sources(store, settings) if "storage" not in s.sections]
    sources += [
        BrokenSource("s3", ("storage",), "S3 ListObjectsV2: AccessDenied"),
        BrokenSource("ticketing", (), "Jira answered 502"),  # feeds no section
    ]
    dash = make_dashboard(store=store, sources=sources)
    page.goto(dash.url)
    wait_for_data(page)

    storage = page.locator("#storage")
    expect(storage).to_have_class(re.compile(r"\bhas-source-error\b"))
    expect(storage.locator(".source-error")).to_have_text(
        "Source unavailable: S3 ListObjectsV2: AccessDenied (s3)"
    )
    alerts = page.locator("#source-alerts")
    expect(alerts).to_be_visible()
    expect(alerts).to_contain_text("Source unavailable: Jira answered 502 (ticketing)")
    # The other sections are drawn as usual and carry no error.
    expect(page.locator(".source-error")).to_have_count(1)
    expect(page.locator("#total-experiments .stat-value")).to_have_text("30")
    expect(page.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")


def test_private_dashboard_asks_for_a_read_token(
    make_dashboard: MakeDashboard, settings: Settings, page: Page
) -> None:
    dash = make_dashboard(app_settings=settings.model_copy(update={"private": True}))
    page_problems(page).allow(r"status of 401")  # the first requests, before the token
    page.goto(dash.url)
    panel = page.locator("#auth-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "offline")
    expect(page.locator("#connection-status")).to_contain_text("Read token needed")

    page.fill("#auth-token", "cdt_not-a-token")
    page.click("#auth-form button[type=submit]")
    expect(page.locator("#auth-error")).to_be_visible()

    page.fill("#auth-token", dash.live.store.create_token("reader", "read"))
    page.click("#auth-form button[type=submit]")
    expect(panel).to_be_hidden()
    wait_for_data(page)
    expect(page.locator("#total-experiments .stat-value")).to_have_text("30")
    wait_live(page)  # the stream takes the token too

    # Remembered: a reload goes straight to the data, and the token can be forgotten.
    page.reload()
    wait_for_data(page)
    expect(panel).to_be_hidden()
    page.click("#forget-token")
    expect(panel).to_be_visible()


# -- narrow screens --------------------------------------------------------------------------
@pytest.mark.parametrize("width", [320, 390])
def test_no_sideways_scroll_on_a_phone(
    dashboard: Dashboard, open_page: OpenPage, width: int
) -> None:
    page = open_page(dashboard.url + "?exp=exp-027", width=width, height=800)
    dialog = page.locator("#experiment-details")
    dialog.locator(".chart-rd").scroll_into_view_if_needed()  # below the fold on a phone
    expect(dialog.locator(".chart-rd canvas")).to_have_count(1)
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5
    overflow = "(el) => el.scrollWidth - el.clientWidth"
    assert dialog.evaluate(overflow) <= 0
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Every section drawn, charts included (they draw once scrolled into view).
    for section in ("compression-progress", "quality-progress", "recent-experiments"):
        page.locator(f"#{section}").scroll_into_view_if_needed()
    expect(page.locator(".grid-charts canvas")).to_have_count(2)
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter((el) => el.getBoundingClientRect().right > innerWidth + 0.5
                && !el.closest('.table-wrap, .sr-only, .skip-link'))
            .map((el) => el.id || el.className || el.tagName).slice(0, 5)"""
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= width, wide
    assert wide == []


# -- a static export -------------------------------------------------------------------------
def test_static_export_renders_from_dashboard_json(
    dashboard: Dashboard, page: Page, tmp_path: Path
) -> None:
    from codecdash.export import write_export

    out = tmp_path / "site"
    # In a thread: the export runs its own event loop, and Playwright's holds this thread's.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(write_export, out, dashboard.live.settings).result()
    dashboard.stop()  # no API anywhere now
    static = StaticServer(out)
    try:
        page.goto(static.url)
        wait_for_data(page)
        expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")
        expect(page.locator("#connection-status")).to_contain_text("static export")
        expect(page.locator("#total-experiments .stat-value")).to_have_text("30")
        expect(page.locator("#best-compression .stat-value")).to_have_text("67.0 %")
        expect(page.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
        expect(page.locator("#experiments-body tr[data-id]")).to_have_count(20)

        # Filtering happens in the page, on the snapshot's rows.
        page.select_option("#filter-status", "failed")
        page.wait_for_url(re.compile(r"status=failed"))
        statuses = page.eval_on_selector_all(
            "#experiments-body tr[data-id]", "rows => rows.map((r) => r.dataset.status)"
        )
        assert statuses and set(statuses) == {"failed"}
        page.click('tr[data-id="exp-026"] a.exp-link')
        expect(page.locator("#experiment-details .error-box")).to_have_text(
            "CUDA out of memory (run 26)"
        )
        # The figures came with index.html; dashboard.json is what the page polls, and it
        # never asks for an API that a plain file server does not have.
        requested = page.evaluate(
            "performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
        )
        assert not [path for path in requested if "/api/" in path], requested
        meta = page.locator('meta[name="codecdash-snapshot-url"]')
        expect(meta).to_have_attribute("content", "dashboard.json")
    finally:
        static.close()


def test_a_read_token_stays_with_the_tab_unless_remembered(
    make_dashboard: MakeDashboard, settings: Settings, page: Page
) -> None:
    """Kept in sessionStorage (this tab, until it closes); in localStorage only when the
    reader ticks "Remember on this device"."""
    dash = make_dashboard(app_settings=settings.model_copy(update={"private": True}))
    token = dash.live.store.create_token("reader", "read")
    page_problems(page).allow(r"status of 401")
    stored = "[sessionStorage.getItem('codecdash-token'), localStorage.getItem('codecdash-token')]"

    page.goto(dash.url)
    page.fill("#auth-token", token)
    page.click("#auth-form button[type=submit]")
    wait_for_data(page)
    assert page.evaluate(stored) == [token, None]
    page.reload()  # the same tab keeps it
    wait_for_data(page)

    other = page.context.new_page()  # another tab of the same browser asks again
    other.goto(dash.url)
    expect(other.locator("#auth-panel")).to_be_visible()
    other.fill("#auth-token", token)
    other.check("#auth-remember")
    other.click("#auth-form button[type=submit]")
    wait_for_data(other)
    assert other.evaluate(stored) == [None, token]

    third = page.context.new_page()  # remembered: every tab of this browser
    third.goto(dash.url)
    wait_for_data(third)
    expect(third.locator("#auth-panel")).to_be_hidden()
    third.click("#forget-token")
    expect(third.locator("#auth-panel")).to_be_visible()
    assert third.evaluate(stored) == [None, None]


# -- both modes: pages to the end, totals ---------------------------------------------------
def test_load_more_reaches_the_end_with_the_right_totals(served: Served, page: Page) -> None:
    """The list pages through every experiment and stops (on AWS too: the same read code
    over the read replica), and a filtered total counts the whole table."""
    page.goto(served.url)
    wait_for_data(page)
    rows = page.locator("#experiments-body tr[data-id]")
    expect(rows).to_have_count(20)
    expect(page.locator("#table-summary")).to_have_text("Showing 20 of 30 experiments")
    page.click("#load-more")
    expect(rows).to_have_count(30)
    expect(page.locator("#load-more")).to_be_hidden()
    assert row_ids(page) == api_ids(served, limit=30)

    page.select_option("#filter-status", "failed")
    expect(rows).to_have_count(5)
    expect(page.locator("#table-summary")).to_contain_text("5")
    expect(page.locator("#load-more")).to_be_hidden()
    page.select_option("#filter-sort", "-cost_usd")
    expect_rows(page, api_ids(served, status="failed", sort="-cost_usd"))


def test_the_aws_page_polls_and_never_asks_for_an_event_stream(
    make_aws_dashboard: Callable[..., AwsDashboard], page: Page
) -> None:
    """API Gateway holds no connection open: the deployed page is told so and polls the
    snapshot CloudFront serves, without a refused request (and its console error) first."""
    deployed = make_aws_dashboard()
    deployed.put_experiments(seed_experiments()[:3])
    deployed.publish()
    deployed.snapshot()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(deployed.url)
    wait_for_data(page)
    expect(page.locator("#connection-status .conn-text")).to_have_text(
        re.compile(r"^Live · every \d+ s$")
    )
    page.wait_for_load_state("load")
    page.wait_for_timeout(1000)  # the stream would be tried once the page has loaded
    assert not [u for u in asked if "/api/v1/events" in u], asked
