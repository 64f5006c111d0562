"""What the page promises, kept: searching by tag, when the costs are from, every section
removable, the no-JavaScript link, the storage and quality cards, and the figures in the first
response (tests/browser/conftest.py has the fixtures)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from browser.conftest import Dashboard, wait_for_data

pytestmark = pytest.mark.browser


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
