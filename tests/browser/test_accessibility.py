"""axe-core (pinned in package.json, injected from node_modules) finds no WCAG 2.1 A or AA
violation on the page: with data, with the details dialog open, empty, and with every
notice showing (demo data, failing sources, offline), in light and in dark mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser.conftest import (
    NETWORK_ERRORS,
    BrokenSource,
    Dashboard,
    MakeDashboard,
    OpenPage,
    axe_violations,
    page_problems,
    wait_for_data,
    wait_live,
)
from codecdash.config import Settings
from codecdash.sources.local import local_sources
from codecdash.store import Store

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
THEMES = ["light", "dark"]


def open_themed(open_page: OpenPage, url: str, theme: str, *, width: int = 1280) -> Page:
    """Dark mode both ways: the system's preference, or the page's own toggle."""
    page = open_page(url, color_scheme="dark" if theme == "dark" else "light", width=width)
    wait_for_data(page)
    expected = "true" if theme == "dark" else "false"
    expect(page.locator("#theme-toggle")).to_have_attribute("aria-pressed", expected)
    return page


def reveal_everything(page: Page) -> None:
    """Draw the charts (they wait to be scrolled into view) and open their data tables."""
    for box in page.locator(".grid-charts .chart").all():
        box.scroll_into_view_if_needed()
    expect(page.locator(".grid-charts canvas")).to_have_count(2)
    for summary in page.locator(".chart-table summary").all():
        summary.click()
    page.evaluate("window.scrollTo(0, 0)")


def assert_no_violations(page: Page, axe_source: str, context: str = "document") -> None:
    violations = axe_violations(page, axe_source, context)
    assert not violations, f"{len(violations)} axe violations:\n" + "\n".join(violations)


@pytest.mark.parametrize("theme", THEMES)
def test_page_with_data(
    dashboard: Dashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    page = open_themed(open_page, dashboard.url, theme)
    reveal_everything(page)
    assert_no_violations(page, axe_source)


@pytest.mark.parametrize("theme", THEMES)
def test_dark_mode_by_the_toggle_and_details_dialog(
    dashboard: Dashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    # Start in the other scheme and switch with the button (data-theme on <html>).
    other = "light" if theme == "dark" else "dark"
    page = open_themed(open_page, dashboard.url, other)
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", theme)

    # A failed experiment (error, tags, parameters)...
    page.click('tr[data-id="exp-026"] a.exp-link')
    dialog = page.locator("#experiment-details")
    expect(dialog.locator(".error-box")).to_be_visible()
    assert_no_violations(page, axe_source)
    # ...and a completed one with its rate-distortion chart and table.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.click('tr[data-id="exp-027"] a.exp-link')
    dialog.locator(".chart-rd").scroll_into_view_if_needed()
    expect(dialog.locator(".chart-rd canvas")).to_have_count(1)
    assert_no_violations(page, axe_source)


@pytest.mark.parametrize("theme", THEMES)
def test_empty_state(
    empty_dashboard: Dashboard, open_page: OpenPage, axe_source: str, theme: str
) -> None:
    page = open_page(empty_dashboard.url, color_scheme=theme)
    expect(page.locator("#empty-state")).to_be_visible()
    assert_no_violations(page, axe_source)


@pytest.mark.parametrize("theme", THEMES)
def test_every_notice_on_a_phone(
    make_dashboard: MakeDashboard,
    settings: Settings,
    open_page: OpenPage,
    axe_source: str,
    theme: str,
) -> None:
    """Demo banner, a section's failing source, an unplaced source alert, then offline."""
    demo = settings.model_copy(update={"demo": True})
    store = Store(demo.database_url)
    sources = [s for s in local_sources(store, demo) if "storage" not in s.sections]
    sources += [
        BrokenSource("s3", ("storage",), "S3 ListObjectsV2: AccessDenied"),
        BrokenSource("ticketing", (), "Jira answered 502"),
    ]
    dash = make_dashboard(app_settings=demo, store=store, sources=sources)
    page = open_page(dash.url, color_scheme=theme, width=390, height=844)
    page_problems(page).allow(NETWORK_ERRORS)
    wait_for_data(page)
    wait_live(page)
    expect(page.locator("#demo-banner")).to_be_visible()
    expect(page.locator("#storage .source-error")).to_be_visible()
    expect(page.locator("#source-alerts")).to_be_visible()
    dash.stop()
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "offline")
    expect(page.locator("#stale-note")).to_be_visible()
    assert_no_violations(page, axe_source)
