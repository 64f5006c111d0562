"""Reader of the rate-distortion result files codec tools write (CompressAI's and their variants).

Three shapes are read alike:

- CompressAI's result files: `{"name", "description", "results": {...}}`, the results holding
  equally long lists (`results/image/kodak/vtm.json`, `results/video/UVG-1080p/*.json`);
- the same keys flat, without the `results` wrapper ("bare" evaluation output, as CompressAI's
  video bench and `eval_model` printed and wrote it: `bpp`, `rgb_psnr`, `y_psnr`, `u_psnr`,
  `v_psnr`, `ms-ssim`, `qp` at the top level);
- per-sequence files: one number per key instead of lists (one R-D point), with the sequence
  named by `source` (CompressAI's video `eval_model`) or `sequence`.

The rate is `bitrate` (kbps, video) or `bpp` (image). The quality is chosen as CompressAI's own
plots do, RGB PSNR where the file has it (`psnr-rgb`, `rgb_psnr`, or `psnr` in older image
files), else YUV PSNR weighted 6:1:1, `(6·Y + U + V) / 8` as JVET's common test conditions do
(from `psnr-y`, `psnr-u`, `psnr-v` or `y_psnr`, `u_psnr`, `v_psnr`), else the file's own
`psnr-yuv` (CompressAI weights it 4:1:1), else Y PSNR. MS-SSIM is `ms-ssim-rgb`, `ms-ssim` or
`msssim`. Other keys (`qp`, `q`, timings…) are ignored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from codecdash.experiments.vocabulary import RATE_FIELDS, RateUnit

RDPoint = dict[str, float | None]
"""One entry of an Experiment's `rd_points`: bitrate_kbps or bpp, psnr_db, ms_ssim."""

Quality = Literal["rgb", "yuv-6:1:1", "yuv", "y"]
"""Which PSNR a curve's `psnr_db` is."""

RATE_KEYS: Final[tuple[tuple[str, str, RateUnit], ...]] = (
    ("bitrate", *RATE_FIELDS[0]),
    ("bpp", *RATE_FIELDS[1]),
)
"""(file key, rd_points key, unit), in order of preference."""
RGB_PSNR_KEYS: Final = ("psnr-rgb", "rgb_psnr", "psnr")
YUV_COMPONENT_KEYS: Final = (("psnr-y", "psnr-u", "psnr-v"), ("y_psnr", "u_psnr", "v_psnr"))
YUV_PSNR_KEYS: Final = ("psnr-yuv", "yuv_psnr")
Y_PSNR_KEYS: Final = ("psnr-y", "y_psnr")
PSNR_KEYS: Final = ("psnr-rgb", "psnr", "psnr-yuv")
"""The single-key PSNRs of CompressAI's wrapped files (kept for callers; see `PSNR_CHOICES`)."""
PSNR_CHOICES: Final = (*RGB_PSNR_KEYS, "psnr-y, -u, -v", *YUV_PSNR_KEYS, *Y_PSNR_KEYS)
"""Every PSNR a file may give, for error messages."""
MS_SSIM_KEYS: Final = ("ms-ssim-rgb", "ms-ssim", "msssim")
SEQUENCE_KEYS: Final = ("sequence", "source")
YUV_WEIGHTS: Final = (6.0, 1.0, 1.0)
"""JVET common test conditions: PSNR_YUV = (6·PSNR_Y + PSNR_U + PSNR_V) / 8."""

QUALITY_LABELS: Final[dict[Quality, str]] = {
    "rgb": "RGB PSNR",
    "yuv-6:1:1": "YUV PSNR, (6Y+U+V)/8",
    "yuv": "YUV PSNR as the file weights it",
    "y": "Y PSNR",
}


@dataclass(frozen=True)
class ResultCurve:
    name: str
    description: str
    rate_unit: RateUnit
    quality_key: str
    """The file's key the PSNR values came from, e.g. "psnr-rgb" (for 6:1:1, the three keys
    joined by "+", e.g. "psnr-y+psnr-u+psnr-v")."""
    points: list[RDPoint]
    """In file order, each `{"bitrate_kbps" or "bpp", "psnr_db", "ms_ssim"}`."""
    ms_ssim_key: str | None = None
    quality: Quality = "rgb"
    """Which PSNR `psnr_db` is: RGB, YUV 6:1:1, the file's own YUV, or Y."""
    sequence: str | None = None
    """The sequence (or image) these are the results of; None for a set's average."""
    dataset: str | None = None
    """The test set the file says it was measured on (`dataset`, or `meta.dataset`)."""
    single: bool = False
    """The file held one number per key (one point), not lists."""

    @property
    def quality_label(self) -> str:
        return QUALITY_LABELS[self.quality]


