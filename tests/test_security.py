"""Security properties of the HTTP surface, each tried with the inputs an attacker would use.

- every write route refuses missing, empty, malformed, unknown, revoked and read-only
  tokens with 401 (and writes nothing); private mode does the same for every read;
- limits: 413 over 4 MiB (declared or streamed), 415 for non-JSON, 422 over 1,000 items,
  429 with Retry-After per token and per client address, 503 past the event-stream cap,
  503 when a request runs past its time;
- the Host allow-list (DNS rebinding), path traversal on the page's files, the
  security headers on every kind of answer, no CORS, and no token in any log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from codecdash.api.csp import csp_allowing
from codecdash.api.guard import CSP, MAX_BODY_BYTES
from codecdash.api.static import dashboard_dir
from codecdash.config import Settings, load_settings
from codecdash.store import Store

pytestmark = pytest.mark.anyio
API = "/api/v1"
THEME = (dashboard_dir() / "theme.js").read_bytes()  # GET / carries it inline

EXPERIMENT = {"id": "sec-1", "name": "n", "status": "completed", "psnr_db": 33.0}
HEARTBEAT = {"worker_id": "w-1", "role": "training", "status": "ok"}
COST = {"component": "training", "amount_usd": 1.5}
ANCHOR_POINTS = [
    {"bitrate_kbps": 1000.0, "psnr_db": 30.0},
    {"bitrate_kbps": 2000.0, "psnr_db": 33.0},
    {"bitrate_kbps": 4000.0, "psnr_db": 36.0},
    {"bitrate_kbps": 8000.0, "psnr_db": 39.0},
]
# A valid request for each write route, so that the token is the only thing wrong.
WRITES: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/api/v1/experiments"): ("/api/v1/experiments", EXPERIMENT),
    ("PUT", "/api/v1/experiments/{experiment_id}"): (
        "/api/v1/experiments/sec-1",
        {"name": "put", "status": "running"},
    ),
    ("PATCH", "/api/v1/experiments/{experiment_id}"): (
        "/api/v1/experiments/sec-0",
        {"psnr_db": 34.0},
    ),
    ("POST", "/api/v1/experiments/batch"): ("/api/v1/experiments/batch", {"items": [EXPERIMENT]}),
    ("POST", "/api/v1/heartbeats"): ("/api/v1/heartbeats", HEARTBEAT),
    ("POST", "/api/v1/costs"): ("/api/v1/costs", COST),
    ("PUT", "/api/v1/anchors/{name}"): ("/api/v1/anchors/a1", {"rd_points": ANCHOR_POINTS}),
    ("DELETE", "/api/v1/anchors/{name}"): ("/api/v1/anchors/a0", None),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): ("/api/v1/alerts/1/ack", None),
    ("POST", "/api/v1/experiments/{experiment_id}/metrics"): (
        "/api/v1/experiments/sec-0/metrics",
        {"points": [{"step": 1, "values": {"loss": 0.5}}]},
    ),
    ("POST", "/api/v1/metrics"): (
        "/api/v1/metrics",
        {"items": [{"experiment_id": "sec-0", "points": [{"step": 2, "values": {"loss": 0.4}}]}]},
    ),
    # curation (after sec-1 was created above: the real token's pass runs them in order)
    ("DELETE", "/api/v1/experiments/{experiment_id}"): ("/api/v1/experiments/sec-1", None),
    ("POST", "/api/v1/experiments/{experiment_id}/restore"): (
        "/api/v1/experiments/sec-1/restore",
        None,
    ),
    ("POST", "/api/v1/experiments/delete"): (
        "/api/v1/experiments/delete",
        {"ids": ["sec-1"], "dry_run": True},
    ),
    ("POST", "/api/v1/experiments/restore"): ("/api/v1/experiments/restore", {"ids": ["sec-1"]}),
    ("POST", "/api/v1/trash/purge"): ("/api/v1/trash/purge", {"dry_run": True}),
    # what people deleted, and who: for write tokens only, even on a public dashboard
    ("GET", "/api/v1/trash"): ("/api/v1/trash", None),
    ("GET", "/api/v1/audit"): ("/api/v1/audit", None),
}
WRITER_READS = {template for (method, template) in WRITES if method == "GET"}


def secured_operations(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method, op in ops.items()
        if op.get("security")
    }


def read_operations(app: FastAPI) -> set[str]:
    return {path for path, ops in app.openapi()["paths"].items() if "get" in ops}


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_hardened(r: httpx.Response) -> None:
    """The page's security headers, whatever the answer (the page itself: the same CSP,
    allowing its inline theme.js by hash alone, never 'unsafe-inline')."""
    where = f"{r.request.method} {r.request.url.path} -> {r.status_code}"
    policy = r.headers.get("content-security-policy")
    if r.request.url.path == "/" and r.status_code == 200:
        assert policy == csp_allowing(scripts=[THEME]), where
        assert "'unsafe-inline'" not in policy, where
    else:
        assert policy == CSP, where
    assert r.headers.get("x-content-type-options") == "nosniff", where
    assert r.headers.get("x-frame-options") == "DENY", where
    assert r.headers.get("referrer-policy") == "strict-origin-when-cross-origin", where
    assert "server" not in r.headers, where
    assert "access-control-allow-origin" not in r.headers, where


@contextlib.asynccontextmanager
async def client_for(
    app: FastAPI, host: str = "localhost", client: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- auth: writes -----------------------------------------------------------------------
async def test_the_write_matrix_covers_every_secured_route(app: FastAPI) -> None:
    """A new write route must be added to WRITES (and so to every test below)."""
    assert secured_operations(app) == set(WRITES)


async def _seed(store: Store, token: str, client: httpx.AsyncClient) -> None:
    r = await client.put(f"{API}/experiments/sec-0", json={"name": "zero"}, headers=bearer(token))
    assert r.status_code in (200, 201), r.text
    r = await client.put(
        f"{API}/anchors/a0", json={"rd_points": ANCHOR_POINTS}, headers=bearer(token)
    )
    assert r.status_code in (200, 201), r.text
    # alert 1, pending: something to acknowledge
    from codecdash.alerts.service import AlertService

    down = {"infrastructure": {"orchestrator": {"status": "down", "last_seen": None}}}
    AlertService(Settings(database_url=store.db.url), store).evaluate(down)


def _bad_authorizations(revoked: str, read_only: str) -> dict[str, dict[str, str]]:
    return {
        "missing": {},
        "empty": {"Authorization": ""},
        "scheme only": {"Authorization": "Bearer"},
        "blank token": {"Authorization": "Bearer    "},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "token without scheme": {"Authorization": revoked},
        "wrong": bearer("cdt_" + "A" * 43),
        "default-looking": bearer("admin"),
        "revoked": bearer(revoked),
        "read scope": bearer(read_only),
        "two tokens": {"Authorization": f"Bearer {read_only} {revoked}"},
        "non-ascii": {"Authorization": "Bearer cdt_\u00e9\u00e9".encode("latin-1")},  # type: ignore[dict-item]
    }


async def test_every_write_route_refuses_every_bad_token(
    app: FastAPI, client: httpx.AsyncClient, write_token: str
) -> None:
    store: Store = app.state.codecdash.store
    await _seed(store, write_token, client)
    revoked = store.create_token("to-revoke")
    assert store.revoke_token("to-revoke")
    read_only = store.create_token("reader", "read")
    store._tokens_at = 0.0  # the token cache would see the revocation within 2 s anyway
    before = (await client.get(f"{API}/dashboard")).json()["summary"]["total_experiments"]
    for (method, _template), (url, body) in WRITES.items():
        for label, headers in _bad_authorizations(revoked, read_only).items():
            r = await client.request(method, url, headers=headers, json=body)
            error = assert_error(r, 401, "unauthorized")
            assert r.headers.get("www-authenticate") == "Bearer", (method, url, label)
            assert "cdt_" not in error["message"], "a token is echoed back"
    # nothing was written, nothing deleted
    after = (await client.get(f"{API}/dashboard")).json()["summary"]["total_experiments"]
    assert after == before
    assert (await client.get(f"{API}/anchors/a0")).status_code == 200
    assert (await client.get(f"{API}/anchors/a1")).status_code == 404
    assert (await client.get(f"{API}/experiments/sec-0/metrics")).json()["total_points"] == 0
    # ...and the same requests pass with the real token: the matrix can fail.
    for (method, _template), (url, body) in WRITES.items():
        r = await client.request(method, url, headers=bearer(write_token), json=body)
        assert 200 <= r.status_code < 300, (method, url, r.status_code, r.text[:200])


async def test_a_revoked_token_stops_working_within_the_cache_window(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    store: Store = app.state.codecdash.store
    token = store.create_token("soon-revoked")
    r = await client.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(token))
    assert r.status_code == 202
    store.revoke_token("soon-revoked")
    r = await client.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(token))
    assert_error(r, 401)


def test_there_are_no_default_credentials(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert store.list_tokens() == []
        for guess in ("", "admin", "password", "codecdash", "changeme", "token", "cdt_", "test"):
            assert store.check_token(guess, ("read", "write")) is None
    finally:
        store.close()
    not_credentials = {"aws_read_model_key"}  # the read replica's S3 object key
    secret_like = [
        n
        for n in Settings.model_fields
        if any(w in n for w in ("token", "password", "secret", "key")) and n not in not_credentials
    ]
    # credentials the user supplies (alerts' webhook key, SMTP password): none by default,
    # and never shown (SecretStr)
    for name in secret_like:
        field = Settings.model_fields[name]
        assert field.default is None, f"{name} has a default credential"
        assert "SecretStr" in str(field.annotation), f"{name} is not a SecretStr"
    assert "hunter2" not in repr(Settings(alert_webhook_secret="hunter2"))  # type: ignore[arg-type]


def test_tokens_are_stored_hashed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    store = Store(url)
    try:
        token = store.create_token("someone")
    finally:
        store.close()
    raw = (tmp_path / "tokens.db").read_bytes()
    for suffix in ("-wal", "-shm"):
        extra = tmp_path / f"tokens.db{suffix}"
        if extra.exists():
            raw += extra.read_bytes()
    assert token.encode() not in raw
    assert token[4:].encode() not in raw


# -- auth: private mode -----------------------------------------------------------------
async def test_private_mode_requires_a_token_for_every_read(
    make_app: Callable[..., Any], tmp_path: Path, event_stream: Any
) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "p.db"), private=True))
    store: Store = app.state.codecdash.store
    reader = store.create_token("reader", "read")
    writer = store.create_token("writer")
    revoked = store.create_token("gone", "read")
    store.revoke_token("gone")
    async with client_for(app) as client:
        await _seed(store, writer, client)
        urls = {
            path: path.replace("{experiment_id}", "sec-0").replace("{name}", "a0")
            for path in read_operations(app)
        }
        assert "/api/v1/health" in urls and "/api/v1/dashboard" in urls
        for path, url in urls.items():
            if path == "/api/v1/events":
                continue  # a stream; below
            if path.endswith("/bd-rate"):
                url += "?experiment_id=sec-0" if path.startswith("/api/v1/anchors") else ""
            r = await client.get(url)
            if path == "/api/v1/health":
                assert r.status_code == 200  # liveness stays public, and says nothing private
                assert set(r.json()) <= {
                    "status",
                    "version",
                    "store",
                    "data_version",
                    "source",
                    "event_clients",
                }
                continue
            assert_error(r, 401)
            assert_error(await client.get(url, headers=bearer("cdt_" + "x" * 43)), 401)
            assert_error(await client.get(url, headers=bearer(revoked)), 401)
            assert_error(await client.get(url, headers={"Authorization": "Basic eDp5"}), 401)
            if path in WRITER_READS:
                assert_error(await client.get(url, headers=bearer(reader)), 401)
            for token in (writer,) if path in WRITER_READS else (reader, writer):
                ok = await client.get(url, headers=bearer(token))
                assert ok.status_code in (200, 422), (url, ok.status_code, ok.text[:200])
        # a read token is not a write token
        r = await client.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(reader))
        assert_error(r, 401)
        # the snapshot of a private dashboard is never cached by shared caches
        r = await client.get(f"{API}/dashboard", headers=bearer(reader))
        assert "private" in r.headers["cache-control"]
        # the page itself loads (it asks for the token), the data does not
        page = await client.get("/")
        assert page.status_code == 200 and 'id="auth-token"' in page.text
    # EventSource cannot send headers: the stream takes ?token=
    async with event_stream(app) as events:
        assert events.status == 401
    async with event_stream(app, path=f"{API}/events?token=nope") as events:
        assert events.status == 401
    async with event_stream(app, path=f"{API}/events?token={reader}") as events:
        assert events.status == 200


def test_private_mode_from_the_environment_and_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(env={"CODECDASH_PRIVATE": "1"}).private is True
    assert load_settings(env={}).private is False
    import codecdash.cli as cli

    seen: list[Settings] = []
    monkeypatch.setattr(cli, "run_server", lambda settings, *a, **k: seen.append(settings))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["serve", "--private", "--db", str(tmp_path / "c.db")])
    assert result.exit_code == 0, result.output
    assert seen and seen[0].private is True


# -- limits -----------------------------------------------------------------------------
async def test_bodies_over_4_mib_are_refused_before_parsing(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    big = b'{"items": [' + b" " * MAX_BODY_BYTES + b"]}"
    for (method, _template), (url, _body) in WRITES.items():
        if method in ("DELETE", "GET"):
            continue
        headers = {**auth, "Content-Type": "application/json"}
        assert_error(await client.request(method, url, content=big, headers=headers), 413)
        # declared small, streamed large: counted as it arrives

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b" " * (1024 * 1024)

        r = await client.request(method, url, content=stream(), headers=headers)
        assert_error(r, 413)
    # exactly at the cap is parsed (and rejected as JSON, not as size)
    at_cap = b"[" + b" " * (MAX_BODY_BYTES - 2) + b"]"
    r = await client.post(
        f"{API}/experiments/batch",
        content=at_cap,
        headers={**auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 422


def test_over_4_mib_on_a_real_socket_without_content_length(live_server: Any) -> None:
    """Chunked transfer: no Content-Length to trust; the guard counts bytes."""

    def chunks() -> Any:
        for _ in range(6):
            yield b" " * (1024 * 1024)

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post(
            f"{API}/experiments/batch",
            content=chunks(),
            headers={**bearer(live_server.token), "Content-Type": "application/json"},
        )
    assert_error(r, 413)


async def test_non_json_bodies_are_415(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/xml",
        "text/html",
        "application/jsonp",
    ):
        r = await client.post(
            f"{API}/experiments", content=b'{"id": "x"}', headers={**auth, "Content-Type": ctype}
        )
        assert_error(r, 415, "unsupported_media_type")
    r = await client.post(
        f"{API}/experiments",
        content=b'{"id": "x"}',
        headers={**auth, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201


async def test_batches_over_1000_items_are_refused(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    items = [{"id": f"b{i}"} for i in range(1001)]
    assert_error(
        await client.post(f"{API}/experiments/batch", json={"items": items}, headers=auth), 422
    )
    costs = [COST] * 1001
    assert_error(await client.post(f"{API}/costs", json={"items": costs}, headers=auth), 422)
    r = await client.get(f"{API}/experiments")  # nothing half-written
    assert r.json()["total"] == 0
    r = await client.post(f"{API}/experiments/batch", json={"items": items[:1000]}, headers=auth)
    assert r.status_code == 200 and r.json() == {"accepted": 1000}


async def test_writes_are_rate_limited_per_token_and_per_address(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "r.db"), rate_limit_per_minute=5))
    store: Store = app.state.codecdash.store
    one, two = store.create_token("one"), store.create_token("two")
    async with client_for(app, client=("10.0.0.1", 1)) as a:
        for _ in range(5):
            assert (
                await a.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(one))
            ).status_code == 202
        r = await a.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(one))
        assert_error(r, 429, "rate_limited")
        retry = int(r.headers["retry-after"])
        assert 1 <= retry <= 60
        # same address, other token: the address' bucket is empty too
        assert_error(await a.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(two)), 429)
        # unauthenticated floods from one address are limited as well
        assert_error(await a.post(f"{API}/heartbeats", json=HEARTBEAT), 429)
        # reads are not limited
        assert (await a.get(f"{API}/dashboard")).status_code == 200
    async with client_for(app, client=("10.0.0.2", 1)) as b:
        # other address, same token: the token's bucket is empty
        assert_error(await b.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(one)), 429)
        # other address, other token: fine
        r = await b.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(two))
        assert r.status_code == 202


async def test_the_event_stream_has_a_client_cap(
    make_app: Callable[..., Any], tmp_path: Path, event_stream: Any
) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "e.db"), max_event_clients=2))
    async with event_stream(app) as first, event_stream(app) as second:
        assert first.status == second.status == 200
        async with event_stream(app) as third:
            assert third.status == 503
            assert third.headers["retry-after"].isdigit()
            assert third.headers["content-security-policy"] == CSP
    async with event_stream(app) as again:  # slots come back on disconnect
        assert again.status == 200


class SlowSource:
    name = "slow"
    sections = ("storage",)
    fields: dict[str, Any] = {}
    timeout_s = 30.0

    async def collect(self, now: float) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {"storage": {"objects": 1, "bytes": 1, "db_items": 1}}


async def test_a_request_that_runs_too_long_answers_503(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    settings = Settings(database_url=str(tmp_path / "t.db"), request_timeout_seconds=0.3)
    app = await make_app(settings, sources=[SlowSource()])
    async with client_for(app) as client:
        started = time.monotonic()
        r = await client.get(f"{API}/dashboard")
        elapsed = time.monotonic() - started
        assert_error(r, 503)
        assert r.headers["retry-after"].isdigit()
        assert_hardened(r)
        assert elapsed < 3, elapsed
        assert (await client.get(f"{API}/health")).status_code == 200
        # a request stuck in a worker thread (a lock, a hung database) is answered on time too
        stuck = threading.Event()

        def hang(*_a: Any) -> Any:
            stuck.wait(10)
            return None

        app.state.codecdash.experiments.get = hang
        try:
            started = time.monotonic()
            r = await client.get(f"{API}/experiments/x")
            assert_error(r, 503, "timeout")
            assert time.monotonic() - started < 3
        finally:
            stuck.set()


# -- Host allow-list (DNS rebinding) ----------------------------------------------------
REBINDING_HOSTS = [
    "evil.example",
    "evil.example:8050",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "evil.example#localhost",
    "localhost@evil.example",
    "0x7f000001",
    "2130706433",
    "127.1",
    "[::ffff:127.0.0.1]",
    "localhost.",
    "192.168.1.20",
    "",
    "localhost:8050:80",
]


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0", "10.1.2.3"])
async def test_the_host_allow_list_refuses_rebinding_names(
    make_app: Callable[..., Any], settings: Settings, bind: str
) -> None:
    app = await make_app(
        settings.model_copy(update={"allowed_hosts": ["dash.example.org"]}), bind_host=bind
    )
    async with client_for(app) as client:
        for host in REBINDING_HOSTS:
            r = await client.get(f"{API}/dashboard", headers={"Host": host})
            error = assert_error(r, 400, "bad_host")
            assert_hardened(r)
            assert "CODECDASH_ALLOWED_HOSTS" in error["message"]
        for host in (
            "localhost",
            "LOCALHOST:8050",
            "127.0.0.1",
            "127.0.0.1:8050",
            "[::1]:8050",
            "dash.example.org",
            "Dash.Example.Org:443",
        ):
            r = await client.get(f"{API}/health", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        # the bound address itself is a name clients use
        r = await client.get(f"{API}/health", headers={"Host": f"{bind}:8050"})
        assert r.status_code == (200 if bind == "10.1.2.3" or bind == "127.0.0.1" else 400)
        # writes too (the guard runs before auth, so the token never matters)
        r = await client.post(f"{API}/heartbeats", json=HEARTBEAT, headers={"Host": "evil.example"})
        assert_error(r, 400, "bad_host")


async def test_a_missing_host_header_is_refused(app: FastAPI) -> None:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"{API}/health",
        "raw_path": b"",
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400


# -- static files: traversal ------------------------------------------------------------
TRAVERSALS = [
    "/../secret.txt",
    "/../../../../etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/%2e%2e%2fsecret.txt",
    "/..%2fsecret.txt",
    "/%252e%252e/secret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%5csecret.txt",
    "/..\\secret.txt",
    "/%5c..%5csecret.txt",
    "/....//secret.txt",
    "/.%2e/secret.txt",
    "/vendor/../../secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%uff0e%uff0e/secret.txt",
    "//etc/passwd",
    "/etc/passwd",
    "/%2fetc%2fpasswd",
    "/C:%5cWindows%5cwin.ini",
    "/index.html%00.js",
    "/index.html%00",
    "/%00",
    "/secret.txt",
    "/./secret.txt",
    "/file:///etc/passwd",
]


@pytest.fixture
def static_root(tmp_path: Path) -> Path:
    root = tmp_path / "site" / "dashboard"
    (root / "vendor").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>ok</title>")
    (root / "vendor" / "lib.js").write_text("export const x = 1;")
    (tmp_path / "site" / "secret.txt").write_text("SENTINEL-SECRET")
    return root


def _raw_get(url: str, target: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_static_traversal_is_impossible_over_a_real_socket(
    make_live_server: Callable[..., Any], static_root: Path
) -> None:
    live = make_live_server(static_root=static_root)
    status, body = _raw_get(live.url, b"/vendor/lib.js")
    assert status == 200 and b"export const x" in body  # the probe works
    for target in TRAVERSALS:
        status, body = _raw_get(live.url, target.encode("latin-1"))
        assert status in (400, 404), (target, status, body[:200])
        assert b"SENTINEL" not in body and b"root:" not in body, target


async def test_static_traversal_with_any_decoded_path(
    make_app: Callable[..., Any], static_root: Path
) -> None:
    """The app itself, given paths a server could hand it after decoding (NUL included)."""
    app = await make_app(static_root=static_root)
    paths = [
        "/../secret.txt",
        "/..\\secret.txt",
        "/\x00",
        "/index.html\x00.js",
        "/dashboard/../secret.txt",
        str(static_root.parent / "secret.txt"),
        "/" + str(static_root.parent / "secret.txt"),
        "/vendor/../index.html",
    ]
    for path in paths:
        sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"localhost")],
            "http_version": "1.1",
            "scheme": "http",
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "root_path": "",
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any], into: list[dict[str, Any]] = sent) -> None:
            into.append(message)

        await app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent[1:])
        assert sent[0]["status"] == 404, (path, sent[0]["status"])
        assert b"SENTINEL" not in body


# -- security headers on every kind of answer -------------------------------------------
async def test_security_headers_on_every_kind_of_answer(
    make_app: Callable[..., Any],
    tmp_path: Path,
    event_stream: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(
        database_url=str(tmp_path / "h.db"), rate_limit_per_minute=1, max_event_clients=1
    )
    app = await make_app(settings)
    store: Store = app.state.codecdash.store
    token = store.create_token("h")
    seen: set[int] = set()

    async with client_for(app) as c:

        async def check(r: httpx.Response) -> httpx.Response:
            assert_hardened(r)
            seen.add(r.status_code)
            return r

        await check(await c.get("/"))  # page
        page = await check(await c.get("/app.js"))  # a static asset
        await check(await c.get("/app.js", headers={"If-None-Match": page.headers["etag"]}))
        snap = await check(await c.get(f"{API}/dashboard"))
        await check(
            await c.get(f"{API}/dashboard", headers={"If-None-Match": snap.headers["etag"]})
        )
        await check(await c.get("/metrics"))
        await check(await c.get("/openapi.json"))
        await check(await c.get("/nope"))  # 404
        await check(await c.get(f"{API}/experiments/nope"))  # 404 API
        await check(await c.delete(f"{API}/dashboard"))  # 405
        await check(await c.get(f"{API}/experiments", params={"limit": 0}))  # 422
        await check(await c.get(f"{API}/experiments", params={"cursor": "x"}))  # 400
        await check(await c.post(f"{API}/heartbeats", json=HEARTBEAT))  # 401
        await check(
            await c.post(
                f"{API}/heartbeats",
                content=b"x",
                headers={**bearer(token), "Content-Type": "text/plain"},
            )
        )  # 415
        await check(
            await c.post(
                f"{API}/heartbeats", content=b" " * (MAX_BODY_BYTES + 1), headers=bearer(token)
            )
        )  # 413
        await check(await c.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(token)))
        await check(await c.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(token)))
        await check(await c.get(f"{API}/health", headers={"Host": "evil.example"}))  # 400

        # an unexpected failure deep inside: a 500 that still carries the headers
        def explode(*_a: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(app.state.codecdash.experiments, "get", explode)
        r = await check(await c.get(f"{API}/experiments/x"))
        assert_error(r, 500, "internal")
        assert "boom" not in r.text  # no internals in the answer

    async with event_stream(app) as stream:
        assert stream.headers["content-security-policy"] == CSP
        seen.add(stream.status)
        async with event_stream(app) as refused:
            assert refused.headers["content-security-policy"] == CSP
            seen.add(refused.status)
    assert {200, 304, 400, 401, 404, 405, 413, 415, 422, 429, 500, 503} <= seen, seen


async def test_cross_origin_requests_get_no_cors_grant(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    origin = {"Origin": "https://evil.example"}
    r = await client.get(f"{API}/dashboard", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    r = await client.options(
        f"{API}/experiments",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers


# -- tokens never logged ----------------------------------------------------------------
def test_tokens_never_reach_the_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every log line of a server with uvicorn's access log on (`serve --access-log`) and
    debug logging, while tokens are used well and badly, in headers and in ?token=."""
    import threading

    import uvicorn

    from codecdash.api.app import create_app
    from codecdash.net import free_port, wait_healthy

    caplog.set_level(logging.DEBUG)
    app = create_app(settings.model_copy(update={"private": True}))
    store: Store = app.state.codecdash.store
    writer = store.create_token("log-writer")
    reader = store.create_token("log-reader", "read")
    revoked = store.create_token("log-revoked")
    store.revoke_token("log-revoked")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            log_level="debug",
            access_log=True,
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 15)
        with httpx.Client(base_url=url, timeout=10) as http:
            http.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(writer))
            http.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(revoked))
            http.post(f"{API}/heartbeats", json=HEARTBEAT, headers={"Authorization": revoked})
            http.get(f"{API}/dashboard", headers=bearer(reader))
            http.get(f"{API}/dashboard", params={"token": reader})
            http.get(f"{API}/experiments/x", params={"token": revoked})
            http.get(f"{API}/experiments", params={"token": writer, "limit": 0})
            with http.stream("GET", f"{API}/events", params={"token": reader}) as stream:
                next(stream.iter_lines())
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
    out, err = capfd.readouterr()
    # the server's records (the test's own HTTP client logs its URLs: not the server's doing)
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(r.getMessage() for r in server_side) + out + err
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) >= 7, "the access log was not captured: the check would be empty"
    assert any("token=" in r.getMessage() for r in access)  # the line is there, redacted
    for secret in (writer, reader, revoked):
        assert secret not in logged
        assert secret[4:24] not in logged
