"""The headline figures come with the first response: `GET /` (and a static export's
index.html) carries the snapshot in a data block, escaped so no text can end it, with an ETag
and gzip that follow the snapshot; never on a private dashboard. The no-JavaScript link points
to what exists in each mode."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from codecdash.api.csp import csp_allowing
from codecdash.api.first_screen import draw_first_screen
from codecdash.api.static import dashboard_dir, snapshot_block

pytestmark = pytest.mark.anyio

BLOCK = re.compile(
    r'<script type="application/json" id="codecdash-snapshot"'
    r'(?: data-etag="([^"]*)")?>(.*?)</script>',
    re.S,
)
# theme.js, which GET / carries inline.
THEME = "<script>" + (dashboard_dir() / "theme.js").read_text(encoding="utf-8")[:40]
NASTY = "x</script><script>alert(1)</script><!-- & \u2028\u2029 </SCRIPT"


def inline(text: str) -> tuple[str | None, dict[str, Any]]:
    match = BLOCK.search(text)
    assert match, "index.html carries no snapshot"
    data: dict[str, Any] = json.loads(match.group(2))
    return match.group(1), data


async def test_the_page_carries_the_snapshot(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post("/api/v1/experiments", json={"id": "e1", "name": NASTY}, headers=auth)
    assert r.status_code == 201
    page = await client.get("/")
    assert page.status_code == 200
    etag, snap = inline(page.text)
    api = await client.get("/api/v1/dashboard")
    assert snap == api.json()  # the API's snapshot, byte for byte as data
    assert etag == api.headers["etag"].replace('"', "&quot;")
    assert snap["recent_experiments"][0]["name"] == NASTY
    block = BLOCK.search(page.text)
    assert block is not None
    raw = block.group(2)
    # Nothing in the data can close the block or open a comment or a tag.
    for bad in ("</", "<!--", "<script", "\u2028", "\u2029", "&"):
        assert bad not in raw.lower(), bad
    # Before theme.js, written into the page (it then leaves the snapshot request out), after
    # the charset.
    assert page.text.index("codecdash-snapshot") < page.text.index(THEME)
    assert page.text.index('<meta charset="utf-8">') < 1024


def test_the_data_block_escapes_what_could_end_it() -> None:
    raw = json.dumps({"name": NASTY}, ensure_ascii=False).encode()
    block = snapshot_block(raw, 'W/"1-2"').decode()
    body = block[block.index(">") + 1 : -len("</script>")]
    assert "<" not in body and ">" not in body and "&" not in body
    assert "\u2028" not in body and "\u2029" not in body
    assert json.loads(body) == {"name": NASTY}
    assert 'data-etag="W/&quot;1-2&quot;"' in block


async def test_etag_304_and_gzip_follow_the_snapshot(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    first = await client.get("/", headers={"Accept-Encoding": "gzip"})
    etag = first.headers["etag"]
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    r = await client.post("/api/v1/experiments", json={"id": "new-one"}, headers=auth)
    assert r.status_code == 201
    changed = await client.get("/", headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    _, snap = inline(changed.text)
    assert snap["summary"]["total_experiments"] == 1
    # The bytes sent are the gzip of the page as served.
    raw = await client.get("/", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-length"] == str(len(gzip.compress(raw.content, 6, mtime=0)))


async def test_a_private_dashboard_keeps_its_snapshot_out_of_the_page(
    make_app: Any, settings: Any
) -> None:
    app = await make_app(settings.model_copy(update={"private": True}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert 'id="codecdash-snapshot"' not in page.text


async def test_the_no_javascript_link_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    link = re.search(r'<noscript>.*?<a href="([^"]+)"', page.text, re.S)
    assert link and link.group(1) == "api/v1/dashboard"
    assert (await client.get("/" + link.group(1))).status_code == 200


def test_an_export_carries_its_snapshot_and_links_to_it(tmp_path: Path) -> None:
    from codecdash.config import Settings
    from codecdash.export import write_export

    out = tmp_path / "site"
    write_export(out, Settings(database_url=str(tmp_path / "x.db")))
    index = (out / "index.html").read_text(encoding="utf-8")
    etag, snap = inline(index)
    assert etag is None
    assert snap == json.loads((out / "dashboard.json").read_text(encoding="utf-8"))
    link = re.search(r'<noscript>.*?<a href="([^"]+)">([^<]+)</a>', index, re.S)
    assert link and link.groups() == ("dashboard.json", "dashboard.json")
    assert (out / link.group(1)).is_file()
    assert '<meta name="codecdash-snapshot-url" content="dashboard.json">' in index


ALERTS = re.compile(r'<script type="application/json" id="codecdash-alerts">(.*?)</script>', re.S)


async def test_the_page_carries_the_alert_strips_first_answer(
    client: httpx.AsyncClient,
) -> None:
    """The strip sits above the cards: drawn from the page itself, it is there with the first
    figures instead of pushing them down when its request returns."""
    page = await client.get("/")
    match = ALERTS.search(page.text)
    assert match, "index.html carries no alerts"
    api = await client.get("/api/v1/alerts", params={"state": "pending,firing"})
    assert json.loads(match.group(1)) == api.json()
    assert page.text.index("codecdash-snapshot") < page.text.index("codecdash-alerts")
    assert page.text.index("codecdash-alerts") < page.text.index(THEME)


def test_the_alerts_block_escapes_what_could_end_it() -> None:
    from codecdash.api.static import with_snapshot

    alerts = json.dumps({"alerts": [{"summary": NASTY}]}, ensure_ascii=False).encode()
    page = with_snapshot(b"<head><script src=x></script></head>", b"{}", None, alerts).decode()
    match = ALERTS.search(page)
    assert match and "<" not in match.group(1) and "&" not in match.group(1)
    assert json.loads(match.group(1)) == {"alerts": [{"summary": NASTY}]}


async def test_a_private_dashboard_keeps_its_alerts_out_of_the_page(
    make_app: Any, settings: Any
) -> None:
    app = await make_app(settings.model_copy(update={"private": True}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        page = await client.get("/")
    assert 'id="codecdash-alerts"' not in page.text


# -- the headline cards drawn on the server (issue 16, item 10) ----------------------------
CARD_BODY = re.compile(
    r'<section id="([a-z-]+)" class="card[^"]*"[^>]*>\s*<h2\b[^>]*>.*?</h2>\s*'
    r'<div class="card-body">(.*?)</div>\s*</section>',
    re.S,
)
HEADLINE = ["total-experiments", "best-compression", "best-quality", "monthly-cost"]


def card_bodies(page: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in CARD_BODY.finditer(page) if m.group(1) in HEADLINE}


async def test_get_slash_draws_the_headline_cards_under_a_strict_csp(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """The first paint shows the figures: GET / carries the headline cards drawn (shown before
    the modules run), the alert strip above them, and its modules in a template that theme.js,
    written into the page, puts in after that paint; the page's CSP allows that one inline
    script by its hash, never 'unsafe-inline'."""
    experiment = {"id": "e1", "name": "first <one>", "status": "completed"}
    r = await client.post(
        "/api/v1/experiments",
        json={**experiment, "bitrate_reduction_pct": 41.25, "psnr_db": 33.5},
        headers=auth,
    )
    assert r.status_code == 201
    page = await client.get("/")
    bodies = card_bodies(page.text)
    assert set(bodies) == set(HEADLINE)
    assert (
        '<span class="stat-value">1</span><span class="stat-unit">experiments</span>'
        in (bodies["total-experiments"])
    )
    assert '<span class="stat-value">41.3 %</span>' in bodies["best-compression"]
    assert (
        '<a href="?exp=e1" data-exp="e1" class="exp-link">Open first &lt;one&gt;</a>'
        in (bodies["best-compression"])
    )
    assert '<span class="stat-value">33.50 dB</span>' in bodies["best-quality"]
    assert '<span class="stat-value">$' in bodies["monthly-cost"]
    assert '<div class="grid grid-kpi is-drawn">' in page.text
    assert re.search(r'<section id="alert-strip" class="alert-strip is-drawn"[^>]*>', page.text)
    assert '<template id="codecdash-modules"><link rel="modulepreload"' in page.text
    assert re.search(
        r'<script type="module" src="\./app\.js\?v=\w+"></script></template>', page.text
    )
    theme = (dashboard_dir() / "theme.js").read_bytes()
    policy = page.headers["content-security-policy"]
    assert policy == csp_allowing(scripts=[theme])
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert page.text.count("<script>") == 1  # theme.js alone; the rest are data blocks


def test_nothing_is_drawn_when_something_would_push_the_cards_down() -> None:
    page = (dashboard_dir() / "index.html").read_text(encoding="utf-8")
    snap = {"summary": {"total_experiments": 3}, "sources": [{"name": "s", "ok": True}]}
    assert "is-drawn" in draw_first_screen(page, snap, alerts={"alerts": []}, static=False)
    assert "is-drawn" in draw_first_screen(page, snap, alerts=None, static=True)
    for other in (
        {"demo": True},  # the demo banner
        {"summary": {"total_experiments": 0}},  # the empty state's first steps
        {"sources": [{"name": "s", "ok": False, "error": "down"}]},  # a failing source
    ):
        assert draw_first_screen(page, snap | other, alerts={"alerts": []}, static=False) == page
    # The strip's answer is missing (it will push the cards down when it comes).
    assert draw_first_screen(page, snap, alerts=None, static=False) == page


def test_an_export_draws_the_headline_cards(tmp_path: Path) -> None:
    from codecdash.config import Settings
    from codecdash.export import write_export

    out = tmp_path / "site"
    write_export(out, Settings(database_url=str(tmp_path / "x.db")))
    index = (out / "index.html").read_text(encoding="utf-8")
    # An empty store: its first steps are due above the cards, so nothing is drawn…
    assert "is-drawn" not in index
    snap = json.loads((out / "dashboard.json").read_text(encoding="utf-8"))
    snap["summary"]["total_experiments"] = 2
    # …a filled one's cards are, with no strip (an export has none) and no inline script
    # (its host's CSP knows no hashes: theme.js stays a file).
    drawn = draw_first_screen(index, snap, alerts=None, static=True)
    assert '<span class="stat-value">2</span>' in card_bodies(drawn)["total-experiments"]
    assert 'class="alert-strip is-drawn"' not in drawn
    assert '<script src="./theme.js' in drawn and "<script>" not in drawn


def test_the_server_writes_figures_as_format_js_does() -> None:
    """The figures the server draws are the ones cards.js would write (format.js), so the
    modules change nothing when they draw the same snapshot."""
    from codecdash.api import page_figures as fs

    # toFixed rounds the exact binary value, halves up; -0 has no sign.
    assert [fs.to_fixed(v, 2) for v in (1.005, 0.285, 0.125, -0.001, -0.0)] == [
        "1.00",
        "0.28",
        "0.13",
        "-0.00",
        "0.00",
    ]
    assert [fs.js_number(v) for v in (67.0, 66.97, 1e-7)] == ["67", "66.97", "1e-7"]
    assert fs.fmt_usd(1594992.449999) == "$1,594,992.45" and fs.fmt_usd(-12) == "-$12.00"
    assert fs.fmt_count(12345) == "12,345" and fs.fmt_count(None) == "—"
    assert fs.fmt_pct(87.25) == "87.3 %" and fs.fmt_ratio(0.875) == "87.5 %"
    assert fs.fmt_db(34.805) == "34.80 dB" and fs.fmt_ssim(0.97125) == "0.9712"
