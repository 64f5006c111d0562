"""How each call is timed, so that neither system pays for the other's leftovers."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil  # a dependency of codecdash (its agent), so in this environment


def settle(max_wait_s: float = 3.0, busy_pct: float = 15.0, quiet_windows: int = 2) -> None:
    """Wait until the CPUs are nearly idle (at most ``max_wait_s``) before a timed query:
    ``quiet_windows`` windows of 50 ms in a row under ``busy_pct``.

    On a small machine the work one server leaves behind after answering (MLflow's
    workers freeing a large result, a collector pass) otherwise lands in the other
    system's next measurement; every system gets the same wait."""
    deadline = time.monotonic() + max_wait_s
    psutil.cpu_percent(None)
    quiet = 0
    while time.monotonic() < deadline and quiet < quiet_windows:
        time.sleep(0.05)
        quiet = quiet + 1 if psutil.cpu_percent(None) < busy_pct else 0


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """One call's wall time, with this client's garbage collector off while it runs (as
    ``timeit`` does): the benchmark holds every experiment in memory, and a full
    collection of that heap would land in whichever system's call triggered it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        value = fn()
        return time.perf_counter() - t0, value
    finally:
        if enabled:
            gc.enable()


def turns(repeat: int, systems: Sequence[str]) -> list[str]:
    """The order the systems take turns in during one repeat: rotated by one each repeat,
    so each goes first (and last) equally often."""
    k = repeat % len(systems)
    return [*systems[k:], *systems[:k]]
