"""What a rule is: a declared, configurable object with a pure ``evaluate(facts, now)``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from codecdash.alerts.facts import Facts
from codecdash.alerts.model import Finding, Severity


class Rule(BaseModel):
    """A rule. Subclasses set the class variables and declare their own settings as fields.

    The fields are the rule's settings (``[alert_rules.NAME]`` in the TOML file); these four
    every rule has. ``evaluate`` must not write anything: it returns what it finds now, and
    the engine turns findings into states (pending for ``pending_seconds``, then firing;
    resolved when no longer found) and notifications (at most one per alert per
    ``cooldown_seconds``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    description: ClassVar[str]
    # False: a resolution is not notified (events such as "a new best result").
    notify_resolved: ClassVar[bool] = True

    enabled: bool = Field(True, description="Evaluate this rule.")
    severity: Severity = Field("warning", description="info, warning or critical.")
    pending_seconds: float = Field(
        0.0, ge=0, description="How long it must hold before it fires (Prometheus' `for`)."
    )
    cooldown_seconds: float = Field(
        900.0, ge=0, description="No new notification of the same alert within this, s."
    )

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        raise NotImplementedError

    @classmethod
    def settings_doc(cls) -> dict[str, tuple[Any, str]]:
        """Each setting's default and description (docs, `codecdash alerts rules`)."""
        return {
            name: (field.get_default(call_default_factory=True), field.description or "")
            for name, field in cls.model_fields.items()
        }


def split_list(value: Any) -> Any:
    """ "50,80,100" (the environment) as a list; lists pass."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def duration(seconds: float) -> str:
    """12 s, 5 min, 3 h 20 min, 2 d 4 h."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
