"""codecdash.net: the free port and the health poll that the tests and benchmarks share."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest

from codecdash.net import NotHealthy, free_port, wait_healthy


def test_a_free_port_can_be_bound_at_once() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_healthy_server_is_seen(live_server: Any) -> None:
    assert wait_healthy(live_server.url, 5) >= 0


def test_nothing_listening_ends_with_the_last_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NotHealthy, match=r"not healthy after 0\.3 s: ConnectError"):
        wait_healthy(url, 0.3)


def test_a_wrong_answer_is_not_health(live_server: Any) -> None:
    with pytest.raises(NotHealthy, match="404"):
        wait_healthy(live_server.url, 0.3, path="/api/v1/no-such-thing")


@pytest.mark.timeout(60)  # far below the poll's own timeout: it must not wait that out
def test_a_server_that_exited_is_reported_at_once() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    with pytest.raises(NotHealthy, match="exited with 3"):
        wait_healthy(f"http://127.0.0.1:{free_port()}", 3600, proc=proc)
