"""The shapes that rules, the engine, the store and the channels share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from codecdash.timefmt import iso

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
State = Literal["inactive", "pending", "firing", "resolved"]
SHOWN_STATES: tuple[str, ...] = ("pending", "firing", "resolved")


@dataclass(frozen=True)
class Finding:
    """One thing a rule found wrong (or worth telling) now.

    ``labels`` identify it within its rule (``{"worker": "train-03"}``): the same labels at
    the next evaluation are the same alert. ``severity`` overrides the rule's own.
    """

    labels: Mapping[str, str]
    summary: str
    value: float | None = None
    severity: Severity | None = None


def labels_key(labels: Mapping[str, str]) -> str:
    """The labels' canonical text: the identity of an alert within its rule."""
    return orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class Alert:
    """An alert's state, as the store keeps it (one row per rule and labels)."""

    rule: str
    labels: dict[str, str]
    severity: str
    state: str
    since: float
    summary: str
    value: float | None = None
    id: int | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    notified: bool = False
    last_notified_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None

    @property
    def key(self) -> str:
        return labels_key(self.labels)


@dataclass(frozen=True)
class Change:
    """A transition the engine made: the alert after it, and whether to notify it."""

    alert: Alert
    previous: str  # the state before: inactive (new), pending, firing or resolved
    notify: bool


@dataclass
class Notification:
    """What a channel sends: one or more alerts that changed (grouped), or a test."""

    alerts: list[dict[str, Any]]
    created_at: float
    delivery_id: str = ""
    dashboard_url: str | None = None
    test: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``firing`` when any alert fires, else ``resolved``."""
        return "firing" if any(a.get("state") == "firing" for a in self.alerts) else "resolved"


def payload_item(alert: Alert) -> dict[str, Any]:
    """An alert as notifications carry it."""
    return {
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity,
        "state": alert.state,
        "since": iso(alert.since),
        "summary": alert.summary,
        "labels": alert.labels,
        "value": alert.value,
    }
