"""The published curves shipped with codecdash, and R-D points as pairs for the BD functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final

from codecdash.codec_metrics import ms_ssim_db
from codecdash.experiments import vocabulary
from codecdash.experiments.vocabulary import QualityMetric
from codecdash.results.reader import ResultCurve, parse_text

BUNDLED_DATASET: Final = "UVG-1080p"


def bundled_result_curves(dataset: str = BUNDLED_DATASET) -> list[ResultCurve]:
    """The published curves shipped in `codecdash/data/rd-results/<dataset>/`, by file name."""
    folder = resources.files("codecdash") / "data" / "rd-results" / dataset
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    source = f"codecdash/data/rd-results/{dataset}"
    return [
        parse_text(
            entry.read_text(encoding="utf-8-sig"),
            default_name=entry.name.removesuffix(".json"),
            source=f"{source}/{entry.name}",
        )
        for entry in files
    ]


def rd_pairs(
    points: Sequence[Mapping[str, Any]], quality: QualityMetric = "psnr"
) -> list[tuple[float, float]]:
    """`rd_points` as (rate, quality_db) pairs for `bd_rate`, MS-SSIM converted to dB.

    Points without the chosen quality (null or absent) are left out; the BD functions then
    raise if fewer than four remain. Raises ValueError for mixed rate units and for MS-SSIM
    values of 1 or more.
    """
    if quality not in ("psnr", "ms_ssim"):
        raise ValueError(f"quality must be 'psnr' or 'ms_ssim', got {quality!r}")
    if points:
        vocabulary.rate_unit(points)  # rejects mixed units
    pairs: list[tuple[float, float]] = []
    for index, point in enumerate(points):
        rate, _ = vocabulary.point_rate(point, index)
        if quality == "psnr":
            value = point.get("psnr_db")
            if value is not None:
                pairs.append((rate, value))
        else:
            value = point.get("ms_ssim")
            if value is not None:
                pairs.append((rate, ms_ssim_db(value)))
    return pairs
