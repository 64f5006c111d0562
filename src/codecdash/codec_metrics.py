"""Rate-distortion metrics: Bjøntegaard-delta rate and quality, curve overlap, MS-SSIM in dB.

The BD figures follow the JCT-VC/JVET common-test-condition spreadsheets (JCTVC-L1100,
JVET-T2010): each curve is interpolated with a piecewise cubic Hermite polynomial (PCHIP,
Fritsch-Carlson slopes, the same one-sided end slopes as the spreadsheets' `pchipend`), the
polynomials are integrated exactly over the range both curves cover, and the mean difference of
log10(rate) becomes a percentage. For monotonic curves, the only kind real codecs give, this
equals the spreadsheets' result to rounding. Where a curve turns back, the slope at that point
is 0, as in MATLAB's `pchip`; the spreadsheets' harmonic mean has no meaning there.

The `bjontegaard` package (FAU-LMS) computes the same numbers and the tests compare against it,
but it is not used at run time: it imports matplotlib on import, warns instead of raising, and
returns NaN when the curves do not overlap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy.interpolate import PchipInterpolator

MIN_POINTS: Final = 4
"""Points each curve needs, as in the JCT-VC/JVET common test conditions (four QPs)."""

OVERLAP_WARNING_THRESHOLD: Final = 0.75
"""Below this quality overlap a BD figure describes too little of the curves to be trusted."""

RDPairs = Sequence[Sequence[float]] | npt.NDArray[np.floating[Any]]
"""(rate, quality_db) pairs in any order, or an (n, 2) array; rate in any positive unit."""


@dataclass(frozen=True)
class BDReport:
    bd_rate_pct: float
    """Bjøntegaard-delta rate in %: negative means the test needs fewer bits."""
    bd_psnr_db: float | None
    """Bjøntegaard-delta quality in dB; None where the rate ranges do not overlap."""
    overlap: float
    """Share of the quality range covered by both curves, 0..1 (see `quality_overlap`)."""
    warning: str | None
    """Set when the figures describe only part of the curves."""


@dataclass(frozen=True)
class _Curve:
    log_rate: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float64]


def bd_rate(anchor: RDPairs, test: RDPairs) -> float:
    """Bjøntegaard-delta rate of `test` against `anchor`, in percent.

    The average horizontal distance between the curves, log10(rate) interpolated over quality
    with PCHIP and integrated over the overlapping quality range; -30.0 means the test needs
    30 % fewer bits than the anchor for the same quality.

    Raises ValueError for fewer than 4 distinct points in a curve, non-positive or non-finite
    rates, non-finite qualities, two points of a curve at the same quality, or no overlap.
    """
    a = _curve(anchor, "anchor")
    t = _curve(test, "test")
    lo, hi = _shared_range(a.quality, t.quality, "quality")
    delta = _mean_over(t.quality, t.log_rate, lo, hi) - _mean_over(a.quality, a.log_rate, lo, hi)
    try:
        return (math.pow(10.0, delta) - 1.0) * 100.0
    except OverflowError:
        raise ValueError(
            f"the test curve needs 10^{delta:.0f} times the anchor's rate; no BD-rate"
        ) from None


def bd_psnr(anchor: RDPairs, test: RDPairs) -> float:
    """Bjøntegaard-delta quality of `test` against `anchor`, in dB (positive = test better).

    Quality interpolated over log10(rate) with PCHIP and integrated over the overlapping rate
    range. Raises ValueError as `bd_rate` does, for two points at the same rate instead of the
    same quality, and when the rate ranges do not overlap.
    """
    a = _curve(anchor, "anchor", along="rate")
    t = _curve(test, "test", along="rate")
    lo, hi = _shared_range(a.log_rate, t.log_rate, "rate")
    return _mean_over(t.log_rate, t.quality, lo, hi) - _mean_over(a.log_rate, a.quality, lo, hi)


def quality_overlap(anchor: RDPairs, test: RDPairs) -> float:
    """Quality range both curves cover divided by the range either covers (0..1).

    Intersection over union, as the `bjontegaard` package's `min_overlap` and FAU-LMS's
    `bd_pchip.m` measure it, with the same 75 % warning threshold: it falls when either curve
    reaches beyond the other, so a short test curve inside a long anchor is flagged too.
    Validates the curves as `bd_rate` does.
    """
    a = _curve(anchor, "anchor")
    t = _curve(test, "test")
    shared = min(a.quality[-1], t.quality[-1]) - max(a.quality[0], t.quality[0])
    union = max(a.quality[-1], t.quality[-1]) - min(a.quality[0], t.quality[0])
    return max(float(shared), 0.0) / float(union)


def bd_report(anchor: RDPairs, test: RDPairs) -> BDReport:
    """BD-rate, BD-PSNR and quality overlap together, with a warning where they mislead.

    Raises ValueError where `bd_rate` does (the BD-rate is the point of the report); a missing
    rate overlap only leaves `bd_psnr_db` as None.
    """
    rate_pct = bd_rate(anchor, test)
    overlap = quality_overlap(anchor, test)
    warnings: list[str] = []
    if overlap < OVERLAP_WARNING_THRESHOLD:
        warnings.append(
            f"the curves share only {overlap:.0%} of their quality range "
            f"(under {OVERLAP_WARNING_THRESHOLD:.0%}): the BD figures describe only that part"
        )
    try:
        psnr_db: float | None = bd_psnr(anchor, test)
    except ValueError as exc:
        psnr_db = None
        warnings.append(f"no BD-PSNR: {exc}")
    return BDReport(
        bd_rate_pct=rate_pct,
        bd_psnr_db=psnr_db,
        overlap=overlap,
        warning="; ".join(warnings) or None,
    )


def ms_ssim_db(x: float) -> float:
    """MS-SSIM on a decibel scale, -10·log10(1 - x), as learned-codec papers plot it.

    Raises ValueError for x >= 1 (a lossless result has no finite value) and non-finite x.
    """
    value = _finite(x)
    if value is None:
        raise ValueError(f"MS-SSIM must be a finite number, got {x!r}")
    if value >= 1.0:
        raise ValueError(f"MS-SSIM {x!r} is 1 or more: no finite dB value")
    return -10.0 * math.log10(1.0 - value)


def _finite(value: object) -> float | None:
    """`value` as a float if it is a finite real number (not a bool), else None."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return number if math.isfinite(number) else None


