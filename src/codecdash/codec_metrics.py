"""Rate-distortion metrics: Bjøntegaard-delta rate and quality, curve overlap, MS-SSIM in dB.

The BD figures follow the JCT-VC/JVET common-test-condition spreadsheets (JCTVC-L1100,
JVET-T2010): each curve is interpolated with a piecewise cubic Hermite polynomial (PCHIP,
Fritsch-Carlson slopes, the same one-sided end slopes as the spreadsheets' `pchipend`), the
polynomials are integrated exactly over the range both curves cover, and the mean difference of
log10(rate) becomes a percentage. For monotonic curves, the only kind real codecs give, this
equals the spreadsheets' result to rounding. Where a curve turns back, the slope at that point
is 0, as in MATLAB's `pchip`; the spreadsheets' harmonic mean has no meaning there.

The interpolation and the integration are written out here in plain Python (the slopes exactly
as SciPy's `PchipInterpolator` computes them, each cubic piece integrated in closed form): for
the handful of points a curve has, that is some twenty times faster than building SciPy's
interpolator, and equal to it to rounding (the tests check both against each other). A curve
used again and again, such as the anchor in force, can be prepared once with `rate_curve` and
passed to `bd_rate` in place of its pairs.

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
    """A validated curve, sorted along the axis it is interpolated over."""

    log_rate: tuple[float, ...]
    quality: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class RateCurve:
    """A curve prepared once for `bd_rate`: validated, sorted by quality, with the PCHIP slopes
    of log10(rate) over quality. Build it with `rate_curve`; pass it to `bd_rate` in place of
    the pairs where one curve (the anchor in force) is compared with many."""

    quality: tuple[float, ...]
    """The qualities (dB), strictly increasing."""
    log_rate: tuple[float, ...]
    """log10(rate) at each quality."""
    slopes: tuple[float, ...]
    """d log10(rate) / d quality of the interpolant at each quality."""

    def mean_log_rate(self, lo: float, hi: float) -> float:
        """Mean of the interpolated log10(rate) over qualities [lo, hi] (within the curve's)."""
        return _integral(self.quality, self.log_rate, self.slopes, lo, hi) / (hi - lo)


def rate_curve(pairs: RDPairs, role: str = "anchor") -> RateCurve:
    """`pairs` prepared for `bd_rate`, validated as `bd_rate` does (`role` names the curve in
    the ValueError's message)."""
    curve = _curve(pairs, role)
    return RateCurve(curve.quality, curve.log_rate, _pchip_slopes(curve.quality, curve.log_rate))


def bd_rate(anchor: RDPairs | RateCurve, test: RDPairs | RateCurve) -> float:
    """Bjøntegaard-delta rate of `test` against `anchor`, in percent.

    The average horizontal distance between the curves, log10(rate) interpolated over quality
    with PCHIP and integrated over the overlapping quality range; -30.0 means the test needs
    30 % fewer bits than the anchor for the same quality.

    Either curve may be a `RateCurve` prepared with `rate_curve` (the same result, less work).

    Raises ValueError for fewer than 4 distinct points in a curve, non-positive or non-finite
    rates, non-finite qualities, two points of a curve at the same quality, or no overlap.
    """
    a = anchor if isinstance(anchor, RateCurve) else rate_curve(anchor, "anchor")
    t = test if isinstance(test, RateCurve) else rate_curve(test, "test")
    lo, hi = _shared_range(a.quality, t.quality, "quality")
    delta = t.mean_log_rate(lo, hi) - a.mean_log_rate(lo, hi)
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


def pareto_front(pairs: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points of a union of curves that no other point beats: one with a lower or
    equal rate and a higher or equal quality (and not the same point) drops it.

    A method's curve on a test set joins its experiments' points (one per λ run, or whole
    curves); runs repeated at one λ, or curves that cross, leave points that are not on the
    method's best trade-off, and two points at one quality that no interpolation can take.
    The front is what is left: sorted by rate, strictly increasing in quality. A single
    monotonic curve is its own front.
    """
    front: list[tuple[float, float]] = []
    best = -math.inf
    # By rate, and at one rate the best quality first: each point is kept only when it is
    # better than every point at a lower (or the same) rate.
    for rate, quality in sorted(set(pairs), key=lambda p: (p[0], -p[1])):
        if quality > best:
            front.append((rate, quality))
            best = quality
    return front


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
    if type(value) is float:  # the common case, without the ABC check below
        return value if math.isfinite(value) else None
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
            if type(pair) is not tuple and isinstance(pair, str | bytes):
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
    return _Curve(
        log_rate=tuple(math.log10(p[0]) for p in ordered), quality=tuple(p[1] for p in ordered)
    )


def _shared_range(x_a: Sequence[float], x_b: Sequence[float], axis: str) -> tuple[float, float]:
    lo = max(x_a[0], x_b[0])
    hi = min(x_a[-1], x_b[-1])
    if lo >= hi:
        raise ValueError(f"the anchor and test curves do not overlap in {axis}")
    return lo, hi


def _mean_over(x: Sequence[float], y: Sequence[float], lo: float, hi: float) -> float:
    """Mean of the PCHIP interpolant of y(x) over [lo, hi], integrated exactly."""
    return _integral(x, y, _pchip_slopes(x, y), lo, hi) / (hi - lo)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _pchip_slopes(x: Sequence[float], y: Sequence[float]) -> tuple[float, ...]:
    """The derivative at each knot of the PCHIP interpolant of y(x), x strictly increasing,
    at least 3 knots: computed as SciPy's `PchipInterpolator` does (Fritsch and Carlson's
    weighted harmonic mean inside, 0 where the curve turns back or is flat; the one-sided
    three-point formula at both ends, clipped to keep the shape, which is the spreadsheets'
    `pchipend`)."""
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    m = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    d = [0.0] * n
    for k in range(1, n - 1):
        m0, m1 = m[k - 1], m[k]
        if m0 == 0.0 or m1 == 0.0 or (m0 > 0.0) != (m1 > 0.0):
            continue
        w1 = 2.0 * h[k] + h[k - 1]
        w2 = h[k] + 2.0 * h[k - 1]
        whmean = (w1 / m0 + w2 / m1) / (w1 + w2)
        d[k] = 1.0 / whmean if whmean != 0.0 else math.copysign(math.inf, m0)
    d[0] = _end_slope(h[0], h[1], m[0], m[1])
    d[-1] = _end_slope(h[-1], h[-2], m[-1], m[-2])
    return tuple(d)


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """SciPy's `PchipInterpolator._edge_case`, the spreadsheets' `pchipend`."""
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if _sign(d) != _sign(m0):
        return 0.0
    if _sign(m0) != _sign(m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return d


def _integral(
    x: Sequence[float], y: Sequence[float], d: Sequence[float], lo: float, hi: float
) -> float:
    """Integral over [lo, hi] of the cubic Hermite interpolant with values y and slopes d at
    knots x, each piece integrated in closed form: a whole piece of width w gives
    w·(y_i + y_i+1)/2 + w²·(d_i - d_i+1)/12; a piece cut by lo or hi, y_i + d_i·s + c·s² + b·s³
    (s = x - x_i) integrated over its part inside [lo, hi]."""
    total = 0.0
    for i in range(len(x) - 1):
        x0, x1 = x[i], x[i + 1]
        if x1 <= lo:
            continue
        if x0 >= hi:
            break
        width = x1 - x0
        if lo <= x0 and x1 <= hi:
            total += width * (0.5 * (y[i] + y[i + 1]) + width * (d[i] - d[i + 1]) / 12.0)
            continue
        s0 = (lo if lo > x0 else x0) - x0
        s1 = (hi if hi < x1 else x1) - x0
        slope = (y[i + 1] - y[i]) / width
        c = (3.0 * slope - 2.0 * d[i] - d[i + 1]) / width
        b = (d[i] - 2.0 * slope + d[i + 1]) / (width * width)
        y0, d0 = y[i], d[i]
        total += s1 * (y0 + s1 * (d0 / 2.0 + s1 * (c / 3.0 + s1 * b / 4.0))) - s0 * (
            y0 + s0 * (d0 / 2.0 + s0 * (c / 3.0 + s0 * b / 4.0))
        )
    return total