def read_result_file(path: str | os.PathLike[str]) -> ResultCurve:
    """Read one result file; the name defaults to the file's stem.

    Raises ValueError naming the file for anything malformed, OSError where it cannot be read.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason})") from None
    return parse_text(text, default_name=file.stem, source=str(file))


def parse_text(text: str, *, default_name: str, source: str) -> ResultCurve:
    """Decode and read a result file's text; ValueError prefixed by `source`."""
    if not text.strip():
        raise ValueError(f"{source}: the file is empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
        ) from None
    return parse_results(obj, default_name, source=source)


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
    sequence = next((_text_field(obj, k, where) for k in SEQUENCE_KEYS if obj.get(k)), "")
    dataset = _dataset_field(obj, where)

    rate_key, point_rate_key, rate_unit = _rate_keys(results, where)
    quality, psnr_keys = _psnr_keys(results, where)
    ms_ssim_key = _first_key(results, MS_SSIM_KEYS)

    used = [rate_key, *psnr_keys, *([ms_ssim_key] if ms_ssim_key else [])]
    single = _all_single(results, used, where)
    rates = _series(results, rate_key, where, single=single)
    components = [_series(results, key, where, single=single) for key in psnr_keys]
    ms_ssims = (
        _series(results, ms_ssim_key, where, nullable=True, single=single) if ms_ssim_key else None
    )

    lengths = {
        rate_key: len(rates),
        **{k: len(v) for k, v in zip(psnr_keys, components, strict=True)},
    }
    if ms_ssim_key and ms_ssims is not None:
        lengths[ms_ssim_key] = len(ms_ssims)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key!r} has {n}" for key, n in lengths.items())
        raise ValueError(f"{where}: the result lists differ in length: {listed}")
    if not rates:
        raise ValueError(f"{where}: the results hold no points")
    for index, rate in enumerate(rates):
        if rate is None or rate <= 0:
            label = repr(rate_key) if single else f"{rate_key!r}[{index}]"
            raise ValueError(f"{where}: {label} must be positive, got {rate!r}")

    psnrs = components[0] if len(components) == 1 else _weighted_yuv(components)
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
        quality_key="+".join(psnr_keys),
        points=points,
        ms_ssim_key=ms_ssim_key,
        quality=quality,
        sequence=sequence or None,
        dataset=dataset,
        single=single,
    )


def _weighted_yuv(components: list[list[float | None]]) -> list[float | None]:
    total = sum(YUV_WEIGHTS)
    out: list[float | None] = []
    for values in zip(*components, strict=True):
        numbers = [v for v in values if v is not None]
        out.append(
            sum(w * v for w, v in zip(YUV_WEIGHTS, numbers, strict=True)) / total
            if len(numbers) == len(values)
            else None
        )
    return out


def _text_field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def _dataset_field(obj: Mapping[str, Any], where: str) -> str | None:
    meta = obj.get("meta")
    for holder, label in ((obj, "dataset"), (meta, "meta.dataset")):
        if not isinstance(holder, Mapping) or holder.get("dataset") is None:
            continue
        value = holder["dataset"]
        if not isinstance(value, str):
            raise ValueError(f"{where}: {label!r} must be a string, got {type(value).__name__}")
        if value.strip():
            return value.strip()
    return None


def _first_key(results: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    return next((key for key in keys if key in results), None)


def _rate_keys(results: Mapping[str, Any], where: str) -> tuple[str, str, RateUnit]:
    for keys in RATE_KEYS:
        if keys[0] in results:
            return keys
    raise ValueError(f"{where}: no rate: expected 'bitrate' (kbps) or 'bpp'")


def _psnr_keys(results: Mapping[str, Any], where: str) -> tuple[Quality, tuple[str, ...]]:
    """Which PSNR to read, and from which keys: RGB, else YUV 6:1:1, else YUV, else Y."""
    rgb = _first_key(results, RGB_PSNR_KEYS)
    if rgb is not None:
        return "rgb", (rgb,)
    for keys in YUV_COMPONENT_KEYS:
        if all(key in results for key in keys):
            return "yuv-6:1:1", keys
    yuv = _first_key(results, YUV_PSNR_KEYS)
    if yuv is not None:
        return "yuv", (yuv,)
    y = _first_key(results, Y_PSNR_KEYS)
    if y is not None:
        return "y", (y,)
    raise ValueError(f"{where}: no PSNR: expected one of {', '.join(map(repr, PSNR_CHOICES))}")


def _all_single(results: Mapping[str, Any], keys: list[str], where: str) -> bool:
    """True when every used key holds one number (a one-point file), False for all lists."""
    lists = [key for key in keys if isinstance(results[key], list)]
    if not lists or len(lists) == len(keys):
        return not lists
    one = next(key for key in keys if key not in lists)
    raise ValueError(
        f"{where}: {one!r} must be a list like {lists[0]!r} "
        "(or every value one number, for one point)"
    )


def _series(
    results: Mapping[str, Any],
    key: str,
    where: str,
    *,
    nullable: bool = False,
    single: bool = False,
) -> list[float | None]:
    raw = results[key]
    values: list[Any] = [raw] if single else raw
    series: list[float | None] = []
    for index, value in enumerate(values):
        label = repr(key) if single else f"{key!r}[{index}]"
        if value is None and nullable:
            series.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {label} is not a number: {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"{where}: {label} is not finite: {value!r}")
        series.append(number)
    return series
