"""What the page is told instead of keeping its own copy of a server rule: the statuses, the
ranked and quality metrics with their labels and units, the rate units, the BD-rate rules
(minimum points, the overlap threshold, why a curve has no BD-rate) and the snapshot
sections' labels.

Served as `GET /api/v1/vocabulary` and written as `vocabulary.json` beside a static
export's page (and the AWS site's). Built from the modules that own each rule, so it
changes only with the package: its ETag is the body's hash, and it may be cached for long.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Final

import orjson

from codecdash import __version__
from codecdash.codec_metrics import MIN_POINTS, OVERLAP_WARNING_THRESHOLD
from codecdash.experiments.vocabulary import (
    FINISHED,
    QUALITY_FIELDS,
    QUALITY_LABELS,
    RANKED,
    RATE_FIELDS,
    RATE_LABELS,
    STATUS_LABELS,
    STATUSES,
)
from codecdash.sources.base import SECTION_LABELS

VOCABULARY_NAME: Final = "vocabulary.json"
CACHE_CONTROL: Final = "max-age=86400"
"""A day: the vocabulary changes only with the package (a new ETag then)."""

BD_RATE_REASONS: Final = {
    "no_points": "no rate-distortion points",
    "no_unit": "rates in no unit",
    "unit_mismatch": "rates in {unit}, the anchor's in {anchor_unit}",
    "too_few_points": "fewer than {min_points} points with {quality}",
    "anchor_too_few_points": "the anchor has fewer than {min_points} points with {quality}",
    "no_overlap": "no quality range in common with the anchor",
    "not_stored": "no BD-rate stored",
    "no_answer": "no BD-rate",
}
"""Why an experiment has no BD-rate against an anchor, as the page says it ({…}: filled in)."""

OVERLAP_WARNING_TEXT: Final = (
    "Overlap {overlap} % of the quality range (under {threshold} %): "
    "the BD-rate covers that part only"
)


@functools.cache
def vocabulary() -> dict[str, Any]:
    """The vocabulary document (the same object on every call: do not change it)."""
    return {
        "version": __version__,
        "statuses": [
            {"name": s, "label": STATUS_LABELS[s], "finished": s in FINISHED} for s in STATUSES
        ],
        "metrics": [
            {
                "name": m.name,
                "label": m.label,
                "unit": m.unit,
                "larger_is_better": m.larger_is_better,
            }
            for m in RANKED.values()
        ],
        "quality_metrics": [
            {
                "name": name,
                "field": field,
                "label": QUALITY_LABELS[name],
                # The rate-distortion chart's y axis: PSNR as it is, MS-SSIM as -10·log10(1 - x).
                "unit": "dB",
                "axis_label": f"{QUALITY_LABELS[name]} (dB)",
            }
            for name, field in QUALITY_FIELDS.items()
        ],
        # In order: a point's rate is the first of these fields it has.
        "rate_units": [
            {"name": unit, "field": field, "label": RATE_LABELS[unit]}
            for field, unit in RATE_FIELDS
        ],
        "bd_rate": {
            "min_points": MIN_POINTS,
            "overlap_warning": OVERLAP_WARNING_THRESHOLD,
            "overlap_warning_text": OVERLAP_WARNING_TEXT,
            "reasons": dict(BD_RATE_REASONS),
        },
        "sections": [{"name": name, "label": label} for name, label in SECTION_LABELS.items()],
    }


@functools.cache
def vocabulary_body() -> tuple[bytes, str]:
    """The vocabulary as JSON, and its ETag."""
    body = orjson.dumps(vocabulary())
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'
