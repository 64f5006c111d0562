"""What the page promises, kept: searching by tag, when the costs are from, every section
removable, the no-JavaScript link, the storage and quality cards, and the figures in the first
response (tests/browser/conftest.py has the fixtures)."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from browser.conftest import (
    Dashboard,
    MakeDashboard,
    OpenPage,
    StaticServer,
    page_problems,
    wait_for_data,
)
from codecdash.api.static import dashboard_dir
from codecdash.config import Settings
from codecdash.sources.base import FieldInfo
from codecdash.sources.local import local_sources
from codecdash.store import Store

pytestmark = pytest.mark.browser

SECTION_IDS = [
    "auth-panel",
    "empty-state",
    "total-experiments",
    "best-compression",
    "best-quality",
    "monthly-cost",
    "orchestrator",
    "training-workers",
    "inference-workers",
    "storage",
    "compression-progress",
    "quality-progress",
    "cost-breakdown",
    "rate-distortion",
    "bd-table",
    "compare",
    "recent-experiments",
]


def row_ids(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#experiments-body tr[data-id]", "rows => rows.map((r) => r.dataset.id)"
    )
    return ids


# -- 1. the search box's "Name, id or tag" ----------------------------------------------------
def test_search_finds_experiments_by_tag(dashboard: Dashboard, page: Page) -> None:
    page.goto(dashboard.url)
    wait_for_data(page)
    expect(page.locator("#filter-q")).to_have_attribute("placeholder", "Name, id or tag")
    # Every other seeded experiment is tagged "ms-ssim"; no name or id holds that text.
    page.fill("#filter-q", "MS-SS")
    page.wait_for_url(re.compile(r"q=MS-SS"))
    rows = page.locator("#experiments-body tr[data-id]")
    expect(rows).to_have_count(15)
    assert set(row_ids(page)) == {f"exp-{i:03d}" for i in range(0, 30, 2)}
    expect(page.locator("#table-summary")).to_have_text("Showing 15 of 15 matching experiments")


# -- 4. every section can be removed from index.html ------------------------------------------
def removable_parts(html: str) -> dict[str, str]:
    """id → index.html without that element: every <section id>, the notices and the dialog."""
    parts: dict[str, str] = {}
    for match in re.finditer(r'<(section|dialog|p|div) id="([a-z-]+)"', html):
        tag, id_ = match.groups()
        if tag in ("p", "div") and id_ not in ("demo-banner", "stale-note", "source-alerts"):
            continue
        end = html.index(f"</{tag}>", match.end()) + len(f"</{tag}>")
        parts[id_] = html[: match.start()] + html[end:]
    return parts


def test_every_section_can_be_removed(
    make_dashboard: MakeDashboard, open_page: OpenPage, tmp_path: Path
) -> None:
    copy = tmp_path / "page"
    shutil.copytree(dashboard_dir(), copy)
    variants = removable_parts((copy / "index.html").read_text(encoding="utf-8"))
    assert set(SECTION_IDS) <= set(variants), set(SECTION_IDS) - set(variants)
    assert {"experiment-details", "demo-banner", "source-alerts"} <= set(variants)
    for id_, html in variants.items():
        (copy / f"without-{id_}.html").write_text(html, encoding="utf-8")
    dash = make_dashboard(static_root=copy)

    for n, id_ in enumerate(variants, 1):
        page = open_page()
        warnings: list[str] = []
        page.on("console", lambda m, w=warnings: w.append(m.text) if m.type == "warning" else None)
        page.goto(f"{dash.url}without-{id_}.html")
        expect(page.locator(f"#{id_}")).to_have_count(0)
        status = page.locator("#connection-status")
        expect(status).to_have_attribute("data-state", "live")
        expect(status.locator(".conn-text")).not_to_have_text("Connecting…")
        # What is left is live: a new experiment shows up without a reload.
        dash.post_experiment(id=f"added-{n:02d}", name=f"added without {id_}", status="running")
        if id_ == "total-experiments":
            expect(page.locator(f'#experiments-body tr[data-id="added-{n:02d}"]')).to_be_visible()
            expect(page.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
        else:
            expect(page.locator("#total-experiments .stat-value")).to_have_text(str(30 + n))
        if id_ != "recent-experiments":
            expect(page.locator(f'#experiments-body tr[data-id="added-{n:02d}"]')).to_be_visible()
        assert [w for w in warnings if "codecdash" in w] == [], (id_, warnings)
        page.context.close()


# -- 2. when the cost figures are from ------------------------------------------------------
class FixedSource:
    """A source that answers `facts` (a dict the test may change) for its sections."""

    fields: dict[str, FieldInfo] = {}

    def __init__(self, name: str, facts: dict[str, Any]) -> None:
        self.name = name
        self.sections = tuple(facts)
        self.facts = facts

    async def collect(self, now: float) -> dict[str, Any]:
        return {k: dict(v) for k, v in self.facts.items()}


def iso_ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def test_cost_figures_say_when_they_are_from_unless_live(
    make_dashboard: MakeDashboard, settings: Settings, page: Page, open_page: OpenPage
) -> None:
    # Live (the local store): no "as of".
    dashboard = make_dashboard()
    page.goto(dashboard.url)
    wait_for_data(page)
    expect(page.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
    expect(page.locator("#monthly-cost .as-of")).to_have_count(0)

    # Cost Explorer's figures, cached three hours ago: "as of" with the time.
    store = Store(settings.database_url)
    cached = FixedSource(
        "aws.costs",
        {
            "costs": {
                "month_to_date_usd": 812.5,
                "forecast_month_usd": 2400.0,
                "cost_breakdown": [{"component": "training", "usd": 812.5}],
                "as_of": iso_ago(3),
            }
        },
    )
    sources = [s for s in local_sources(store, settings) if "costs" not in s.sections]
    dash = make_dashboard(store=store, sources=[*sources, cached], filled=False)
    other = open_page(dash.url)
    expect(other.locator("#monthly-cost .stat-value")).to_have_text("$812.50")
    note = other.locator("#monthly-cost .as-of")
    expect(note).to_contain_text("Costs as of")
    expect(note).to_contain_text("3 h ago")
    expect(note.locator("time").first).to_have_attribute("datetime", re.compile(r"Z$"))


def test_a_static_export_says_when_its_costs_are_from(
    dashboard: Dashboard, page: Page, tmp_path: Path
) -> None:
    from codecdash.export import write_export

    out = tmp_path / "site"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(write_export, out, dashboard.live.settings).result()
    static = StaticServer(out)
    try:
        page_problems(page).allow(r"status of 404")
        page.goto(static.url)
        wait_for_data(page)
        expect(page.locator("#monthly-cost .as-of")).to_contain_text("Costs as of")
    finally:
        static.close()


# -- 8. what Storage counts -------------------------------------------------------------------
def test_storage_says_what_it_counts(
    make_dashboard: MakeDashboard, settings: Settings, open_page: OpenPage
) -> None:
    store = Store(settings.database_url)
    storage = FixedSource("storage", {"storage": {"objects": None, "bytes": None}})
    sources = [s for s in local_sources(store, settings) if "storage" not in s.sections]
    dash = make_dashboard(store=store, sources=[*sources, storage], filled=False)
    card = "#storage"

    def show(facts: dict[str, Any]) -> Page:
        storage.facts["storage"] = {"objects": None, "bytes": None, "db_items": 42, **facts}
        dash.live.app.state.codecdash.cache.invalidate()
        page = open_page(dash.url)
        expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")
        return page

    # A local store without an artifacts directory: the database, and no bare "Objects —".
    page = show({"db_bytes": 3 * 1024 * 1024, "artifacts": False})
    expect(page.locator(f"{card} .stat-value")).to_have_text("3.00 MiB")
    expect(page.locator(f"{card} .stat-unit")).to_have_text("database")
    expect(page.locator(f"{card} .fact")).to_have_text(["Database items42"])
    # An artifacts directory: its files and bytes, then the database; "counting…" at first.
    page = show({"db_bytes": 1024, "artifacts": True})
    expect(page.locator(f"{card} .stat-value")).to_have_text("counting…")
    page = show({"objects": 1234, "bytes": 5 * 1024**3, "db_bytes": 1024, "artifacts": True})
    expect(page.locator(f"{card} .stat-value")).to_have_text("5.00 GiB")
    expect(page.locator(f"{card} .stat-unit")).to_have_text("artifacts directory")
    expect(page.locator(f"{card} .fact")).to_have_text(
        ["Files1,234", "Database1.00 KiB", "Database items42"]
    )
    # S3 and EFS: separately, and a cut-short S3 listing as a lower bound.
    page = show(
        {
            "objects": 10000,
            "bytes": 3 * 1024**4,
            "s3_bytes": 2 * 1024**4,
            "efs_bytes": 1024**4,
            "buckets": [
                {"name": "datasets", "objects": 8000, "bytes": 2 * 1024**4, "partial": False},
                {"name": "checkpoints", "objects": 2000, "bytes": 1024**3, "partial": True},
            ],
        }
    )
    expect(page.locator(f"{card} .stat-value")).to_have_text("≥ 3.00 TiB")
    expect(page.locator(f"{card} .stat-unit")).to_have_text("S3 + EFS")
    expect(page.locator(f"{card} .fact")).to_have_text(
        ["S3≥ 2.00 TiB", "S3 objects≥ 10,000", "EFS1.00 TiB", "Database items42"]
    )
    expect(page.locator(f"{card} .partial")).to_contain_text("checkpoints was cut short")
    expect(page.locator(card)).not_to_contain_text("Objects")


# -- 9. the Quality card's bar --------------------------------------------------------------
def test_quality_bar_measures_the_db_from_the_first_result_to_the_target(
    make_dashboard: MakeDashboard, settings: Settings, page: Page
) -> None:
    dash = make_dashboard(app_settings=settings.model_copy(update={"target_psnr_db": 36.0}))
    page.goto(dash.url)
    wait_for_data(page)
    card = page.locator("#best-quality")
    expect(card.locator(".stat-value")).to_have_text("35.05 dB")
    # The first completed result is 31.00 dB: 4.05 of the 5 dB to 36 dB (81 %), not 97 %.
    bar = card.locator("progress")
    expect(bar).to_have_attribute("max", "5.000")
    expect(bar).to_have_attribute("value", "4.050")
    expect(bar).to_have_attribute("aria-label", re.compile(r"81 % of the way in dB"))
    expect(card.locator(".scale-note")).to_have_text(
        "Bar: dB gained from the first result (31.00 dB) to the target"
    )


# -- 5. the no-JavaScript link ------------------------------------------------------------------
def test_the_no_javascript_link_leads_to_the_data(
    dashboard: Dashboard, browser: Browser, tmp_path: Path
) -> None:
    from codecdash.export import write_export

    out = tmp_path / "site"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(write_export, out, dashboard.live.settings).result()
    static = StaticServer(out)
    context = browser.new_context(java_script_enabled=False)
    try:
        for url in (dashboard.url, static.url):
            page = context.new_page()
            page.goto(url)
            link = page.locator("noscript a, .noscript a").first
            expect(link).to_be_visible()
            with page.expect_response(lambda r: r.request.resource_type == "document") as answer:
                link.click()
            assert answer.value.status == 200, (url, answer.value.url)
            assert "total_experiments" in page.content()
    finally:
        context.close()
        static.close()


# -- 10. the headline figures in the first response ------------------------------------------
# Records each element put into or taken out of the drawn cards and the strip after the page
# was parsed: the modules must draw over what the server drew, not replace it.
REPLACED_AFTER_PARSE = """
window.__replaced = [];
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((records) => {
    for (const r of records) {
      const host = r.target.closest?.(".grid-kpi .card-body, #alert-list");
      const nodes = [...r.addedNodes, ...r.removedNodes].filter((n) => n.nodeType === 1);
      if (!host || !nodes.length) continue;
      window.__replaced.push(`${host.closest("[id]").id}: ${nodes.map((n) => n.nodeName)}`);
    }
  }).observe(document.getElementById("main"), { subtree: true, childList: true });
});
"""
HEADLINE_CARDS = ["total-experiments", "best-compression", "best-quality", "monthly-cost"]


def test_the_first_paint_shows_the_headline_figures_drawn_by_the_server(
    dashboard: Dashboard, browser: Browser, page: Page
) -> None:
    """Without any script, the page already shows the headline cards and the alert strip (so
    the first paint is the Largest Contentful Paint); the modules then draw the same figures
    over them without putting any element in anew, in the same markup."""
    bare = browser.new_context(java_script_enabled=False)
    try:
        first = bare.new_page()
        first.goto(dashboard.url)
        expect(first.locator("#total-experiments .stat-value")).to_have_text("30")
        expect(first.locator("#best-compression .stat-value")).to_have_text("67.0 %")
        expect(first.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
        for card in HEADLINE_CARDS:
            expect(first.locator(f"#{card}")).to_be_visible()
        expect(first.locator("#alert-strip")).to_be_visible()
        expect(first.locator("#recent-experiments")).to_be_hidden()  # the modules draw it
    finally:
        bare.close()
    page.add_init_script(REPLACED_AFTER_PARSE)
    # Newer figures are held back: the modules draw the very snapshot the server drew.
    held: list[Route] = []
    for path in ("**/api/v1/dashboard*", "**/api/v1/events*", "**/api/v1/alerts*"):
        page.route(path, lambda route: held.append(route))
    response = page.goto(dashboard.url)
    assert response is not None
    sent = response.text()
    strip = re.search(r'<h2 id="alert-strip-title">([^<]*)</h2>', sent)
    expect(page.locator("main")).not_to_have_class(re.compile(r"\bis-loading\b"))
    expect(page.locator("#recent-experiments")).to_be_visible()
    assert page.evaluate("window.__replaced") == []
    assert strip and page.locator("#alert-strip-title").inner_text() == strip.group(1)
    path = re.escape(page.evaluate("location.pathname"))
    as_markup = (
        "(html) => { const t = document.createElement('template'); t.innerHTML = html;"
        " return t.innerHTML; }"
    )
    for card in HEADLINE_CARDS:
        body = re.search(
            rf'<section id="{card}"[^>]*>.*?<div class="card-body">(.*?)</div>\s*</section>',
            sent,
            re.S,
        )
        assert body, card
        # The same markup, but for the experiment link's path (the page's own, in the browser).
        now = re.sub(
            rf'href="{path}\?', 'href="?', page.locator(f"#{card} .card-body").inner_html()
        )
        assert now == page.evaluate(as_markup, body.group(1)), card


def test_the_headline_figures_need_no_second_request(dashboard: Dashboard, page: Page) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    # Hold every snapshot request: the figures must come from the page itself.
    held: list[Route] = []
    page.route("**/api/v1/dashboard", lambda route: held.append(route))
    page.goto(dashboard.url)
    expect(page.locator("#total-experiments .stat-value")).to_have_text("30")
    expect(page.locator("#best-compression .stat-value")).to_have_text("67.0 %")
    expect(page.locator("#monthly-cost .stat-value")).to_have_text("$1,620.00")
    assert not [u for u in requests if u.endswith("/api/v1/dashboard")], requests
    page.unroute("**/api/v1/dashboard")
    for route in held:
        route.continue_()
    # And then live as before: a new experiment arrives through the event stream.
    expect(page.locator("#connection-status .conn-text")).to_have_text("Live")
    dashboard.post_experiment(id="after-load", name="after load", status="running")
    expect(page.locator("#total-experiments .stat-value")).to_have_text("31")
    expect(page.locator('#experiments-body tr[data-id="after-load"]')).to_be_visible()
