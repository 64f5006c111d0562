"""The text of a notification, shared by the channels that show text (chat, e-mail, SNS)."""

from __future__ import annotations

from typing import Any

from codecdash.alerts.model import Notification

MARKS = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
RESOLVED_MARK = "✅"


def title(notification: Notification) -> str:
    """``[codecdash] FIRING: 2 alerts (budget, worker_stale)``."""
    if notification.test:
        return "[codecdash] Test notification"
    items = notification.alerts
    firing = [a for a in items if a.get("state") == "firing"]
    resolved = [a for a in items if a.get("state") == "resolved"]
    parts = []
    if firing:
        parts.append(f"FIRING: {_count(firing)}")
    if resolved:
        parts.append(f"RESOLVED: {_count(resolved)}")
    rules = sorted({str(a.get("rule")) for a in items})
    return f"[codecdash] {', '.join(parts)} ({', '.join(rules)})"


def _count(items: list[dict[str, Any]]) -> str:
    return f"{len(items)} alert{'s' if len(items) != 1 else ''}"


def line(alert: dict[str, Any]) -> str:
    """``🔴 critical · orchestrator_down: The orchestrator is down (since …)``."""
    state = alert.get("state")
    mark = RESOLVED_MARK if state == "resolved" else MARKS.get(str(alert.get("severity")), "•")
    what = "resolved" if state == "resolved" else str(alert.get("severity"))
    return (
        f"{mark} {what} · {alert.get('rule')}: {alert.get('summary')} (since {alert.get('since')})"
    )


def body(notification: Notification) -> str:
    """Plain text: the title's detail, one line per alert, the dashboard's link."""
    lines = []
    if notification.test:
        lines.append("This is a test notification from codecdash: this channel works.")
    lines += [line(a) for a in notification.alerts]
    if notification.dashboard_url:
        lines += ["", f"Dashboard: {notification.dashboard_url}"]
    return "\n".join(lines)
