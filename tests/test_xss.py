"""Stored (and URL-reflected) XSS: a corpus of payloads stored through the real API in every
free-text field (name, tags, error, worker_id, params keys and values), the page rendered
in Chromium, every row opened in the details dialog.

The page must show each payload as text, and: no dialog opens, no script runs (each payload
would set ``window.__xss``), no element of a payload exists in the DOM (each carries
``data-xss``), the CSP reports no violation (so nothing even tried), and the page makes no
request to any other origin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]

PAYLOADS = [
    "<script data-xss>window.__xss=1</script>",
    "<img data-xss src=x onerror=window.__xss=2>",
    '"><svg data-xss onload=window.__xss=3>',
    "'><img data-xss src=x onerror=alert(4)>",
    "javascript:window.__xss=5",
    "<a data-xss href=javascript:window.__xss=6>click</a>",
    "<iframe data-xss srcdoc='<script>parent.__xss=7</script>'>",
    "</textarea><script data-xss>window.__xss=8</script>",
    "</title><script data-xss>window.__xss=9</script>",
    "<style data-xss>body{display:none}</style>",
    '<base data-xss href="https://evil.example/">',
    '<meta data-xss http-equiv="refresh" content="0;url=https://evil.example/">',
    "<svg><animate data-xss onbegin=window.__xss=13 attributeName=x dur=1s>",
    "<math><mtext><table><mglyph><style><img data-xss src=x onerror=window.__xss=14>",
    "<details data-xss open ontoggle=window.__xss=15>",
    "{{constructor.constructor('window.__xss=16')()}}",
    "${window.__xss=17}",
    "<form data-xss id=auth-form><input name=token></form>",
    '<div data-xss id="experiment-details">clobbered</div>',
    "<img data-xss src=https://evil.example/pixel.png>",
    "\u2028\u2029<script data-xss>window.__xss=21</script>",
    "<object data-xss data=javascript:window.__xss=22>",
]
# What a field can hold (models.py): tags <= 64 chars, worker_id <= 128.
TAG_MAX, WORKER_MAX = 64, 128


def experiment(i: int, payload: str) -> dict[str, Any]:
    return {
        "id": f"xss-{i:02d}",
        "name": payload,
        "status": "failed",
        "tags": [payload[:TAG_MAX], f"t{i}"],
        "error": f"Traceback: {payload}",
        "worker_id": payload[:WORKER_MAX],
        "params": {payload[:40]: payload, "lr": 0.001},
        "psnr_db": 30.0 + i / 10,
    }


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watch:
    """What a page did that it must not: dialogs, CSP violations, foreign requests."""

    def __init__(self, page: Any, origin: str) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.console_csp: list[str] = []
        page.on("dialog", self._dialog)
        page.on(
            "request",
            lambda r: (
                None if r.url.startswith((origin, "data:", "blob:")) else self.foreign.append(r.url)
            ),
        )
        page.on(
            "console",
            lambda m: (
                self.console_csp.append(m.text) if "Content Security Policy" in m.text else None
            ),
        )
        page.add_init_script(
            "window.__csp = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI + ' ' +"
            " (e.sample || '')));"
        )

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self) -> None:
        page = self.page
        assert self.dialogs == [], self.dialogs
        assert page.evaluate("window.__xss") is None, page.evaluate("window.__xss")
        assert page.evaluate("document.querySelectorAll('[data-xss]').length") == 0
        assert page.evaluate("window.__csp") == [], page.evaluate("window.__csp")
        assert self.console_csp == [], self.console_csp
        assert self.foreign == [], self.foreign


def _store(url: str, token: str) -> None:
    items = [experiment(i, p) for i, p in enumerate(PAYLOADS)]
    r = httpx.post(
        f"{url}/api/v1/experiments/batch",
        json={"items": items},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    for i, p in enumerate(PAYLOADS):  # stored as sent, byte for byte
        got = httpx.get(f"{url}/api/v1/experiments/xss-{i:02d}", timeout=30).json()
        assert got["name"] == p and got["error"] == f"Traceback: {p}"


def test_stored_payloads_render_as_text_in_the_table_and_the_details(
    make_live_server: Callable[..., Any], browser: Any
) -> None:
    live = make_live_server()
    _store(live.url, live.token)
    page = browser.new_page()
    watch = Watch(page, live.url)
    page.goto(live.url + "/")
    # (locators, not wait_for_function: that one evals a string, which the CSP refuses)
    rows = page.locator('tr[data-id^="xss-"]')
    rows.first.wait_for(timeout=20000)
    while rows.count() < len(PAYLOADS):  # the table shows 20 at first
        before = rows.count()
        page.locator("#load-more").click(timeout=10000)
        rows.nth(before).wait_for(timeout=10000)
    watch.assert_clean()
    for i, payload in enumerate(PAYLOADS):
        row = page.locator(f'tr[data-id="xss-{i:02d}"]')
        visible = " ".join(payload.split())  # innerText folds whitespace
        assert visible in " ".join(row.inner_text().split()), (i, row.inner_text())
    # every row's details: name, error, tags, worker and params, all as text
    dialog = page.locator("#experiment-details")
    for i, payload in enumerate(PAYLOADS):
        page.locator(f'tr[data-id="xss-{i:02d}"] td').first.click()
        dialog.wait_for(state="visible", timeout=10000)
        dialog.locator(".exp-id", has_text=f"xss-{i:02d}").wait_for(timeout=10000)
        dialog.locator(".error-box").wait_for(timeout=10000)
        text = " ".join(dialog.inner_text().split())
        for expected in (
            payload,
            f"Traceback: {payload}",
            payload[:TAG_MAX],
            payload[:WORKER_MAX],
            payload[:40],
        ):
            assert " ".join(expected.split()) in text, (i, expected, text[:500])
        watch.assert_clean()
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden", timeout=10000)
    watch.assert_clean()
    page.close()


@pytest.mark.parametrize("field", ["q", "status", "sort", "exp"])
def test_payloads_in_the_url_are_not_executed(
    make_live_server: Callable[..., Any], browser: Any, field: str
) -> None:
    """The page keeps its view (filters, open experiment) in the URL: reflected input."""
    live = make_live_server()
    _store(live.url, live.token)
    page = browser.new_page()
    watch = Watch(page, live.url)
    for payload in PAYLOADS[:6]:
        page.goto(f"{live.url}/?{httpx.QueryParams({field: payload})}")
        page.wait_for_selector("#main:not(.is-loading)", timeout=20000)
        page.wait_for_load_state("networkidle", timeout=20000)
        watch.assert_clean()
    page.close()
