"""Anchors: the reference curves that BD-rates are measured against, and what follows a change.

The anchor in force is the configured `default_anchor`, else the first imported one
(`codecdash.bdrate.AnchorBdRate`). Writing or deleting an anchor, or starting with other
settings, can change it; then every stored experiment with `rd_points` gets its `bd_rate_pct`
and `bd_rate_anchor` derived again (`sync_bd_rates`, which compares a digest of the anchor in
force and the quality axis with the one stored after the last run, and calls
`Store.recompute_bd_rates`, in batches). The API and `codecdash import-results --db` both write
anchors through `save_anchor` / `remove_anchor`, so both keep the stored figures true.

The API does not wait for the figures: its writes hand the re-derivation to `BdRateSync`, one
background thread per store that coalesces requests (a write during a run stops it between
batches and starts one run over), so an anchor write answers at once and holds no worker
thread; `recomputing(store)` says while figures are being derived again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from codecdash.bdrate import AnchorBdRate, install_bd_rate
from codecdash.codec_metrics import MIN_POINTS, bd_rate, bd_report
from codecdash.config import Settings
from codecdash.experiments.vocabulary import RateUnit, rate_unit
from codecdash.results import rd_pairs
from codecdash.store import Store, StoreUnavailable
from codecdash.store import anchors as anchor_rows
from codecdash.store.store import Superseded

log = logging.getLogger("codecdash.anchors")

# Unicode's white space, written out: `\s` means other characters in ECMA (the OpenAPI
# document's dialect: no U+0085) than in Python and pydantic's Rust regex (U+0085).
_SPACE = r"\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_END = rf"[^/\x00-\x20\x7f{_SPACE}]"
ANCHOR_NAME_PATTERN: Final = rf"^{_END}(?:[^/\x00-\x1f\x7f]{{0,198}}{_END})?$"
"""1-200 characters, no slash or control character, no space at either end."""
Quality = Literal["psnr", "ms_ssim"]
_SYNC_LOCKS: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_SYNC_LOCKS_GUARD = threading.Lock()
_BACKGROUND: weakref.WeakKeyDictionary[Store, BdRateSync] = weakref.WeakKeyDictionary()
SYNC_LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AnchorChange:
    """What an anchor write did."""

    name: str
    created: bool
    """True when the anchor did not exist before (always False for a deletion)."""
    previous: str | None
    """The anchor in force before the write."""
    in_force: str | None
    """The anchor in force after it."""
    recomputed: int | None
    """Experiments whose stored BD-rate changed; None while that is being done in the
    background (`recomputing`)."""
    recomputing: bool = False
    """True when the figures are being derived again in the background."""


def check_anchor_name(name: str) -> str:
    if not re.fullmatch(ANCHOR_NAME_PATTERN, name):
        raise ValueError(
            f"anchor name {name!r} is not usable: 1-200 characters, no '/' or control "
            "characters, no space at either end"
        )
    return name


def quality_of(settings: Settings) -> Quality:
    return "ms_ssim" if settings.quality_metric == "ms_ssim" else "psnr"


def deriver(store: Store, settings: Settings) -> AnchorBdRate:
    """The store's BD-rate deriver, installed here when the store has none yet."""
    current = store.bd_rate
    if isinstance(current, AnchorBdRate):
        return current
    return install_bd_rate(store, settings)


def check_curve(points: Sequence[Mapping[str, Any]], quality: Quality) -> RateUnit:
    """The curve's rate unit; ValueError unless it can be a BD-rate curve in `quality`."""
    unit = rate_unit(points)
    pairs = _pairs(points, quality, "the curve")
    bd_rate(pairs, pairs)  # validates: four distinct points, one rate per quality
    return unit


def anchor_view(anchor: Mapping[str, Any]) -> dict[str, Any]:
    """An anchor as the API answers it."""
    points = anchor["rd_points"]
    try:
        unit: str | None = rate_unit(points)
    except ValueError:
        unit = None
    return {
        "name": anchor["name"],
        "description": anchor["description"],
        "rd_points": points,
        "rate_unit": unit,
    }


def in_force(store: Store, settings: Settings) -> dict[str, Any] | None:
    return deriver(store, settings).anchor()


def save_anchor(
    store: Store,
    settings: Settings,
    name: str,
    description: str | None,
    points: list[dict[str, Any]],
    *,
    background: bool = False,
) -> AnchorChange:
    """Create or replace an anchor; re-derive the stored BD-rates where it matters (then, or
    in the background when `background`)."""
    check_anchor_name(name)
    derive = deriver(store, settings)
    previous = _name(derive.anchor())
    created = store.put_anchor(name, description, points)
    return _settle(store, settings, derive, name, created, previous, background)


