"""`GET /api/v1/vocabulary` and `vocabulary.json`: the page's rules and labels, told by the
modules that own them (so the page keeps no copy), cached hard, and in the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from codecdash.codec_metrics import MIN_POINTS, OVERLAP_WARNING_THRESHOLD
from codecdash.config import Settings
from codecdash.experiments.vocabulary import FINISHED, RANKED, RATE_FIELDS, STATUSES
from codecdash.export import site_files
from codecdash.sources.base import SECTIONS

pytestmark = pytest.mark.anyio
URL = "/api/v1/vocabulary"


async def test_the_vocabulary_is_the_owners_rules(client: httpx.AsyncClient) -> None:
    r = await client.get(URL)
    assert r.status_code == 200
    v = r.json()
    assert [s["name"] for s in v["statuses"]] == list(STATUSES)
    assert {s["name"] for s in v["statuses"] if s["finished"]} == set(FINISHED)
    assert {s["label"] for s in v["statuses"]} >= {"Queued", "Completed"}
    assert [(m["name"], m["larger_is_better"]) for m in v["metrics"]] == [
        (m.name, m.larger_is_better) for m in RANKED.values()
    ]
    assert [(u["field"], u["name"]) for u in v["rate_units"]] == list(RATE_FIELDS)
    assert {q["name"]: q["axis_label"] for q in v["quality_metrics"]} == {
        "psnr": "PSNR (dB)",
        "ms_ssim": "MS-SSIM (dB)",
    }
    bd = v["bd_rate"]
    assert bd["min_points"] == MIN_POINTS
    assert bd["overlap_warning"] == OVERLAP_WARNING_THRESHOLD
    assert "{min_points}" in bd["reasons"]["too_few_points"]
    assert {"unit_mismatch", "no_overlap", "anchor_too_few_points"} <= set(bd["reasons"])
    assert [s["name"] for s in v["sections"]] == list(SECTIONS)


async def test_the_vocabulary_is_cached_hard_and_revalidated(client: httpx.AsyncClient) -> None:
    r = await client.get(URL)
    assert r.headers["cache-control"] == "public, max-age=86400"
    etag = r.headers["etag"]
    again = await client.get(URL, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    other = await client.get(URL, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == r.content


async def test_a_private_dashboard_tells_its_vocabulary_to_readers_only(
    make_app: Any, settings: Settings
) -> None:
    app: FastAPI = await make_app(settings.model_copy(update={"private": True}))
    token = app.state.codecdash.store.create_token("reader", "read")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        assert (await c.get(URL)).status_code == 401
        r = await c.get(URL, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "private, max-age=86400"


async def test_the_vocabulary_matches_its_openapi_schema(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    document = app.openapi()
    operation = document["paths"][URL]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Vocabulary"
    components = document["components"]
    schema = {**components["schemas"]["Vocabulary"], "components": components}
    jsonschema.validate((await client.get(URL)).json(), schema)
    # Bounded: every list and text of the answer has a stated maximum.
    assert document["components"]["schemas"]["Vocabulary"]["properties"]["statuses"]["maxItems"]


async def test_the_static_site_carries_the_same_vocabulary(client: httpx.AsyncClient) -> None:
    files = {f.name: f for f in site_files(None)}
    item = files["vocabulary.json"]
    assert item.content_type == "application/json"
    assert item.cache_control == "public, max-age=86400"
    assert json.loads(item.body) == (await client.get(URL)).json()


def test_export_writes_vocabulary_json(tmp_path: Path, settings: Settings) -> None:
    from click.testing import CliRunner

    from codecdash.cli import main

    out = tmp_path / "site"
    result = CliRunner().invoke(main, ["export", "--out", str(out), "--db", settings.database_url])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "vocabulary.json").read_text())
    assert written["bd_rate"]["min_points"] == MIN_POINTS


def test_the_pages_status_filter_offers_the_servers_statuses() -> None:
    """The page reads the statuses a URL may filter on from #filter-status: its options are
    the server's statuses, in order, with the vocabulary's labels."""
    import re

    from codecdash.api.static import dashboard_dir
    from codecdash.experiments.vocabulary import STATUS_LABELS

    html = (dashboard_dir() / "index.html").read_text(encoding="utf-8")
    select = html[html.index('<select id="filter-status"') :]
    select = select[: select.index("</select>")]
    options = re.findall(r'<option value="([a-z]+)">([^<]+)</option>', select)
    assert options == [(s, STATUS_LABELS[s]) for s in STATUSES]
