"""Reader of rate-distortion result files in CompressAI's JSON format and its variants.

A file is `{"name", "description", "results": {...}}`, or the same keys flat, where the
results hold equally long lists: the rate as `bitrate` (kbps, video) or `bpp` (image), the
quality as `psnr-rgb`, `psnr` or `psnr-yuv` (the first present wins) and, where present,
`ms-ssim-rgb` or `ms-ssim`. Other lists (`qp`, `psnr-y`, timings…) are ignored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from codecdash.codec_metrics import ms_ssim_db
from codecdash.experiments import vocabulary
from codecdash.experiments.vocabulary import RATE_FIELDS, QualityMetric, RateUnit

RDPoint = dict[str, float | None]
"""One entry of an Experiment's `rd_points`: bitrate_kbps or bpp, psnr_db, ms_ssim."""

RATE_KEYS: Final[tuple[tuple[str, str, RateUnit], ...]] = (
    ("bitrate", *RATE_FIELDS[0]),
    ("bpp", *RATE_FIELDS[1]),
)
"""(file key, rd_points key, unit), in order of preference."""
PSNR_KEYS: Final = ("psnr-rgb", "psnr", "psnr-yuv")
MS_SSIM_KEYS: Final = ("ms-ssim-rgb", "ms-ssim")
BUNDLED_DATASET: Final = "UVG-1080p"


@dataclass(frozen=True)
class ResultCurve:
    name: str
    description: str
    rate_unit: RateUnit
    quality_key: str
    """The file's key the PSNR values came from, e.g. "psnr-rgb"."""
    points: list[RDPoint]
    """In file order, each `{"bitrate_kbps" or "bpp", "psnr_db", "ms_ssim"}`."""
    ms_ssim_key: str | None = None


def read_result_file(path: str | os.PathLike[str]) -> ResultCurve:
    """Read one result file; the name defaults to the file's stem.

    Raises ValueError naming the file for anything malformed, OSError where it cannot be read.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason})") from None
    return _parse_text(text, default_name=file.stem, source=str(file))


def parse_results(
    obj: Mapping[str, Any], default_name: str, *, source: str | None = None
) -> ResultCurve:
    """Turn a decoded result file into a curve; `source` (default: the name) prefixes errors."""
    where = source or default_name
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    results = obj.get("results", obj)
    if not isinstance(results, Mapping):
        raise ValueError(f"{where}: 'results' must be an object, got {type(results).__name__}")

    name = _text_field(obj, "name", where) or default_name
    description = _text_field(obj, "description", where)

    rate_key, point_rate_key, rate_unit = _rate_keys(results, where)
    quality_key = _first_key(results, PSNR_KEYS)
    if quality_key is None:
        raise ValueError(f"{where}: no PSNR: expected {', '.join(map(repr, PSNR_KEYS))}")
    ms_ssim_key = _first_key(results, MS_SSIM_KEYS)

    rates = _series(results, rate_key, where)
    psnrs = _series(results, quality_key, where)
    ms_ssims = _series(results, ms_ssim_key, where, nullable=True) if ms_ssim_key else None

    lengths = {rate_key: len(rates), quality_key: len(psnrs)}
    if ms_ssim_key and ms_ssims is not None:
        lengths[ms_ssim_key] = len(ms_ssims)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key!r} has {n}" for key, n in lengths.items())
        raise ValueError(f"{where}: the result lists differ in length: {listed}")
    if not rates:
        raise ValueError(f"{where}: the results hold no points")
    for index, rate in enumerate(rates):
        if rate is None or rate <= 0:
            raise ValueError(f"{where}: {rate_key!r}[{index}] must be positive, got {rate!r}")

    points: list[RDPoint] = [
        {
            point_rate_key: rate,
            "psnr_db": psnr,
            "ms_ssim": ms_ssims[index] if ms_ssims is not None else None,
        }
        for index, (rate, psnr) in enumerate(zip(rates, psnrs, strict=True))
    ]
    return ResultCurve(
        name=name,
        description=description,
        rate_unit=rate_unit,
        quality_key=quality_key,
        points=points,
        ms_ssim_key=ms_ssim_key,
    )


def bundled_result_curves(dataset: str = BUNDLED_DATASET) -> list[ResultCurve]:
    """The published curves shipped in `codecdash/data/rd-results/<dataset>/`, by file name."""
    folder = resources.files("codecdash") / "data" / "rd-results" / dataset
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".json")),
        key=lambda entry: entry.name,
    )
    source = f"codecdash/data/rd-results/{dataset}"
    return [
        _parse_text(
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


def _parse_text(text: str, *, default_name: str, source: str) -> ResultCurve:
    if not text.strip():
        raise ValueError(f"{source}: the file is empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    return parse_results(obj, default_name, source=source)


def _text_field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def _first_key(results: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    return next((key for key in keys if key in results), None)


def _rate_keys(results: Mapping[str, Any], where: str) -> tuple[str, str, RateUnit]:
    for keys in RATE_KEYS:
        if keys[0] in results:
            return keys
    raise ValueError(f"{where}: no rate: expected 'bitrate' (kbps) or 'bpp'")


def _series(
    results: Mapping[str, Any], key: str, where: str, *, nullable: bool = False
) -> list[float | None]:
    values = results[key]
    if not isinstance(values, list):
        raise ValueError(f"{where}: {key!r} must be a list, got {type(values).__name__}")
    series: list[float | None] = []
    for index, value in enumerate(values):
        if value is None and nullable:
            series.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {key!r}[{index}] is not a number: {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"{where}: {key!r}[{index}] is not finite: {value!r}")
        series.append(number)
    return series
