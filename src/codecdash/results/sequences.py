"""Per-sequence result files: which experiment they belong to, and the set's average of them.

CompressAI's video `eval_model` writes one file per sequence and model, named
`{sequence}-{model}.json` and naming its sequence in `source` (e.g.
`Beauty_1920x1080_120fps_420_8bit_YUV`). The files of one model (`{model}`) are one
experiment: its points carry their `sequence` (shortened to `Beauty`), and where no file gives
the set's average, the average is made as CompressAI's own aggregation makes it: the plain mean
of each value over the sequences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

from codecdash.results.reader import ResultCurve

_SIZE_SUFFIX = re.compile(r"^(?P<name>.+?)[-_]\d+x\d+(?:[-_].*)?$")
_SEPARATORS = "-_. "
MAX_SEQUENCE_CHARS = 200


def sequence_name(source: str) -> str:
    """The sequence's short name: `Beauty_1920x1080_120fps_420_8bit_YUV` -> `Beauty`; a name
    without a `_<width>x<height>` part stays as it is."""
    match = _SIZE_SUFFIX.match(source.strip())
    name = match.group("name") if match else source.strip()
    return name[:MAX_SEQUENCE_CHARS]


def experiment_stem(path: Path, curve: ResultCurve) -> str:
    """The part of the file's name that names the experiment: for a per-sequence file named
    `{sequence}-{model}.json`, the `{model}`; else the whole stem."""
    stem = path.stem
    if curve.sequence is None:
        return stem
    for prefix in (curve.sequence, sequence_name(curve.sequence)):
        if stem.startswith(prefix) and len(stem) > len(prefix) and stem[len(prefix)] in _SEPARATORS:
            rest = stem[len(prefix) :].lstrip(_SEPARATORS)
            if rest:
                return rest
    return stem


def curve_points(curve: ResultCurve) -> list[dict[str, Any]]:
    """The curve's points as `rd_points` items (nulls left out, `sequence` set if it has one)."""
    extra = {} if curve.sequence is None else {"sequence": sequence_name(curve.sequence)}
    return [{**{k: v for k, v in p.items() if v is not None}, **extra} for p in curve.points]


def check_alike(paths: Sequence[Path], curves: Sequence[ResultCurve]) -> None:
    """ValueError unless the curves of one experiment share a rate unit and a quality."""
    first = curves[0]
    for curve in curves[1:]:
        if curve.rate_unit != first.rate_unit:
            raise ValueError(
                f"rates in {curve.rate_unit} but {paths[0].name} has them in {first.rate_unit}"
            )
        if curve.quality != first.quality:
            raise ValueError(
                f"quality is {curve.quality_label} but {paths[0].name} has {first.quality_label}"
            )


def merged_points(curves: Sequence[ResultCurve]) -> tuple[list[dict[str, Any]], int]:
    """The points of one experiment's files, and how many sequences an added average is of
    (0: none added).

    An average is added when every file is one sequence's single point; a sequence given
    twice is a ValueError.
    """
    points = [point for curve in curves for point in curve_points(curve)]
    named = [p for p in points if "sequence" in p]
    seen: set[str] = set()
    for point in named:
        if point["sequence"] in seen and all(c.single for c in curves):
            raise ValueError(f"sequence {point['sequence']!r} is given twice")
        seen.add(point["sequence"])
    if not named or len(named) != len(points) or not all(c.single for c in curves):
        return points, 0
    return [average_point(named), *points], len(named)


def average_point(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The plain mean of each value over `points` (MS-SSIM only where every point has it)."""
    out: dict[str, Any] = {}
    for key in ("bitrate_kbps", "bpp", "psnr_db", "ms_ssim"):
        values = [p.get(key) for p in points]
        if all(v is not None for v in values):
            out[key] = fmean(float(v) for v in values if v is not None)
    return out
