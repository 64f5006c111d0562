"""The rate-distortion model of the demo, from the published UVG 1080p results bundled with
codecdash.

Every experiment is a variant of the learned codec ssf2020 (Agustsson et al. 2020, its
authors' curve) whose rates are all multiplied by a scale ``s``: the curve moves left, quality
unchanged. Its BD-rate against x264 is then ``(1 + B0)·s - 1``, with B0 = +36.7 % (ssf2020
needs more bits than x264 medium/zerolatency on UVG; VTM needs 73.7 % fewer). ``psnr_db`` and
``ms_ssim`` are read off the experiment's curve at 3 Mbit/s (VTM gives 35.0 dB there, the 35 dB
target); MS-SSIM comes from PSNR through the relation of the published ssf2020-mse-ans-vimeo
curve.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from codecdash.codec_metrics import bd_rate, ms_ssim_db
from codecdash.results import bundled_result_curves, rd_pairs

X264: Final = "x264-medium-tune-zerolatency"
ANCHORS: Final = (X264, "x265-medium-tune-zerolatency", "VTM-v15.0-lowdelay")
"""Stored as anchors in the demo's database; x264 first: the baseline of `bd_rate_pct`."""
LEARNED: Final = "ssf2020-from-authors"
MS_SSIM_REFERENCE: Final = "ssf2020-mse-ans-vimeo"
OPERATING_KBPS: Final = 3000.0


@dataclass(frozen=True)
class RDModel:
    """The published curves the demo is built on."""

    anchors: tuple[tuple[str, str, list[dict[str, Any]]], ...]
    """(name, description, rd_points) of x264, x265 and VTM."""
    base: tuple[tuple[float, float], ...]
    """The learned codec's (kbps, psnr_db), by rate."""
    ssim_ref: tuple[tuple[float, float], ...]
    """(psnr_db, ms_ssim in dB) of the reference learned codec, by PSNR."""
    base_bd_rate_pct: float
    """BD-rate of the learned codec against x264 (+36.7 %)."""

    @classmethod
    def load(cls) -> RDModel:
        curves = {c.name: c for c in bundled_result_curves()}
        missing = [n for n in (*ANCHORS, LEARNED, MS_SSIM_REFERENCE) if n not in curves]
        if missing:
            raise RuntimeError(f"bundled rate-distortion results missing: {', '.join(missing)}")
        anchors = tuple(
            (name, curves[name].description, [dict(p) for p in curves[name].points])
            for name in ANCHORS
        )
        base = sorted(rd_pairs(curves[LEARNED].points))
        ref = curves[MS_SSIM_REFERENCE].points
        ssim = sorted(
            (float(p["psnr_db"]), ms_ssim_db(float(p["ms_ssim"])))
            for p in ref
            if p["psnr_db"] is not None and p["ms_ssim"] is not None
        )
        b0 = bd_rate(rd_pairs(anchors[0][2]), base)
        return cls(anchors, tuple(base), tuple(ssim), b0)

    @functools.cached_property
    def _slopes(self) -> tuple[float, ...]:
        """d ln(rate) / d PSNR of the learned codec at each of its points."""
        base, last = self.base, len(self.base) - 1
        return tuple(
            (math.log(base[min(i + 1, last)][0]) - math.log(base[max(i - 1, 0)][0]))
            / (base[min(i + 1, last)][1] - base[max(i - 1, 0)][1])
            for i in range(len(base))
        )

    def x264_pairs(self) -> list[tuple[float, float]]:
        """The x264 anchor's (kbps, psnr_db): the baseline of `bitrate_reduction_pct`."""
        return rd_pairs(self.anchors[0][2])

    def ms_ssim(self, psnr: float) -> float:
        """MS-SSIM at this PSNR, along the reference learned codec's relation."""
        db = interpolate(self.ssim_ref, psnr)
        return min(0.9999, 1.0 - math.pow(10.0, -db / 10.0))

    def saving_pct(self, scale: float) -> float:
        """% bitrate saved against x264 by the learned codec with rates times `scale`.

        Exact for a uniform rate scale: log-rate moves by log(scale) over the same qualities,
        so the BD-rate is (1 + B0)·scale - 1.
        """
        return -((1.0 + self.base_bd_rate_pct / 100.0) * scale - 1.0) * 100.0

    def result(self, scale: float, rng: random.Random) -> dict[str, Any]:
        """An experiment's results: its curve (the learned codec's, rates times `scale`, with
        measurement noise), the saving against x264, and quality at 3 Mbit/s.

        The saving is computed for the curve's mean rate scale: the geometric mean of the
        per-point scales, each PSNR deviation turned into a rate factor by the curve's local
        slope (first order). Not with PCHIP from the noisy points: it agrees with the server's
        `bd_rate_pct` to about 0.3 points and costs microseconds instead of milliseconds, which
        keeps a 30-day history fast.
        """
        points = []
        log_scales = []
        for (kbps, psnr), slope in zip(self.base, self._slopes, strict=True):
            point_scale = scale * (1.0 + rng.gauss(0.0, 0.005))
            q = psnr + rng.gauss(0.0, 0.02)
            log_scales.append(math.log(point_scale) - slope * (q - psnr))
            points.append(
                {
                    "bitrate_kbps": round(kbps * point_scale, 1),
                    "psnr_db": round(q, 3),
                    "ms_ssim": round(self.ms_ssim(q), 5),
                }
            )
        mean_scale = math.exp(sum(log_scales) / len(log_scales))
        pairs = sorted((math.log10(p["bitrate_kbps"]), p["psnr_db"]) for p in points)
        psnr = interpolate(pairs, math.log10(OPERATING_KBPS))
        return {
            "bitrate_reduction_pct": round(self.saving_pct(mean_scale), 2),
            "psnr_db": round(psnr, 3),
            "ms_ssim": round(self.ms_ssim(psnr), 5),
            "bitrate_kbps": OPERATING_KBPS,
            "rd_points": points,
        }


def interpolate(xy: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear y(x), extended linearly past both ends; `xy` sorted by x."""
    xs = [p[0] for p in xy]
    i = min(max(bisect.bisect_left(xs, x), 1), len(xy) - 1)
    (x0, y0), (x1, y1) = xy[i - 1], xy[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
