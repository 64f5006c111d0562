"""What an anonymous client on the open internet can do to the server, tried the way it would.

- writes are refused (401, 429) before a byte of their body is read, and bodies are
  parsed and validated in a worker thread, never on the event loop;
- a body must arrive within `body_timeout_seconds` (408), the bytes of bodies held at once
  are bounded (503), and a body cut short by its client is never acted on;
- validation errors never grow with the input;
- the client address is the peer's unless a configured proxy vouches for another; limits
  per token and per address are separate buckets, each of bounded memory;
- one address cannot take every event-stream slot;
- /metrics counts every status.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.store import Store
from test_security import WRITES, bearer, client_for

pytestmark = pytest.mark.anyio
API = "/api/v1"
HEARTBEAT = {"worker_id": "w-1", "role": "training", "status": "ok"}


# -- raw ASGI calls: the test decides what the body does ----------------------------------
async def call(
    app: FastAPI,
    method: str,
    path: str,
    headers: dict[str, str],
    receive: Callable[[], Any],
    client: tuple[str, int] = ("203.0.113.9", 40000),
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": client,
        "server": ("localhost", 80),
        "state": {},
    }

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return 0, {}, b""  # nothing answered (the client had left)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


class Body:
    """A request body sent in `chunks`; records whether the server asked for any of it."""

    def __init__(self, *chunks: bytes, then: str = "end") -> None:
        self.chunks = list(chunks)
        self.then = then  # "end", "disconnect" (the client leaves) or "stall"
        self.read = False
        self.stalled = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        self.read = True
        if self.chunks:
            chunk = self.chunks.pop(0)
            more = bool(self.chunks) or self.then != "end"
            return {"type": "http.request", "body": chunk, "more_body": more}
        if self.then == "disconnect":
            return {"type": "http.disconnect"}
        self.stalled.set()
        await asyncio.Event().wait()  # a client that never sends the rest
        raise AssertionError("unreachable")


# -- 1. work before authentication ---------------------------------------------------------
async def test_refused_writes_never_read_their_body(app: FastAPI) -> None:
    store: Store = app.state.codecdash.store
    revoked = store.create_token("gone")
    store.revoke_token("gone")
    reader = store.create_token("reader", "read")
    store._tokens_at = 0.0
    refusals = {
        "none": {},
        "malformed": {"Authorization": "Basic eDp5"},
        "unknown": bearer("cdt_" + "Z" * 43),
        "revoked": bearer(revoked),
        "read scope": bearer(reader),
    }
    big = b'{"items": [' + b'{"id": "x"},' * 100_000 + b'{"id": "y"}]}'
    for (method, _template), (url, _body) in WRITES.items():
        for label, headers in refusals.items():
            body = Body(big)
            status, answer_headers, _ = await call(
                app, method, url, {**headers, "Content-Type": "application/json"}, body
            )
            assert status == 401, (method, url, label, status)
            assert not body.read, f"{method} {url} ({label}): the body was read before the 401"
            if method != "GET":  # a GET's body is never read by anyone: nothing to close for
                assert answer_headers.get("connection") == "close", (method, url, label)


async def test_rate_limited_writes_never_read_their_body(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "r.db"), rate_limit_per_minute=2))
    for _ in range(2):
        status, _, _ = await call(app, "POST", f"{API}/heartbeats", {}, Body(b"{}"))
        assert status == 401
    body = Body(b"{}")
    status, headers, _ = await call(app, "POST", f"{API}/heartbeats", {}, body)
    assert status == 429 and headers["retry-after"].isdigit()
    assert not body.read


async def test_bodies_are_validated_in_a_worker_thread_not_on_the_event_loop(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validation that blocks (as parsing 4 MiB of tiny objects does) must leave the event
    loop free: while it is stuck, another request is answered, and it is that answer that
    frees it. On the event loop it would block that answer, and wait for nothing."""
    import codecdash.models as models

    original = models._storable_json
    entered, release = threading.Event(), threading.Event()
    outcomes: list[bool] = []

    def blocking(value: Any, name: str) -> bytes:
        entered.set()
        outcomes.append(release.wait(10))  # False: nothing could free it in time
        return original(value, name)

    monkeypatch.setattr(models, "_storable_json", blocking)
    with_params = {"name": "p", "params": {"lr": 0.001}}
    requests = [
        ("POST", f"{API}/experiments", with_params),
        ("PUT", f"{API}/experiments/blocked", with_params),
        ("PATCH", f"{API}/experiments/blocked", {"params": {"lr": 0.002}}),
        ("POST", f"{API}/experiments/batch", {"items": [with_params]}),
        ("POST", f"{API}/heartbeats", {**HEARTBEAT, "extra": {"load": 1.0}}),
    ]
    for method, url, body in requests:
        entered.clear()
        release.clear()
        write = asyncio.create_task(client.request(method, url, json=body, headers=auth))
        assert await asyncio.to_thread(entered.wait, 10), f"{method} {url}: no validation"
        health = await client.get(f"{API}/health")  # the loop answers meanwhile...
        assert health.status_code == 200
        release.set()  # ...and only then is the validation let go
        r = await write
        assert r.status_code in (200, 201, 202), (method, url, r.text[:200])
        assert outcomes.pop() is True, f"{method} {url} validated on the event loop"


