"""Stored BD-rates follow the anchor in force: re-derivation after a change, in the background.

Writing or deleting an anchor, or starting with other settings (`default_anchor`,
`default_anchors`, `quality_metric`), can change what the stored `bd_rate_pct` and
`bd_rate_anchor` of every experiment with `rd_points` should be. :func:`sync_bd_rates`
compares a digest of the anchors in force (one per test set) and the quality axis
(:func:`basis`) with the one stored after the last run and, when they differ, derives
every figure again (:func:`rederive`): the store hands out the curves in batches and
takes the figures back (`Store.curves_after`, `Store.write_derived`); the deriving, which
costs CPU, runs here, outside any transaction.

The API does not wait for the figures: its anchor writes hand the work to :class:`BdRateSync`,
one background thread per store that coalesces requests (a write during a run stops it
between batches and starts one run over), so an anchor write answers at once and holds no
worker thread; :func:`recomputing` says while figures are being derived again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from codecdash.config import Settings
from codecdash.experiments.service import bd_rates_for
from codecdash.experiments.vocabulary import QualityMetric
from codecdash.store import Store, StoreUnavailable
from codecdash.store.anchors import UNDER_WAY, Curve

log = logging.getLogger("codecdash.anchors")

BATCH = 500
"""Experiments per batch of a re-derivation: one short write transaction each."""
SYNC_LOCK_TIMEOUT_S = 60.0
_SYNC_LOCKS: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_SYNC_LOCKS_GUARD = threading.Lock()
_BACKGROUND: weakref.WeakKeyDictionary[Store, BdRateSync] = weakref.WeakKeyDictionary()


class Superseded(Exception):
    """A re-derivation of BD-rates stopped because a newer one was asked for."""


def basis(anchors: Mapping[str | None, Mapping[str, Any]], quality: QualityMetric) -> int:
    """A 64-bit digest of what stored BD-rates depend on: the anchor in force of each test
    set, its points and the quality axis; 0 when no anchor is in force anywhere."""
    if not anchors:
        return 0
    chosen = sorted(
        ([dataset or "", a["name"], a["rd_points"]] for dataset, a in anchors.items()),
        key=lambda entry: entry[0],
    )
    text = orjson.dumps([chosen, quality], option=orjson.OPT_SORT_KEYS)
    digest = int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)
    return digest if digest not in (0, UNDER_WAY) else 1


def rederive(
    store: Store,
    settings: Settings,
    batch_size: int = BATCH,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Derive every stored BD-rate again against the anchor in force; returns how many
    experiments got a different value.

    In batches of `batch_size` experiments, each written in one short transaction. A curve
    rewritten between the read and the write is derived again. `stop()` is asked between
    batches; when true, the run ends there (Superseded): a newer run will do it all.
    """
    derive = bd_rates_for(store, settings).derive
    changed_total, after = 0, None
    while True:
        if stop is not None and stop():
            raise Superseded("a newer re-derivation replaces this one")
        batch = store.curves_after(after, batch_size)
        if not batch:
            return changed_total
        after = batch[-1][0]
        curves: Mapping[str, Curve] = {i: (p, d) for i, p, d in batch}
        for _attempt in range(3):  # curves rewritten meanwhile: derived again, a few times
            figures = {
                i: ((p, d), *derive(orjson.loads(p) if p else None, d))
                for i, (p, d) in curves.items()
            }
            changed, curves = store.write_derived(figures)
            changed_total += changed
            if not curves:
                break


