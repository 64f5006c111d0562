"""The BD-rate table's cells: curves parsed once, one cell's figures or the reason there are
none (``experiments/table.py`` assembles the table; the maths is ``codec_metrics``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from codecdash.codec_metrics import bd_report, ms_ssim_db, pareto_front
from codecdash.experiments.vocabulary import QualityMetric, point_rate


@dataclass
class Curve:
    """One experiment's points, parsed once per stored text: per quality axis, (rate,
    quality dB) pairs of the set's average and of each sequence, and the rate units."""

    average: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    sequences: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    units: frozenset[str] = frozenset()


def parse(text: str) -> Curve:
    """A stored `rd_points` text as pairs per quality axis (points it cannot use are left
    out: the cell's reason then says what is missing)."""
    curve = Curve()
    units: set[str] = set()
    try:
        points = orjson.loads(text)
    except orjson.JSONDecodeError:
        return curve
    for index, point in enumerate(points if isinstance(points, list) else []):
        try:
            rate, unit = point_rate(point, index)
        except (ValueError, AttributeError):
            continue
        units.add(unit)
        sequence = point.get("sequence")
        for axis, key in (("psnr", "psnr_db"), ("ms_ssim", "ms_ssim")):
            value = point.get(key)
            if value is None:
                continue
            if axis == "ms_ssim":
                try:
                    value = ms_ssim_db(value)
                except ValueError:
                    continue
            target = curve.average if sequence is None else curve.sequences.setdefault(sequence, {})
            target.setdefault(axis, []).append((rate, value))
    curve.units = frozenset(units)
    return curve


def merged_sequences(curves: Iterable[Curve], quality: str) -> dict[str, list[tuple[float, float]]]:
    merged: dict[str, list[tuple[float, float]]] = {}
    for curve in curves:
        for name, axes in curve.sequences.items():
            merged.setdefault(name, []).extend(axes.get(quality, ()))
    return merged


def points_key(anchor: Mapping[str, Any]) -> str:
    return orjson.dumps(anchor["rd_points"]).decode()


def unit_of(anchor: Mapping[str, Any]) -> str | None:
    units = parse(points_key(anchor)).units
    return next(iter(units)) if len(units) == 1 else None


def set_label(dataset: str | None) -> str:
    return "the unspecified test set" if dataset is None else f"test set {dataset!r}"


def compute(
    dataset: str | None,
    anchor: dict[str, Any] | None,
    pairs: list[tuple[float, float]],
    units: frozenset[str],
    quality: QualityMetric,
    experiments: int,
) -> dict[str, Any]:
    """One cell: the BD report of the row's merged curve against the set's anchor, or the
    reason there is none."""
    counts = {"experiments": experiments}
    if anchor is None:
        return {
            "reason": f"no anchor in force on {set_label(dataset)}: import one for the set "
            "or name one (default_anchors, or anchor=SET:NAME)",
            **counts,
        }
    reason = _reason(anchor, pairs, units, quality, "the method's curve")
    if isinstance(reason, str):
        return {"reason": reason, **counts}
    anchor_pairs, front = reason
    try:
        report = bd_report(anchor_pairs, front)
    except ValueError as exc:
        return {"reason": f"no BD-rate against {anchor['name']!r}: {exc}", **counts}
    return {
        "bd_rate_pct": round(report.bd_rate_pct, 4),
        "bd_psnr_db": None if report.bd_psnr_db is None else round(report.bd_psnr_db, 4),
        "overlap": round(report.overlap, 4),
        "warning": report.warning,
        "points": len(front),
        **counts,
    }


def _reason(
    anchor: dict[str, Any],
    pairs: list[tuple[float, float]],
    units: frozenset[str],
    quality: QualityMetric,
    whose: str,
    sequence: str | None = None,
) -> str | tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Why the curves cannot be compared, or (anchor pairs, the row's Pareto front)."""
    parsed = parse(points_key(anchor))
    anchor_units = parsed.units
    name = anchor["name"]
    if len(units) > 1:
        return f"{whose} mixes rates in kbps and bpp"
    if anchor_units and units and units != anchor_units:
        return (
            f"{whose} is in {next(iter(units))} but anchor {name!r} is in "
            f"{next(iter(anchor_units))}: BD-rate compares curves in one rate unit"
        )
    source = parsed.average if sequence is None else parsed.sequences.get(sequence, {})
    anchor_pairs = source.get(quality, [])
    label = "MS-SSIM" if quality == "ms_ssim" else "PSNR"
    if sequence is not None and not anchor_pairs:
        return f"anchor {name!r} has no {label} points for sequence {sequence!r}"
    if not pairs:
        return f"{whose} has no points with {label}"
    return anchor_pairs, pareto_front(pairs)


def compute_sequence(
    anchor: dict[str, Any] | None,
    sequence: str,
    pairs: list[tuple[float, float]],
    units: frozenset[str],
    quality: QualityMetric,
) -> dict[str, Any]:
    if anchor is None:
        return {"reason": "no anchor in force on this test set"}
    found = _reason(anchor, pairs, units, quality, f"sequence {sequence!r}", sequence)
    if isinstance(found, str):
        return {"reason": found}
    try:
        report = bd_report(*found)
    except ValueError as exc:
        return {"reason": f"no BD-rate against {anchor['name']!r}: {exc}"}
    return {
        "bd_rate_pct": round(report.bd_rate_pct, 4),
        "bd_psnr_db": None if report.bd_psnr_db is None else round(report.bd_psnr_db, 4),
        "overlap": round(report.overlap, 4),
        "warning": report.warning,
    }
