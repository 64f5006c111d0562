"""`codecdash alerts …`: list, history, deliveries, test a channel, acknowledge, rules."""

from __future__ import annotations

import getpass
import time
from typing import Any

import click
import orjson

from codecdash.alerts.channels import NAMES, DeliveryError, build_channels, unconfigured
from codecdash.alerts.rules import build_rules
from codecdash.serving import command_settings, friendly_errors
from codecdash.timefmt import iso


def _settings(obj: dict[str, Any] | None, db: str | None) -> Any:
    return command_settings(obj, database_url=db)


def _alert_store(obj: dict[str, Any] | None, db: str | None) -> Any:
    from codecdash.store import Store
    from codecdash.store.alerts import AlertStore

    return AlertStore(Store(_settings(obj, db).database_url))


db_option = click.option("--db", default=None, help="SQLite file or SQLAlchemy URL.")
json_option = click.option("--json", "as_json", is_flag=True, help="JSON, one document.")


@click.group("alerts")
def alerts() -> None:
    """Alerts: list them, see their history and deliveries, test a channel, acknowledge."""


@alerts.command("list")
@db_option
@click.option("--all", "show_all", is_flag=True, help="Also those resolved in the last day.")
@json_option
@click.pass_obj
def list_alerts(obj: dict[str, Any], db: str | None, show_all: bool, as_json: bool) -> None:
    """Firing and pending alerts (firing first)."""
    from codecdash.api.alerts import alert_view

    def run() -> None:
        states = ["pending", "firing", "resolved"] if show_all else ["pending", "firing"]
        found = _alert_store(obj, db).current(states, resolved_since=time.time() - 86400)
        if as_json:
            click.echo(orjson.dumps({"alerts": [alert_view(a) for a in found]}).decode())
            return
        if not found:
            click.echo("no alerts" + ("" if show_all else " firing or pending"))
        for alert in found:
            labels = ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
            ack = f"\tacknowledged by {alert.acknowledged_by}" if alert.acknowledged_at else ""
            click.echo(
                f"{alert.id}\t{alert.state}\t{alert.severity}\t{alert.rule}"
                f"{'{' + labels + '}' if labels else ''}\tsince {iso(alert.since)}\t"
                f"{alert.summary}{ack}"
            )

    friendly_errors(run)()


@alerts.command("history")
@db_option
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@click.pass_obj
def history(obj: dict[str, Any], db: str | None, limit: int, as_json: bool) -> None:
    """What happened to alerts, newest first."""

    def run() -> None:
        rows, _ = _alert_store(obj, db).history(limit)
        if as_json:
            for row in rows:
                row["at"] = iso(row["at"])
            click.echo(orjson.dumps({"items": rows}).decode())
            return
        for row in rows:
            who = f" by {row['actor']}" if row["actor"] else ""
            click.echo(f"{iso(row['at'])}\t{row['state']}{who}\t{row['rule']}\t{row['summary']}")

    friendly_errors(run)()


@alerts.command("deliveries")
@db_option
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["pending", "sent", "failed"]),
    help="Only these (repeatable; default all).",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_obj
def deliveries(obj: dict[str, Any], db: str | None, states: tuple[str, ...], limit: int) -> None:
    """Notification messages: channel, state, attempts, the last error."""

    def run() -> None:
        rows = _alert_store(obj, db).deliveries(states or ("pending", "sent", "failed"), limit)
        if not rows:
            click.echo("no notifications")
        for row in rows:
            when = iso(row["sent_at"] or row["last_try_at"] or row["created_at"])
            error = f"\t{row['last_error']}" if row["last_error"] else ""
            click.echo(
                f"{row['id']}\t{row['channel']}\t{row['state']}\t{row['attempts']} attempts\t"
                f"{row['alerts']} alerts\t{when}{error}"
            )

    friendly_errors(run)()


@alerts.command("test")
@click.option("--channel", required=True, type=click.Choice(NAMES), help="The channel to try.")
@click.pass_obj
def test(obj: dict[str, Any], channel: str) -> None:
    """Send a test notification through CHANNEL now; say whether it went, or why not."""
    from codecdash.alerts.service import send_test

    def run() -> None:
        settings = _settings(obj, None)
        channels = build_channels(settings)
        if channel not in channels:
            raise click.ClickException(unconfigured(channel))
        target = channels[channel].target()
        try:
            send_test(channels, channel, settings)
        except DeliveryError as exc:
            raise click.ClickException(f"the {channel} channel failed: {exc}") from None
        click.echo(f"sent a test notification through {channel} ({target})")

    friendly_errors(run)()


@alerts.command("ack")
@click.argument("alert_id", type=click.IntRange(min=1))
@db_option
@click.option("--by", default=None, help="Who is on it (default: your user name).")
@click.pass_obj
def ack(obj: dict[str, Any], alert_id: int, db: str | None, by: str | None) -> None:
    """Acknowledge alert ALERT_ID (someone is on it)."""
    from codecdash.store.alerts import NotActive, NotFound

    def run() -> None:
        try:
            alert = _alert_store(obj, db).acknowledge(alert_id, (by or _user())[:100])
        except (NotFound, NotActive) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"acknowledged alert {alert.id} ({alert.rule}) as {alert.acknowledged_by}")

    friendly_errors(run)()


@alerts.command("rules")
@click.pass_obj
def rules(obj: dict[str, Any]) -> None:
    """Each rule with its settings in force (defaults and overrides)."""

    def run() -> None:
        for rule in build_rules(_settings(obj, None).alert_rules):
            state = "on" if rule.enabled else "off"
            click.echo(f"{rule.name} ({state}): {rule.description}")
            for name, value in rule.model_dump().items():
                click.echo(f"    {name} = {value!r}")

    friendly_errors(run)()


def _user() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"
