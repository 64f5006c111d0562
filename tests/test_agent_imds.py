"""IMDSv2 against a fake metadata server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codecdash.agent.imds import SpotNotice, fetch_instance_info
from codecdash.net import free_port

TOKEN = "AQAEAFake-token=="


@dataclass
class FakeImds:
    metadata: dict[str, str] = field(
        default_factory=lambda: {
            "instance-id": "i-0123456789abcdef0",
            "instance-type": "g5.xlarge",
            "instance-life-cycle": "spot",
            "placement/region": "us-east-1",
        }
    )
    refuse_token: bool = False
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    fake = FakeImds()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            fake.requests.append(("PUT", self.path, dict(self.headers)))
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if self.path != "/latest/api/token" or not ttl.isdigit():
                self.answer(400, "")
            elif fake.refuse_token:
                self.answer(403, "")
            else:
                self.answer(200, TOKEN)

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, dict(self.headers)))
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self.answer(401, "")  # IMDSv2 only, as `HttpTokens: required` does
                return
            key = self.path.removeprefix("/latest/meta-data/")
            if key in fake.metadata:
                self.answer(200, fake.metadata[key])
            else:
                self.answer(404, "")

        def answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def test_spot_instance(imds: FakeImds) -> None:
    info = fetch_instance_info(imds.url)
    assert info is not None
    assert info.instance_id == "i-0123456789abcdef0"
    assert info.instance_type == "g5.xlarge"
    assert info.lifecycle == "spot"
    assert info.spot is True
    assert info.region == "us-east-1"


def test_on_demand_instance(imds: FakeImds) -> None:
    imds.metadata["instance-life-cycle"] = "on-demand"
    imds.metadata["instance-type"] = "c6i.large"
    info = fetch_instance_info(imds.url)
    assert info is not None
    assert (info.instance_type, info.spot) == ("c6i.large", False)


def test_token_is_asked_for_then_sent_with_every_read(imds: FakeImds) -> None:
    fetch_instance_info(imds.url)
    method, path, headers = imds.requests[0]
    assert (method, path) == ("PUT", "/latest/api/token")
    assert int(headers["X-aws-ec2-metadata-token-ttl-seconds"]) > 0
    gets = imds.requests[1:]
    assert {path for _, path, _ in gets} >= {
        "/latest/meta-data/instance-id",
        "/latest/meta-data/instance-type",
        "/latest/meta-data/instance-life-cycle",
    }
    assert all(h.get("X-aws-ec2-metadata-token") == TOKEN for _, _, h in gets)


def test_token_refused_gives_none_without_log_noise(
    imds: FakeImds, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    imds.refuse_token = True
    assert fetch_instance_info(imds.url) is None
    ours = [r for r in caplog.records if r.name.startswith("codecdash")]
    assert [r for r in ours if r.levelname != "DEBUG"] == []
    assert [m for m, _, _ in imds.requests] == ["PUT"]  # stops at the first failure


def test_missing_required_path_gives_none(imds: FakeImds) -> None:
    del imds.metadata["instance-life-cycle"]
    assert fetch_instance_info(imds.url) is None


def test_region_is_optional(imds: FakeImds) -> None:
    del imds.metadata["placement/region"]
    info = fetch_instance_info(imds.url)
    assert info is not None
    assert info.region is None


def test_closed_port_gives_none_at_once() -> None:
    started = time.monotonic()
    assert fetch_instance_info(f"http://127.0.0.1:{free_port()}") is None
    assert time.monotonic() - started < 1.0


def test_silent_server_gives_none_after_about_the_timeout() -> None:
    """A listener that never answers (as a firewalled IMDS would) costs ~1 s, not forever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete in the backlog; nothing ever replies
        started = time.monotonic()
        result = fetch_instance_info(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=1.0)
        elapsed = time.monotonic() - started
    assert result is None
    assert 0.9 <= elapsed < 2.0


def test_spot_interruption_notice(imds: FakeImds) -> None:
    notice = SpotNotice(imds.url)
    assert notice.update() == {}  # 404: no notice
    imds.metadata["spot/instance-action"] = (
        '{"action": "terminate", "time": "2026-11-26T23:40:00Z"}'
    )
    assert notice.update() == {
        "spot_interruption": {"action": "terminate", "time": "2026-11-26T23:40:00Z"}
    }
    imds.refuse_token = True
    assert notice.update() == {}
    assert SpotNotice(f"http://127.0.0.1:{free_port()}").update() == {}