def sync_bd_rates(store: Store, settings: Settings, stop: Callable[[], bool] | None = None) -> int:
    """Derive the stored BD-rates again if what they depend on changed since they were.

    Called after every anchor write and when the server starts (a new `default_anchor` or
    `quality_metric`, anchors written by another process). The digest of the basis is
    forgotten when a run starts and stored only once every batch is done, so an interrupted
    run (an error, or `stop()` true between batches: Superseded) is redone by the next call.
    Returns how many experiments got a different value.
    """
    lock = _sync_lock(store)
    # One run per store; bounded wait: a run holds it for minutes at most (batches).
    if not lock.acquire(timeout=SYNC_LOCK_TIMEOUT_S):
        raise StoreUnavailable("BD-rates are being derived again by another task; retry later")
    try:
        derive = bd_rates_for(store, settings)
        derive.reload()
        current = basis(derive.in_force(), settings.quality_metric)
        if store.read_basis() == current:
            return 0
        store.write_basis(UNDER_WAY)
        changed = rederive(store, settings, stop=stop)
        store.write_basis(current)
        return changed
    finally:
        lock.release()


def settled(store: Store, settings: Settings) -> bool:
    """True when the stored BD-rates were derived on the anchor in force and quality axis
    (or there never was an anchor: nothing was ever derived)."""
    derive = bd_rates_for(store, settings)
    derive.reload()
    current = basis(derive.in_force(), settings.quality_metric)
    stored = store.read_basis()
    return stored == current or (stored is None and current == 0)


class BdRateSync:
    """Runs `sync_bd_rates` of one store in a background thread, one run at a time.

    `request()` returns at once. Requests made during a run stop it between two batches and
    start one run over (coalesced: a burst of anchor writes costs one full run). The thread
    ends when nothing is asked; a failed run is retried a few times, then left to the next
    request (or the next start). `running` is true from a request until the figures are
    done; the store's listeners hear of both ends (the snapshot says "recomputing")."""

    RETRIES = 3
    RETRY_WAIT_S = 2.0

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.last_error: str | None = None
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return not self._idle.is_set()

    def request(self) -> None:
        with self._guard:
            if self._closed.is_set():
                return
            self._idle.clear()
            self._wanted.set()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="codecdash-bd-rates", daemon=True
                )
                self._thread.start()
        self.store.changed()

    def follow(self) -> bool:
        """Ask for a run unless the stored figures follow the anchor in force already (reads
        the database: call from a thread). True when a run is asked for or under way: one
        under way may be for another anchor, so it is asked for again."""
        if self.running or not settled(self.store, self.settings):
            self.request()
            return True
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """True once no run is asked for or under way (within `timeout` seconds)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the batch under way (at shutdown); the next start finishes the work."""
        with self._guard:
            self._closed.set()
            self._wanted.set()
            thread = self._thread
        with _SYNC_LOCKS_GUARD:  # a later app on this store makes a new one
            if _BACKGROUND.get(self.store) is self:
                del _BACKGROUND[self.store]
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while True:
            with self._guard:
                if self._closed.is_set() or not self._wanted.is_set():
                    self._thread = None
                    self._idle.set()
                    break
                self._wanted.clear()
            try:
                changed = sync_bd_rates(self.store, self.settings, stop=self._wanted.is_set)
            except Superseded:
                continue
            except Exception as exc:  # the store may be briefly unavailable
                failures += 1
                self.last_error = str(exc)[:200] or type(exc).__name__
                log.warning("BD-rates not derived again (try %d): %s", failures, self.last_error)
                if failures < self.RETRIES and not self._closed.wait(self.RETRY_WAIT_S):
                    self._wanted.set()
                continue
            failures = 0
            self.last_error = None
            if changed:
                log.info("BD-rate of %d experiments derived again", changed)
        self.store.changed()


def background_sync(store: Store, settings: Settings) -> BdRateSync:
    """The store's background re-derivation (made on first use)."""
    with _SYNC_LOCKS_GUARD:
        found = _BACKGROUND.get(store)
        if found is None:
            found = _BACKGROUND[store] = BdRateSync(store, settings)
        return found


def recomputing(store: Store) -> bool:
    """True while this process re-derives the store's BD-rates in the background."""
    found = _BACKGROUND.get(store)
    return found is not None and found.running


def _sync_lock(store: Store) -> threading.Lock:
    with _SYNC_LOCKS_GUARD:
        lock = _SYNC_LOCKS.get(store)
        if lock is None:
            lock = _SYNC_LOCKS[store] = threading.Lock()
        return lock
