"""BD-rate and BD-PSNR: published reference values, reference implementations, properties."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codecdash.codec_metrics import (
    OVERLAP_WARNING_THRESHOLD,
    BDReport,
    bd_psnr,
    bd_rate,
    bd_report,
    ms_ssim_db,
    quality_overlap,
    rate_curve,
)
from codecdash.results import bundled_result_curves, rd_pairs

Pairs = list[tuple[float, float]]

# --- Published reference values -------------------------------------------------------------
# Rate-distortion data of JCTVC-E137 (5th JCT-VC meeting, Geneva 2011, the contribution that
# brought piecewise cubic interpolation into the BD-rate spreadsheet). Expected BD-rates as
# published in Netflix/vmaf, python/test/bd_rate_calculator_test.py, class
# BDrateCalculatorJCTVCTest (their calculator, "validated against JCTVC-E137", returns a
# fraction: -0.00465215420752807 and -0.018779823450567612); here in percent.
JCTVC_E137_CASES = [
    pytest.param(
        [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
        [
            (108061.2784, 43.6768),
            (61299.9936, 40.4232),
            (33928.7472, 37.2761),
            (18910.912, 34.3147),
        ],
        -0.465215420752807,
        id="E137-1",
    ),
    pytest.param(
        [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
        [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
        -1.8779823450567612,
        id="E137-2",
    ),
]


@pytest.mark.parametrize(("anchor", "test", "expected_pct"), JCTVC_E137_CASES)
def test_bd_rate_matches_published_jctvc_e137_values(
    anchor: Pairs, test: Pairs, expected_pct: float
) -> None:
    assert bd_rate(anchor, test) == pytest.approx(expected_pct, abs=1e-9)


@pytest.mark.parametrize(("anchor", "test", "expected_pct"), JCTVC_E137_CASES)
def test_bd_rate_jctvc_e137_does_not_depend_on_point_order(
    anchor: Pairs, test: Pairs, expected_pct: float
) -> None:
    assert bd_rate(anchor[::-1], test[1:] + test[:1]) == pytest.approx(expected_pct, abs=1e-9)


# --- The spreadsheet's algorithm, transcribed -----------------------------------------------
# The VBA macro of the JCT-VC/JVET BD-rate spreadsheets (JCTVC-L1100, JVET-T2010; functions
# `bdrint`/`bdRIntEnh` and `pchipend`): sort by quality, PCHIP slopes (weighted harmonic mean
# inside, `pchipend` at both ends), integrate each cubic exactly over the clipped range.
# Written out here without scipy, to check that the module computes what the sheet does.


def _pchipend(h1: float, h2: float, d1: float, d2: float) -> float:
    slope = ((2 * h1 + h2) * d1 - h1 * d2) / (h1 + h2)
    if slope * d1 < 0:
        return 0.0
    if d1 * d2 < 0 and abs(slope) > abs(3 * d1):
        return 3 * d1
    return slope


def _spreadsheet_integral(curve: Pairs, low: float, high: float) -> float:
    ordered = sorted(curve, key=lambda p: p[1])
    x = [q for _, q in ordered]
    y = [math.log10(r) for r, _ in ordered]
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    delta = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    d = [0.0] * n
    d[0] = _pchipend(h[0], h[1], delta[0], delta[1])
    for i in range(1, n - 1):
        d[i] = (3 * h[i - 1] + 3 * h[i]) / (
            (2 * h[i] + h[i - 1]) / delta[i - 1] + (h[i] + 2 * h[i - 1]) / delta[i]
        )
    d[n - 1] = _pchipend(h[n - 2], h[n - 3], delta[n - 2], delta[n - 3])
    total = 0.0
    for i in range(n - 1):
        c = (3 * delta[i] - 2 * d[i] - d[i + 1]) / h[i]
        b = (d[i] - 2 * delta[i] + d[i + 1]) / (h[i] * h[i])
        s0 = min(max(x[i], low), high) - x[i]
        s1 = min(max(x[i + 1], low), high) - x[i]
        if s1 > s0:
            total += (s1 - s0) * y[i]
            total += (s1**2 - s0**2) * d[i] / 2
            total += (s1**3 - s0**3) * c / 3
            total += (s1**4 - s0**4) * b / 4
    return total


def _spreadsheet_bd_rate(anchor: Pairs, test: Pairs) -> float:
    low = max(min(q for _, q in anchor), min(q for _, q in test))
    high = min(max(q for _, q in anchor), max(q for _, q in test))
    mean = (_spreadsheet_integral(test, low, high) - _spreadsheet_integral(anchor, low, high)) / (
        high - low
    )
    return (10**mean - 1) * 100


@pytest.mark.parametrize(("anchor", "test", "expected_pct"), JCTVC_E137_CASES)
def test_transcribed_spreadsheet_reproduces_the_published_values(
    anchor: Pairs, test: Pairs, expected_pct: float
) -> None:
    assert _spreadsheet_bd_rate(anchor, test) == pytest.approx(expected_pct, abs=1e-9)


# --- Strategies -----------------------------------------------------------------------------


@st.composite
def rd_curves(draw: st.DrawFn, monotonic: bool = True, min_size: int = 4) -> Pairs:
    """Curves with distinct qualities; log-rate rises with quality unless monotonic=False."""
    n = draw(st.integers(min_value=min_size, max_value=10))
    quality = draw(st.floats(min_value=20.0, max_value=40.0))
    log_rate = draw(st.floats(min_value=-1.0, max_value=5.0))
    low_step = 0.01 if monotonic else -0.3
    points = []
    for _ in range(n):
        points.append((10.0**log_rate, quality))
        quality += draw(st.floats(min_value=0.05, max_value=3.0))
        log_rate += draw(st.floats(min_value=low_step, max_value=0.6).filter(lambda s: s != 0))
    return points


def _shifted(curve: Pairs, rate_factor: float = 1.0, quality_offset: float = 0.0) -> Pairs:
    return [(r * rate_factor, q + quality_offset) for r, q in curve]


@settings(deadline=None)
@given(rd_curves(), rd_curves())
def test_bd_rate_equals_the_spreadsheet_algorithm_on_monotonic_curves(
    anchor: Pairs, test: Pairs
) -> None:
    # Bring the test curve into the anchor's quality range so that most pairs overlap.
    offset = min(q for _, q in anchor) - min(q for _, q in test)
    test = _shifted(test, quality_offset=offset)
    assert bd_rate(anchor, test) == pytest.approx(
        _spreadsheet_bd_rate(anchor, test), rel=1e-9, abs=1e-9
    )


# --- SciPy's PchipInterpolator, integrated exactly -------------------------------------------
# The module writes PCHIP out in plain Python (building SciPy's interpolator cost ~20 times
# more); these check it against SciPy's, on curves that turn back too (slope 0 there).


def _scipy_mean(x: list[float], y: list[float], low: float, high: float) -> float:
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(x, y).integrate(low, high)) / (high - low)


def _scipy_bd(anchor: Pairs, test: Pairs, along: str) -> float:
    """BD-rate (along="quality", in %) or BD-PSNR (along="rate", in dB) with SciPy's PCHIP."""
    curves = []
    for curve in (anchor, test):
        ordered = sorted(set(curve), key=lambda p: p[1] if along == "quality" else p[0])
        log_rate = [math.log10(r) for r, _ in ordered]
        quality = [q for _, q in ordered]
        curves.append((quality, log_rate) if along == "quality" else (log_rate, quality))
    (xa, ya), (xt, yt) = curves
    low, high = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    delta = _scipy_mean(xt, yt, low, high) - _scipy_mean(xa, ya, low, high)
    return (10**delta - 1) * 100 if along == "quality" else delta


