"""Property tests of validation (hypothesis), on both store backends.

Random bodies never get a 5xx; a refused body changes nothing; the server accepts a
body exactly when the public models do; valid experiments round-trip unchanged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.models import (
    CostBatch,
    CostRecord,
    ExperimentBatch,
    ExperimentIn,
    ExperimentPatch,
    Heartbeat,
)
from codecdash.store import Store
from codecdash.timefmt import iso

pytestmark = pytest.mark.anyio

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies ----------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: they must be refused
    | st.text(max_size=30)  # lone surrogates and NUL included
    | st.sampled_from(
        [
            "",
            "completed",
            "training",
            "2025-03-14T10:00:00Z",
            "1e999",
            "x" * 300,
            "a\x00b",
            "\ud800",
            2**63,
            -(2**63) - 1,
            2**70,
            1e308,
            -0.0,
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = [
    "id",
    "name",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "psnr_db",
    "ms_ssim",
    "bpp",
    "bitrate_kbps",
    "bitrate_reduction_pct",
    "cost_usd",
    "worker_id",
    "params",
    "tags",
    "error",
    "rd_points",
    "duration_s",
    "worker_id",
    "role",
    "spot",
    "hourly_cost_usd",
    "cpu_pct",
    "fps",
    "queue_depth",
    "at",
    "extra",
    "component",
    "amount_usd",
    "description",
    "items",
    "bogus",
]
objects = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6)
bodies = (
    objects | json_values | st.builds(lambda items: {"items": items}, st.lists(objects, max_size=3))
)

ENDPOINTS: dict[str, tuple[str, str, tuple[type[BaseModel], ...]]] = {
    "create": ("POST", "/api/v1/experiments", (ExperimentIn,)),
    "put": ("PUT", "/api/v1/experiments/h-put", (ExperimentIn,)),
    "patch": ("PATCH", "/api/v1/experiments/h-patch", (ExperimentPatch,)),
    "batch": ("POST", "/api/v1/experiments/batch", (ExperimentBatch,)),
    "heartbeat": ("POST", "/api/v1/heartbeats", (Heartbeat,)),
    "costs": ("POST", "/api/v1/costs", (CostRecord, CostBatch)),
}


def model_accepts(models: tuple[type[BaseModel], ...], raw: bytes) -> bool:
    for model in models:
        try:
            model.model_validate(json.loads(raw))
        except (ValidationError, ValueError):
            continue
        return True
    return False


# -- fixtures: the app on both backends ------------------------------------------------------
@pytest.fixture
async def backend_client(
    make_app: Any, settings: Settings, store_url: str
) -> tuple[FastAPI, httpx.AsyncClient, dict[str, str]]:
    app = await make_app(settings.model_copy(update={"database_url": store_url}))
    store: Store = app.state.codecdash.store
    token = store.create_token("hypothesis")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")
    auth = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    r = await client.put("/api/v1/experiments/h-patch", json={"name": "patch me"}, headers=auth)
    assert r.status_code == 201
    return app, client, auth


def snapshot_of(store: Store) -> tuple[int, Any]:
    from codecdash.store import ListQuery

    items, _, total = store.list_experiments(ListQuery(limit=1000, sort="id"))
    return total, [(r["id"], r["updated_at"]) for r in items]


@pytest.mark.slow
@PROPERTY
@given(endpoint=st.sampled_from(sorted(ENDPOINTS)), body=bodies)
async def test_random_bodies_never_5xx_and_refusals_change_nothing(
    backend_client: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
    endpoint: str,
    body: Any,
) -> None:
    app, client, auth = backend_client
    store: Store = app.state.codecdash.store
    method, path, models = ENDPOINTS[endpoint]
    raw = json.dumps(body).encode()  # NaN/Infinity literals where the body has them
    version, before = store.version(), snapshot_of(store)
    r = await client.request(method, path, content=raw, headers=auth)
    assert r.status_code < 500, (endpoint, raw[:300], r.text[:300])
    accepted = model_accepts(models, raw)
    if r.status_code >= 400:
        assert_error(r, r.status_code)
        assert store.version() == version, (endpoint, raw[:300], r.status_code)
        assert snapshot_of(store) == before
        if endpoint == "create" and r.status_code == 409:
            return
        if endpoint == "put" and r.status_code == 422 and accepted:
            assert isinstance(body, dict) and body.get("id") not in (None, "h-put")
            return
        assert not accepted, (endpoint, raw[:300], r.text[:300])
    else:
        assert accepted, (endpoint, raw[:300], r.status_code, r.text[:300])
        assert store.version() > version


# -- known edge cases, every time ------------------------------------------------------------
EDGE_BODIES: list[tuple[str, bytes]] = [
    ("create", b'{"name": "a\\u0000b"}'),  # PostgreSQL text cannot hold NUL
    ("create", b'{"error": "\\u0000"}'),
    ("create", b'{"name": "\\ud800"}'),  # a lone surrogate
    ("create", b'{"params": {"big": 1180591620717411303424}}'),  # beyond 64 bits
    ("create", b'{"params": {"x": NaN}}'),
    ("batch", b'{"items": [{"name": "\\u0000"}]}'),
    ("batch", b'{"items": [{"params": {"big": -9223372036854775809}}]}'),
    ("heartbeat", b'{"worker_id": "w", "role": "training", "instance_type": "\\u0000"}'),
    ("heartbeat", b'{"worker_id": "w", "role": "training", "extra": {"n": 18446744073709551616}}'),
    ("costs", b'{"component": "other", "amount_usd": 1, "source": "\\u0000"}'),
    ("costs", b'{"component": "other", "amount_usd": 1, "description": "\\udfff"}'),
    ("patch", b'{"worker_id": "\\u0000"}'),
]


async def test_edge_case_bodies_are_422(
    backend_client: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    app, client, auth = backend_client
    store: Store = app.state.codecdash.store
    version = store.version()
    for endpoint, raw in EDGE_BODIES:
        method, path, _models = ENDPOINTS[endpoint]
        r = await client.request(method, path, content=raw, headers=auth)
        assert_error(r, 422)
    assert store.version() == version


async def test_extreme_times_round_trip(
    backend_client: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    _app, client, auth = backend_client
    for i, (sent, answered) in enumerate(
        [
            ("2025-03-14T10:00:00.123Z", "2025-03-14T10:00:00.123Z"),
            ("2025-03-14T10:00:00.999+00:00", "2025-03-14T10:00:00.999Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
            ("2025-03-14t10:00:00z", "2025-03-14T10:00:00.000Z"),
            ("2025-03-14 15:30+0530", "2025-03-14T10:00:00.000Z"),
            ("2025-03-14", "2025-03-14T00:00:00.000Z"),
        ]
    ):
        r = await client.put(f"/api/v1/experiments/t{i}", json={"created_at": sent}, headers=auth)
        assert r.status_code == 201
        assert r.json()["created_at"] == answered
    # The far end of the range is written as well (the API refuses it: it is in the future).
    assert iso(datetime(9999, 12, 31, 23, 59, 59, 999000, UTC).timestamp()) == (
        "9999-12-31T23:59:59.999Z"
    )


# -- invalid by one field ------------------------------------------------------------------
WRONG_VALUES: dict[str, list[Any]] = {
    "id": ["", "has space", "x" * 129, "slash/", 5],
    "name": ["n" * 201, 3, ["a"]],
    "status": ["done", "", None, 1],
    "created_at": [
        "yesterday",
        "2025-13-01T00:00:00Z",
        "1700000000",  # seconds since 1970 as text: not ISO 8601
        "0001-01-01T00:00:00+01:00",  # before the year 1 in UTC (was a 500)
        "9999-12-31T23:30:00-01:00",  # after the year 9999 in UTC
        1e20,
        True,
    ],
    "psnr_db": [-1, 201, "35 dB", float("nan"), float("inf")],
    "ms_ssim": [1.5, -0.1],
    "bitrate_reduction_pct": [100.01, -1001],
    "cost_usd": [-0.01, float("-inf")],
    "tags": ["uvg", [""], ["t" * 65], [1], ["t"] * 51],
    "params": ["lambda", [1, 2], {f"k{i}": i for i in range(201)}],
    "rd_points": [
        [{"psnr_db": 30}],
        [{"bitrate_kbps": 100}],
        [{"bitrate_kbps": 0, "psnr_db": 30}],
        "points",
    ],
    "error": ["e" * 10_001],
    "unknown_field": [1],
}


async def test_one_bad_field_is_422_naming_it(
    backend_client: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    app, client, auth = backend_client
    store: Store = app.state.codecdash.store
    version = store.version()
    for field, values in WRONG_VALUES.items():
        for value in values:
            body = {"name": "ok", "status": "completed", "psnr_db": 33.0, field: value}
            for method, path, payload in (
                ("POST", "/api/v1/experiments", body),
                ("PUT", "/api/v1/experiments/one-bad", body),
                ("POST", "/api/v1/experiments/batch", {"items": [{"id": "fine"}, body]}),
            ):
                r = await client.request(method, path, content=json.dumps(payload), headers=auth)
                error = assert_error(r, 422)
                named = field in error["message"] or any(
                    field in d["loc"] for d in error.get("detail") or []
                )
                assert named, (field, value, error["message"])
    assert store.version() == version


# -- valid experiments round-trip --------------------------------------------------------------
def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


unicode_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
millis = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(2025, 12, 31),  # the API refuses times ahead of its clock
    timezones=st.sampled_from([UTC, None]),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | finite(-1e300, 1e300)
    | unicode_text.filter(lambda s: len(s) < 40)
)
params = st.dictionaries(
    unicode_text.filter(lambda s: len(s) < 20),
    st.recursive(
        json_leaf,
        lambda c: (
            st.lists(c, max_size=3) | st.dictionaries(st.text("abc", max_size=3), c, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=5,
)
rd_point = st.fixed_dictionaries(
    {"bitrate_kbps": finite(1e-3, 1e6), "psnr_db": finite(0, 200)},
    optional={"ms_ssim": finite(0, 1)},
)
valid_experiments = st.fixed_dictionaries(
    {"status": st.sampled_from(["queued", "running", "completed", "failed", "cancelled"])},
    optional={
        "name": unicode_text.filter(lambda s: len(s) <= 200),
        "created_at": millis,
        "started_at": millis,
        "finished_at": millis,
        "bitrate_reduction_pct": finite(-1000, 100),
        "psnr_db": finite(0, 200),
        "ms_ssim": finite(0, 1),
        "bpp": finite(0, 1000),
        "bitrate_kbps": finite(0, 1e9),
        "cost_usd": finite(0, 1e9),
        "worker_id": unicode_text.filter(lambda s: len(s) <= 128),
        "params": params,
        "tags": st.lists(unicode_text.filter(lambda s: 1 <= len(s) <= 64), max_size=5),
        "error": unicode_text.filter(lambda s: len(s) <= 500),
        "rd_points": st.lists(rd_point, max_size=6),
    },
)
TIMES = ("created_at", "started_at", "finished_at")


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@pytest.mark.slow
@PROPERTY
@given(
    experiment=valid_experiments,
    experiment_id=st.from_regex(r"\A[A-Za-z0-9._:-]{1,40}\Z").filter(
        lambda s: s not in (".", "..")
    ),
)
async def test_valid_experiments_round_trip(
    backend_client: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
    experiment: dict[str, Any],
    experiment_id: str,
) -> None:
    _app, client, auth = backend_client
    body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in experiment.items()}
    r = await client.put(f"/api/v1/experiments/{experiment_id}", json=body, headers=auth)
    assert r.status_code in (200, 201), r.text[:500]
    got = (await client.get(f"/api/v1/experiments/{experiment_id}")).json()
    answered = r.json()
    if experiment["status"] == "running":  # its duration runs on until it finishes
        answered.pop("duration_s"), got["duration_s"]
    assert {k: v for k, v in got.items() if k in answered} == answered
    for key, sent in experiment.items():
        back = got[key]
        if key in TIMES:
            assert datetime.fromisoformat(back.replace("Z", "+00:00")) == as_utc(sent), key
        elif key == "rd_points":
            assert [{k: v for k, v in p.items() if v is not None} for p in back] == sent
        else:
            assert back == sent, key
    # server-filled fields
    assert got["id"] == experiment_id
    assert got["created_at"] is not None
    if experiment["status"] == "running" and "started_at" not in experiment:
        assert got["started_at"] is not None
    if experiment["status"] in ("completed", "failed", "cancelled"):
        assert got["finished_at"] is not None
    if got["started_at"] and got["finished_at"]:
        start = datetime.fromisoformat(got["started_at"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(got["finished_at"].replace("Z", "+00:00"))
        assert got["duration_s"] == pytest.approx(max(0.0, (end - start).total_seconds()), abs=2e-3)


@pytest.mark.anyio
async def test_ids_that_a_url_path_cannot_address_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """`.` and `..` are dot segments: clients resolve /api/v1/experiments/.. to /api/v1, so
    an experiment with such an id could never be read back. Other ids of dots are fine."""
    for dots in (".", ".."):
        r = await client.post("/api/v1/experiments", json={"id": dots}, headers=auth)
        assert_error(r, 422)
        r = await client.post(
            "/api/v1/heartbeats", json={"worker_id": dots, "role": "training"}, headers=auth
        )
        assert_error(r, 422)
    for fine in ("...", ".a", "..a", "a.."):
        r = await client.post("/api/v1/experiments", json={"id": fine}, headers=auth)
        assert r.status_code == 201, r.text
        assert (await client.get(f"/api/v1/experiments/{fine}")).json()["id"] == fine