# -- 2. slow and broken uploads ------------------------------------------------------------
async def test_a_body_cut_short_by_its_client_is_never_acted_on(
    app: FastAPI, auth: dict[str, str], client: httpx.AsyncClient
) -> None:
    whole = orjson.dumps({"id": "cut-1", "name": "never"})
    for declared in (str(len(whole) + 50), None):  # with and without Content-Length
        headers = {**auth, "Content-Type": "application/json"}
        if declared is not None:
            headers["Content-Length"] = declared
        body = Body(whole, then="disconnect")
        await call(app, "POST", f"{API}/experiments", headers, body)
        assert body.read
    assert (await client.get(f"{API}/experiments/cut-1")).status_code == 404
    assert (await client.get(f"{API}/experiments")).json()["total"] == 0


async def test_a_body_shorter_than_its_content_length_is_400(
    app: FastAPI, auth: dict[str, str], client: httpx.AsyncClient
) -> None:
    whole = orjson.dumps({"id": "short-1"})
    headers = {**auth, "Content-Type": "application/json", "Content-Length": str(len(whole) + 9)}
    status, _, body = await call(app, "POST", f"{API}/experiments", headers, Body(whole))
    assert status == 400, body
    assert b"Content-Length" in body
    assert (await client.get(f"{API}/experiments/short-1")).status_code == 404


async def test_a_body_that_does_not_arrive_in_time_is_408(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    settings = Settings(database_url=str(tmp_path / "slow.db"), body_timeout_seconds=0.3)
    app = await make_app(settings)
    token = app.state.codecdash.store.create_token("slow")
    headers = {**bearer(token), "Content-Type": "application/json", "Content-Length": "100"}
    body = Body(b'{"worker_id": ', then="stall")
    status, answer, payload = await asyncio.wait_for(
        call(app, "POST", f"{API}/heartbeats", headers, body), 10
    )
    assert status == 408, payload
    assert orjson.loads(payload)["error"]["code"] == "request_timeout"
    assert answer.get("connection") == "close"


def test_a_slow_upload_over_a_real_socket_is_cut_off(make_live_server: Any, tmp_path: Path) -> None:
    """The same with uvicorn in between: headers, a few bytes, then silence."""
    settings = Settings(database_url=str(tmp_path / "s.db"), body_timeout_seconds=0.5)
    live = make_live_server(settings)
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/heartbeats HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + live.token.encode() + b"\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"worker_id"'
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_a_body_cut_short_over_a_real_socket_is_never_acted_on(make_live_server: Any) -> None:
    """A client declares more than it sends, and leaves: uvicorn tells the app it went away;
    the valid JSON it did send is not stored."""
    import time

    live = make_live_server()
    host, port = live.url.removeprefix("http://").split(":")
    sent = b'{"id": "cut-live", "name": "never"}'
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/experiments HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + live.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (len(sent) + 100)
            + sent
        )
    with httpx.Client(base_url=live.url, timeout=5) as http:
        for _ in range(20):  # the server had a second to (wrongly) store it
            assert http.get(f"{API}/experiments/cut-live").status_code == 404
            time.sleep(0.05)
        # ...and the same body, whole, is stored (the probe can fail)
        headers = {"Authorization": f"Bearer {live.token}"}
        r = http.post(f"{API}/experiments", content=sent, headers=headers)
        assert r.status_code == 201, r.text


