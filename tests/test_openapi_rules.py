"""The OpenAPI document states the rules the server enforces, and the server keeps them.

The fuzzing test (tests/test_fuzz_api.py) checks this at random; these check each rule
the fuzzer once found loose, every time, and on both databases where the store is
involved (PostgreSQL refuses NUL in text and compares no text with a number).
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.api.app import create_app
from codecdash.api.document import LINKS
from codecdash.config import Settings
from codecdash.models import NO_NUL_PATTERN
from codecdash.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = "/api/v1/experiments"
POINTS = [
    {"bitrate_kbps": r, "psnr_db": q} for r, q in ((1000, 30.0), (2000, 33.0), (4000, 36.0))
] + [{"bitrate_kbps": 8000, "psnr_db": 39.0}]
# pydantic's names for bounds; JSON Schema's are minimum, maxLength, ...
PYDANTIC_KEYWORDS = {"ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of"}


pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("openapi") / "doc.db"
    app = create_app(Settings(database_url=str(db)), background=False)
    try:
        yield app.openapi()
    finally:
        app.state.codecdash.store.close()


def walk(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object of the document (property maps are stepped through)."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, child in value.items():
                    yield from walk(child, f"{where}/properties/{name}")
            else:
                yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from walk(item, f"{where}/{index}")


def test_bounds_reach_the_document_as_json_schema(document: dict[str, Any]) -> None:
    leaked = [
        f"{where}: {sorted(PYDANTIC_KEYWORDS & set(node))}"
        for where, node in walk(document)
        if PYDANTIC_KEYWORDS & set(node)
    ]
    assert not leaked, leaked
    depth = document["components"]["schemas"]["Heartbeat"]["properties"]["queue_depth"]
    assert {"type": "integer", "minimum": 0, "maximum": 10**9} in depth["anyOf"]


def test_patterns_mean_the_same_in_every_regex_dialect(document: dict[str, Any]) -> None:
    """`\\s`, `\\w`, `\\d`, `\\b` match other characters in ECMA (the document's dialect),
    Python and Rust (pydantic): U+0085 is a space to the server, not to a JS client."""
    patterns = [(where, n["pattern"]) for where, n in walk(document) if "pattern" in n]
    assert patterns
    for where, pattern in patterns:
        assert not re.search(r"\\[sSwWdDbB]", pattern), (where, pattern)


def test_text_that_postgresql_cannot_hold_is_refused_as_documented(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    for model, field in [
        ("ExperimentIn", "name"),
        ("ExperimentIn", "error"),
        ("ExperimentPatch", "worker_id"),
        ("Heartbeat", "instance_type"),
        ("CostRecord", "source"),
        ("AnchorIn", "description"),
    ]:
        branches = schemas[model]["properties"][field]["anyOf"]
        assert any(b.get("pattern") == NO_NUL_PATTERN for b in branches), (model, field)
    listing = document["paths"][EXPERIMENTS]["get"]["parameters"]
    for parameter in listing:
        if parameter["name"] in ("q", "worker_id", "tag"):
            assert parameter["schema"]["anyOf"][0]["pattern"] == NO_NUL_PATTERN, parameter


# -- on both databases ------------------------------------------------------------------------
@pytest.fixture
async def on_store(
    make_app: Any, settings: Settings, store_url: str
) -> tuple[FastAPI, httpx.AsyncClient, dict[str, str]]:
    app = await make_app(settings.model_copy(update={"database_url": store_url}))
    store: Store = app.state.codecdash.store
    auth = {"Authorization": f"Bearer {store.create_token('rules')}"}
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
    for i in range(3):
        r = await client.put(
            f"{EXPERIMENTS}/e{i}", json={"name": f"n{i}", "psnr_db": 30.0 + i}, headers=auth
        )
        assert r.status_code == 201
    return app, client, auth


def forged(value: Any, experiment_id: Any = "e1") -> str:
    """A cursor in the server's format that the server never made."""
    raw = json.dumps([value, experiment_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("-psnr_db", forged("abc")),  # text for a number
        ("-created_at", forged("2025-03-14")),
        ("name", forged(1.5)),  # a number for text
        ("-psnr_db", forged(True)),
        ("id", forged("e1", "e\u00001")),  # NUL
        ("-psnr_db", forged(1.0, 7)),  # an id that is not text
        ("-psnr_db", forged([1], "e1")),
        ("-psnr_db", "e30"),  # {}
        ("-psnr_db", "WzEsMl0"),  # [1, 2]
    ],
)
async def test_a_cursor_the_server_did_not_make_is_400_bad_cursor(
    on_store: tuple[FastAPI, httpx.AsyncClient, dict[str, str]], sort: str, cursor: str
) -> None:
    _app, client, _auth = on_store
    r = await client.get(EXPERIMENTS, params={"sort": sort, "cursor": cursor})
    assert "not one this server made" in assert_error(r, 400, "bad_cursor")["message"]


async def test_cursors_the_server_made_still_page_through(
    on_store: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, _auth = on_store
    for sort in ("-psnr_db", "name", "-created_at", "id"):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"sort": sort, "limit": "1", **({"cursor": cursor} if cursor else {})}
            page = (await client.get(EXPERIMENTS, params=params)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert re.fullmatch(r"[A-Za-z0-9_-]*", cursor), cursor
        assert sorted(seen) == ["e0", "e1", "e2"], (sort, seen)


async def test_a_cursor_that_is_not_base64url_is_422(
    on_store: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, _auth = on_store
    for cursor in ("not a cursor!", forged(1.0) + "=", "x" * 2001):
        assert_error(await client.get(EXPERIMENTS, params={"cursor": cursor}), 422, "invalid")


@pytest.mark.parametrize("name", ["q", "worker_id", "tag"])
async def test_nul_in_a_text_filter_is_422(
    on_store: tuple[FastAPI, httpx.AsyncClient, dict[str, str]], name: str
) -> None:
    _app, client, _auth = on_store
    r = await client.get(EXPERIMENTS, params={name: "a\x00b"})
    assert "NUL" in assert_error(r, 422, "invalid")["message"]


async def test_nul_in_an_anchor_description_is_422(
    on_store: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, auth = on_store
    body = {"description": "a\x00b", "rd_points": POINTS}
    r = await client.put("/api/v1/anchors/a", json=body, headers=auth)
    assert "NUL" in assert_error(r, 422, "invalid")["message"]
    assert (await client.get("/api/v1/anchors")).json()["items"] == []


# -- free-form JSON: the document's verdict is the server's, on every route -------------------
LONG = "x" * 10_001
# Not here: a whole number beyond 64 bits written as a float (1e300). JSON Schema cannot
# tell it from the integer the server refuses, so the document refuses it too, while the
# server stores it as the float it is (the document's description says so).
JSON_VALUES = [
    (2**64 - 1, True),
    (-(2**63), True),
    (2**64, False),
    (-(2**63) - 1, False),
    (1.5, True),
    (1e18, True),  # a whole number in 64 bits, written as a float
    (-1e-300, True),
    ("x" * 10_000, True),
    (LONG, False),
    ([[LONG]], False),
    ({"k": {"k": LONG}}, False),
    ({"k": [{LONG: 1}]}, False),
    ({"k": [None, True, "x", 1, {"y": []}]}, True),
]


def _json_value_schema(document: dict[str, Any]) -> Any:
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(document))
    schema = {"$ref": "urn:doc#/components/schemas/JsonValue"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize(("value", "storable"), JSON_VALUES)
async def test_params_and_extra_are_bounded_as_documented(
    document: dict[str, Any],
    client: httpx.AsyncClient,
    auth: dict[str, str],
    value: Any,
    storable: bool,
) -> None:
    assert _json_value_schema(document).is_valid(value) is storable
    params = {"p": value}
    answers = [
        await client.put(f"{EXPERIMENTS}/j", json={"params": params}, headers=auth),
        await client.post(
            f"{EXPERIMENTS}/batch", json={"items": [{"params": params}]}, headers=auth
        ),
        await client.post(
            "/api/v1/heartbeats",
            json={"worker_id": "w", "role": "training", "extra": params},
            headers=auth,
        ),
    ]
    for r in answers:
        if storable:
            assert r.status_code < 300, r.text[:300]
        else:
            assert_error(r, 422, "invalid")


# -- rules the schema cannot state: in words, with their status --------------------------------
def test_every_declared_refusal_is_stated_in_its_operation(document: dict[str, Any]) -> None:
    """schemathesis.toml lets a few operations refuse schema-valid data; each such status
    is declared among the operation's responses and its rule is in the description."""
    config = tomllib.loads((ROOT / "schemathesis.toml").read_text(encoding="utf-8"))
    entries = config["operations"]
    assert entries
    for entry in entries:
        method, path = entry["include-name"].split(" ", 1)
        operation = document["paths"][path][method.lower()]
        accepted = entry.get("checks", {}).get("positive_data_acceptance")
        if accepted is None:  # an entry about another check
            continue
        statuses = accepted["expected-statuses"]
        for status in [s for s in statuses if s.isdigit() and s[0] == "4"]:
            if status in ("401", "403", "404", "409", "429"):
                continue  # schemathesis' own defaults
            assert status in operation["responses"], (entry["include-name"], status)
            assert f"**{status}**" in operation["description"], (entry["include-name"], status)


# -- links: a resource's operations are reachable from the one that writes it -----------------
def test_links_name_real_operations_and_parameters(document: dict[str, Any]) -> None:
    operations = {
        op["operationId"]: op for methods in document["paths"].values() for op in methods.values()
    }
    found = 0
    for methods in document["paths"].values():
        for op in methods.values():
            for response in op["responses"].values():
                for name, link in response.get("links", {}).items():
                    found += 1
                    target = operations[link["operationId"]]
                    known = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
                    assert set(link["parameters"]) <= known, (name, link, known)
    assert found == sum(len(link.statuses) for link in LINKS)
    linked = {
        link["operationId"]
        for methods in document["paths"].values()
        for op in methods.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    }
    needing_a_resource = {
        op["operationId"]
        for path, methods in document["paths"].items()
        for method, op in methods.items()
        if "{" in path and method in ("get", "patch", "delete")
    }
    assert needing_a_resource <= linked, needing_a_resource - linked


def _resolve(expression: str, request_path: dict[str, str], body: Any) -> Any:
    if expression.startswith("$request.path."):
        return request_path[expression.removeprefix("$request.path.")]
    pointer = expression.removeprefix("$response.body#")
    for part in pointer.strip("/").split("/"):
        body = body[part]
    return body


async def test_following_the_links_reaches_the_written_resources(
    document: dict[str, Any], client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    by_id = {
        op["operationId"]: (method, path)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }
    writes = [
        ("put", "/api/v1/anchors/{name}", {"name": "x264"}, {"rd_points": POINTS}),
        ("post", EXPERIMENTS, {}, {"rd_points": POINTS}),
        ("put", EXPERIMENTS + "/{experiment_id}", {"experiment_id": "put"}, {"rd_points": POINTS}),
    ]
    for method, template, path_params, body in (writes[0], writes[2]):  # both exist first
        r = await client.request(method, template.format(**path_params), json=body, headers=auth)
        assert r.status_code == 201, r.text
    followed = 0
    for method, template, path_params, body in writes:
        r = await client.request(method, template.format(**path_params), json=body, headers=auth)
        assert r.status_code in (200, 201), r.text
        links = document["paths"][template][method]["responses"][str(r.status_code)]["links"]
        for name, link in links.items():
            target_method, target = by_id[link["operationId"]]
            values = {
                key: _resolve(expression, path_params, r.json())
                for key, expression in link["parameters"].items()
            }
            # What a link leaves to the caller: the other resource, which exists.
            given = {"path.experiment_id": "put", "path.name": "x264"}
            if target.endswith("/anchors/{name}/bd-rate"):
                given["query.experiment_id"] = "put"
            values = {**given, **values}
            path = target.format(
                **{k.removeprefix("path."): v for k, v in values.items() if k.startswith("path.")}
            )
            query = {
                k.removeprefix("query."): v for k, v in values.items() if k.startswith("query.")
            }
            call_body = {"rd_points": POINTS} if target_method in ("patch", "put") else None
            if target_method == "delete":
                continue  # below, once the reads are done
            answer = await client.request(
                target_method, path, params=query, json=call_body, headers=auth
            )
            assert answer.status_code == 200, (name, path, query, answer.text[:300])
            followed += 1
    assert followed >= 10
    deleted = await client.delete("/api/v1/anchors/x264", headers=auth)
    assert deleted.status_code == 200
    gone = document["paths"]["/api/v1/anchors/{name}"]["delete"]["responses"]["200"]["links"]
    (link,) = gone.values()
    name = _resolve(link["parameters"]["path.name"], {"name": "x264"}, deleted.json())
    assert_error(await client.get(f"/api/v1/anchors/{name}"), 404, "not_found")
