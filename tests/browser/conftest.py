"""Fixtures of the browser tests: real Chromium (Playwright) against a real codecdash server.

- ``browser`` (package scope) — one headless Chromium for the whole package. Package, not
  session, scope: Playwright's sync API keeps an event loop running in this thread, and the
  async tests elsewhere in the suite need it gone (``asyncio.run`` refuses to nest).
  Skipped when Chromium is not installed (``CODECDASH_CHROMIUM`` names another binary).
- ``make_dashboard`` — ``make_dashboard(*, filled=True, **make_live_server_kwargs)``: a
  :class:`Dashboard` (``.url``, ``.api`` — an httpx client with a write token —,
  ``.post_experiment(**fields)``, ``.stop()``, ``.live``) over ``make_live_server()``
  (tests/conftest.py) on a temp SQLite file, filled through the HTTP API with :func:`seed`:
  30 experiments of every status (exp-027 is the best completed one: 67.0 %, 35.05 dB;
  exp-026 failed with an error), heartbeats of every role, costs of every component.
- ``dashboard`` — ``make_dashboard()``; ``empty_dashboard`` — ``make_dashboard(filled=False)``.
- ``make_aws_dashboard`` — ``make_aws_dashboard(**settings)``: the AWS deployment on moto
  behind a local CloudFront (``browser/aws_mode.py``: the API function behind an HTTP shim,
  the site files from the bucket as deployed), its experiments in the DynamoDB table and the
  read replica. ``served`` — the seeded dashboard in both modes (``codecdash serve`` and
  AWS), for the page tests that must behave the same on both.
- ``open_page`` — ``open_page(url=None, *, width=1280, height=900, color_scheme="light")``:
  a page in a fresh browser context (its own storage), navigated to ``url`` when given. Each
  page records console errors, uncaught exceptions and Content-Security-Policy violations
  (a ``securitypolicyviolation`` listener); the test FAILS when any appear that it did not
  announce with ``page_problems(page).allow(regex)``.
- ``page`` — ``open_page()`` before navigation.

Helpers: :func:`wait_for_data`, :func:`wait_live` (the event stream is open), :func:`deadline`,
:class:`StaticServer` (a plain file server, no API), :class:`BrokenSource` (a source that
fails, for ``create_app(sources=…)``), ``NETWORK_ERRORS`` (console lines to ``allow()`` when a
test cuts the server off).

Timeouts are short (5 s per action): the page is small, and waiting is done by polling
with ``expect`` on locators, never by sleeping (nor with ``wait_for_function``, whose
polling evaluates a string, which the page's Content-Security-Policy refuses).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from aws_fixtures import *  # noqa: F403 (the `aws` and `moto_server` fixtures)
from aws_fixtures import (
    READ_MODEL,
    SITE,
    TABLE,
    AwsEnv,
    create_experiments_table,
    lambda_environment,
)
from browser.aws_mode import (
    AwsDashboard,
    CloudFrontShim,
    upload_site,
)
from codecdash import aws_clients, aws_lambda
from codecdash.sources.base import FieldInfo, SourceError
from conftest import LiveServer  # tests/conftest.py (tests/ is on sys.path)

CHROMIUM = os.environ.get("CODECDASH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ACTION_TIMEOUT_MS = 5000
# A navigation waits for the load event, which follows the page's later modules (fetched after
# the first paint): on a machine shared by parallel jobs that takes longer than an action.
# The first paint's speed is the page benchmark's business (bench/lighthouse.py), not this one.
NAVIGATION_TIMEOUT_MS = 20000
expect.set_options(timeout=ACTION_TIMEOUT_MS)

# A CSP violation as the page sees it, reported to the test through a binding. Init scripts
# and bindings go through the DevTools protocol, so the page's own CSP does not block them.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__codecdashCsp(
    `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
  );
});
"""


# -- the browser ------------------------------------------------------------------------
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (set CODECDASH_CHROMIUM)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()


# -- accessibility: axe-core, pinned in package.json -----------------------------------------
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.10.2"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed ({AXE}); run `npm ci` in {ROOT}")
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["axe-core"]
    assert pinned == AXE_VERSION
    return AXE.read_text(encoding="utf-8")


def axe_violations(page: Page, axe_source: str, context: str = "document") -> list[str]:
    """axe's WCAG 2.1 A/AA violations in `context` (a selector, or the whole document), one
    line each with up to five of the nodes."""
    page.evaluate(axe_source)  # through the DevTools protocol: the page's CSP does not apply
    assert page.evaluate("axe.version") == AXE_VERSION
    result: dict[str, Any] = page.evaluate(
        """([context, tags]) => axe.run(
            context === "document" ? document : document.querySelector(context),
            {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})""",
        [context, AXE_TAGS],
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(
            f"{n['target']}: {n['failureSummary']}".replace("\n", " ") for n in v["nodes"][:5]
        )
        for v in result["violations"]
    ]