@settings(deadline=None, max_examples=300)
@given(rd_curves(monotonic=False), rd_curves(monotonic=False), st.floats(0.0, 1.0))
def test_bd_rate_equals_scipy_pchip_integration(anchor: Pairs, test: Pairs, shift: float) -> None:
    # The test curve starts somewhere in the anchor's quality range, so that they overlap.
    low, high = min(q for _, q in anchor), max(q for _, q in anchor)
    test = _shifted(test, quality_offset=low + shift * (high - low) * 0.9 - test[0][1])
    expected = _scipy_bd(anchor, test, "quality")
    assert bd_rate(anchor, test) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert bd_rate(rate_curve(anchor), test) == bd_rate(anchor, test)
    assert bd_rate(anchor, rate_curve(test, "test")) == bd_rate(anchor, test)


@settings(deadline=None, max_examples=200)
@given(rd_curves(), rd_curves(), st.floats(-0.5, 0.5))
def test_bd_psnr_equals_scipy_pchip_integration(anchor: Pairs, test: Pairs, shift: float) -> None:
    test = _shifted(test, rate_factor=anchor[0][0] / test[0][0] * 10**shift)
    try:
        ours = bd_psnr(anchor, test)
    except ValueError:
        return  # these rate ranges happen not to overlap
    assert ours == pytest.approx(_scipy_bd(anchor, test, "rate"), rel=1e-9, abs=1e-9)