async def test_bodies_held_at_once_are_bounded(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    mib = 1024 * 1024
    settings = Settings(database_url=str(tmp_path / "b.db"), max_body_bytes_in_flight=4 * mib)
    app = await make_app(settings)
    token = app.state.codecdash.store.create_token("bulk")
    headers = {**bearer(token), "Content-Type": "application/json"}
    first = Body(b" " * 1024, then="stall")
    stuck = asyncio.create_task(
        call(
            app,
            "POST",
            f"{API}/experiments/batch",
            {**headers, "Content-Length": str(3 * mib)},
            first,
        )
    )
    await asyncio.wait_for(first.stalled.wait(), 5)
    # 3 MiB held: 2 MiB more would pass the 4 MiB budget, by the declared length or as it comes
    status, answer, payload = await call(
        app,
        "POST",
        f"{API}/experiments/batch",
        {**headers, "Content-Length": str(2 * mib)},
        Body(b""),
    )
    assert status == 503 and answer["retry-after"].isdigit(), payload
    status, _, payload = await call(
        app, "POST", f"{API}/experiments/batch", headers, Body(b" " * (2 * mib), b"{}")
    )
    assert status == 503, payload
    # a small body still fits
    small = orjson.dumps({"items": [{"id": "fits"}]})
    status, _, payload = await call(
        app,
        "POST",
        f"{API}/experiments/batch",
        {**headers, "Content-Length": str(len(small))},
        Body(small),
    )
    assert status == 200, payload
    stuck.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stuck
    # the stalled upload's share is given back
    status, _, payload = await call(
        app,
        "POST",
        f"{API}/experiments/batch",
        {**headers, "Content-Length": str(3 * mib)},
        Body(b"[" + b" " * (3 * mib - 2) + b"]"),
    )
    assert status == 422, payload  # received whole (then not a batch): not 503


# -- 4. answers that amplify ---------------------------------------------------------------
async def test_validation_errors_do_not_grow_with_the_input(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    keys = ", ".join(f'"k{i}": 0' for i in range(300_000))
    body = ('{"items": [{' + keys + "}]}").encode()
    r = await client.post(
        f"{API}/experiments/batch",
        content=body,
        headers={**auth, "Content-Type": "application/json"},
    )
    error = assert_error(r, 422, "invalid")
    assert len(r.content) < 20_000, len(r.content)
    assert len(error["detail"]) == 20
    assert "and 299,999 more" in error["message"], error["message"]
    # a key of a megabyte is named, not echoed
    huge = "k" * 1_000_000
    r = await client.post(f"{API}/experiments", json={huge: 1}, headers=auth)
    assert_error(r, 422)
    assert len(r.content) < 5_000


# -- 7. client addresses and hosts ---------------------------------------------------------
async def test_proxy_headers_are_ignored_unless_the_proxy_is_configured(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "p.db"), rate_limit_per_minute=1))
    async with client_for(app, client=("127.0.0.1", 1)) as c:
        for forwarded in ("198.51.100.1", "198.51.100.2"):
            r = await c.post(
                f"{API}/heartbeats", json=HEARTBEAT, headers={"X-Forwarded-For": forwarded}
            )
        assert_error(r, 429)  # one address: the peer's; the header chose nothing

    settings = Settings(
        database_url=str(tmp_path / "q.db"),
        rate_limit_per_minute=1,
        forwarded_allow_ips=["10.0.0.0/8"],
    )
    proxied = await make_app(settings)
    async with client_for(proxied, client=("10.1.2.3", 1)) as c:
        for forwarded in ("198.51.100.1", "198.51.100.2"):  # two clients behind the proxy
            r = await c.post(
                f"{API}/heartbeats", json=HEARTBEAT, headers={"X-Forwarded-For": forwarded}
            )
            assert_error(r, 401)
        r = await c.post(
            f"{API}/heartbeats", json=HEARTBEAT, headers={"X-Forwarded-For": "198.51.100.1"}
        )
        assert_error(r, 429)
    async with client_for(proxied, client=("192.0.2.50", 1)) as c:  # not the proxy
        r = await c.post(
            f"{API}/heartbeats", json=HEARTBEAT, headers={"X-Forwarded-For": "198.51.100.3"}
        )
        assert_error(r, 401)
        r = await c.post(
            f"{API}/heartbeats", json=HEARTBEAT, headers={"X-Forwarded-For": "198.51.100.4"}
        )
        assert_error(r, 429)


