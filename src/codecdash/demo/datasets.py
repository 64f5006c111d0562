"""The demo's test sets: two video sets, each with its anchors, a λ-sweep method and
whole-curve experiments, as codec papers report them.

- **UVG-1080p**, from the published results shipped with codecdash (CompressAI's
  `results/video/UVG-1080p`): the x264, x265 and VTM anchors; the λ sweep
  `ssf2020-mse-ans-vimeo`, one experiment per trained model (λ), one R-D point each, as
  CompressAI evaluated them; and `ssf2020-from-authors`, one experiment with the whole curve
  its authors reported. The campaign's experiments are on this set too.
- **MCL-JCV**, *modelled* (no published MCL-JCV file is shipped): every UVG-1080p curve with
  its rates times `MCL_RATE_SCALE` and its PSNR plus `MCL_PSNR_SHIFT_DB` (MCL-JCV's 30
  sequences need more bits than UVG's seven at one quality), the learned codec's rates also
  times `MCL_LEARNED_SCALE` (trained on Vimeo-90k, it generalises less to MCL-JCV's cartoons
  and film grain). Descriptions, names, params and tags say "modelled".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from codecdash.demo.rd_model import OPERATING_KBPS, interpolate
from codecdash.results import ResultCurve, bundled_result_curves

UVG: Final = "UVG-1080p"
MCL: Final = "MCL-JCV"
DATASETS: Final = (UVG, MCL)
ANCHOR_NAMES: Final = (
    "x264-medium-tune-zerolatency",
    "x265-medium-tune-zerolatency",
    "VTM-v15.0-lowdelay",
)
SWEEP: Final = "ssf2020-mse-ans-vimeo"
"""The λ-sweep method: CompressAI's ssf2020 models, one per quality (λ)."""
WHOLE_CURVE: Final = "ssf2020-from-authors"
LAMBDAS: Final = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932)
"""CompressAI's ssf2020 MSE λ of qualities 1-7."""
MCL_RATE_SCALE: Final = 1.35
MCL_PSNR_SHIFT_DB: Final = -0.6
MCL_LEARNED_SCALE: Final = 1.08
MODELLED: Final = "modelled from the published UVG-1080p result (not measured on MCL-JCV)"
ID_PREFIX: Final = {UVG: "uvg1080p", MCL: "mcljcv"}


@dataclass(frozen=True)
class SetAnchor:
    dataset: str
    name: str
    description: str
    rd_points: list[dict[str, Any]]


def anchors() -> list[SetAnchor]:
    """Each set's anchors, x264 first (the anchor in force unless configured otherwise)."""
    curves = _curves()
    out = []
    for dataset in DATASETS:
        for name in ANCHOR_NAMES:
            curve = curves[name]
            description = curve.description
            if dataset == MCL:
                description = f"{description}; {MODELLED}"
            out.append(SetAnchor(dataset, name, description, _points(curve, dataset)))
    return out


def experiments(stamp: Callable[[float], datetime]) -> list[dict[str, Any]]:
    """The sets' experiments as the API takes them, finished at campaign times (seconds)
    given to `stamp`: the λ sweep's seven runs and the whole-curve experiment, per set.

    A λ run carries only its point; a whole curve also the quality it reaches at 3 Mbit/s
    (`psnr_db`, `bitrate_kbps`), as the campaign's experiments report it."""
    curves = _curves()
    docs: list[dict[str, Any]] = []
    for dataset in DATASETS:
        prefix = ID_PREFIX[dataset]
        modelled = dataset == MCL
        sweep = curves[SWEEP]
        ordered = sorted(_points(sweep, dataset), key=lambda p: p["bitrate_kbps"])
        for quality, (lam, point) in enumerate(zip(LAMBDAS, ordered, strict=True), start=1):
            docs.append(
                _doc(
                    f"{prefix}.{SWEEP}.q{quality}",
                    f"{SWEEP} quality {quality} (λ={lam})" + (" · modelled" if modelled else ""),
                    dataset,
                    SWEEP,
                    [point],
                    {"lambda": lam, "quality": quality, "source": _source(sweep, modelled)},
                    ["lambda-sweep", "ssf2020", *(["modelled"] if modelled else [])],
                    stamp(60.0 * quality),
                )
            )
        whole = curves[WHOLE_CURVE]
        docs.append(
            _doc(
                f"{prefix}.{WHOLE_CURVE}",
                WHOLE_CURVE + (" · modelled" if modelled else ""),
                dataset,
                None,
                _points(whole, dataset),
                {"source": _source(whole, modelled)},
                ["whole-curve", "ssf2020", *(["modelled"] if modelled else [])],
                stamp(600.0),
            )
        )
    return docs


def _curves() -> dict[str, ResultCurve]:
    return {curve.name: curve for curve in bundled_result_curves(UVG)}


def _points(curve: ResultCurve, dataset: str) -> list[dict[str, Any]]:
    points = [{k: v for k, v in p.items() if v is not None} for p in curve.points]
    if dataset == UVG:
        return points
    scale = MCL_RATE_SCALE * (MCL_LEARNED_SCALE if curve.name.startswith("ssf") else 1.0)
    return [
        {
            **p,
            "bitrate_kbps": round(float(p["bitrate_kbps"]) * scale, 1),
            "psnr_db": round(float(p["psnr_db"]) + MCL_PSNR_SHIFT_DB, 3),
        }
        for p in points
    ]


def _source(curve: ResultCurve, modelled: bool) -> str:
    published = f"CompressAI results/video/UVG-1080p/{curve.name}.json"
    return f"{published}, {MODELLED}" if modelled else published


def _doc(
    experiment_id: str,
    name: str,
    dataset: str,
    method: str | None,
    points: list[dict[str, Any]],
    params: Mapping[str, Any],
    tags: list[str],
    at: datetime,
) -> dict[str, Any]:
    doc = {
        "id": experiment_id,
        "name": name,
        "status": "completed",
        "created_at": at,
        "started_at": at,
        "finished_at": at,
        "dataset": dataset,
        "method": method,
        "params": dict(params),
        "tags": tags,
        "rd_points": points,
    }
    if len(points) > 1:  # quality at 3 Mbit/s, as the campaign's experiments report it
        pairs = sorted((math.log10(p["bitrate_kbps"]), p["psnr_db"]) for p in points)
        doc["psnr_db"] = round(interpolate(pairs, math.log10(OPERATING_KBPS)), 3)
        doc["bitrate_kbps"] = OPERATING_KBPS
    return doc
