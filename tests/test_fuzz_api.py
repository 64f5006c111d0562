"""Property-based fuzzing of the whole API against its own OpenAPI document (schemathesis).

schemathesis' engine (what ``st run`` does) drives every operation of ``/openapi.json``
in-process through all its phases (examples, coverage, fuzzing, stateful sequences),
with valid and invalid data, and runs every default check on each answer: no 5xx;
status codes, content types, headers and bodies as documented; invalid data rejected
(``negative_data_rejection``); valid data accepted (``positive_data_acceptance``); auth
not ignored (``ignored_auth``: each secured operation is also called with no token and a
wrong one). Two checks of our own run beside them: every error is our JSON error shape,
and every answer carries the security headers. The seed is fixed, so a run reproduces.

A few rules cannot be said in OpenAPI (a PUT body's id must equal the path's; a cursor
must be one this server made; an anchor's points must form a usable curve). Schema-valid
requests broken only by those get a precise 4xx, and only those are let through
(``SEMANTIC_REJECTIONS``); anything else fails the test.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.engine import Status, events, from_schema
from schemathesis.python import asgi

from codecdash.anchors import save_anchor
from codecdash.api.app import create_app
from codecdash.api.guard import CSP
from codecdash.config import Settings
from codecdash.models import ExperimentIn

SEED = 20250314
MAX_EXAMPLES = 12  # per operation and phase: reaches every operation in ~1-2 min here
PRIVATE_MAX_EXAMPLES = 5


# -- our own checks ---------------------------------------------------------------------
@schemathesis.check
def error_shape(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every error is JSON {"error": {"code": str, "message": str, ...}}."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return
    ctype = response.headers.get("content-type", [""])[0]
    assert ctype.startswith("application/json"), f"error with Content-Type {ctype!r}"
    body = orjson.loads(response.content)
    assert set(body) == {"error"}, f"error body keys {sorted(body)}"
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], "error.code missing"
    assert isinstance(error.get("message"), str) and error["message"], "error.message missing"


@schemathesis.check
def security_headers(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """The page's CSP and the hardening headers are on every answer, errors included."""
    expected = {
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
    }
    for name, value in expected.items():
        assert response.headers.get(name) == [value], f"{name}: {response.headers.get(name)}"
    assert "server" not in response.headers, "Server header leaks the stack"


# -- what OpenAPI cannot say --------------------------------------------------------------
@dataclass(frozen=True)
class Rejection:
    """A schema-valid request refused by a rule the document cannot express."""

    operation: str | None  # None: any operation
    status: int
    code: str
    message: re.Pattern[str]


ANCHOR = "PUT /api/v1/anchors/{name}"
SEMANTIC_REJECTIONS = (
    # Cross-field: the body's id / name must equal the path's.
    Rejection(
        "PUT /api/v1/experiments/{experiment_id}",
        422,
        "invalid",
        re.compile(r"^body id '.*' differs from the path's "),
    ),
    Rejection(ANCHOR, 422, "invalid", re.compile(r"^body name '.*' differs from the path's ")),
    # Opaque: a cursor must be one this server made.
    Rejection(
        "GET /api/v1/experiments", 400, "bad_cursor", re.compile("^cursor is not one this server")
    ),
    # Numerical: an anchor must be a usable curve, in one rate unit.
    Rejection(ANCHOR, 422, "invalid", re.compile(r"^rd_points cannot anchor BD-rates in ")),
    Rejection(ANCHOR, 422, "invalid", re.compile(r"rate_unit is '\w+' but the points are in ")),
    Rejection(ANCHOR, 422, "invalid", re.compile(r"rd_points mix 'bitrate_kbps' and 'bpp'")),
    # Data-dependent: a BD-rate needs 4+ points with the quality asked for, on both curves
    # (the fuzzer rewrites the seeded experiment's points as it goes).
    *(
        Rejection(op, 422, "invalid", re.compile(r"^no BD-rate of '.*' against '"))
        for op in (
            "GET /api/v1/anchors/{name}/bd-rate",
            "GET /api/v1/experiments/{experiment_id}/bd-rate",
        )
    ),
    # Storage: PostgreSQL text cannot hold NUL; JSON integers are stored in 64 bits.
    Rejection(None, 422, "invalid", re.compile(r"text may not contain NUL")),
    Rejection(
        None, 422, "invalid", re.compile(r"cannot be stored as JSON: Integer exceeds 64-bit")
    ),
)


