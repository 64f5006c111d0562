"""What a source is: a named, declared provider of some sections of the snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# The parts of the snapshot a source can provide, and how the page names them.
SECTION_LABELS = {
    "experiments": "Experiments",
    "orchestrator": "Orchestrator",
    "training_workers": "Training workers",
    "inference_workers": "Inference workers",
    "storage": "Storage",
    "costs": "Costs",
}
SECTIONS = tuple(SECTION_LABELS)

Facts = dict[str, Any]


class SourceError(Exception):
    """The source's backend is down or answered something unusable."""


@dataclass(frozen=True)
class FieldInfo:
    description: str
    unit: str = ""


@runtime_checkable
class Source(Protocol):
    """A source knows nothing of HTTP: it returns plain data for its sections.

    `collect` returns a mapping from section name (one of SECTIONS, only those in
    `sections`) to that section's facts; it raises SourceError (or anything, or hangs:
    the snapshot builder times it out) when its backend is down.
    """

    name: str
    sections: tuple[str, ...]
    fields: dict[str, FieldInfo]

    async def collect(self, now: float) -> Facts: ...
