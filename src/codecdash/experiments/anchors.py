"""Anchors: the reference curves that BD-rates are measured against, and their checks.

An anchor belongs to a test set (`dataset`; None: the unspecified set) and is named within
it. The anchor in force of each set is chosen by `service.choose_anchor` (the
`default_anchors` setting, then `default_anchor`, then the set's first imported one). The
API and `codecdash import-results --db` both write anchors through
:func:`save_anchor` / :func:`remove_anchor`, so both keep the stored figures true: a write
that changes the anchor in force has every stored BD-rate derived again (``rederive.py``),
at once or, for the API, in the background.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from codecdash.codec_metrics import MIN_POINTS, bd_rate, bd_report
from codecdash.config import Settings
from codecdash.experiments.rederive import background_sync, sync_bd_rates
from codecdash.experiments.service import bd_rates_for
from codecdash.experiments.vocabulary import (
    QUALITY_LABELS,
    QualityMetric,
    RateUnit,
    average_points,
    rate_unit,
)
from codecdash.results import rd_pairs
from codecdash.store import Store

# Unicode's white space, written out: `\s` means other characters in ECMA (the OpenAPI
# document's dialect: no U+0085) than in Python and pydantic's Rust regex (U+0085).
_SPACE = r"\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_END = rf"[^/\x00-\x20\x7f{_SPACE}]"
_END_NOT_DOT = rf"[^/.\x00-\x20\x7f{_SPACE}]"
# Not "." or "..": clients resolve those path segments (/anchors/.. is /api/v1), so such
# an anchor could never be read back. Without lookahead, for every regex dialect: one
# character, two, or three and more.
ANCHOR_NAME_PATTERN: Final = (
    rf"^(?:{_END_NOT_DOT}|{_END_NOT_DOT}{_END}|\.{_END_NOT_DOT}"
    rf"|{_END}[^/\x00-\x1f\x7f]{{1,198}}{_END})$"
)
"""1-200 characters, no slash or control character, no space at either end, not "." or ".."."""


@dataclass(frozen=True)
class AnchorChange:
    """What an anchor write did."""

    name: str
    created: bool
    """True when the anchor did not exist before (always False for a deletion)."""
    previous: str | None
    """The anchor in force on its set before the write."""
    in_force: str | None
    """The anchor in force on its set after it."""
    recomputed: int | None
    """Experiments whose stored BD-rate changed; None while that is being done in the
    background (`recomputing`)."""
    recomputing: bool = False
    """True when the figures are being derived again in the background."""


def check_anchor_name(name: str) -> str:
    if not re.fullmatch(ANCHOR_NAME_PATTERN, name):
        raise ValueError(
            f"anchor name {name!r} is not usable: 1-200 characters, no '/' or control "
            "characters, no space at either end, not '.' or '..'"
        )
    return name


def check_curve(points: Sequence[Mapping[str, Any]], quality: QualityMetric) -> RateUnit:
    """The curve's rate unit; ValueError unless it can be a BD-rate curve in `quality` (its
    average points: per-sequence ones may sit beside them)."""
    points = average_points(points)
    unit = rate_unit(points)
    pairs = _pairs(points, quality, "the curve")
    bd_rate(pairs, pairs)  # validates: four distinct points, one rate per quality
    return unit


def anchor_view(anchor: Mapping[str, Any]) -> dict[str, Any]:
    """An anchor as the API answers it."""
    points = anchor["rd_points"]
    try:
        unit: str | None = rate_unit(average_points(points))
    except ValueError:
        unit = None
    return {
        "name": anchor["name"],
        "dataset": anchor.get("dataset"),
        "description": anchor["description"],
        "rd_points": points,
        "rate_unit": unit,
    }


def in_force(store: Store, settings: Settings, dataset: str | None = None) -> dict[str, Any] | None:
    """The anchor in force on this test set (None: the unspecified set)."""
    return bd_rates_for(store, settings).anchor(dataset)


def in_force_by_set(store: Store, settings: Settings) -> dict[str | None, dict[str, Any]]:
    """The anchor in force of every set that has one."""
    return bd_rates_for(store, settings).in_force()


def save_anchor(
    store: Store,
    settings: Settings,
    name: str,
    description: str | None,
    points: list[dict[str, Any]],
    *,
    background: bool = False,
    dataset: str | None = None,
) -> AnchorChange:
    """Create or replace an anchor of a test set; re-derive the stored BD-rates where it
    matters (then, or in the background when `background`)."""
    check_anchor_name(name)
    previous = _name(in_force(store, settings, dataset))
    created = store.put_anchor(name, description, points, dataset)
    return _settle(store, settings, name, created, previous, background, dataset)


def remove_anchor(
    store: Store,
    settings: Settings,
    name: str,
    *,
    background: bool = False,
    dataset: str | None = None,
) -> AnchorChange | None:
    """Delete an anchor of a set (None if there was none of that name); re-derive as needed."""
    previous = _name(in_force(store, settings, dataset))
    if not store.delete_anchor(name, dataset):
        return None
    return _settle(store, settings, name, False, previous, background, dataset)


def bd_report_for(
    anchor: Mapping[str, Any], rd_points: Sequence[Mapping[str, Any]], quality: QualityMetric
) -> dict[str, Any]:
    """The full BD report of a curve against an anchor, JSON-ready.

    Raises ValueError for different rate units, unusable curves or no overlap.
    """
    name = anchor["name"]
    anchor_points = average_points(anchor["rd_points"])
    anchor_unit = rate_unit(anchor_points)
    rd_points = average_points(rd_points)
    if not rd_points:
        raise ValueError("the experiment has no rd_points of its set's average")
    unit = rate_unit(rd_points)
    if unit != anchor_unit:
        raise ValueError(
            f"the rates are in {unit} but anchor {name!r} is in {anchor_unit}: "
            "BD-rate compares curves in one unit"
        )
    report = bd_report(
        _pairs(anchor_points, quality, f"anchor {name!r}"),
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
    points: Sequence[Mapping[str, Any]], quality: QualityMetric, whose: str
) -> list[tuple[float, float]]:
    pairs = rd_pairs(points, quality)
    if len(pairs) < MIN_POINTS:
        label = QUALITY_LABELS[quality]
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
    name: str,
    created: bool,
    previous: str | None,
    background: bool,
    dataset: str | None = None,
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
        in_force=_name(in_force(store, settings, dataset)),
        recomputed=recomputed,
        recomputing=recomputing,
    )