@settings(deadline=None)
@given(rd_curves(monotonic=False))
def test_pchip_slopes_equal_scipys_derivative_at_the_knots(curve: Pairs) -> None:
    from scipy.interpolate import PchipInterpolator

    prepared = rate_curve(curve)
    expected = PchipInterpolator(prepared.quality, prepared.log_rate).derivative()(prepared.quality)
    assert prepared.slopes == pytest.approx(list(expected), rel=1e-9, abs=1e-12)


def test_a_prepared_curve_is_validated_like_pairs() -> None:
    with pytest.raises(ValueError, match="anchor curve has 3 distinct points"):
        rate_curve(GOOD[:3])
    with pytest.raises(ValueError, match="test point 4: rate must be positive"):
        rate_curve([*GOOD, (0.0, 35.0)], "test")
    assert rate_curve(GOOD).quality == (30.0, 33.0, 36.0, 39.0)


# --- The bjontegaard package (FAU-LMS), whose PCHIP matches the JVET-T2010 sheet ------------
# Data of its README and example_usage.py (ffmpeg libx265 presets); the package publishes no
# expected numbers for them, so these compare two implementations, not against a document.
BJONTEGAARD_EXAMPLES = [
    pytest.param(
        [(9487.76, 40.037), (4593.60, 38.615), (2486.44, 36.845), (1358.24, 34.851)],
        [(9787.80, 40.121), (4469.00, 38.651), (2451.52, 36.970), (1356.24, 34.987)],
        id="readme",
    ),
    pytest.param(
        [(82472.76, 43.825), (26875.24, 41.404), (9487.76, 40.037), (4593.6, 38.615)],
        [(99896.96, 44.731), (33952.04, 41.875), (9787.8, 40.121), (4469.0, 38.651)],
        id="high-rates",
    ),
    pytest.param(
        [
            (82472.76, 43.825),
            (26875.24, 41.404),
            (9487.76, 40.037),
            (4593.6, 38.615),
            (3600, 36.5),
            (2900, 35.1),
        ],
        [
            (99896.96, 44.731),
            (33952.04, 41.875),
            (9787.8, 40.121),
            (4469.0, 38.651),
            (4040, 37),
            (3300, 36.5),
        ],
        id="six-points",
    ),
]


def _bjontegaard(anchor: Pairs, test: Pairs, what: str) -> float:
    bd = pytest.importorskip("bjontegaard")
    function = bd.bd_rate if what == "rate" else bd.bd_psnr
    return float(
        function(
            [r for r, _ in anchor],
            [q for _, q in anchor],
            [r for r, _ in test],
            [q for _, q in test],
            method="pchip",
            require_matching_points=False,
            min_overlap=0,
        )
    )


@pytest.mark.parametrize(("anchor", "test"), BJONTEGAARD_EXAMPLES)
def test_agrees_with_the_bjontegaard_package(anchor: Pairs, test: Pairs) -> None:
    assert bd_rate(anchor, test) == pytest.approx(_bjontegaard(anchor, test, "rate"), abs=1e-10)
    assert bd_psnr(anchor, test) == pytest.approx(_bjontegaard(anchor, test, "psnr"), abs=1e-10)


# --- Properties -----------------------------------------------------------------------------