def _semantic(label: str, status: int, content: bytes) -> bool:
    try:
        error = orjson.loads(content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return any(
        r.operation in (None, label)
        and r.status == status
        and r.code == error.get("code")
        and r.message.search(str(error.get("message", ""))) is not None
        for r in SEMANTIC_REJECTIONS
    )


# -- the run --------------------------------------------------------------------------------
@dataclass
class FuzzReport:
    operations: set[str]
    cases: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    semantic: Counter[str] = field(default_factory=Counter)

    @property
    def reached(self) -> set[str]:
        return {op for op in self.operations if self.cases[op]}

    def summary(self) -> str:
        lines = [f"{sum(self.cases.values())} cases over {len(self.reached)} operations"]
        for op in sorted(self.operations):
            codes = ", ".join(f"{k}x{v}" for k, v in sorted(self.statuses[op].items()))
            lines.append(f"  {op}: {self.cases[op]} cases; {codes}")
        return "\n".join(lines)


def _seed(app: Any) -> None:
    """The document's example anchor and experiment exist, so reads of them can succeed
    (and the auth checks, which probe successful reads, get to run on every read)."""
    st = app.state.codecdash
    save_anchor(
        st.store,
        st.settings,
        "x264-medium-tune-zerolatency",
        "seeded",
        [
            {"bitrate_kbps": r, "psnr_db": q}
            for r, q in ((1000, 30), (2000, 33), (4000, 36), (8000, 39))
        ],
    )
    st.store.put_experiment(
        "ssf-lambda-0.0130-r3",
        ExperimentIn.model_validate(
            {
                "name": "seeded",
                "status": "completed",
                "psnr_db": 35.0,
                "rd_points": [
                    {"bitrate_kbps": r, "psnr_db": q}
                    for r, q in ((900, 30.5), (1800, 33.5), (3600, 36.5), (7200, 39.5))
                ],
            }
        ),
    )


def _schema(settings: Settings, seed: int, max_examples: int) -> tuple[Any, Any]:
    app = create_app(settings, background=False)
    _seed(app)
    token = app.state.codecdash.store.create_token("fuzzer")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.update(headers={"Authorization": f"Bearer {token}"})
    schema.config.seed = seed
    schema.config.generation.update(
        max_examples=max_examples,
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        database="none",
    )
    # A schema-violating body can also be over the 4 MiB cap (1,001 training-curve items
    # of many points each): refused with 413 before it is parsed, as every write documents.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]

    @schema.hook("filter_failure")
    def keep(context: Any, failure: Any, case: Any, response: Any) -> bool:
        rejected_valid_data = "positive_data_acceptance" in getattr(failure, "checks", ())
        label = f"{case.method.upper()} {case.operation.path}"
        return not (
            rejected_valid_data and _semantic(label, response.status_code, response.content)
        )

    return app, schema


def run_fuzz(schema: Any) -> FuzzReport:
    documented = {
        f"{method.upper()} {path}"
        for path, ops in schema.raw_schema["paths"].items()
        for method in ops
    }
    report = FuzzReport(documented)
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for node in recorder.cases.values():
                case = node.value
                report.cases[f"{case.method.upper()} {case.operation.path}"] += 1
            for case_id, interaction in recorder.interactions.items():
                if interaction.response is None:
                    continue
                case = recorder.cases[case_id].value
                label = f"{case.method.upper()} {case.operation.path}"
                report.statuses[label][interaction.response.status_code] += 1
            for case_id, dropped in recorder.filtered_failures.items():
                case = recorder.cases[case_id].value
                report.semantic[f"{case.method.upper()} {case.operation.path}"] += dropped
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    info = check.failure_info
                    interaction = recorder.interactions.get(case_id)
                    answer = (
                        f"{interaction.response.status_code} {interaction.response.content[:300]!r}"
                        if interaction is not None and interaction.response is not None
                        else "no response"
                    )
                    report.failures.append(
                        f"[{recorder.label}] {check.name}: {info.failure.title}: "
                        f"{info.failure.message[:400]}\n    {info.code_sample[:800]}\n"
                        f"    -> {answer}"
                    )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            report.errors.append(repr(event)[:2000])
    return report


@pytest.fixture
def fuzz_app(tmp_path: Path) -> Iterator[Callable[..., tuple[Any, Any]]]:
    apps: list[Any] = []

    def make(seed: int = SEED, max_examples: int = MAX_EXAMPLES, **overrides: Any) -> Any:
        settings = Settings(
            database_url=str(tmp_path / f"fuzz-{len(apps)}.db"),
            # schemathesis' in-process client sends `Host: testserver`.
            allowed_hosts=["testserver"],
            # Thousands of writes in a minute; the limiter has its own tests.
            rate_limit_per_minute=10**9,
            **overrides,
        )
        app, schema = _schema(settings, seed, max_examples)
        apps.append(app)
        return app, schema

    yield make
    asgi.shutdown_lifespans()
    for app in apps:
        app.state.codecdash.store.close()


def _assert_clean(report: FuzzReport) -> None:
    assert not report.errors, "\n".join(report.errors)
    assert not report.failures, (
        f"{len(report.failures)} check failures\n"
        + "\n\n".join(report.failures[:25])
        + "\n\n"
        + report.summary()
    )
    server_errors = {
        op: codes for op, codes in report.statuses.items() if any(c >= 500 for c in codes)
    }
    # 503 "too many event clients" is documented; nothing here may answer another 5xx.
    assert not {op: c for op, c in server_errors.items() if set(c) - {503}}, server_errors


@pytest.mark.slow
def test_every_operation_conforms_to_the_openapi_document(
    fuzz_app: Callable[..., tuple[Any, Any]],
) -> None:
    _app, schema = fuzz_app()
    report = run_fuzz(schema)
    print(report.summary())  # the figures in docs/perf-reliability.md come from here
    assert report.reached == report.operations, (
        f"never called: {sorted(report.operations - report.reached)}"
    )
    _assert_clean(report)
    # The token really worked: each write was accepted at least once, so the 401s seen
    # came from the ignored-auth probes, not from a broken fixture.
    writes = {
        "POST /api/v1/experiments",
        "PUT /api/v1/experiments/{experiment_id}",
        "PATCH /api/v1/experiments/{experiment_id}",
        "POST /api/v1/experiments/batch",
        "POST /api/v1/heartbeats",
        "POST /api/v1/costs",
        "POST /api/v1/experiments/{experiment_id}/metrics",
        "POST /api/v1/metrics",
    }
    for op in writes:
        assert any(200 <= c < 300 for c in report.statuses[op]), (op, report.statuses[op])
        assert report.statuses[op][401] > 0, f"{op}: never probed without a valid token"


@pytest.mark.slow
def test_private_mode_reads_are_secured_and_conform(
    fuzz_app: Callable[..., tuple[Any, Any]],
) -> None:
    """Private mode: every read but health declares the bearer scheme, and ignored_auth
    calls each without a token and with a wrong one (401 expected)."""
    _app, schema = fuzz_app(seed=SEED + 1, max_examples=PRIVATE_MAX_EXAMPLES, private=True)
    schema = schema.include(method="GET")
    # The boundary-value (coverage) phase ran on these operations above; here the point is
    # the auth checks, which every phase's cases get.
    schema.config.phases.coverage.enabled = False
    report = run_fuzz(schema)
    print(report.summary())
    reads = {op for op in report.operations if op.startswith("GET ")}
    report.operations = reads
    assert reads <= report.reached, f"never called: {sorted(reads - report.reached)}"
    _assert_clean(report)
    for op in reads - {"GET /api/v1/health"}:
        assert report.statuses[op][401] > 0, f"{op}: never refused without a token"
        assert any(200 <= c < 300 for c in report.statuses[op]) or 404 in report.statuses[op], (
            op,
            report.statuses[op],
        )
