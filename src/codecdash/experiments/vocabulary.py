"""The experiments' vocabulary: statuses, the ranked metrics, rate units, the BD-rate sign
and the settings that choose the headline metrics.

Everything that names a status or a ranked metric (the store's summaries, the read
model, the API's checks) reads it here. Pure: no I/O, no store, fit for
the Lambda functions and the sources alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

# -- statuses ---------------------------------------------------------------------------
ExperimentStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
STATUSES: Final[tuple[ExperimentStatus, ...]] = get_args(ExperimentStatus)
STATUS_LABELS: Final[Mapping[ExperimentStatus, str]] = {s: s.capitalize() for s in STATUSES}
FINISHED: Final = frozenset({"completed", "failed", "cancelled"})
"""Statuses that end an experiment: the server dates `finished_at` when it is not given."""


# -- ranked metrics -----------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A result that experiments are ranked by ("best first")."""

    name: str
    """The Experiment field."""
    larger_is_better: bool
    unit: str
    label: str

    def better(self, new: float, old: float) -> bool:
        """Whether `new` ranks strictly before `old`."""
        return new > old if self.larger_is_better else new < old


RANKED: Final[Mapping[str, Metric]] = {
    m.name: m
    for m in (
        Metric("bitrate_reduction_pct", True, "%", "Bitrate saving"),
        Metric("psnr_db", True, "dB", "PSNR"),
        Metric("ms_ssim", True, "", "MS-SSIM"),
        Metric("bd_rate_pct", False, "%", "BD-rate"),
    )
}
LARGER_IS_BETTER: Final[Mapping[str, bool]] = {m.name: m.larger_is_better for m in RANKED.values()}
"""Each ranked metric's direction, by name."""

# -- the headline metrics, as the settings choose them ----------------------------------------
CompressionMetric = Literal["reported", "bd_rate"]
"""`compression_metric`: the reported `bitrate_reduction_pct`, or the derived BD-rate."""
QualityMetric = Literal["psnr", "ms_ssim"]
"""`quality_metric`: the quality headline, and the axis BD-rates are derived on."""
COMPRESSION_FIELDS: Final[Mapping[CompressionMetric, str]] = {
    "reported": "bitrate_reduction_pct",
    "bd_rate": "bd_rate_pct",
}
QUALITY_FIELDS: Final[Mapping[QualityMetric, str]] = {"psnr": "psnr_db", "ms_ssim": "ms_ssim"}
QUALITY_LABELS: Final[Mapping[QualityMetric, str]] = {"psnr": "PSNR", "ms_ssim": "MS-SSIM"}


def saving_pct(metric: str, value: float) -> float:
    """A compression figure as the bitrate saved, in % (larger = better).

    A BD-rate is negative when the experiment needs fewer bits than the anchor for the
    same quality (the Bjøntegaard convention), so the saving it stands for is its negation;
    a reported `bitrate_reduction_pct` is a saving already.
    """
    return -value if metric == "bd_rate_pct" else value


# -- rate units ---------------------------------------------------------------------------
RateUnit = Literal["kbps", "bpp"]
RATE_FIELDS: Final[tuple[tuple[str, RateUnit], ...]] = (("bitrate_kbps", "kbps"), ("bpp", "bpp"))
"""A rate-distortion point's rate: its `bitrate_kbps` (video), else its `bpp` (image)."""
RATE_LABELS: Final[Mapping[RateUnit, str]] = {"kbps": "kbps", "bpp": "bits per pixel"}


def point_rate(point: Mapping[str, Any], index: int = 0) -> tuple[float, RateUnit]:
    """The point's rate and its unit; ValueError when it has none."""
    for key, unit in RATE_FIELDS:
        value = point.get(key)
        if value is not None:
            return value, unit
    raise ValueError(f"rd_points[{index}] has neither 'bitrate_kbps' nor 'bpp'")


def rate_unit(points: Sequence[Mapping[str, Any]]) -> RateUnit:
    """The one rate unit of a curve's points; ValueError if it is missing or mixed (a BD-rate
    compares two curves in one unit)."""
    units = {point_rate(point, index)[1] for index, point in enumerate(points)}
    if len(units) != 1:
        raise ValueError(
            "rd_points mix 'bitrate_kbps' and 'bpp'" if units else "rd_points are empty"
        )
    return units.pop()


def average_points(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The test set's average points of a curve: those without a `sequence` (per-sequence
    results sit beside them and never enter a BD-rate against the set's anchor)."""
    return [point for point in points if point.get("sequence") is None]
