"""What a check finds (`codecdash doctor` prints one line per finding): for the sources that
can say whether their backend is set up as the dashboard needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Status = Literal["ok", "warn", "fail"]
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"


@dataclass(frozen=True)
class Finding:
    """One thing checked: how it is (`detail`) and, when it is wrong, how to fix it."""

    status: Status
    what: str
    detail: str = ""
    fix: str = ""
