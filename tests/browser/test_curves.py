"""Training curves on the page, in Chromium: the details dialog draws a run's curves; a
point logged while it is open reaches its chart through the event stream, and only the new
steps are fetched (that the snapshot stays is tests/test_api_metrics.py's); NaN steps are
marked and said; the controls and the overlay of other runs work (the overlay lives in the
URL); the table marks a running experiment whose loss is NaN; axe finds no violation with
all of it on screen."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from browser.conftest import Dashboard, OpenPage, wait_for_data, wait_live
from browser.test_accessibility import assert_no_violations

pytestmark = pytest.mark.browser
RUN = "exp-016"  # running, in the seeded data (and on the table's first page)
OTHER = "exp-010"  # running too


def log_steps(dash: Dashboard, experiment_id: str, steps: range, **fixed: Any) -> None:
    points = [
        {"step": s, "values": fixed or {"loss": 2.0 / (1 + s / 50), "lr": 1e-4}} for s in steps
    ]
    r = dash.api.post(f"/api/v1/experiments/{experiment_id}/metrics", json={"points": points})
    assert r.status_code == 202, r.text


def open_curves(open_page: OpenPage, dash: Dashboard, query: str = "") -> Page:
    page = open_page(f"{dash.url}?exp={RUN}{query}")
    wait_for_data(page)
    expect(page.locator("#experiment-details .curve[data-metric='loss'] canvas")).to_have_count(1)
    return page


def test_a_logged_point_reaches_the_open_chart_live(
    dashboard: Dashboard, open_page: OpenPage
) -> None:
    log_steps(dashboard, RUN, range(0, 300))
    page = open_curves(open_page, dashboard)
    wait_live(page)
    dialog = page.locator("#experiment-details")
    loss = dialog.locator(".curve[data-metric='loss'] .chart-curve")
    expect(loss).to_have_attribute("data-last-step", "299")
    expect(dialog.locator(".curve h4")).to_have_text(["loss", "lr"])  # the loss first
    expect(dialog.locator(".curves-status")).to_contain_text("Step 299")

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    for step in (300, 301, 350):
        log_steps(dashboard, RUN, range(step, step + 1))
        expect(loss).to_have_attribute("data-last-step", str(step))
    curves = [u for u in requests if "/metrics" in u]
    assert curves and all("after_step=" in u for u in curves), curves  # only what is new

    # A NaN: marked on the chart's edge and said in words.
    log_steps(dashboard, RUN, range(351, 353), loss="NaN")
    expect(loss).to_have_attribute("data-last-step", "352")
    expect(dialog.locator(".curve[data-metric='loss'] .curve-note")).to_have_text(
        re.compile(r"NaN from step 351 \(2 points not drawn")
    )
    expect(loss).to_have_attribute("aria-label", re.compile(r"NaN from step 351"))


def test_controls_and_the_overlay_of_another_run(dashboard: Dashboard, open_page: OpenPage) -> None:
    log_steps(dashboard, RUN, range(0, 3000))  # past 1,000 points: buckets, with a band
    log_steps(dashboard, OTHER, range(0, 200), loss=0.5)
    page = open_curves(open_page, dashboard)
    dialog = page.locator("#experiment-details")
    loss = dialog.locator(".curve[data-metric='loss'] .chart-curve")
    expect(loss).to_have_attribute("aria-label", re.compile(r"in buckets of 4 steps"))

    dialog.get_by_label("Log scale").check()
    dialog.get_by_label("X axis").select_option("time")
    expect(loss).to_have_attribute("aria-label", re.compile(r"^loss against wall time since"))
    dialog.get_by_label("Smoothing").fill("0.9")
    expect(dialog.locator(".curves-smoothing-value")).to_have_text("0.90")
    expect(loss.locator("canvas")).to_have_count(1)

    dialog.locator(".curves-compare summary").click()
    dialog.locator(f"input[data-id='{OTHER}']").check()
    expect(page).to_have_url(re.compile(rf"[?&]cmp={OTHER}\b"))
    key = dialog.locator(".curve[data-metric='loss'] .curve-key li")
    expect(key).to_have_count(2)
    expect(key.nth(1)).to_contain_text("0.5 at step 199")
    expect(dialog.locator(".curve[data-metric='lr'] .curve-key li").nth(1)).to_contain_text(
        "never logged"
    )
    # The overlay is in the URL: a reload (or a shared link) shows it again.
    page.reload()
    wait_for_data(page)
    expect(dialog.locator(".curve[data-metric='loss'] .curve-key li")).to_have_count(2)
    # Closing the dialog forgets it.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"cmp="))


def test_the_table_marks_a_running_experiment_whose_loss_is_nan(
    dashboard: Dashboard, open_page: OpenPage
) -> None:
    page = open_page(dashboard.url)
    wait_for_data(page)
    wait_live(page)
    row = page.locator(f"tr[data-id='{RUN}'] td[data-label='Status']")
    expect(row.locator(".badge-alert")).to_have_count(0)
    log_steps(dashboard, RUN, range(0, 20))
    log_steps(dashboard, RUN, range(20, 21), loss="NaN")
    flag = row.locator(".badge-nan")
    expect(flag).to_have_text("NaN loss")  # text, not colour alone
    expect(flag).to_have_attribute("title", re.compile("first at step 20"))


def test_no_training_steps_says_so(dashboard: Dashboard, open_page: OpenPage) -> None:
    page = open_page(dashboard.url + "?exp=exp-027")
    wait_for_data(page)
    expect(page.locator("#experiment-details .curves-status")).to_have_text(
        "This experiment logged no training steps."
    )
    expect(page.locator("#experiment-details .curves-controls")).to_be_hidden()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_curves_pass_axe(
    dashboard: Dashboard,
    open_page: OpenPage,
    axe_source: str,
    theme: str,
) -> None:
    log_steps(dashboard, RUN, range(0, 1500))
    log_steps(dashboard, RUN, range(1500, 1502), loss="NaN")
    log_steps(dashboard, OTHER, range(0, 100), loss=0.5)
    page = open_page(
        f"{dashboard.url}?exp={RUN}&cmp={OTHER}", color_scheme=theme, width=1280, height=900
    )
    wait_for_data(page)
    dialog = page.locator("#experiment-details")
    expect(dialog.locator(".curve[data-metric='loss'] .curve-key li")).to_have_count(2)
    dialog.locator(".curves-compare summary").click()
    expect(dialog.locator(".curves-picks-list input").first).to_be_visible()
    assert_no_violations(page, axe_source)
