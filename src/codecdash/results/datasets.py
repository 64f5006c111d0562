"""The known test sets and their spellings: one table, used by `import-results` and the demo.

A set's name is compared without case and without separators, so `UVG-1080p`, `uvg_1080p` and
`UVG1080p` are the same set, as are `HEVC-B`, `HEVC_ClassB` and `hevc-class-b`. A name that is
not in the table is kept as it is written: any test set can be used, these are only recognised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import PurePath
from typing import Final

MAX_DATASET_CHARS: Final = 100
PATH_DEPTH: Final = 3
"""How many folders above a file `dataset_from_path` looks at (not a home or project folder)."""

_HEVC_CLASSES: Final = "ABCDEF"
_JVET_CLASSES: Final = ("A1", "A2", "B", "C", "D", "E", "F")

KNOWN_DATASETS: Final[dict[str, tuple[str, ...]]] = {
    # Video test sets.
    "UVG": ("UVG",),
    "UVG-1080p": ("UVG-1080p", "UVG-HD"),
    "UVG-4K": ("UVG-4K", "UVG-2160p"),
    "MCL-JCV": ("MCL-JCV",),
    **{f"HEVC-{c}": (f"HEVC-{c}", f"HEVC-Class-{c}", f"Class-{c}") for c in _HEVC_CLASSES},
    **{
        f"JVET-{c}": (f"JVET-{c}", f"JVET-Class-{c}", f"JVET-CTC-{c}", f"JVET-CTC-Class-{c}")
        for c in _JVET_CLASSES
    },
    # Image test sets.
    "Kodak": ("Kodak", "Kodak24"),
    "CLIC": ("CLIC",),
    "CLIC2020-mobile": ("CLIC2020-mobile", "CLIC-mobile"),
    "CLIC2020-professional": ("CLIC2020-professional", "CLIC-professional", "CLIC-pro"),
    "CLIC2022": ("CLIC2022",),
    "Tecnick": ("Tecnick", "Tecnick-40"),
}
"""Canonical name -> its spellings (each compared by `dataset_key`)."""


def dataset_key(name: str) -> str:
    """`name` lower-cased with everything but letters and digits removed."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


_BY_KEY: Final[dict[str, str]] = {
    dataset_key(alias): canonical
    for canonical, aliases in KNOWN_DATASETS.items()
    for alias in aliases
}
_LONGEST_ALIAS: Final = max(
    len(alias.split("-")) for aliases in KNOWN_DATASETS.values() for alias in aliases
)


def known_dataset(name: str) -> str | None:
    """The canonical name of a known set spelt `name`, or None."""
    return _BY_KEY.get(dataset_key(name))


def canonical_dataset(name: str) -> str:
    """The canonical name of a known set, else `name` stripped; ValueError if empty or long."""
    text = name.strip()
    if not text:
        raise ValueError("the test set's name is empty")
    if len(text) > MAX_DATASET_CHARS:
        raise ValueError(f"the test set's name is over {MAX_DATASET_CHARS} characters")
    return known_dataset(text) or text


def dataset_from_path(path: str | os.PathLike[str]) -> str | None:
    """The known set a file's path names, or None.

    The file's name is looked at first, then its `PATH_DEPTH` nearest folders outwards; in each,
    the longest run of words (split at `-`, `_`, `.`, space) that spells a known set wins, so
    `results/video/UVG-1080p/x264.json` is UVG-1080p and `kodak/vtm.json` Kodak.
    """
    pure = PurePath(path)
    parts = [pure.stem, *(parent.name for parent in pure.parents)][: 1 + PATH_DEPTH]
    for part in parts:
        found = _dataset_in(re.split(r"[-_.\s]+", part))
        if found is not None:
            return found
    return None


def _dataset_in(words: Iterable[str]) -> str | None:
    tokens = [w for w in words if w]
    for size in range(min(_LONGEST_ALIAS, len(tokens)), 0, -1):
        for start in range(len(tokens) - size + 1):
            found = _BY_KEY.get(dataset_key("".join(tokens[start : start + size])))
            if found is not None:
                return found
    return None
