"""The alerts strip in Chromium: firing and pending alerts appear live (the event stream),
with since when and whether someone acknowledged them; the history opens; text from the
data stays text; axe finds no WCAG 2.1 A/AA violation in light and dark mode."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from browser.conftest import MakeDashboard, OpenPage, wait_for_data, wait_live
from browser.test_accessibility import THEMES, assert_no_violations
from codecdash.config import Settings

pytestmark = pytest.mark.browser
XSS = "<img src=x onerror=\"document.title='pwned'\">"


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


@pytest.mark.parametrize("theme", THEMES)
def test_the_strip_shows_alerts_live(
    make_dashboard: MakeDashboard,
    settings: Settings,
    open_page: OpenPage,
    axe_source: str,
    theme: str,
) -> None:
    fast = settings.model_copy(
        update={
            "alert_evaluate_seconds": 1,
            "alert_rules": {"experiment_failed": {"enabled": True}},
        }
    )
    dash = make_dashboard(app_settings=fast)
    page = open_page(dash.url, color_scheme=theme)
    wait_for_data(page)
    wait_live(page)
    strip = page.locator("#alert-strip")
    expect(strip).to_be_visible()  # the seed's failed runs may already show

    # a worker goes silent, the orchestrator reports down, a run fails with a hostile text
    beat: dict[str, Any] = {"worker_id": "train-g5-09", "role": "training", "at": ago(10)}
    assert dash.api.post("/api/v1/heartbeats", json=beat).status_code == 202
    down = {"worker_id": "orchestrator-01", "role": "orchestrator", "status": "down"}
    assert dash.api.post("/api/v1/heartbeats", json=down).status_code == 202
    dash.post_experiment(
        id="exp-bad", status="failed", finished_at=ago(1), created_at=ago(30), error=XSS
    )
    stale = page.locator('#alert-list li[data-rule="worker_stale"]')
    expect(stale).to_contain_text("Worker train-g5-09 (training) has sent no heartbeat")
    expect(stale).to_contain_text("Not acknowledged")
    expect(stale.locator("time")).to_have_count(1)
    expect(page.locator('#alert-list li[data-rule="orchestrator_down"]')).to_contain_text(
        "Pending · critical"
    )
    failed = page.locator('#alert-list li[data-rule="experiment_failed"]')
    expect(failed).to_contain_text(XSS)  # as text
    assert page.locator("#alert-list img").count() == 0 and page.title() != "pwned"
    # the stale worker and the failed runs (the seed has some too) fire; the orchestrator waits
    expect(page.locator("#alert-strip-title")).to_have_text(re.compile(r"^\d+ alerts firing$"))
    expect(page.locator("#alert-announce")).not_to_be_empty()

    # acknowledged through the API: the page follows
    alerts = dash.api.get("/api/v1/alerts").json()["alerts"]
    (worker,) = [a for a in alerts if a["rule"] == "worker_stale"]
    assert dash.api.post(f"/api/v1/alerts/{worker['id']}/ack").status_code == 200
    expect(stale).to_contain_text("Acknowledged by live-")

    # the history
    page.locator("#alert-history summary").click()
    rows = page.locator(".alert-history-table tbody tr")
    expect(rows.first).to_contain_text("acknowledged")
    fired = page.locator('.alert-history-table tr[data-state="firing"]')
    expect(fired.filter(has_text="worker_stale")).to_have_count(1)
    assert_no_violations(page, axe_source)


def test_a_quiet_dashboard_says_so(make_dashboard: MakeDashboard, open_page: OpenPage) -> None:
    dash = make_dashboard(filled=False)
    page = open_page(dash.url)
    expect(page.locator("#alert-strip-title")).to_have_text("No alerts firing")
    expect(page.locator("#alert-list")).to_be_hidden()
    page.locator("#alert-history summary").click()
    expect(page.locator(".alert-history-body")).to_have_text("Nothing has happened yet.")
