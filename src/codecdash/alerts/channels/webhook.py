"""The generic webhook: a JSON document per notification, signed with HMAC-SHA256.

Body: ``{"version": 1, "id", "status", "test", "title", "dashboard_url", "sent_at",
"alerts": [{"id", "rule", "severity", "state", "since", "summary", "labels", "value"}]}``.
Headers: ``X-Codecdash-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``
(when a secret is set) and ``X-Codecdash-Delivery: <id>`` (the same on every retry of a
message, so a receiver can drop repeats).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from codecdash.alerts import message
from codecdash.alerts.channels.http import DELIVERY_HEADER, post_json
from codecdash.alerts.model import Notification
from codecdash.alerts.redact import redact_url
from codecdash.timefmt import iso


def document(notification: Notification, now: float | None = None) -> dict[str, Any]:
    return {
        "version": 1,
        "id": notification.delivery_id,
        "status": notification.status,
        "test": notification.test,
        "title": message.title(notification),
        "dashboard_url": notification.dashboard_url,
        "sent_at": iso(time.time() if now is None else now),
        "alerts": notification.alerts,
    }


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str | None,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.transport = transport

    def target(self) -> str:
        signed = "signed" if self.secret else "unsigned: set CODECDASH_ALERT_WEBHOOK_SECRET"
        return f"{redact_url(self.url)} ({signed})"

    def send(self, notification: Notification) -> None:
        post_json(
            self.url,
            document(notification),
            timeout=self.timeout,
            headers={DELIVERY_HEADER: notification.delivery_id},
            secret=self.secret,
            transport=self.transport,
        )
