"""The rules of training-curve data, shared by the server and the SDK (no dependencies:
`import codecdash` stays light in a training script).

A *point* is one (step, metric, value): a training step that logs loss, bpp, psnr_db and
lr sends four points. Values are floats; NaN and the infinities travel as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JSON has no such numbers).
"""

from __future__ import annotations

import math
from typing import Final

METRIC_NAME_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_./\-]{0,99}$"
METRIC_NAME_RULE: Final = (
    "a letter, digit or _ then up to 99 letters, digits, _ . - or / (e.g. loss, val/psnr_db)"
)
MAX_VALUES_PER_POINT: Final = 100
MAX_POINTS_PER_REQUEST: Final = 10_000
# Steps stay exact in JavaScript (the page) and in float64 (charts): below 2**53.
MAX_STEP: Final = 2**53 - 1
MAX_NAMES_PER_QUERY: Final = 20
MAX_POINTS_PER_SERIES: Final = 5_000
DEFAULT_POINTS_PER_SERIES: Final = 1_000
NON_FINITE: Final[dict[str, float]] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}


def encode_value(value: float) -> float | str:
    """A float as JSON carries it: NaN and the infinities as their strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"
