"""The alerts' API (list, history, deliveries, acknowledge; OpenAPI bounds), /metrics, the
CLI (`codecdash alerts …`), and secrets: never in the snapshot, the API, /metrics, logs,
`codecdash doctor` or error texts."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from pydantic import SecretStr

from alert_fixtures import *  # noqa: F403
from alert_fixtures import Receiver, snapshot
from api_helpers import assert_error
from codecdash.alerts.service import AlertService
from codecdash.cli import main
from codecdash.config import Settings
from codecdash.models import Heartbeat
from codecdash.store import Store

pytestmark = pytest.mark.anyio
DOWN = snapshot(infrastructure={"orchestrator": {"status": "down"}})


def alerts_of(app: FastAPI) -> AlertService:
    service: AlertService = app.state.codecdash.extras["alerts"]
    return service


def fire_two(app: FastAPI, now: float) -> AlertService:
    """The orchestrator down (pending, then firing) and a stale worker (firing)."""
    svc = alerts_of(app)
    store: Store = app.state.codecdash.store
    from datetime import UTC, datetime

    store.heartbeat(
        Heartbeat(
            worker_id="train-03", role="training", at=datetime.fromtimestamp(now - 900, UTC)
        ).model_dump()
    )
    svc.evaluate(DOWN, now)
    svc.evaluate(DOWN, now + 61)
    return svc


async def test_list_history_and_acknowledge(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    now = time.time() - 120
    fire_two(app, now)
    r = await client.get("/api/v1/alerts")
    assert r.status_code == 200
    body = r.json()
    assert [(a["rule"], a["state"]) for a in body["alerts"]] == [
        ("orchestrator_down", "firing"),
        ("worker_stale", "firing"),
    ]
    first = body["alerts"][0]
    assert set(first) >= {"rule", "severity", "state", "since", "summary"}
    assert first["severity"] == "critical" and first["acknowledged"] is False
    assert first["description"].startswith("The orchestrator's newest heartbeat")
    assert body["channels"] == [] and body["deliveries"] == {"pending": 0, "sent": 0, "failed": 0}

    # acknowledging needs a write token
    assert_error(await client.post(f"/api/v1/alerts/{first['id']}/ack"), 401)
    r = await client.post(f"/api/v1/alerts/{first['id']}/ack", headers=auth)
    assert r.status_code == 200
    assert r.json()["acknowledged"] is True and r.json()["acknowledged_by"] == "test-writer"
    assert_error(await client.post("/api/v1/alerts/999999/ack", headers=auth), 404, "not_found")
    assert_error(await client.post("/api/v1/alerts/0/ack", headers=auth), 422, "invalid")
    assert_error(await client.post("/api/v1/alerts/x/ack", headers=auth), 422, "invalid")

    # resolve it: resolved alerts cannot be acknowledged, and show with ?state=resolved
    alerts_of(app).evaluate(snapshot(), now + 100)
    assert_error(await client.post(f"/api/v1/alerts/{first['id']}/ack", headers=auth), 409)
    r = await client.get("/api/v1/alerts", params={"state": "resolved"})
    assert [a["rule"] for a in r.json()["alerts"]] == ["orchestrator_down"]
    r = await client.get("/api/v1/alerts", params={"state": "resolved", "resolved_hours": 0})
    assert r.json()["alerts"] == []

    # the history, newest first, in pages
    r = await client.get("/api/v1/alerts/history", params={"limit": 2})
    page = r.json()
    assert [(h["rule"], h["state"]) for h in page["items"]] == [
        ("orchestrator_down", "resolved"),
        ("orchestrator_down", "acknowledged"),
    ]
    assert page["items"][1]["actor"] == "test-writer"
    rest = (
        await client.get("/api/v1/alerts/history", params={"cursor": page["next_cursor"]})
    ).json()
    assert [h["state"] for h in rest["items"]] == ["firing", "firing", "pending"]
    assert rest["next_cursor"] is None
    only = await client.get("/api/v1/alerts/history", params={"rule": "worker_stale"})
    assert [h["state"] for h in only.json()["items"]] == ["firing"]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/alerts", {"state": "burning"}, 400),
        ("/api/v1/alerts", {"limit": 0}, 422),
        ("/api/v1/alerts", {"limit": 1001}, 422),
        ("/api/v1/alerts", {"resolved_hours": -1}, 422),
        ("/api/v1/alerts", {"resolved_hours": "nan"}, 422),
        ("/api/v1/alerts/history", {"limit": 1001}, 422),
        ("/api/v1/alerts/history", {"cursor": "abc"}, 400),
        ("/api/v1/alerts/history", {"cursor": "9" * 19}, 422),
        ("/api/v1/alerts/deliveries", {"state": "lost"}, 400),
    ],
)
async def test_bad_queries_answer_4xx(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], status: int
) -> None:
    assert_error(await client.get(path, params=params), status)


async def test_openapi_states_the_bounds(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    listing = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/alerts"]["get"]["parameters"]}
    assert listing["limit"]["maximum"] == 1000 and listing["limit"]["minimum"] == 1
    assert "pattern" in listing["state"]
    ack = doc["paths"]["/api/v1/alerts/{alert_id}/ack"]["post"]
    assert {"401", "404", "409"} <= set(ack["responses"])
    assert ack["parameters"][0]["schema"]["minimum"] == 1
    assert "bearer" in str(ack.get("security"))
    assert set(doc["paths"]) >= {"/api/v1/alerts/history", "/api/v1/alerts/deliveries"}


async def test_private_dashboards_need_a_read_token(make_app: Any, settings: Settings) -> None:
    app = await make_app(settings.model_copy(update={"private": True}))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        for path in ("/api/v1/alerts", "/api/v1/alerts/history", "/api/v1/alerts/deliveries"):
            assert_error(await client.get(path), 401)
        token = app.state.codecdash.store.create_token("reader", "read")
        r = await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


async def test_metrics_export_alert_states(app: FastAPI, client: httpx.AsyncClient) -> None:
    fire_two(app, time.time() - 120)
    text = (await client.get("/metrics")).text
    assert 'codecdash_alerts{rule="orchestrator_down",state="firing"} 1' in text
    assert 'codecdash_alerts{rule="worker_stale",state="firing"} 1' in text
    assert 'codecdash_alerts{rule="budget",state="pending"} 0' in text


async def test_alert_changes_reach_the_event_stream(app: FastAPI, event_stream: Any) -> None:
    async with event_stream(app) as events:
        first = await events.next_event(1.0)
        fire_two(app, time.time() - 120)
        second = await events.next_event(2.0)
        assert second.event == "snapshot" and second.id != first.id


# -- secrets ------------------------------------------------------------------------------------
SECRETS = {
    "alert_webhook_url": "/hook/T0-WEBHOOK-PATH-SECRET",
    "alert_webhook_secret": "HMAC-KEY-SECRET-42",
    "alert_slack_webhook_url": "/services/T00/B00/SLACK-SECRET-XYZ",
    "alert_teams_webhook_url": "/workflows/abc/triggers?sig=TEAMS-SIG-SECRET",
    "alert_smtp_password": "SMTP-PASSWORD-SECRET",
}


def secret_settings(settings: Settings, receiver: Receiver, smtp_port: int) -> Settings:
    values: dict[str, Any] = {}
    for name, value in SECRETS.items():
        values[name] = SecretStr(receiver.url + value if value.startswith("/") else value)
    return settings.model_copy(
        update={
            **values,
            "alert_smtp_host": "127.0.0.1",
            "alert_smtp_port": smtp_port,
            "alert_smtp_security": "none",
            "alert_smtp_username": "alerts",
            "alert_email_to": ["team@example.org"],
            "alert_rules": {"orchestrator_down": {"pending_seconds": 0}},
        }
    )


def leaked(text: str) -> list[str]:
    needles = [v.split("?")[-1] if "?" in v else v for v in SECRETS.values()]
    needles += [v.rsplit("/", 1)[-1] for v in SECRETS.values() if v.startswith("/")]
    return [n for n in needles if n in text]


async def test_secrets_never_shown(
    make_app: Any,
    settings: Settings,
    receiver: Receiver,
    smtp_server: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    smtp = smtp_server(users={"alerts": "the-right-one"})  # refuses our password
    s = secret_settings(settings, receiver, smtp.port)
    # receivers that echo what they were sent: the path, in an error page
    receiver.answers = [(500, f"no route for {p}") for p in SECRETS.values()]
    caplog.set_level(logging.DEBUG)
    app = await make_app(s)
    svc = alerts_of(app)
    now = time.time()
    svc.evaluate(DOWN, now)
    svc.deliver(now)
    rows = svc.alerts.deliveries(["pending", "failed"], 10)
    assert {r["channel"] for r in rows} == {"webhook", "slack", "teams", "email"}
    assert all(r["last_error"] for r in rows)
    seen = [repr(s), str(s.model_dump()), caplog.text]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        for path in (
            "/api/v1/dashboard",
            "/api/v1/alerts",
            "/api/v1/alerts/deliveries",
            "/api/v1/alerts/history",
            "/metrics",
            "/openapi.json",
            "/api/v1/health",
        ):
            seen.append((await client.get(path)).text)
    # the CLI: deliveries, a test through each channel (failing), doctor
    config = tmp_path / "codecdash.toml"
    lines = [
        f'database_url = "{s.database_url}"',
        "alert_smtp_host = '127.0.0.1'",
        f"alert_smtp_port = {smtp.port}",
        "alert_smtp_security = 'none'",
        "alert_smtp_username = 'alerts'",
        "alert_email_to = ['team@example.org']",
    ]
    for name, value in SECRETS.items():
        lines.append(f'{name} = "{receiver.url + value if value.startswith("/") else value}"')
    config.write_text("\n".join(lines) + "\n")
    for name in list(os.environ):
        if name.startswith("CODECDASH_"):
            monkeypatch.delenv(name)
    runner = CliRunner()
    outputs: dict[str, str] = {}
    for args in (
        ["alerts", "deliveries"],
        ["alerts", "list", "--json"],
        ["alerts", "test", "--channel", "webhook"],
        ["alerts", "test", "--channel", "slack"],
        ["alerts", "test", "--channel", "teams"],
        ["alerts", "test", "--channel", "email"],
        ["alerts", "rules"],
        ["doctor"],
    ):
        receiver.answers = [(500, f"no route for {p}") for p in SECRETS.values()]
        result = runner.invoke(main, ["--config", str(config), *args])
        outputs[" ".join(args)] = result.output
        assert "Traceback" not in result.output
    seen += outputs.values()
    assert "the webhook channel failed: " in outputs["alerts test --channel webhook"]
    assert "login refused" in outputs["alerts test --channel email"]
    assert "alert channel slack" in outputs["doctor"]
    assert "SMTP-PASSWORD" not in caplog.text
    for text in seen:
        assert leaked(text) == [], text[:2000]
    # the receivers did get the real URLs (the redaction is in what is shown only)
    assert {r.path.split("?")[0] for r in receiver.requests} >= {
        "/hook/T0-WEBHOOK-PATH-SECRET",
        "/services/T00/B00/SLACK-SECRET-XYZ",
        "/workflows/abc/triggers",
    }


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_list_ack_test_and_deliveries(
    settings: Settings, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("CODECDASH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    store = Store(settings.database_url)
    svc = AlertService(settings, store)
    svc.evaluate(DOWN, time.time() - 200)
    svc.evaluate(DOWN, time.time() - 100)
    store.close()
    runner = CliRunner()
    db = ["--db", settings.database_url]
    out = runner.invoke(main, ["alerts", "list", *db])
    assert out.exit_code == 0 and "firing\tcritical\torchestrator_down" in out.output
    alert_id = out.output.split("\t")[0]
    acked = runner.invoke(main, ["alerts", "ack", alert_id, *db, "--by", "alice"])
    assert acked.exit_code == 0 and "as alice" in acked.output
    assert "acknowledged by alice" in runner.invoke(main, ["alerts", "list", *db]).output
    missing = runner.invoke(main, ["alerts", "ack", "4242", *db])
    assert missing.exit_code == 1 and "no alert 4242" in missing.output
    history = runner.invoke(main, ["alerts", "history", *db]).output
    assert "acknowledged by alice" in history
    # a channel that is not configured says which settings it needs
    none = runner.invoke(main, ["alerts", "test", "--channel", "slack"])
    assert none.exit_code == 1 and "CODECDASH_ALERT_SLACK_WEBHOOK_URL" in none.output
    # a working one says so; a failing one gives the exact (secret-free) error
    monkeypatch.setenv("CODECDASH_ALERT_WEBHOOK_URL", receiver.url + "/ok/s3cr3t")
    good = runner.invoke(main, ["alerts", "test", "--channel", "webhook"])
    assert good.exit_code == 0, good.output
    assert f"sent a test notification through webhook ({receiver.url}/… (unsigned" in good.output
    assert receiver.requests[0].json()["test"] is True
    receiver.answers = [(403, "forbidden")]
    bad = runner.invoke(main, ["alerts", "test", "--channel", "webhook"])
    assert bad.exit_code == 1
    assert f"the webhook channel failed: {receiver.url}/…: HTTP 403 (forbidden)" in bad.output
    assert "no notifications" in runner.invoke(main, ["alerts", "deliveries", *db]).output
