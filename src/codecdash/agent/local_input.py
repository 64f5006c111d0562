"""The worker's own figures (FPS, queue depth), handed to the agent on this machine.

Two ways, either or both:

* a JSON file the worker rewrites (``--metrics-file``), re-read each tick, e.g.
  ``{"fps": 41.2, "queue_depth": 12}``; stale once not modified for ``stale_after_s``
  (write a temporary file and rename it over the old one, so the agent never reads
  half a file);
* ``POST /metrics`` with the same JSON to a tiny HTTP endpoint on 127.0.0.1 only
  (``--listen-port``).

Known keys: ``fps`` (≥ 0), ``queue_depth`` (integer ≥ 0) and ``status`` (``ok``,
``degraded``, ``down``: the worker's own verdict). Other keys are ignored.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Protocol

from codecdash.agent import Field

log = logging.getLogger(__name__)

STATUSES = ("ok", "degraded", "down")
MAX_BODY_BYTES = 64 * 1024

Figures = dict[str, float | int | str]


def parse_figures(data: Any) -> Figures:
    """Validate the worker's JSON; raise ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object such as {"fps": 41.2, "queue_depth": 12}')
    figures: Figures = {}
    fps = data.get("fps")
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps):
            raise ValueError("fps must be a finite number")
        if fps < 0:
            raise ValueError("fps must not be negative")
        figures["fps"] = float(fps)
    depth = data.get("queue_depth")
    if depth is not None:
        if isinstance(depth, float) and depth.is_integer():
            depth = int(depth)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError("queue_depth must be a whole number ≥ 0")
        figures["queue_depth"] = depth
    status = data.get("status")
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        figures["status"] = str(status)
    return figures


class LocalSource(Protocol):
    def read(self) -> tuple[float, Figures] | None:
        """(when the figures were written, as a Unix time; the figures), or None if stale."""


class _OnceLogger:
    """Logs a problem once, and again only when it changes: one line per failure."""

    def __init__(self) -> None:
        self._last: str | None = None

    def problem(self, message: str) -> None:
        if message != self._last:
            log.warning("%s", message)
            self._last = message

    def ok(self) -> None:
        self._last = None


class MetricsFile:
    """A JSON file the worker keeps rewriting."""

    def __init__(
        self, path: str | Path, stale_after_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._log = _OnceLogger()

    def read(self) -> tuple[float, Figures] | None:
        try:
            modified = self.path.stat().st_mtime
            if self._clock() - modified > self.stale_after_s:
                self._log.problem(f"metrics file {self.path} is stale (not rewritten lately)")
                return None
            figures = parse_figures(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            self._log.problem(f"metrics file {self.path} does not exist (yet)")
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError too
            self._log.problem(f"metrics file {self.path} unreadable: {exc}")
            return None
        self._log.ok()
        return modified, figures


class MetricsEndpoint:
    """``POST /metrics`` on 127.0.0.1:``port`` (0: any free port, see :attr:`port`)."""

    def __init__(
        self, port: int, stale_after_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: tuple[float, Figures] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="codecdash-agent-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def put(self, figures: Figures) -> None:
        with self._lock:
            self._latest = (self._clock(), figures)

    def read(self) -> tuple[float, Figures] | None:
        with self._lock:
            latest = self._latest
        if latest is None or self._clock() - latest[0] > self.stale_after_s:
            return None
        return latest


def _handler_for(endpoint: MetricsEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "codecdash-agent"

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self._answer(HTTPStatus.NOT_FOUND, {"error": "POST /metrics"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            try:
                figures = parse_figures(json.loads(self.rfile.read(length) or b"null"))
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError too
                self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            endpoint.put(figures)
            self._answer(HTTPStatus.ACCEPTED, {"accepted": figures})

        def do_GET(self) -> None:
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST /metrics"})

        def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics endpoint: " + format, *args)

    return Handler


class LocalInputs:
    """Merges the configured sources: the newest figures win, key by key."""

    fields: ClassVar[tuple[Field, ...]] = (
        Field("fps", "frames per second the inference server processes", "frames/s"),
        Field("queue_depth", "jobs waiting in the worker's or scheduler's queue", "jobs"),
        Field("status", "the worker's own verdict: ok, degraded or down", "text"),
    )

    def __init__(self, sources: Iterable[LocalSource] = ()) -> None:
        self.sources = list(sources)

    @property
    def configured(self) -> bool:
        return bool(self.sources)

    def update(self) -> Figures:
        fresh = [reading for source in self.sources if (reading := source.read()) is not None]
        merged: Figures = {}
        for _, figures in sorted(fresh, key=lambda reading: reading[0]):
            merged.update(figures)
        return merged
