"""`codecdash agent`: reports this machine's heartbeat to a codecdash dashboard.

One collector per group of figures (``host``, ``gpu``, ``imds``, ``local_input``), each
declaring its fields with a description and a unit, as glances' plugins do, and
returning plain data; ``runner`` turns them into heartbeats and sends them;
``command`` is the click command.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One figure a collector provides: its key, what it means, and its unit."""

    name: str
    description: str
    unit: str


__all__ = ["Field"]
