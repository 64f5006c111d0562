"""The state machine of each alert (one per rule and labels), as Prometheus runs its rules.

    inactive ──found──▶ pending ──held for pending_seconds──▶ firing ──not found──▶ resolved
        ▲                  │                                                         │
        └───not found──────┘                  found again: pending (or firing) ◀──────┘

A firing alert is notified unless the same alert was notified less than
``cooldown_seconds`` ago (a flapping alert then stays quiet); its resolution is notified
when its firing was (and the rule tells resolutions). A rule that cannot be evaluated
(its facts are unavailable) changes nothing: its alerts neither resolve nor fire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from codecdash.alerts.model import Alert, Change, Finding, labels_key
from codecdash.alerts.rules import Rule


def step(
    rule: Rule,
    findings: Iterable[Finding] | None,
    current: Mapping[str, Alert],
    now: float,
) -> list[Change]:
    """The changes one evaluation of ``rule`` makes to its alerts ``current`` (by labels key).

    ``findings`` None: the rule is disabled; its active alerts resolve without a notice.
    Only changed alerts are returned (a firing alert whose summary moved counts too, with
    ``notify`` false), each a new :class:`Alert` (``current`` is left as it is).
    """
    changes: list[Change] = []
    seen: set[str] = set()
    for finding in findings or ():
        key = labels_key(finding.labels)
        if key in seen:  # the same alert twice in one evaluation: the first counts
            continue
        seen.add(key)
        before = current.get(key)
        change = _found(rule, finding, before, now)
        if before is None or _shown(change.alert) != _shown(before):
            changes.append(change)  # not for a new value alone: no write each evaluation
    for key, alert in current.items():
        if key in seen or alert.state in ("inactive", "resolved"):
            continue
        changes.append(_lost(rule, alert, now, disabled=findings is None))
    return changes


def _found(rule: Rule, finding: Finding, before: Alert | None, now: float) -> Change:
    severity = finding.severity or rule.severity
    if before is None or before.state in ("inactive", "resolved"):
        fresh = Alert(
            rule=rule.name,
            labels=dict(finding.labels),
            severity=severity,
            state="pending",
            since=now,
            summary=finding.summary,
            value=finding.value,
            id=before.id if before else None,
            fired_at=before.fired_at if before else None,
            resolved_at=before.resolved_at if before else None,
            last_notified_at=before.last_notified_at if before else None,
        )
        previous = before.state if before else "inactive"
        if rule.pending_seconds <= 0:
            return _fire(rule, fresh, previous, now)
        return Change(fresh, previous, notify=False)
    updated = dataclasses.replace(
        before, summary=finding.summary, value=finding.value, severity=severity
    )
    if before.state == "pending" and now - before.since >= rule.pending_seconds:
        return _fire(rule, updated, "pending", now)
    return Change(updated, before.state, notify=False)


def _fire(rule: Rule, alert: Alert, previous: str, now: float) -> Change:
    quiet = (
        alert.last_notified_at is not None and now - alert.last_notified_at < rule.cooldown_seconds
    )
    fired = dataclasses.replace(
        alert,
        state="firing",
        since=now,
        fired_at=now,
        resolved_at=None,
        notified=not quiet,
        last_notified_at=alert.last_notified_at if quiet else now,
        acknowledged_at=None,
        acknowledged_by=None,
    )
    return Change(fired, previous, notify=not quiet)


def _lost(rule: Rule, alert: Alert, now: float, *, disabled: bool) -> Change:
    if alert.state == "pending":
        return Change(dataclasses.replace(alert, state="inactive", since=now), "pending", False)
    notify = alert.notified and rule.notify_resolved and not disabled
    resolved = dataclasses.replace(
        alert,
        state="resolved",
        since=now,
        resolved_at=now,
        last_notified_at=now if notify else alert.last_notified_at,
    )
    return Change(resolved, alert.state, notify)


def _shown(alert: Alert) -> tuple[str, str, str]:
    return (alert.state, alert.severity, alert.summary)