@settings(deadline=None)
@given(rd_curves(monotonic=False))
def test_a_curve_against_itself_is_zero(curve: Pairs) -> None:
    assert bd_rate(curve, curve) == 0.0
    assert quality_overlap(curve, curve) == 1.0


@settings(deadline=None)
@given(rd_curves())
def test_a_curve_against_itself_has_zero_bd_psnr(curve: Pairs) -> None:
    assert bd_psnr(curve, curve) == 0.0


@settings(deadline=None)
@given(rd_curves(monotonic=False), st.floats(min_value=0.05, max_value=20.0))
def test_scaling_every_rate_by_k_gives_k_minus_one(curve: Pairs, k: float) -> None:
    assert bd_rate(curve, _shifted(curve, rate_factor=k)) == pytest.approx(
        (k - 1) * 100, rel=1e-9, abs=1e-9
    )


@settings(deadline=None)
@given(rd_curves(), st.floats(min_value=-5.0, max_value=5.0))
def test_shifting_every_quality_gives_that_bd_psnr(curve: Pairs, offset: float) -> None:
    assert bd_psnr(curve, _shifted(curve, quality_offset=offset)) == pytest.approx(offset, abs=1e-9)


@settings(deadline=None)
@given(rd_curves(), rd_curves(), st.randoms(use_true_random=False))
def test_order_of_points_does_not_matter(anchor: Pairs, test: Pairs, rnd: random.Random) -> None:
    test = _shifted(test, quality_offset=min(q for _, q in anchor) - min(q for _, q in test))
    shuffled_anchor, shuffled_test = anchor[:], test[:]
    rnd.shuffle(shuffled_anchor)
    rnd.shuffle(shuffled_test)
    assert bd_rate(shuffled_anchor, shuffled_test) == bd_rate(anchor, test)
    assert quality_overlap(shuffled_anchor, shuffled_test) == quality_overlap(anchor, test)
    try:
        expected_psnr = bd_psnr(anchor, test)
    except ValueError:
        return  # these rate ranges happen not to overlap
    assert bd_psnr(shuffled_anchor, shuffled_test) == expected_psnr


@settings(deadline=None)
@given(rd_curves(), rd_curves())
def test_swapping_anchor_and_test_inverts_the_result(anchor: Pairs, test: Pairs) -> None:
    test = _shifted(test, quality_offset=min(q for _, q in anchor) - min(q for _, q in test))
    forward, backward = bd_rate(anchor, test), bd_rate(test, anchor)
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1.0, rel=1e-9)


@given(rd_curves(min_size=1).map(lambda c: c[:3]), rd_curves())
def test_fewer_than_four_points_raise(short: Pairs, full: Pairs) -> None:
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(short, full)
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(full, short)
    with pytest.raises(ValueError, match="at least 4"):
        bd_psnr(full, short)


@given(rd_curves(), rd_curves(), st.floats(min_value=0.0, max_value=10.0))
def test_curves_without_quality_overlap_raise(anchor: Pairs, test: Pairs, gap: float) -> None:
    above = max(q for _, q in anchor) + gap - min(q for _, q in test)
    test = _shifted(test, quality_offset=above)
    assert quality_overlap(anchor, test) == 0.0
    with pytest.raises(ValueError, match="do not overlap in quality"):
        bd_rate(anchor, test)
    with pytest.raises(ValueError, match="do not overlap in quality"):
        bd_report(anchor, test)


# --- Validation -----------------------------------------------------------------------------

GOOD: Pairs = [(100.0, 30.0), (200.0, 33.0), (400.0, 36.0), (800.0, 39.0)]


