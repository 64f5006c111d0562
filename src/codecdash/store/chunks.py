"""Training curves as packed arrays: the chunk formats, the tiers, and downsampling.

Tier 0 holds raw points: (step, time, value) records, one chunk per 512 steps. Tier t >= 1
holds buckets of ``8**t`` steps: (last step, its time, value at the last step, min, max)
records, one chunk per 256 buckets. NaN and the infinities are stored as they are; min
and max ignore NaN (a bucket of NaNs only has NaN for both).

Everything here works on numpy arrays; store/curves.py moves them in and out of SQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

RAW: Final = np.dtype([("step", "<i8"), ("at", "<f8"), ("value", "<f8")])
BUCKET: Final = np.dtype(
    [("step", "<i8"), ("at", "<f8"), ("last", "<f8"), ("min", "<f8"), ("max", "<f8")]
)
TIERS: Final = 8  # tier t buckets 8**t steps: up to 16,777,216 steps a bucket
TIER_BITS: Final = 3
RAW_CHUNK_BITS: Final = 9  # 512 steps a raw chunk
BUCKETS_BITS: Final = 8  # 256 buckets a tier chunk

Records = npt.NDArray[Any]  # a structured array of RAW or BUCKET records


def bucket_bits(tier: int) -> int:
    """log2 of the steps a bucket of `tier` spans (0: one step, the raw points)."""
    return TIER_BITS * tier


def chunk_bits(tier: int) -> int:
    """log2 of the steps a chunk of `tier` spans."""
    return RAW_CHUNK_BITS if tier == 0 else BUCKETS_BITS + TIER_BITS * tier


def dtype(tier: int) -> np.dtype[Any]:
    return RAW if tier == 0 else BUCKET


def unpack(tier: int, data: bytes) -> Records:
    return np.frombuffer(data, dtype(tier))


def empty(tier: int) -> Records:
    return np.empty(0, dtype(tier))


def raw_points(steps: Any, ats: Any, values: Any) -> Records:
    """Raw records sorted by step; of repeated steps the last one given wins."""
    out = np.empty(len(steps), RAW)
    out["step"] = steps
    out["at"] = ats
    out["value"] = values
    return merge_raw(empty(0), out)


def merge_raw(old: Records, new: Records) -> Records:
    """`old` and `new` raw records by step; a step in both takes `new`'s value."""
    both = np.concatenate([old, new]) if len(old) else new
    both = both[np.argsort(both["step"], kind="stable")]
    steps = both["step"]
    keep = np.ones(len(both), dtype=bool)
    keep[:-1] = steps[1:] != steps[:-1]  # the last of equal steps: `new`'s, or the latest
    result: Records = both[keep]
    return result


def as_buckets(raw: Records) -> Records:
    """Raw points as one-step buckets (last = min = max = the value)."""
    out = np.empty(len(raw), BUCKET)
    out["step"] = raw["step"]
    out["at"] = raw["at"]
    out["last"] = out["min"] = out["max"] = raw["value"]
    return out


def reduce(src: Records, bits: int) -> Records:
    """Buckets of ``2**bits`` steps from finer buckets sorted by step (each finer bucket
    within one coarser: their last steps say which)."""
    if not len(src):
        return np.empty(0, BUCKET)
    keys = src["step"] >> bits
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    ends = np.concatenate((starts[1:], [len(src)])) - 1
    out = np.empty(len(starts), BUCKET)
    out["step"] = src["step"][ends]
    out["at"] = src["at"][ends]
    out["last"] = src["last"][ends]
    out["min"] = np.fmin.reduceat(src["min"], starts)
    out["max"] = np.fmax.reduceat(src["max"], starts)
    return out


def split(records: Records, tier: int) -> dict[int, Records]:
    """Records sorted by step, by the chunk of `tier` each falls in."""
    if not len(records):
        return {}
    keys = records["step"] >> chunk_bits(tier)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    bounds = np.concatenate((starts, [len(records)]))
    return {int(keys[a]): records[a:b] for a, b in itertools.pairwise(bounds)}


def sort_steps(records: Records) -> Records:
    result: Records = records[np.argsort(records["step"], kind="stable")]
    return result


# -- reading: which tier, which bucket width ----------------------------------------------
ReadTier = Callable[[int, int, int], Records]
"""(tier, first step, last step) -> that tier's records whose step is in the range."""


def downsample(
    read: ReadTier, lo: int, hi: int, max_points: int, finest: int = 0
) -> tuple[int, Records]:
    """The points with step in [lo, hi] grouped into buckets of ``2**bits`` steps, where
    ``2**bits`` is the smallest power of two giving at most `max_points` non-empty buckets.
    Returns (bits, BUCKET records, one per non-empty bucket).

    Reads the coarsest tier whose buckets are no wider than that, starting from a guess
    made from the step range and reading finer tiers only while the data is sparse. With
    `finest` = 1 (raw points dropped by retention) buckets are at least 8 steps wide.
    """
    if hi < lo:
        return 0, np.empty(0, BUCKET)
    span = hi - lo + 1
    guess = max(0, (span - 1) // max_points).bit_length()  # ceil(log2(span / max_points))
    tier = min(TIERS, max(finest, guess // TIER_BITS))
    while True:
        data = read(tier, lo, hi)
        src = as_buckets(data) if tier == 0 else data
        bits = bucket_bits(tier)
        while bits < 63 and _groups(src["step"], bits) > max_points:
            bits += 1
        if bits > bucket_bits(tier) or tier <= finest:
            return bits, src if bits == 0 else reduce(src, bits)
        tier -= 1  # coarse enough already: finer buckets may fit too


def _groups(steps: npt.NDArray[np.int64], bits: int) -> int:
    if not len(steps):
        return 0
    keys = steps >> bits
    return int(np.count_nonzero(keys[1:] != keys[:-1])) + 1