def _curve(pairs: RDPairs, role: str, along: Literal["quality", "rate"] = "quality") -> _Curve:
    """Validate, deduplicate and sort one curve along the axis it is interpolated over."""
    points: set[tuple[float, float]] = set()
    for index, pair in enumerate(pairs):
        try:
            if isinstance(pair, str | bytes):
                raise TypeError
            rate, quality = pair
        except (TypeError, ValueError):
            raise ValueError(
                f"{role} point {index}: expected a (rate, quality) pair, got {pair!r}"
            ) from None
        rate_value, quality_value = _finite(rate), _finite(quality)
        if rate_value is None or rate_value <= 0:
            raise ValueError(
                f"{role} point {index}: rate must be positive and finite, got {rate!r}"
            )
        if quality_value is None:
            raise ValueError(f"{role} point {index}: quality must be finite, got {quality!r}")
        points.add((rate_value, quality_value))
    if len(points) < MIN_POINTS:
        raise ValueError(
            f"{role} curve has {len(points)} distinct points; BD figures need at least {MIN_POINTS}"
        )
    key = 1 if along == "quality" else 0
    ordered = sorted(points, key=lambda p: p[key])
    for previous, current in itertools.pairwise(ordered):
        if previous[key] == current[key]:
            what = f"quality {current[1]!r} dB" if key == 1 else f"rate {current[0]!r}"
            raise ValueError(
                f"{role} curve has two points at {what}; cannot interpolate over {along}"
            )
    rates = np.array([p[0] for p in ordered])
    return _Curve(log_rate=np.log10(rates), quality=np.array([p[1] for p in ordered]))


def _shared_range(
    x_a: npt.NDArray[np.float64], x_b: npt.NDArray[np.float64], axis: str
) -> tuple[float, float]:
    lo = float(max(x_a[0], x_b[0]))
    hi = float(min(x_a[-1], x_b[-1]))
    if lo >= hi:
        raise ValueError(f"the anchor and test curves do not overlap in {axis}")
    return lo, hi


def _mean_over(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], lo: float, hi: float
) -> float:
    """Mean of the PCHIP interpolant of y(x) over [lo, hi], integrated exactly."""
    return float(PchipInterpolator(x, y).integrate(lo, hi)) / (hi - lo)