@pytest.mark.parametrize(
    ("bad_point", "message"),
    [
        ((0.0, 35.0), "rate must be positive"),
        ((-5.0, 35.0), "rate must be positive"),
        ((math.nan, 35.0), "rate must be positive and finite"),
        ((math.inf, 35.0), "rate must be positive and finite"),
        (("300", 35.0), "rate must be positive and finite"),
        ((True, 35.0), "rate must be positive and finite"),
        ((10**400, 35.0), "rate must be positive and finite"),
        ((300.0, math.nan), "quality must be finite"),
        ((300.0, -math.inf), "quality must be finite"),
        ((300.0, None), "quality must be finite"),
        ((300.0,), "expected a \\(rate, quality\\) pair"),
        ((300.0, 35.0, 1.0), "expected a \\(rate, quality\\) pair"),
        (300.0, "expected a \\(rate, quality\\) pair"),
        ("ab", "expected a \\(rate, quality\\) pair"),
    ],
)
def test_invalid_points_raise_clear_errors(bad_point: object, message: str) -> None:
    curve: list[object] = [*GOOD, bad_point]
    with pytest.raises(ValueError, match=message) as anchor_error:
        bd_rate(curve, GOOD)  # type: ignore[arg-type]
    assert "anchor point 4" in str(anchor_error.value)
    with pytest.raises(ValueError, match=message) as test_error:
        bd_psnr(GOOD, curve)  # type: ignore[arg-type]
    assert "test point 4" in str(test_error.value)


def test_exact_duplicate_points_count_once() -> None:
    with pytest.raises(ValueError, match="3 distinct points"):
        bd_rate([*GOOD[:3], GOOD[0]], GOOD)
    other = _shifted(GOOD, rate_factor=0.8)
    assert bd_rate([*GOOD, GOOD[2]], other) == bd_rate(GOOD, other)


def test_two_rates_at_one_quality_cannot_be_interpolated() -> None:
    with pytest.raises(ValueError, match=r"two points at quality 36\.0 dB"):
        bd_rate([*GOOD, (500.0, 36.0)], GOOD)
    with pytest.raises(ValueError, match=r"two points at rate 400\.0"):
        bd_psnr([*GOOD, (400.0, 37.0)], GOOD)


def test_accepts_lists_tuples_and_numpy_rows() -> None:
    other = _shifted(GOOD, rate_factor=0.5)
    expected = bd_rate(GOOD, other)
    assert bd_rate([list(p) for p in GOOD], other) == expected
    assert bd_rate(np.array(GOOD), np.array(other)) == expected
    assert expected == pytest.approx(-50.0)


def test_absurd_ratios_raise_instead_of_overflowing() -> None:
    huge = _shifted(GOOD, rate_factor=1e300)
    tiny = _shifted(GOOD, rate_factor=1e-300)
    with pytest.raises(ValueError, match="no BD-rate"):
        bd_rate(tiny, huge)


# --- Overlap and report ---------------------------------------------------------------------


def test_quality_overlap_is_intersection_over_union() -> None:
    anchor = [(100.0, 30.0), (200.0, 33.0), (400.0, 36.0), (800.0, 40.0)]
    test = [(100.0, 35.0), (200.0, 38.0), (400.0, 41.0), (800.0, 45.0)]
    assert quality_overlap(anchor, test) == pytest.approx(5 / 15)
    assert quality_overlap(test, anchor) == pytest.approx(5 / 15)
    inner = [(150.0, 32.0), (250.0, 33.0), (350.0, 34.0), (450.0, 35.0)]
    assert quality_overlap(anchor, inner) == pytest.approx(3 / 10)


def test_report_without_warning_for_well_overlapping_curves() -> None:
    test = _shifted(GOOD, rate_factor=0.7, quality_offset=0.5)
    report = bd_report(GOOD, test)
    assert report == BDReport(
        bd_rate_pct=bd_rate(GOOD, test),
        bd_psnr_db=bd_psnr(GOOD, test),
        overlap=quality_overlap(GOOD, test),
        warning=None,
    )
    assert report.overlap == pytest.approx(8.5 / 9.5)
    assert report.bd_rate_pct < 0 < report.bd_psnr_db  # type: ignore[operator]


def test_report_warns_below_75_percent_overlap() -> None:
    test = _shifted(GOOD, quality_offset=4.0)  # shares 5 of 13 dB
    report = bd_report(GOOD, test)
    assert report.overlap == pytest.approx(5 / 13)
    assert report.overlap < OVERLAP_WARNING_THRESHOLD
    assert report.warning is not None
    assert "38%" in report.warning
    assert "75%" in report.warning


