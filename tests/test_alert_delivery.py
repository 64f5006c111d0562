"""Alerts end to end over a real store, delivered to real receivers: an HTTP server (the
generic webhook, signature checked; Slack's and Teams' formats), an SMTP server (aiosmtpd),
with the time of each step given (no sleeps): each rule fires, resolves and is delivered
once per channel; retries, give-ups, grouping and the hourly limit; a restart neither
repeats nor forgets."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from alert_fixtures import *  # noqa: F403
from alert_fixtures import Receiver, age_steps, log_losses, snapshot
from codecdash.alerts.channels import DeliveryError, build_channels
from codecdash.alerts.delivery import backoff
from codecdash.alerts.service import AlertService, send_test
from codecdash.config import Settings
from codecdash.models import ExperimentIn, ExperimentPatch, Heartbeat
from codecdash.store import Store
from codecdash.store.alerts import AlertStore
from conftest import writes

SECRET = "whsec-0123456789abcdef"


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def settings_for(base: Settings, receiver: Receiver | None = None, **values: Any) -> Settings:
    update: dict[str, Any] = {"alert_rules": values.pop("alert_rules", {})}
    if receiver is not None:
        update.update(
            alert_webhook_url=SecretStr(receiver.url + "/hook/T0-s3cret-path"),
            alert_webhook_secret=SecretStr(SECRET),
        )
    update.update(values)
    return base.model_copy(update=update)


def service(settings: Settings, store: Store | None = None, **kwargs: Any) -> AlertService:
    store = store or Store(settings.database_url)
    return AlertService(settings, store, **kwargs)


def check_signature(request: Any) -> dict[str, Any]:
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-codecdash-signature"] == expected
    assert request.headers["content-type"] == "application/json"
    return dict(request.json())


# -- the generic webhook ----------------------------------------------------------------------
def test_webhook_fires_and_resolves_signed(settings: Settings, receiver: Receiver) -> None:
    now = time.time()
    s = settings_for(settings, receiver, alert_rules={"orchestrator_down": {"pending_seconds": 0}})
    svc = service(s)
    down = snapshot(infrastructure={"orchestrator": {"status": "down"}})
    svc.evaluate(down, now)
    assert svc.deliver(now) == 1
    svc.evaluate(down, now + 10)
    assert svc.deliver(now + 10) == 0  # still firing: nothing new
    svc.evaluate(snapshot(), now + 20)
    assert svc.deliver(now + 20) == 1
    first, second = receiver.at("/hook/T0-s3cret-path")
    fired, resolved = check_signature(first), check_signature(second)
    assert fired["status"] == "firing" and resolved["status"] == "resolved"
    (alert,) = fired["alerts"]
    assert alert["rule"] == "orchestrator_down" and alert["severity"] == "critical"
    assert alert["summary"].startswith("The orchestrator is down")
    assert first.headers["x-codecdash-delivery"] == fired["id"] != resolved["id"]
    assert [a["state"] for a in resolved["alerts"]] == ["resolved"]


def test_a_tampered_body_does_not_match_the_signature(receiver: Receiver) -> None:
    from codecdash.alerts.channels.http import signature

    body = b'{"alerts": []}'
    assert signature(body, SECRET) != signature(body.replace(b"[]", b"[1]"), SECRET)
    assert signature(body, SECRET) != signature(body, SECRET + "x")


# -- every rule, every channel ----------------------------------------------------------------
HOUR = 3600.0


def fire(rule: str, store: Store, now: float) -> dict[str, Any]:
    """Make `rule` find something at `now`; returns the snapshot to evaluate."""
    if rule == "budget":
        return snapshot(summary={"month_to_date_usd": 2600.0})
    if rule == "orchestrator_down":
        return snapshot(infrastructure={"orchestrator": {"status": "down"}})
    if rule == "worker_stale":
        store.heartbeat(
            Heartbeat(worker_id="train-07", role="training", at=at(now - 600)).model_dump()
        )
    if rule == "pool_idle":
        return snapshot(infrastructure={"training_workers": {"active": 0, "queue_depth": 4}})
    if rule in ("failure_rate", "experiment_failed"):
        items = [
            ExperimentIn(
                id=f"x{i}",
                status="failed" if i < 3 else "completed",
                created_at=at(now - HOUR),
                finished_at=at(now - 60),
                error="CUDA out of memory" if i < 3 else None,
            )
            for i in range(5)
        ]
        writes(store).batch(items)
    if rule == "target_reached":
        return snapshot(summary={"best_compression": {"value_pct": 92.0, "experiment_id": "b"}})
    if rule == "new_best":
        writes(store).batch(
            [
                ExperimentIn(
                    id="b",
                    status="completed",
                    created_at=at(now - HOUR),
                    finished_at=at(now - 60),
                    bitrate_reduction_pct=50.0,
                )
            ]
        )
        return snapshot(summary={"best_compression": {"value_pct": 50.0, "experiment_id": "b"}})
    if rule == "non_finite_loss":
        log_losses(store, "run-nan", [1.0] * 5 + [math.nan])
    if rule == "loss_rising":
        log_losses(store, "run-up", [1.0] * 10 + [10.0] * 10)
    if rule == "stalled_run":
        log_losses(store, "run-hung", [1.0] * 3)
        age_steps(store, "run-hung", 1200)  # its last step reached the server 20 min ago
    return snapshot()


def resolve(rule: str, store: Store, now: float) -> float:
    """Make `rule` find nothing; returns the time to evaluate at."""
    if rule == "worker_stale":
        store.heartbeat(Heartbeat(worker_id="train-07", role="training", at=at(now)).model_dump())
    if rule in ("failure_rate", "experiment_failed", "new_best"):
        return now + 2 * HOUR  # out of the window
    if rule == "non_finite_loss":
        log_losses(store, "run-nan", [0.9], first=6)  # finite again
    if rule == "loss_rising":
        store.patch_experiment("run-up", ExperimentPatch(status="completed"))
    if rule == "stalled_run":
        log_losses(store, "run-hung", [0.9], first=3)  # steps resume
    return now


RULE_NAMES = [
    "budget",
    "orchestrator_down",
    "worker_stale",
    "pool_idle",
    "failure_rate",
    "experiment_failed",
    "target_reached",
    "new_best",
    "non_finite_loss",
    "loss_rising",
    "stalled_run",
]


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_each_rule_fires_resolves_and_is_delivered_once_per_channel(
    rule: str, settings: Settings, receiver: Receiver, smtp_server: Any
) -> None:
    smtp = smtp_server()
    others = {r: {"enabled": False} for r in RULE_NAMES if r != rule}
    s = settings_for(
        settings,
        receiver,
        alert_rules={**others, rule: {"enabled": True, "pending_seconds": 0}},
        alert_slack_webhook_url=SecretStr(receiver.url + "/slack/T1/B2/xyz"),
        alert_teams_webhook_url=SecretStr(receiver.url + "/teams/workflow?sig=abc"),
        alert_smtp_host=smtp.host,
        alert_smtp_port=smtp.port,
        alert_smtp_security="none",
        alert_email_to=["team@example.org"],
        alert_email_from="codecdash@example.org",
        alert_dashboard_url="https://dash.example.org/",
    )
    store = Store(s.database_url)
    svc = service(s, store)
    now = time.time()
    snap = fire(rule, store, now)
    changes = svc.evaluate(snap, now)
    assert [(c.alert.rule, c.alert.state) for c in changes if c.notify][:1] == [(rule, "firing")]
    assert svc.deliver(now) == 4
    assert not any(c.notify for c in svc.evaluate(snap, now + 2))
    assert svc.deliver(now + 2) == 0
    hooks = {
        path: receiver.at(path)
        for path in ("/hook/T0-s3cret-path", "/slack/T1/B2/xyz", "/teams/workflow?sig=abc")
    }
    assert {p: len(r) for p, r in hooks.items()} == dict.fromkeys(hooks, 1)
    assert len(smtp.messages) == 1
    body = check_signature(hooks["/hook/T0-s3cret-path"][0])
    assert {a["rule"] for a in body["alerts"]} == {rule}
    assert rule in hooks["/slack/T1/B2/xyz"][0].json()["text"]
    card = hooks["/teams/workflow?sig=abc"][0].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    _sender, recipients, mail = smtp.messages[0]
    assert recipients == ["team@example.org"] and rule in mail["Subject"]
    assert "https://dash.example.org/" in mail.get_content()

    later = resolve(rule, store, now + 5)
    changes = svc.evaluate(snapshot(), later)
    assert {c.alert.state for c in changes} == {"resolved"}
    told = svc.deliver(later)
    resolutions = 4 if svc.rules[RULE_NAMES.index(rule)].notify_resolved else 0
    assert told == resolutions
    assert len(receiver.requests) == 3 + (3 if resolutions else 0)
    assert len(smtp.messages) == 1 + (1 if resolutions else 0)
    if resolutions:
        assert check_signature(receiver.at("/hook/T0-s3cret-path")[1])["status"] == "resolved"
    store.close()


def test_chat_formats(settings: Settings) -> None:
    from codecdash.alerts.channels.chat import slack_message, teams_message
    from codecdash.alerts.model import Notification

    items = [
        {
            "id": i,
            "rule": "worker_stale",
            "severity": "warning",
            "state": "firing",
            "since": "2025-03-14T12:00:00.000Z",
            "summary": f"Worker w{i} <silent> & gone",
            "labels": {},
            "value": None,
        }
        for i in range(25)
    ]
    note = Notification(items, 0.0, "1-0", dashboard_url="https://dash.example.org/")
    slack = slack_message(note)
    assert slack["text"] == "[codecdash] FIRING: 25 alerts (worker_stale)"
    sections = [b for b in slack["blocks"] if b["type"] == "section"]
    assert len(sections) == 20 and "&lt;silent&gt; &amp; gone" in sections[0]["text"]["text"]
    assert "… and 5 more" in slack["blocks"][-1]["elements"][0]["text"]
    teams = teams_message(note)
    card = teams["attachments"][0]["content"]
    assert teams["type"] == "message" and card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert card["actions"][0] == {
        "type": "Action.OpenUrl",
        "title": "Open the dashboard",
        "url": "https://dash.example.org/",
    }
    assert card["body"][1]["color"] == "Warning"


# -- e-mail: STARTTLS and a login -------------------------------------------------------------
def test_email_over_starttls_with_a_login(
    settings: Settings, smtp_server: Any, tls_cert: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert[0]))  # trust the test server's certificate
    smtp = smtp_server(starttls=tls_cert, users={"alerts": "pa55-word-smtp"})
    s = settings.model_copy(
        update={
            "alert_smtp_host": "localhost",
            "alert_smtp_port": smtp.port,
            "alert_smtp_username": "alerts",
            "alert_smtp_password": SecretStr("pa55-word-smtp"),
            "alert_email_to": ["a@example.org", "b@example.org"],
        }
    )
    send_test(build_channels(s), "email", s)
    assert smtp.logins == ["alerts"]
    _, recipients, mail = smtp.messages[0]
    assert recipients == ["a@example.org", "b@example.org"]
    assert mail["Subject"] == "[codecdash] Test notification"
    assert mail["From"] == "codecdash@localhost"
    wrong = s.model_copy(update={"alert_smtp_password": SecretStr("not-it-at-all")})
    with pytest.raises(DeliveryError, match="login refused") as caught:
        send_test(build_channels(wrong), "email", wrong)
    assert caught.value.retry is False and "not-it-at-all" not in str(caught.value)
    # the server demands STARTTLS: without it, the failure says so
    plain = s.model_copy(update={"alert_smtp_security": "none"})
    with pytest.raises(DeliveryError, match="smtp localhost"):
        send_test(build_channels(plain), "email", plain)


# -- failures: retried with backoff, given up, visible ------------------------------------------
def test_failures_are_retried_with_backoff_and_logged(
    settings: Settings, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answers = [(503, "busy"), (500, "oops")]
    s = settings_for(settings, receiver, alert_rules={"budget": {"thresholds_pct": [10]}})
    svc = service(s)
    now = time.time()
    svc.evaluate(snapshot(summary={"month_to_date_usd": 600.0}), now)
    with caplog.at_level(logging.WARNING, logger="codecdash.alerts"):
        assert svc.deliver(now) == 0
    (row,) = svc.alerts.deliveries(["pending"], 10)
    assert row["attempts"] == 1 and row["last_error"].endswith("HTTP 503 (busy)")
    assert row["last_error"].startswith(f"{receiver.url}/…")  # the host, never the path
    assert 5 <= row["next_try_at"] - now <= 10  # 10 s, jittered between half and all
    assert svc.deliver(now + 4) == 0 and len(receiver.requests) == 1  # not due yet
    assert svc.deliver(now + 10) == 0
    (row,) = svc.alerts.deliveries(["pending"], 10)
    assert row["attempts"] == 2 and 10 <= row["next_try_at"] - (now + 10) <= 20
    assert svc.deliver(now + 40) == 1
    assert len(receiver.requests) == 3
    ids = {r.headers["x-codecdash-delivery"] for r in receiver.requests}
    assert len(ids) == 1  # one message, retried: receivers can drop repeats
    assert "retry in" in caplog.text and "T0-s3cret-path" not in caplog.text


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff(n, rng) for n in range(1, 12)]
    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20
    assert all(900 <= d <= 1800 for d in delays[-3:])
    assert backoff(1, rng, retry_after=120) == 120


def test_a_client_error_is_not_retried_and_repeated_failures_give_up(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.answers = [(404, "no such hook")]
    s = settings_for(
        settings, receiver, alert_max_attempts=2, alert_rules={"budget": {"thresholds_pct": [10]}}
    )
    svc = service(s)
    now = time.time()
    svc.evaluate(snapshot(summary={"month_to_date_usd": 600.0}), now)
    svc.deliver(now)
    (failed,) = svc.alerts.deliveries(["failed"], 10)
    assert failed["attempts"] == 1 and "HTTP 404 (no such hook)" in failed["last_error"]
    # a server error twice: given up after alert_max_attempts
    receiver.answers = [(500, ""), (500, "")]
    svc.evaluate(snapshot(summary={"month_to_date_usd": 10.0}), now + 60)  # resolves
    svc.evaluate(snapshot(summary={"month_to_date_usd": 600.0}), now + 7200)  # fires again
    svc.deliver(now + 7200)
    svc.deliver(now + 7300)
    rows = svc.alerts.deliveries(["failed"], 10)
    assert len(rows) == 2 and rows[0]["attempts"] == 2


def test_a_hung_receiver_times_out(settings: Settings, receiver: Receiver) -> None:
    import threading

    receiver.hold = threading.Event()
    s = settings_for(settings, receiver, alert_timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"no answer within 0\.3 s"):
        send_test(build_channels(s), "webhook", s)
    assert time.monotonic() - started < 5


# -- grouping, deduplication, the hourly limit --------------------------------------------------
def test_a_storm_is_grouped_and_rate_limited(settings: Settings, receiver: Receiver) -> None:
    s = settings_for(settings, receiver, alert_max_per_hour=2)
    store = Store(s.database_url)
    svc = service(s, store)
    # In the past: the store dates a heartbeat no later than its arrival, and w5's return
    # below is 400 s after `now`.
    now = time.time() - 3 * HOUR
    sent = []
    for i in range(6):  # six workers go silent, one a minute
        t = now + 60 * i
        store.heartbeat(Heartbeat(worker_id=f"w{i}", role="training", at=at(t - 600)).model_dump())
        svc.evaluate(snapshot(), t)
        sent.append(svc.deliver(t))
    assert sent == [1, 1, 0, 0, 0, 0]  # two an hour; the rest wait as ONE message
    (waiting,) = svc.alerts.deliveries(["pending"], 10)
    assert waiting["alerts"] == 4 and waiting["attempts"] == 0
    # w5 comes back before the message leaves: its newest state replaces the older one
    store.heartbeat(Heartbeat(worker_id="w5", role="training", at=at(now + 400)).model_dump())
    svc.evaluate(snapshot(), now + 400)
    assert svc.deliver(now + 3000) == 0
    assert svc.deliver(now + HOUR) == 1  # the first of the hour left the window
    bodies = [check_signature(r) for r in receiver.requests]
    assert [len(b["alerts"]) for b in bodies] == [1, 1, 4]
    last = {a["labels"]["worker"]: a["state"] for a in bodies[2]["alerts"]}
    assert last == {"w2": "firing", "w3": "firing", "w4": "firing", "w5": "resolved"}
    store.close()


# -- state that survives --------------------------------------------------------------------------
def test_a_restart_neither_repeats_nor_forgets(
    settings: Settings, store_url: str, receiver: Receiver
) -> None:
    s = settings_for(
        settings,
        receiver,
        database_url=store_url,
        alert_rules={"orchestrator_down": {"pending_seconds": 120}},
    )
    down = snapshot(infrastructure={"orchestrator": {"status": "down"}})
    now = time.time()
    first = Store(store_url)
    before = service(s, first)
    before.evaluate(down, now)  # pending
    first.close()
    # restarted: the pending period goes on from where it was
    second = Store(store_url)
    after = service(s, second)
    assert after.evaluate(down, now + 60) == []
    (fired,) = after.evaluate(down, now + 130)
    assert fired.notify and fired.alert.state == "firing"
    second.close()  # killed before the message went out (its lease left to expire)
    third = Store(store_url)
    again = service(s, third)
    assert again.evaluate(down, now + 140) == [] and not again.leader  # the lease runs
    assert again.evaluate(down, now + 161) == [] and again.leader  # still firing: not twice
    assert again.deliver(now + 161) == 1  # the queued message was not forgotten
    assert again.deliver(now + 170) == 0
    assert len(receiver.requests) == 1
    again.evaluate(snapshot(), now + 200)
    assert again.deliver(now + 200) == 1
    assert [check_signature(r)["status"] for r in receiver.requests] == ["firing", "resolved"]
    history = AlertStore(third).history(10)[0]
    assert [h["state"] for h in history] == ["resolved", "firing", "pending"]
    third.close()


def test_a_rule_whose_facts_fail_changes_nothing(settings: Settings) -> None:
    class Broken:
        def workers(self) -> list[dict[str, Any]]:
            raise RuntimeError("the database is unavailable: connection refused")

    store = Store(settings.database_url)
    svc = service(settings, store)
    now = time.time()
    store.heartbeat(Heartbeat(worker_id="w", role="training", at=at(now - 600)).model_dump())
    (stale,) = svc.evaluate(snapshot(), now)
    assert stale.alert.state == "firing"
    svc.facts_store = Broken()  # type: ignore[assignment]
    assert svc.evaluate(snapshot(), now + 10) == []  # not resolved for want of facts
    assert [a.state for a in svc.alerts.current(["firing"])] == ["firing"]
    store.close()
