"""The outbox's sender: each queued message to its channel, at most ``alert_max_per_hour``
a channel (messages that wait take in the alerts that come meanwhile), retried with
exponential backoff and jitter, given up after ``alert_max_attempts`` (visible in the API
and `codecdash alerts deliveries`, and logged)."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from codecdash.alerts.channels import Channel, DeliveryError
from codecdash.alerts.model import Notification
from codecdash.alerts.redact import scrub
from codecdash.store.alerts import AlertStore

log = logging.getLogger("codecdash.alerts")

BACKOFF_BASE_S = 10.0
BACKOFF_CAP_S = 1800.0
HOUR = 3600.0


def backoff(attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: 10 s doubling to 30 min, each drawn between
    half and all of that (jitter: senders that failed together do not retry together); at
    least what the receiver asked for."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** max(0, attempt - 1))
    delay = ceiling * rng.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


class Sender:
    def __init__(
        self,
        alerts: AlertStore,
        channels: Mapping[str, Channel],
        *,
        max_per_hour: int,
        max_attempts: int,
        timeout_s: float,
        dashboard_url: str | None = None,
        secrets: Sequence[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.alerts = alerts
        self.channels = channels
        self.max_per_hour = max_per_hour
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.dashboard_url = dashboard_url
        self.secrets = list(secrets)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def deliver_due(self, now: float) -> int:
        """Send what is due now; returns how many messages went out."""
        sent = 0
        for row in self.alerts.due(now):
            if self._deliver(row, now):
                sent += 1
        return sent

    def _deliver(self, row: Mapping[str, Any], now: float) -> bool:
        name = str(row["channel"])
        channel = self.channels.get(name)
        if channel is None:
            self.alerts.failed(row["id"], f"the {name} channel is no longer configured", None)
            return False
        recent = self.alerts.sent_since(name, now - HOUR)
        if len(recent) >= self.max_per_hour:
            # The oldest of the hour's last `max_per_hour` leaves the window then.
            self.alerts.postpone(row["id"], recent[-self.max_per_hour] + HOUR)
            return False
        # Taken for one attempt: no other sender (replica) tries it before this expires.
        claimed = self.alerts.claim(row["id"], now, now + 2 * self.timeout_s + 30)
        if claimed is None:
            return False
        notification = Notification(
            alerts=orjson.loads(claimed["payload"])["alerts"],
            created_at=float(claimed["created_at"]),
            delivery_id=delivery_id(claimed),
            dashboard_url=self.dashboard_url,
        )
        try:
            channel.send(notification)
        except DeliveryError as exc:
            self._failed(claimed, str(exc), exc.retry, exc.retry_after, now)
            return False
        except Exception as exc:  # a channel's bug must not stop the others
            reason = scrub(f"{type(exc).__name__}: {exc}", self.secrets)
            self._failed(claimed, reason, True, None, now)
            return False
        self.alerts.sent(claimed["id"], now)
        log.info(
            "alert notification %s sent via %s (%d alerts)",
            notification.delivery_id,
            name,
            len(notification.alerts),
        )
        return True

    def _failed(
        self,
        row: Mapping[str, Any],
        reason: str,
        retry: bool,
        retry_after: float | None,
        now: float,
    ) -> None:
        attempts = int(row["attempts"])
        reason = scrub(reason, self.secrets)
        if not retry or attempts >= self.max_attempts:
            self.alerts.failed(row["id"], reason, None)
            log.error(
                "alert notification %s via %s failed after %d attempt%s, given up: %s",
                delivery_id(row),
                row["channel"],
                attempts,
                "" if attempts == 1 else "s",
                reason,
            )
            return
        delay = backoff(attempts, self.rng, retry_after)
        self.alerts.failed(row["id"], reason, now + delay)
        log.warning(
            "alert notification %s via %s failed (attempt %d of %d), retry in %.0f s: %s",
            delivery_id(row),
            row["channel"],
            attempts,
            self.max_attempts,
            delay,
            reason,
        )


def delivery_id(row: Mapping[str, Any]) -> str:
    """The same for every attempt of one message; receivers may drop repeats by it."""
    return f"{row['id']}-{int(float(row['created_at']) * 1000)}"
