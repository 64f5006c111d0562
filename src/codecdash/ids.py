"""Experiment ids that sort by creation time (the UUIDv7 layout, as 32 hex digits).

Random ids (UUIDv4) land all over the primary-key index, so every batch rewrites pages
across it; time-ordered ids append at its end. The 74 random bits keep ids made in the
same millisecond, on any number of machines, apart.
"""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    """A new id: 48-bit Unix milliseconds, version 7, variant bits, 74 random bits."""
    ms = time.time_ns() // 1_000_000 & (1 << 48) - 1
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    return f"{ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b:032x}"