def test_report_without_rate_overlap_keeps_the_bd_rate() -> None:
    test = _shifted(GOOD, rate_factor=100.0)
    report = bd_report(GOOD, test)
    assert report.bd_rate_pct == pytest.approx(9900.0)
    assert report.bd_psnr_db is None
    assert report.overlap == 1.0
    assert report.warning is not None
    assert "do not overlap in rate" in report.warning


# --- MS-SSIM in dB --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "expected_db"),
    [(0.0, 0.0), (0.9, 10.0), (0.99, 20.0), (0.999, 30.0), (0.5, 3.0103), (-1.0, -3.0103)],
)
def test_ms_ssim_db_values(x: float, expected_db: float) -> None:
    assert ms_ssim_db(x) == pytest.approx(expected_db, abs=1e-4)


@pytest.mark.parametrize("x", [1.0, 1.5, math.inf, math.nan, -math.inf])
def test_ms_ssim_db_rejects_one_and_above_and_non_finite(x: float) -> None:
    with pytest.raises(ValueError, match="MS-SSIM"):
        ms_ssim_db(x)


@given(st.floats(min_value=0.0, max_value=0.999999))
def test_ms_ssim_db_inverts(x: float) -> None:
    assert 1 - 10 ** (-ms_ssim_db(x) / 10) == pytest.approx(x, abs=1e-12)


# --- The real published curves (CompressAI, UVG 1080p) --------------------------------------


@pytest.fixture(scope="module")
def uvg() -> dict[str, Pairs]:
    return {curve.name: rd_pairs(curve.points) for curve in bundled_result_curves()}


# name: (BD-rate vs x264 in %, plausible range). The figures are this module's, identical to
# the bjontegaard package's (checked below); the ranges are what such codecs are known to do
# against x264 medium/zerolatency on 1080p: x265 about a third fewer bits, VTM low-delay
# about three quarters fewer, CompressAI's re-trained SSF about twice x264's bits in PSNR.
UVG_AGAINST_X264 = {
    "x265-medium-tune-zerolatency": (-34.87, (-45.0, -25.0)),
    "VTM-v15.0-lowdelay": (-73.71, (-85.0, -60.0)),
    "ssf2020-mse-ans-vimeo": (93.77, (50.0, 150.0)),
}


@pytest.mark.parametrize("name", UVG_AGAINST_X264)
def test_bd_rate_of_real_codecs_against_x264(uvg: dict[str, Pairs], name: str) -> None:
    anchor = uvg["x264-medium-tune-zerolatency"]
    figure, (low, high) = UVG_AGAINST_X264[name]
    result = bd_rate(anchor, uvg[name])
    assert low < result < high
    assert result == pytest.approx(figure, abs=0.005)
    assert result == pytest.approx(_bjontegaard(anchor, uvg[name], "rate"), abs=1e-9)


def test_real_curves_report_overlap_warnings(uvg: dict[str, Pairs]) -> None:
    anchor = uvg["x264-medium-tune-zerolatency"]
    assert bd_report(anchor, uvg["x265-medium-tune-zerolatency"]).warning is None
    assert bd_report(anchor, uvg["VTM-v15.0-lowdelay"]).warning is None
    ssf = bd_report(anchor, uvg["ssf2020-mse-ans-vimeo"])
    assert ssf.overlap == pytest.approx(0.619, abs=0.001)
    assert ssf.warning is not None


def test_real_curves_in_ms_ssim_db() -> None:
    curves = {c.name: c for c in bundled_result_curves()}
    anchor = rd_pairs(curves["x264-medium-tune-zerolatency"].points, quality="ms_ssim")
    for name, sign in [("x265-medium-tune-zerolatency", -1), ("VTM-v15.0-lowdelay", -1)]:
        result = bd_rate(anchor, rd_pairs(curves[name].points, quality="ms_ssim"))
        assert math.copysign(1, result) == sign


def test_every_pair_of_real_curves_is_consistent(uvg: dict[str, Pairs]) -> None:
    for a, b in itertools.permutations(uvg, 2):
        forward, backward = bd_rate(uvg[a], uvg[b]), bd_rate(uvg[b], uvg[a])
        assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1.0, rel=1e-9)