def remove_anchor(
    store: Store, settings: Settings, name: str, *, background: bool = False
) -> AnchorChange | None:
    """Delete an anchor (None if there was none of that name); re-derive as needed."""
    derive = deriver(store, settings)
    previous = _name(derive.anchor())
    if not store.delete_anchor(name):
        return None
    return _settle(store, settings, derive, name, False, previous, background)


def basis(anchor: Mapping[str, Any] | None, quality: Quality) -> int:
    """A 64-bit digest of what stored BD-rates depend on: the anchor in force, its points and
    the quality axis; 0 when no anchor is in force."""
    if anchor is None:
        return 0
    text = orjson.dumps([anchor["name"], anchor["rd_points"], quality], option=orjson.OPT_SORT_KEYS)
    digest = int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)
    return digest if digest not in (0, anchor_rows.UNDER_WAY) else 1


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
        derive = deriver(store, settings)
        derive.reload()
        current = basis(derive.anchor(), quality_of(settings))
        with store.db.read() as conn:
            if anchor_rows.read_basis(conn) == current:
                return 0
        with store.db.write() as conn:
            anchor_rows.write_basis(conn, anchor_rows.UNDER_WAY)
        changed = store.recompute_bd_rates(stop=stop)
        with store.db.write() as conn:
            anchor_rows.write_basis(conn, current)
        return changed
    finally:
        lock.release()


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


def settled(store: Store, settings: Settings) -> bool:
    """True when the stored BD-rates were derived on the anchor in force and quality axis
    (or there never was an anchor: nothing was ever derived)."""
    derive = deriver(store, settings)
    derive.reload()
    current = basis(derive.anchor(), quality_of(settings))
    with store.db.read() as conn:
        stored = anchor_rows.read_basis(conn)
    return stored == current or (stored is None and current == 0)


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


def bd_report_for(
    anchor: Mapping[str, Any], rd_points: Sequence[Mapping[str, Any]], quality: Quality
) -> dict[str, Any]:
    """The full BD report of a curve against an anchor, JSON-ready.

    Raises ValueError for different rate units, unusable curves or no overlap.
    """
    name = anchor["name"]
    anchor_unit = rate_unit(anchor["rd_points"])
    if not rd_points:
        raise ValueError("the experiment has no rd_points")
    unit = rate_unit(rd_points)
    if unit != anchor_unit:
        raise ValueError(
            f"the rates are in {unit} but anchor {name!r} is in {anchor_unit}: "
            "BD-rate compares curves in one unit"
        )
    report = bd_report(
        _pairs(anchor["rd_points"], quality, f"anchor {name!r}"),
        _pairs(rd_points, quality, "the experiment"),
    )
    return {
        "anchor": name,
        "quality_metric": quality,
        "rate_unit": unit,
        "bd_rate_pct": round(report.bd_rate_pct, 4),
        "bd_psnr_db": None if report.bd_psnr_db is None else round(report.bd_psnr_db, 4),
        "overlap": report.overlap,
        "warning": report.warning,
    }


def _pairs(
    points: Sequence[Mapping[str, Any]], quality: Quality, whose: str
) -> list[tuple[float, float]]:
    pairs = rd_pairs(points, quality)
    if len(pairs) < MIN_POINTS:
        label = "MS-SSIM" if quality == "ms_ssim" else "PSNR"
        raise ValueError(
            f"{len(pairs)} of {whose}'s {len(points)} points have {label}; "
            f"BD figures need at least {MIN_POINTS}"
        )
    return pairs


def _name(anchor: Mapping[str, Any] | None) -> str | None:
    return None if anchor is None else str(anchor["name"])


def _settle(
    store: Store,
    settings: Settings,
    derive: AnchorBdRate,
    name: str,
    created: bool,
    previous: str | None,
    background: bool,
) -> AnchorChange:
    recomputed: int | None
    if background:
        recomputing = background_sync(store, settings).follow()
        recomputed = None if recomputing else 0
    else:
        recomputed, recomputing = sync_bd_rates(store, settings), False
    return AnchorChange(
        name=name,
        created=created,
        previous=previous,
        in_force=_name(derive.anchor()),
        recomputed=recomputed,
        recomputing=recomputing,
    )