# -- pages that fail the test on console errors and CSP violations -----------------------
@dataclass
class PageProblems:
    """What went wrong in one page; `allow()` announces what the test expects."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        found = [
            *(f"console error: {m}" for m in self.console_errors),
            *(f"uncaught exception: {m}" for m in self.page_errors),
            *(f"CSP violation: {m}" for m in self.csp_violations),
        ]
        return [m for m in found if not any(p.search(m) for p in self.allowed)]


PROBLEMS = pytest.StashKey[list[tuple[Page, PageProblems]]]()


def page_problems(page: Page) -> PageProblems:
    problems: PageProblems = page.context._codecdash_problems  # type: ignore[attr-defined]
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a test body passes, fail it if any of its pages logged an unexpected problem."""
    result = yield
    found = [
        f"{page.url}: {message}"
        for page, problems in item.stash.get(PROBLEMS, [])
        for message in problems.unexpected()
    ]
    if found:
        raise AssertionError("the page reported problems:\n  " + "\n  ".join(found))
    return result


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[OpenPage]:
    contexts = []
    pages = request.node.stash.setdefault(PROBLEMS, [])

    def open_(
        url: str | None = None,
        *,
        width: int = 1280,
        height: int = 900,
        color_scheme: str = "light",
    ) -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,  # type: ignore[arg-type]
            reduced_motion="reduce",
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        contexts.append(context)
        problems = PageProblems()
        context._codecdash_problems = problems  # type: ignore[attr-defined]
        context.expose_binding(
            "__codecdashCsp", lambda _source, text: problems.csp_violations.append(text)
        )
        context.add_init_script(CSP_LISTENER)
        page = context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                where = message.location.get("url")
                problems.console_errors.append(
                    f"{message.text} ({where})" if where else message.text
                )

        page.on("console", on_console)
        page.on("pageerror", lambda e: problems.page_errors.append(str(e)))
        pages.append((page, problems))
        if url is not None:
            page.goto(url)
        return page

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def page(open_page: OpenPage) -> Page:
    return open_page()


# -- a server with data ------------------------------------------------------------------
NOW = datetime.now(UTC).replace(microsecond=0)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def seed_experiments() -> list[dict[str, Any]]:
    """Thirty experiments: every status, rising metrics, params, tags, errors, RD points."""
    items: list[dict[str, Any]] = []
    for i in range(30):
        created = 30 - i  # hours ago: exp-000 is the oldest
        status = ("completed", "completed", "failed", "completed", "running", "queued")[i % 6]
        item: dict[str, Any] = {
            "id": f"exp-{i:03d}",
            "name": f"ssf2020 λ={0.001 * (i + 1):.4f} run {i}",
            "status": status,
            "created_at": ago(hours=created),
            "params": {"lambda": round(0.001 * (i + 1), 4), "lr": 1e-4, "model": "ssf2020"},
            "tags": ["uvg", "mse" if i % 2 else "ms-ssim"],
            "worker_id": f"train-{i % 3:02d}",
        }
        if status in ("completed", "failed", "running"):
            item["started_at"] = ago(hours=created - 0.1)
        if status == "completed":
            item |= {
                "finished_at": ago(hours=created - 2),
                "bitrate_reduction_pct": 40.0 + i,
                "psnr_db": 31.0 + i * 0.15,
                "ms_ssim": 0.95 + i * 0.001,
                "bpp": 0.2 - i * 0.002,
                "bitrate_kbps": 900.0 - i * 10,
                "cost_usd": 10.0 + i,
                "rd_points": [
                    {"bitrate_kbps": 250.0 * k, "psnr_db": 30.0 + 1.6 * k + i * 0.05}
                    for k in range(1, 5)
                ],
            }
        if status == "failed":
            item |= {
                "finished_at": ago(hours=created - 1),
                "error": f"CUDA out of memory (run {i})",
                "cost_usd": 2.5,
            }
        items.append(item)
    return items


HEARTBEATS = [
    {"worker_id": "orchestrator-01", "role": "orchestrator", "cpu_pct": 12.5, "mem_pct": 40.0},
    {
        "worker_id": "train-00",
        "role": "training",
        "instance_type": "g5.xlarge",
        "spot": True,
        "gpu_util_pct": 91.0,
        "queue_depth": 4,
    },
    {"worker_id": "train-01", "role": "training", "spot": False, "gpu_util_pct": 88.0},
    {"worker_id": "infer-00", "role": "inference", "fps": 24.5, "queue_depth": 2},
]
COSTS = [
    {"component": "training", "amount_usd": 1200.0},
    {"component": "inference", "amount_usd": 300.0},
    {"component": "storage", "amount_usd": 80.0},
    {"component": "orchestrator", "amount_usd": 40.0},
]


@dataclass
class Dashboard:
    live: LiveServer
    api: httpx.Client  # base URL the server, with the write token

    @property
    def url(self) -> str:
        return self.live.url + "/"

    def post_experiment(self, **fields: Any) -> dict[str, Any]:
        response = self.api.post("/api/v1/experiments", json=fields)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def stop(self) -> None:
        """Stops the server at once (the page sees it go away; open streams are cut)."""
        self.live.server.should_exit = True
        self.live.server.force_exit = True  # no grace period for the page's event stream
        self.live.thread.join(10)
        assert not self.live.thread.is_alive(), "uvicorn did not stop"


