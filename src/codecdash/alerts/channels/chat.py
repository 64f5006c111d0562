"""Slack and Microsoft Teams incoming webhooks, each in its own message format.

Teams: the Workflows app's "Send webhook alerts to a channel" (Power Automate) webhook,
which replaces the Office 365 connectors that Microsoft retires, posts Adaptive Cards sent
as a ``message`` with an ``application/vnd.microsoft.card.adaptive`` attachment; the old
connector webhooks accept that shape too. (The older MessageCard format is connectors-only.)
"""

from __future__ import annotations

from typing import Any

import httpx

from codecdash.alerts import message
from codecdash.alerts.channels.http import post_json
from codecdash.alerts.model import Notification
from codecdash.alerts.redact import redact_url

MAX_ITEMS = 20  # alerts shown in one chat message; the rest are counted


def _shown(notification: Notification) -> tuple[list[dict[str, Any]], int]:
    items = notification.alerts
    return items[:MAX_ITEMS], max(0, len(items) - MAX_ITEMS)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(notification: Notification) -> dict[str, Any]:
    """Slack's incoming-webhook JSON: ``text`` (notifications, fallback) and ``blocks``."""
    title = message.title(notification)
    shown, more = _shown(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}
    ]
    if notification.test:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "This channel works: codecdash can post here."},
            }
        )
    for alert in shown:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(message.line(alert))[:3000]},
            }
        )
    context = []
    if more:
        context.append(f"… and {more} more")
    if notification.dashboard_url:
        context.append(f"<{notification.dashboard_url}|Open the dashboard>")
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
        )
    return {"text": title, "blocks": blocks}


def teams_message(notification: Notification) -> dict[str, Any]:
    """An Adaptive Card (1.4) in the ``message`` envelope Teams' webhooks take."""
    shown, more = _shown(notification)
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": message.title(notification),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    if notification.test:
        body.append(
            {
                "type": "TextBlock",
                "text": "This channel works: codecdash can post here.",
                "wrap": True,
            }
        )
    for alert in shown:
        color = {"critical": "Attention", "warning": "Warning"}.get(str(alert.get("severity")))
        if alert.get("state") == "resolved":
            color = "Good"
        block = {"type": "TextBlock", "text": message.line(alert), "wrap": True}
        if color:
            block["color"] = color
        body.append(block)
    if more:
        body.append({"type": "TextBlock", "text": f"… and {more} more", "isSubtle": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if notification.dashboard_url:
        card["actions"] = [
            {
                "type": "Action.OpenUrl",
                "title": "Open the dashboard",
                "url": notification.dashboard_url,
            }
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


class _ChatChannel:
    name = ""

    def __init__(
        self, url: str, timeout: float, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.transport = transport

    def target(self) -> str:
        return redact_url(self.url)

    def format(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        post_json(
            self.url, self.format(notification), timeout=self.timeout, transport=self.transport
        )


class SlackChannel(_ChatChannel):
    name = "slack"

    def format(self, notification: Notification) -> dict[str, Any]:
        return slack_message(notification)


class TeamsChannel(_ChatChannel):
    name = "teams"

    def format(self, notification: Notification) -> dict[str, Any]:
        return teams_message(notification)
