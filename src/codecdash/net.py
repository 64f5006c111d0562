"""Local server plumbing shared by the tests, the benchmarks and anything else that starts a
server on this machine: a free loopback port, and waiting until a server answers its health
endpoint (polling it, never a bare sleep).

    port = free_port()
    proc = subprocess.Popen(["codecdash", "serve", "--port", str(port), ...])
    wait_healthy(f"http://127.0.0.1:{port}", timeout=30, proc=proc)
"""

from __future__ import annotations

import socket
import subprocess
import time

import httpx

HEALTH_PATH = "/api/v1/health"


class NotHealthy(RuntimeError):
    """The server did not answer its health endpoint in time, or its process ended first."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the kernel's pick for port 0).

    Another process can take it before the caller binds it; for the servers started here,
    on loopback, one after another, that does not happen in practice."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    url: str,
    timeout: float = 30.0,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    path: str = HEALTH_PATH,
    interval: float = 0.05,
) -> float:
    """Poll ``url + path`` until it answers 200; return the seconds it took.

    Raises :class:`NotHealthy` after ``timeout`` seconds (with the last answer or error), or
    at once when ``proc``, the server's process, has exited."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = "no answer"
    with httpx.Client(timeout=max(1.0, min(5.0, timeout))) as http:
        while True:
            if proc is not None and proc.poll() is not None:
                raise NotHealthy(
                    f"the server for {url} exited with {proc.returncode} before answering"
                )
            try:
                response = http.get(url + path)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return time.monotonic() - t0
                last = f"{response.status_code} {response.text[:200]}"
            if time.monotonic() >= deadline:
                raise NotHealthy(f"{url}{path} not healthy after {timeout:g} s: {last}")
            time.sleep(interval)
