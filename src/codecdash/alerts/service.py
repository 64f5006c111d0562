"""The alert loop of a server: evaluate the rules every few seconds, send what is due.

Exactly one replica works at a time: the holder of the ``alerts`` lease row (renewed at
each evaluation; taken over once it expires, when its holder stopped). Store and network
work runs in threads, never on the event loop; sends are bounded by their timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets as secrets_module
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from codecdash.alerts.channels import Channel, DeliveryError, build_channels, secrets, unconfigured
from codecdash.alerts.delivery import Sender
from codecdash.alerts.engine import step
from codecdash.alerts.facts import Facts, StoreFacts
from codecdash.alerts.model import Alert, Change, Notification, payload_item
from codecdash.alerts.redact import scrub
from codecdash.alerts.rules import Rule, build_rules
from codecdash.config import Settings
from codecdash.store import Store
from codecdash.store.alert_queries import LocalStoreFacts
from codecdash.store.alerts import AlertStore
from codecdash.timefmt import iso

log = logging.getLogger("codecdash.alerts")

LEASE = "alerts"
RETENTION_S = 30 * 86400.0  # resolved alerts, history and finished messages are kept this long
PRUNE_EVERY_S = 3600.0

SnapshotFn = Callable[[], Awaitable[Mapping[str, Any]]]


class AlertService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        channels: Mapping[str, Channel] | None = None,
        facts_store: StoreFacts | None = None,
        clock: Callable[[], float] = time.time,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.rules: list[Rule] = build_rules(settings.alert_rules)
        self.alerts = AlertStore(store)
        self.channels: Mapping[str, Channel] = (
            build_channels(settings) if channels is None else channels
        )
        self.secrets = secrets(settings)
        if facts_store is None and settings.source == "local":
            facts_store = LocalStoreFacts(store)
        self.facts_store = facts_store
        self.clock = clock
        self.holder = holder or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets_module.token_hex(4)}"
        )
        self.lease_ttl = max(30.0, 3 * settings.alert_evaluate_seconds)
        self.sender = Sender(
            self.alerts,
            self.channels,
            max_per_hour=settings.alert_max_per_hour,
            max_attempts=settings.alert_max_attempts,
            timeout_s=settings.alert_timeout_seconds,
            dashboard_url=settings.alert_dashboard_url,
            secrets=self.secrets,
        )
        self.leader = False
        self._pruned_at = 0.0

    # -- one step each (tests call these with their own clock) ------------------------------
    def evaluate(self, snapshot: Mapping[str, Any], now: float | None = None) -> list[Change]:
        """Evaluate every rule once (as the lease holder only); store the changes, queue the
        notifications. Blocking: store reads and writes."""
        now = self.clock() if now is None else now
        self.leader = self.alerts.take_lease(LEASE, self.holder, now, self.lease_ttl)
        if not self.leader:
            return []
        facts = Facts(snapshot, self.settings.active_window_seconds, self.facts_store)
        states = self.alerts.states()
        changes: list[Change] = []
        for rule in self.rules:
            findings = None
            if rule.enabled:
                try:
                    findings = rule.evaluate(facts, now)
                except Exception as exc:  # its facts are unavailable: its alerts stay as they are
                    reason = scrub(str(exc).splitlines()[0][:300] if str(exc) else "", self.secrets)
                    log.warning("alert rule %s not evaluated: %s", rule.name, reason or exc)
                    continue
            changes += step(rule, findings, states.get(rule.name, {}), now)
        stored = self.alerts.apply(changes, now)
        for change in stored:
            if change.previous != change.alert.state and change.alert.state != "inactive":
                log.info(
                    "alert %s %s → %s: %s",
                    _name(change.alert),
                    change.previous,
                    change.alert.state,
                    change.alert.summary,
                )
        news = [payload_item(c.alert) for c in stored if c.notify]
        if news and self.channels:
            self.alerts.enqueue(self.channels, news, now)
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self.alerts.prune(now - RETENTION_S)
        return stored

    def deliver(self, now: float | None = None) -> int:
        """Send the due messages (the lease holder only). Blocking: network."""
        if not self.leader:
            return 0
        return self.sender.deliver_due(self.clock() if now is None else now)

    def send_test(self, name: str, now: float | None = None) -> Channel:
        return send_test(self.channels, name, self.settings, self.clock() if now is None else now)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, snapshot: SnapshotFn) -> None:
        """Evaluate, then deliver, every ``alert_evaluate_seconds``, until cancelled."""
        interval = self.settings.alert_evaluate_seconds
        delivering: asyncio.Task[int] | None = None
        try:
            while True:
                try:
                    snap = await snapshot()
                    await asyncio.to_thread(self.evaluate, snap)
                except Exception as exc:  # the store may be briefly unavailable: next round
                    log.warning("alert evaluation failed: %s", scrub(str(exc), self.secrets))
                # A slow channel holds up only the next delivery round, never evaluation.
                if delivering is None or delivering.done():
                    delivering = asyncio.create_task(asyncio.to_thread(self._deliver_logged))
                await asyncio.sleep(interval)
        finally:
            if delivering is not None:
                delivering.cancel()
            if self.leader:
                try:
                    await asyncio.to_thread(self.alerts.release_lease, LEASE, self.holder)
                except Exception as exc:  # at shutdown: the lease expires by itself
                    log.debug("alert lease not released: %s", exc)

    def _deliver_logged(self) -> int:
        try:
            return self.deliver()
        except Exception as exc:
            log.warning("alert delivery round failed: %s", scrub(str(exc), self.secrets))
            return 0


def send_test(
    channels: Mapping[str, Channel], name: str, settings: Settings, now: float | None = None
) -> Channel:
    """Send a test notification through channel ``name`` now (not queued); raises
    :class:`DeliveryError`, or LookupError when the channel is not configured."""
    channel = channels.get(name)
    if channel is None:
        raise LookupError(unconfigured(name))
    now = time.time() if now is None else now
    notification = Notification(
        alerts=[
            {
                "id": None,
                "rule": "test",
                "severity": "info",
                "state": "firing",
                "since": iso(now),
                "summary": "A test notification from codecdash",
                "labels": {},
                "value": None,
            }
        ],
        created_at=now,
        delivery_id=f"test-{int(now * 1000)}",
        dashboard_url=settings.alert_dashboard_url,
        test=True,
    )
    try:
        channel.send(notification)
    except DeliveryError as exc:  # secret-free of its own channel's; of the others' too
        raise DeliveryError(
            scrub(str(exc), secrets(settings)), retry=exc.retry, retry_after=exc.retry_after
        ) from None
    except Exception as exc:  # a channel's own bug: said, secret-free
        reason = scrub(f"{type(exc).__name__}: {exc}", secrets(settings))
        raise DeliveryError(reason) from None
    return channel


def _name(alert: Alert) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    return f"{alert.rule}{{{labels}}}" if labels else alert.rule