def seed(dash: Dashboard) -> None:
    def ok(response: httpx.Response) -> None:
        assert response.status_code < 300, response.text

    ok(dash.api.post("/api/v1/experiments/batch", json={"items": seed_experiments()}))
    for beat in HEARTBEATS:
        ok(dash.api.post("/api/v1/heartbeats", json=beat))
    ok(dash.api.post("/api/v1/costs", json={"items": COSTS}))  # at: now, so this month


MakeDashboard = Callable[..., Dashboard]


@pytest.fixture
def make_dashboard(make_live_server: Callable[..., LiveServer]) -> Iterator[MakeDashboard]:
    clients: list[httpx.Client] = []

    def make(*, filled: bool = True, **server_kwargs: Any) -> Dashboard:
        live = make_live_server(**server_kwargs)
        api = httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {live.token}"}, timeout=10
        )
        clients.append(api)
        dash = Dashboard(live, api)
        if filled:
            seed(dash)
        return dash

    try:
        yield make
    finally:
        for c in clients:
            c.close()


@pytest.fixture
def dashboard(make_dashboard: MakeDashboard) -> Dashboard:
    return make_dashboard()


@pytest.fixture
def empty_dashboard(make_dashboard: MakeDashboard) -> Dashboard:
    return make_dashboard(filled=False)


MakeAwsDashboard = Callable[..., AwsDashboard]


@pytest.fixture
def make_aws_dashboard(
    aws: AwsEnv,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[MakeAwsDashboard]:
    """The AWS deployment on moto behind a local CloudFront (see browser/aws_mode.py);
    keyword arguments are settings of its functions (``default_anchor="x264"``)."""
    shims: list[CloudFrontShim] = []
    clients: list[httpx.Client] = []

    def make(**settings: str) -> AwsDashboard:
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=SITE)
        s3.create_bucket(Bucket=READ_MODEL)
        dynamodb = aws.client("dynamodb")
        create_experiments_table(dynamodb, TABLE)
        lambda_environment(
            monkeypatch, tmp_path, **{f"CODECDASH_{k.upper()}": v for k, v in settings.items()}
        )
        aws_clients._DEFAULT.clear()
        aws_lambda.reset()
        upload_site(s3)
        shims.append(CloudFrontShim(s3))
        clients.append(httpx.Client(base_url=shims[-1].url, timeout=30))
        return AwsDashboard(shims[-1], dynamodb, clients[-1])

    try:
        yield make
    finally:
        for client in clients:
            client.close()
        for shim in shims:
            shim.close()
        aws_lambda.reset()


@pytest.fixture(params=["serve", "aws"])
def served(request: pytest.FixtureRequest) -> Dashboard | AwsDashboard:
    """The seeded experiments (no heartbeats nor costs: the AWS mode has its own fleet
    sources) behind `codecdash serve`, then behind the AWS deployment."""
    if request.param == "serve":
        dash: Dashboard = request.getfixturevalue("make_dashboard")(filled=False)
        response = dash.api.post("/api/v1/experiments/batch", json={"items": seed_experiments()})
        assert response.status_code < 300, response.text
        return dash
    deployed: AwsDashboard = request.getfixturevalue("make_aws_dashboard")()
    deployed.put_experiments(seed_experiments())
    deployed.publish()
    deployed.snapshot()
    return deployed


class BrokenSource:
    """A source whose backend is down (for `create_app(sources=...)`)."""

    fields: dict[str, FieldInfo] = {}

    def __init__(self, name: str, sections: tuple[str, ...], error: str) -> None:
        self.name = name
        self.sections = sections
        self.error = error

    async def collect(self, now: float) -> dict[str, Any]:
        raise SourceError(self.error)


# -- helpers -----------------------------------------------------------------------------
# A refused connection and an HTTP error each log one line that no script can silence.
NETWORK_ERRORS = r"net::ERR_CONNECTION_REFUSED|Failed to load resource"


def wait_for_data(page: Page) -> None:
    """The first snapshot is drawn and the table filled."""
    expect(page.locator("#main")).not_to_have_class(re.compile(r"\bis-loading\b"))
    expect(page.locator("#experiments-body tr").first).to_be_visible()


def wait_live(page: Page) -> None:
    """The event stream is open: changes now arrive without polling."""
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "live")
    # "Live" alone (not "Live · every 30 s", which is polling) means the stream is open.
    expect(page.locator("#connection-status .conn-text")).to_have_text("Live")


def deadline(seconds: float) -> Callable[[], float]:
    """Milliseconds left until `seconds` from now (at least 1)."""
    end = time.monotonic() + seconds
    return lambda: max(1.0, (end - time.monotonic()) * 1000)


class StaticServer:
    """A plain static file server (no API, no security headers) over `root`, in a thread."""

    def __init__(self, root: Path) -> None:
        import functools
        import http.server

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
