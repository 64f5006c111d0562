"""The SDK's per-step metrics: `exp.log_step()` appends to a bounded buffer, and a
background thread sends it in batches.

- ``add`` costs a few microseconds (values turned into floats, one deque append) and never
  blocks or raises for network trouble: a training loop is never slowed or stopped by the
  dashboard.
- The thread wakes every ``interval`` seconds, or once ``batch_steps`` steps are waiting,
  and sends what is buffered: one experiment's steps to ``POST …/{id}/metrics``, several
  experiments' to ``POST /api/v1/metrics`` (one transaction).
- A failed send (no connection, 429, 5xx) is retried with exponential backoff and jitter
  until it goes through; meanwhile new steps keep buffering. Once ``max_buffered`` steps
  wait, the oldest are dropped, with one warning. A batch the server refuses (a 4xx such
  as an unknown experiment) is dropped with a warning: resending cannot help.
- ``flush()`` waits until what was logged before it is sent (or dropped). The client
  flushes when a ``with`` block ends, on ``close()``, and at interpreter exit (atexit).
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import operator
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from codecdash.curve_rules import (
    MAX_POINTS_PER_REQUEST,
    MAX_STEP,
    MAX_VALUES_PER_POINT,
    METRIC_NAME_PATTERN,
    METRIC_NAME_RULE,
    encode_value,
)

log = logging.getLogger("codecdash.client")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0
MAX_VALUES_PER_REQUEST = 50_000  # bounds a request's body well under the server's 4 MiB
_NAME = re.compile(METRIC_NAME_PATTERN)

Entry = tuple[str, int, float, dict[str, float]]  # experiment id, step, time, values
_live: weakref.WeakSet[StepSender] = weakref.WeakSet()


class StepSender:
    """One per Client (made on the first `log_step`). Thread-safe."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        interval: float = 1.0,
        batch_steps: int = 10_000,
        max_buffered: int = 100_000,
        backoff: float = 0.5,
        exit_timeout: float = 10.0,
    ) -> None:
        self.http = http
        self.interval = interval
        self.batch_steps = min(batch_steps, MAX_POINTS_PER_REQUEST)
        self.max_buffered = max_buffered
        self.backoff = backoff
        self.exit_timeout = exit_timeout
        self.dropped = 0  # steps dropped: buffer full, or refused by the server
        self._names: set[str] = set()
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._buffer: collections.deque[Entry] = collections.deque()
        self._pending: list[Entry] = []  # taken from the buffer, being sent
        self._done = 0  # entries sent or dropped, in buffer order
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    # -- the training loop's side -------------------------------------------------------
    def add(
        self, experiment_id: str, step: int, values: Mapping[str, Any], at: float | None = None
    ) -> None:
        """Buffer one step; `at`: when it ran, in seconds since 1970 (default: now)."""
        if type(step) is not int:
            if isinstance(step, bool) or not hasattr(step, "__index__"):
                raise TypeError(f"step must be an integer, not {type(step).__name__}")
            step = operator.index(step)  # numpy and torch integers
        if not 0 <= step <= MAX_STEP:
            raise ValueError(f"step must be an integer from 0 to {MAX_STEP}, not {step}")
        if not values or not values.keys() <= self._names:
            self._check_names(values)
        floats = {name: float(value) for name, value in values.items()}
        if self._stop.is_set():
            raise RuntimeError("this client is closed: make a new one to log steps")
        if len(self._buffer) >= self.max_buffered:
            self._drop_oldest()
        self._buffer.append((experiment_id, step, time.time() if at is None else at, floats))
        if self._thread is None:
            self._start()
        elif len(self._buffer) >= self.batch_steps:
            self._wake.set()

    def _check_names(self, values: Mapping[str, Any]) -> None:
        if not values:
            raise ValueError("log_step needs at least one metric, e.g. log_step(step, loss=…)")
        if len(values) > MAX_VALUES_PER_POINT:
            raise ValueError(f"at most {MAX_VALUES_PER_POINT} metrics per step")
        for name in values:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a metric name: {METRIC_NAME_RULE}")
        self._names.update(values)

    def _drop_oldest(self) -> None:
        with self._cond:
            if len(self._buffer) < self.max_buffered:
                return
            self._buffer.popleft()
            self._done += 1
            self.dropped += 1
            self._cond.notify_all()
        self._warn_once(
            "full",
            "codecdash: %d logged steps are waiting to be sent (the server cannot be reached, "
            "or takes them slower than they are logged); dropping the oldest from now on",
            self.max_buffered,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every step logged so far is sent (or dropped); False on timeout."""
        with self._cond:
            target = self._done + len(self._pending) + len(self._buffer)
            if self._done >= target:
                return True
            if self._thread is None or not self._thread.is_alive():
                self._start()
            self._wake.set()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; False when steps were left unsent."""
        sent = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if not sent:
            unsent = len(self._pending) + len(self._buffer)
            log.warning("codecdash: %d logged steps could not be sent before closing", unsent)
        return sent

    # -- the thread's side --------------------------------------------------------------
    def _start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="codecdash-steps", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            while not self._stop.is_set():
                with self._cond:
                    if not self._pending:
                        self._pending = self._take()
                    batch = self._pending
                if not batch:
                    break
                if self._send(batch):
                    failures = 0
                    with self._cond:
                        self._pending = []
                        self._done += len(batch)
                        self._cond.notify_all()
                    continue
                failures += 1
                delay = min(MAX_BACKOFF_S, self.backoff * 2 ** min(failures, 16))
                if self._stop.wait(random.uniform(delay / 2, delay)):  # noqa: S311 - jitter
                    return
        # Stopping: whatever is left was reported by close().

    def _take(self) -> list[Entry]:
        """The oldest buffered steps, up to one request's worth."""
        taken: list[Entry] = []
        values = 0
        while self._buffer and len(taken) < self.batch_steps:
            n = len(self._buffer[0][3])
            if taken and values + n > MAX_VALUES_PER_REQUEST:
                break
            taken.append(self._buffer.popleft())
            values += n
        return taken

    def _send(self, batch: list[Entry]) -> bool:
        """True when the batch is done with (stored, or refused for good)."""
        by_experiment: dict[str, list[dict[str, Any]]] = {}
        for experiment_id, step, at, values in batch:
            by_experiment.setdefault(experiment_id, []).append(
                {
                    "step": step,
                    "at": datetime.fromtimestamp(at, UTC).isoformat(),
                    "values": {
                        k: v if math.isfinite(v) else encode_value(v) for k, v in values.items()
                    },
                }
            )
        if len(by_experiment) == 1:
            [(experiment_id, points)] = by_experiment.items()
            return self._post(
                f"/api/v1/experiments/{experiment_id}/metrics", {"points": points}, len(batch)
            )
        items = [{"experiment_id": i, "points": p} for i, p in by_experiment.items()]
        status = self._attempt("/api/v1/metrics", {"items": items})
        if status == 404:  # all or nothing: send each experiment alone, drop the unknown
            return all(
                self._post(f"/api/v1/experiments/{i}/metrics", {"points": p}, len(p))
                for i, p in by_experiment.items()
            )
        return self._settle(status, len(batch))

    def _post(self, path: str, body: dict[str, Any], steps: int) -> bool:
        return self._settle(self._attempt(path, body), steps)

    def _attempt(self, path: str, body: dict[str, Any]) -> int | str:
        """The answer's status, or the transport error's text."""
        try:
            response = self.http.post(path, content=orjson.dumps(body))
        except httpx.HTTPError as exc:
            return str(exc) or type(exc).__name__
        if response.status_code >= 400 and response.status_code not in RETRY_STATUSES:
            self._warn_once(
                f"refused-{response.status_code}",
                "codecdash: the server refused logged steps (%s %s); they are dropped",
                response.status_code,
                response.text[:300],
            )
        return response.status_code

    def _settle(self, status: int | str, steps: int) -> bool:
        if isinstance(status, str) or status in RETRY_STATUSES:
            self._warn_once(
                "retrying", "codecdash: sending logged steps failed (%s); retrying", status
            )
            return False
        if status >= 400:
            self.dropped += steps
        return True

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message, *args)


@atexit.register
def _flush_at_exit() -> None:
    """A script that logs and exits without closing its client still sends its steps."""
    for sender in list(_live):
        if sender._buffer or sender._pending:
            sender.close(sender.exit_timeout)


def _after_fork_in_child() -> None:
    # A forked child (a DataLoader worker) has no sender thread; the parent sends what
    # was buffered before the fork.
    for sender in list(_live):
        sender._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
