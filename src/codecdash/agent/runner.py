"""The agent's loop: collect → build a heartbeat → send it, through outages and signals."""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

from codecdash import __version__
from codecdash.agent.imds import InstanceInfo
from codecdash.agent.pricing import PriceTable

log = logging.getLogger("codecdash.agent")

Heartbeat = dict[str, Any]
Sender = Callable[[Heartbeat], None]

# Collector keys that are Heartbeat fields; every other figure goes into `extra`.
TOP_LEVEL = frozenset({"cpu_pct", "mem_pct", "gpu_util_pct", "gpu_mem_pct", "fps", "queue_depth"})
STATUS_ORDER = ("ok", "degraded", "down")
MAX_EXTRA_BYTES = 16 * 1024
DISK_FULL_PCT = 95.0


class Collector(Protocol):
    def update(self) -> Mapping[str, Any]: ...


class Backoff:
    """Exponential backoff with full jitter: a delay uniform in [0, min(cap, base·2ⁿ)]."""

    def __init__(
        self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def ceiling(self) -> float:
        return min(self.cap, self.base * 2.0 ** min(self.failures, 62))

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        delay = self._rng.uniform(0.0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HeartbeatBuilder:
    """Turns the collectors' plain data into one Heartbeat dict (``POST /api/v1/heartbeats``).

    Heartbeat fields (``cpu_pct``, ``gpu_util_pct``, ``fps``…) go at the top level,
    every other figure into ``extra``; a figure nobody reported is left out, never
    sent as null. Instance type and spot come from the flags, else from IMDS; the
    hourly cost from the flag, else from the price table.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        role: str,
        collectors: Iterable[tuple[str, Collector]] = (),
        instance: InstanceInfo | None = None,
        instance_type: str | None = None,
        spot: bool | None = None,
        hourly_cost_usd: float | None = None,
        prices: PriceTable | None = None,
        local_inputs_expected: bool = False,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.worker_id = worker_id
        self.role = role
        self.collectors = list(collectors)
        self.instance = instance
        self.instance_type = instance_type or (instance.instance_type if instance else None)
        self.spot = spot if spot is not None else (instance.spot if instance else None)
        self.hourly_cost_usd = hourly_cost_usd
        self.cost_basis = "flag" if hourly_cost_usd is not None else None
        if hourly_cost_usd is None and prices is not None:
            self.hourly_cost_usd = prices.hourly(self.instance_type, self.spot)
            if self.hourly_cost_usd is not None:
                self.cost_basis = "price table, spot" if self.spot else "price table, on-demand"
        self.local_inputs_expected = local_inputs_expected
        self._clock = clock
        self._problems: dict[str, str] = {}

    def build(self) -> Heartbeat:
        heartbeat: Heartbeat = {"worker_id": self.worker_id, "role": self.role, "status": "ok"}
        if self.instance_type:
            heartbeat["instance_type"] = self.instance_type
        if self.spot is not None:
            heartbeat["spot"] = self.spot
        if self.hourly_cost_usd is not None:
            heartbeat["hourly_cost_usd"] = self.hourly_cost_usd
        extra: dict[str, Any] = {"agent_version": __version__, "hostname": socket.gethostname()}
        if self.instance is not None:
            extra["instance_id"] = self.instance.instance_id
            extra["lifecycle"] = self.instance.lifecycle
            if self.instance.region:
                extra["region"] = self.instance.region
        if self.cost_basis:
            extra["cost_basis"] = self.cost_basis
        worker_status = "ok"
        for name, collector in self.collectors:
            for key, value in self._collect(name, collector).items():
                if key == "status":
                    worker_status = str(value)
                elif key in TOP_LEVEL:
                    heartbeat[key] = value
                else:
                    extra[key] = value
        reasons = self._degraded_reasons(heartbeat, extra)
        status = worker_status
        if reasons:
            extra["degraded_reasons"] = reasons
            status = _worst(status, "degraded")
        heartbeat["status"] = status
        heartbeat["at"] = self._clock()
        heartbeat["extra"] = _fit(_finite(extra))
        return _finite(heartbeat)

    def shutdown(self) -> Heartbeat:
        """The last heartbeat of a clean exit: ``down`` and ``extra.shutdown: true``.

        After AWS's spot interruption notice the stop is AWS's doing, not ours:
        ``extra.shutdown`` is then false (with ``extra.spot_interruption``), so the
        dashboard counts it as a spot interruption rather than a deliberate stop.
        """
        heartbeat = self.build()
        heartbeat["status"] = "down"
        heartbeat["extra"]["shutdown"] = "spot_interruption" not in heartbeat["extra"]
        return heartbeat

    def _collect(self, name: str, collector: Collector) -> Mapping[str, Any]:
        try:
            data = collector.update()
        except Exception as exc:  # a collector bug must not stop the heartbeats
            message = f"{type(exc).__name__}: {exc}"
            if self._problems.get(name) != message:
                log.warning("%s figures unavailable: %s", name, message)
                self._problems[name] = message
            return {}
        self._problems.pop(name, None)
        return data

    def _degraded_reasons(self, heartbeat: Heartbeat, extra: Mapping[str, Any]) -> list[str]:
        reasons = []
        if self.local_inputs_expected and "fps" not in heartbeat and "queue_depth" not in heartbeat:
            reasons.append("no fresh figures from the worker")
        notice = extra.get("spot_interruption")
        if isinstance(notice, dict):
            when = f" at {notice['time']}" if notice.get("time") else ""
            reasons.append(f"spot interruption notice: {notice.get('action', 'stop')}{when}")
        disk = extra.get("disk_used_pct")
        if isinstance(disk, int | float) and disk >= DISK_FULL_PCT:
            reasons.append(f"disk {disk:.0f}% full")
        return reasons


def _worst(a: str, b: str) -> str:
    return max(a, b, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else 0)


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    """Drop NaN and infinities (the API rejects them) rather than lose the heartbeat."""
    return {key: _clean(value) for key, value in data.items() if not _non_finite(value)}


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return _finite(value)
    if isinstance(value, list):
        return [_clean(item) for item in value if not _non_finite(item)]
    return value


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _fit(extra: dict[str, Any]) -> dict[str, Any]:
    """Keep ``extra`` within the API's 16 KiB by dropping per-GPU rows from the end."""
    while len(json.dumps(extra).encode()) > MAX_EXTRA_BYTES and extra.get("gpus"):
        extra["gpus"] = extra["gpus"][:-1]
        extra["gpus_truncated"] = True
    return extra


class Runner:
    """Sends a heartbeat every ``interval`` seconds until :meth:`stop`.

    Only the newest unsent heartbeat is kept: a tick during an outage replaces it,
    so nothing piles up. After a failure the next attempt waits a jittered,
    exponentially growing delay (``Backoff``); a success resets it. Each failed
    attempt logs one line. :meth:`stop` (from a signal handler too) ends the loop
    promptly, abandoning a request in flight, and a final ``down`` heartbeat with
    ``extra.shutdown`` is sent once through ``final_send``.
    """

    def __init__(
        self,
        build: Callable[[], Heartbeat],
        send: Sender,
        *,
        interval: float = 30.0,
        backoff: Backoff | None = None,
        final: Callable[[], Heartbeat] | None = None,
        final_send: Sender | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.build = build
        self.send = send
        self.interval = interval
        self.backoff = backoff or Backoff(cap=60.0)
        self.final = final
        self.final_send = final_send or send
        self.clock = clock
        self.pending: Heartbeat | None = None
        self.sent = 0
        self._stop = threading.Event()
        self._retry_at: float | None = None

    # -- control --------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def once(self) -> int:
        """Send one heartbeat: 0 when the dashboard took it, 1 when not (one log line)."""
        try:
            heartbeat = self.build()
        except Exception as exc:
            log.error("heartbeat not built: %s: %s", type(exc).__name__, exc)
            return 1
        try:
            self.send(heartbeat)
        except Exception as exc:
            log.error("heartbeat not sent: %s", _describe(exc))
            return 1
        self.sent += 1
        return 0

    def run(self) -> int:
        """The loop; returns 0 after a clean stop."""
        next_tick = self.clock()
        while not self._stop.is_set():
            now = self.clock()
            if now >= next_tick:
                self.tick()
                next_tick += self.interval
                if next_tick <= now:  # we fell behind (a suspended machine): skip ahead
                    next_tick = now + self.interval
            if self.pending is not None and (self._retry_at is None or now >= self._retry_at):
                self.attempt()
            wake = next_tick
            if self.pending is not None and self._retry_at is not None:
                wake = min(wake, self._retry_at)
            self._stop.wait(max(0.0, wake - self.clock()))
        self._say_goodbye()
        return 0

    # -- steps (public for tests) ---------------------------------------------------
    def tick(self) -> None:
        """Collect a fresh heartbeat; it replaces any unsent one."""
        try:
            self.pending = self.build()
        except Exception as exc:  # keep the older pending heartbeat, if any
            log.error("heartbeat not built: %s: %s", type(exc).__name__, exc)

    def attempt(self) -> bool:
        """Try to send the pending heartbeat once; schedule a retry on failure."""
        heartbeat = self.pending
        if heartbeat is None:
            return True
        error = self._send_interruptibly(heartbeat)
        if error is None:
            if self.backoff.failures:
                log.info("dashboard reachable again after %d failures", self.backoff.failures)
            self.backoff.reset()
            self._retry_at = None
            if self.pending is heartbeat:
                self.pending = None
            self.sent += 1
            return True
        if isinstance(error, _Abandoned):
            return False
        delay = self.backoff.next_delay()
        self._retry_at = self.clock() + delay
        status = getattr(error, "status", None)
        refused = isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)
        if refused and self.pending is heartbeat:
            # The dashboard refused this heartbeat: resending it cannot help. A fresh one
            # goes at the next tick (401/403 keep failing until the token is fixed).
            self.pending = None
        log.warning(
            "heartbeat not sent (failure %d, next try in %.1f s): %s",
            self.backoff.failures,
            delay,
            _describe(error),
        )
        return False

    # -- internals ------------------------------------------------------------------
    def _send_interruptibly(self, heartbeat: Heartbeat) -> BaseException | None:
        """Send in a daemon thread so that a stop never waits for a hung request."""
        outcome: list[BaseException | None] = []
        done = threading.Event()

        def target() -> None:
            try:
                self.send(heartbeat)
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=target, name="codecdash-agent-send", daemon=True).start()
        while not done.wait(0.05):
            if self._stop.is_set():
                return _Abandoned()
        return outcome[0] if outcome else _Abandoned()

    def _say_goodbye(self) -> None:
        if self.final is None:
            return
        try:
            self.final_send(self.final())
        except Exception as exc:
            log.warning("shutdown heartbeat not sent: %s", _describe(exc))
        else:
            log.info("stopped; sent the shutdown heartbeat")


class _Abandoned(Exception):
    """The send was still in flight when the agent was told to stop."""


def _describe(exc: BaseException) -> str:
    """One line for the log: the SDK's ClientError reads well as it is."""
    text = str(exc).replace("\n", " ").strip()
    if type(exc).__name__ == "ClientError":
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def install_signal_handlers(runner: Runner) -> Callable[[], None]:
    """SIGTERM and SIGINT stop ``runner``; returns a function restoring the old handlers."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if not runner.stopping:
            log.info("%s received; stopping", signal.Signals(signum).name)
        runner.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
