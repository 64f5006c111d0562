"""The API reference (/api/docs) in real Chromium: Swagger UI, vendored, renders every
operation under the site's strict Content-Security-Policy and asks no other origin."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Request, expect

from browser.conftest import Dashboard

pytestmark = pytest.mark.browser


def test_the_api_reference_renders_from_this_origin_only(dashboard: Dashboard, page: Page) -> None:
    origins: set[str] = set()

    def on_request(request: Request) -> None:
        origins.add("/".join(request.url.split("/")[:3]))

    page.on("request", on_request)
    origin = "/".join(dashboard.url.split("/")[:3])
    page.goto(origin + "/api/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    paths = dashboard.api.get("/openapi.json").json()["paths"]
    blocks = sum(len(op.get("tags") or [""]) for ops in paths.values() for op in ops.values())
    expect(page.locator(".opblock")).to_have_count(blocks)  # one per operation and tag
    page.locator(".opblock-summary").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    page.locator("button.try-out__btn").first.click()
    expect(page.locator(".execute").first).to_be_visible()
    # any CSP violation or console error fails the test (browser/conftest.py)
    assert origins == {origin}, origins