def test_serve_leaves_proxy_headers_to_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's own default trusts X-Forwarded-For from 127.0.0.1; `serve` turns it off and
    `--forwarded-allow-ips` reaches the setting."""
    import uvicorn
    from click.testing import CliRunner

    import codecdash.cli as cli

    seen: list[dict[str, Any]] = []
    apps: list[Any] = []
    monkeypatch.setattr(
        uvicorn, "run", lambda app, **kwargs: (apps.append(app), seen.append(kwargs))
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli.main,
        ["serve", "--db", str(tmp_path / "c.db"), "--forwarded-allow-ips", "10.0.0.1, 10.0.1.0/24"],
    )
    assert result.exit_code == 0, result.output
    assert seen[0]["proxy_headers"] is False
    assert apps[0].state.codecdash.settings.forwarded_allow_ips == ["10.0.0.1", "10.0.1.0/24"]
    apps[0].state.codecdash.store.close()


async def test_token_limits_survive_address_spraying(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    app = await make_app(Settings(database_url=str(tmp_path / "t.db"), rate_limit_per_minute=1))
    token = app.state.codecdash.store.create_token("sprayed")
    async with client_for(app, client=("10.0.0.1", 1)) as c:
        assert (
            await c.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(token))
        ).status_code == 202
    limits = app.state.codecdash.limits
    for i in range(limits.addresses.max_keys + 10):  # more addresses than buckets are kept
        limits.addresses.take(f"spray-{i}")
    assert len(limits.addresses) == limits.addresses.max_keys  # bounded memory
    async with client_for(app, client=("10.0.0.2", 1)) as c:
        r = await c.post(f"{API}/heartbeats", json=HEARTBEAT, headers=bearer(token))
        assert_error(r, 429)  # the token's bucket is its own: still empty


@pytest.mark.parametrize(
    "host",
    [
        "localhost:abc",
        "localhost:80:80",
        "localhost@evil.example",
        "localhost.evil",
        "[::1]evil",
        "localhost:",
        "localhost:99999",
        "127.0.0.1:8050x",
    ],
)
async def test_hosts_are_parsed_strictly(app: FastAPI, host: str) -> None:
    async with client_for(app) as c:
        r = await c.get(f"{API}/health", headers={"Host": host})
        assert_error(r, 400, "bad_host")


# -- 10. event-stream slots ----------------------------------------------------------------
async def test_one_address_cannot_take_every_stream_slot(
    make_app: Callable[..., Any], tmp_path: Path, event_stream: Any
) -> None:
    settings = Settings(
        database_url=str(tmp_path / "e.db"), max_event_clients=5, max_event_clients_per_address=2
    )
    app = await make_app(settings)
    one = ("198.51.100.7", 1)
    async with event_stream(app, client=one) as a, event_stream(app, client=one) as b:
        assert a.status == b.status == 200
        async with event_stream(app, client=one) as third:
            assert third.status == 429
            assert third.headers["retry-after"].isdigit()
        async with event_stream(app, client=("198.51.100.8", 1)) as other:
            assert other.status == 200
    async with event_stream(app, client=one) as again:  # slots come back on disconnect
        assert again.status == 200


# -- /metrics ------------------------------------------------------------------------------
async def test_metrics_count_every_status(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    statuses = ["queued", "running", "completed", "failed", "cancelled", "queued"]
    items = [{"id": f"m{i}", "status": s} for i, s in enumerate(statuses)]
    r = await client.post(f"{API}/experiments/batch", json={"items": items}, headers=auth)
    assert r.status_code == 200
    text = (await client.get("/metrics")).text
    counts = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("codecdash_experiments{")
    }
    assert counts == {"queued": 2, "running": 1, "completed": 1, "failed": 1, "cancelled": 1}
    total = (await client.get(f"{API}/dashboard")).json()["summary"]["total_experiments"]
    assert sum(counts.values()) == total
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
