"""Anchors: the reference curves that BD-rates are measured against, and what follows a change.

The anchor in force is the configured `default_anchor`, else the first imported one
(`codecdash.bdrate.AnchorBdRate`). Writing or deleting an anchor, or starting with other
settings, can change it; then every stored experiment with `rd_points` gets its `bd_rate_pct`
and `bd_rate_anchor` derived again (`sync_bd_rates`, which compares a digest of the anchor in
force and the quality axis with the one stored after the last run, and calls
`Store.recompute_bd_rates`, in batches). The API and `codecdash import-results --db` both write
anchors through `save_anchor` / `remove_anchor`, so both keep the stored figures true.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from codecdash.bdrate import AnchorBdRate, install_bd_rate
from codecdash.codec_metrics import MIN_POINTS, bd_rate, bd_report
from codecdash.config import Settings
from codecdash.results import RateUnit, rd_pairs, rd_rate_unit
from codecdash.store import Store
from codecdash.store import anchors as anchor_rows

# Unicode's white space, written out: `\s` means other characters in ECMA (the OpenAPI
# document's dialect: no U+0085) than in Python and pydantic's Rust regex (U+0085).
_SPACE = r"\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_END = rf"[^/\x00-\x20\x7f{_SPACE}]"
ANCHOR_NAME_PATTERN: Final = rf"^{_END}(?:[^/\x00-\x1f\x7f]{{0,198}}{_END})?$"
"""1-200 characters, no slash or control character, no space at either end."""
Quality = Literal["psnr", "ms_ssim"]
_SYNC_LOCKS: weakref.WeakKeyDictionary[Store, threading.Lock] = weakref.WeakKeyDictionary()
_SYNC_LOCKS_GUARD = threading.Lock()


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
    recomputed: int
    """Experiments whose stored BD-rate changed."""


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
    unit = rd_rate_unit(points)
    pairs = _pairs(points, quality, "the curve")
    bd_rate(pairs, pairs)  # validates: four distinct points, one rate per quality
    return unit


def anchor_view(anchor: Mapping[str, Any]) -> dict[str, Any]:
    """An anchor as the API answers it."""
    points = anchor["rd_points"]
    try:
        unit: str | None = rd_rate_unit(points)
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
) -> AnchorChange:
    """Create or replace an anchor; re-derive the stored BD-rates where it matters."""
    check_anchor_name(name)
    derive = deriver(store, settings)
    previous = _name(derive.anchor())
    created = store.put_anchor(name, description, points)
    return _settle(store, settings, derive, name, created, previous)


def remove_anchor(store: Store, settings: Settings, name: str) -> AnchorChange | None:
    """Delete an anchor (None if there was none of that name); re-derive as needed."""
    derive = deriver(store, settings)
    previous = _name(derive.anchor())
    if not store.delete_anchor(name):
        return None
    return _settle(store, settings, derive, name, False, previous)


def basis(anchor: Mapping[str, Any] | None, quality: Quality) -> int:
    """A 64-bit digest of what stored BD-rates depend on: the anchor in force, its points and
    the quality axis; 0 when no anchor is in force."""
    if anchor is None:
        return 0
    text = orjson.dumps([anchor["name"], anchor["rd_points"], quality], option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True) or 1


def sync_bd_rates(store: Store, settings: Settings) -> int:
    """Derive the stored BD-rates again if what they depend on changed since they were.

    Called after every anchor write and when the server starts (a new `default_anchor` or
    `quality_metric`, anchors written by another process). The digest of the basis is stored
    only once every batch is done, so an interrupted run is finished by the next call.
    Returns how many experiments got a different value.
    """
    with _sync_lock(store):  # one run per store; a retried request waits, then finds it done
        derive = deriver(store, settings)
        derive.reload()
        current = basis(derive.anchor(), quality_of(settings))
        with store.db.read() as conn:
            if anchor_rows.read_basis(conn) == current:
                return 0
        changed = store.recompute_bd_rates()
        with store.db.write() as conn:
            anchor_rows.write_basis(conn, current)
        return changed


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
    anchor_unit = rd_rate_unit(anchor["rd_points"])
    if not rd_points:
        raise ValueError("the experiment has no rd_points")
    unit = rd_rate_unit(rd_points)
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
) -> AnchorChange:
    recomputed = sync_bd_rates(store, settings)
    return AnchorChange(
        name=name,
        created=created,
        previous=previous,
        in_force=_name(derive.anchor()),
        recomputed=recomputed,
    )
