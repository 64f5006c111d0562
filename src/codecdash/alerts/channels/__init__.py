"""The notification channels, built from the settings: each configured one, by name."""

from __future__ import annotations

from pydantic import SecretStr

from codecdash.alerts.channels.base import Channel, DeliveryError
from codecdash.alerts.redact import url_secrets
from codecdash.config import Settings

NAMES = ("webhook", "slack", "teams", "email", "sns")

__all__ = ["NAMES", "Channel", "DeliveryError", "build_channels", "secrets", "unconfigured"]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def secrets(settings: Settings) -> list[str]:
    """The values that must never be shown (for scrubbing messages)."""
    values = [
        settings.alert_webhook_url,
        settings.alert_webhook_secret,
        settings.alert_slack_webhook_url,
        settings.alert_teams_webhook_url,
        settings.alert_smtp_password,
    ]
    found: list[str] = []
    for value in values:
        if value is not None:
            found += url_secrets(value.get_secret_value())
    return found


def build_channels(settings: Settings) -> dict[str, Channel]:
    s = settings
    timeout = s.alert_timeout_seconds
    channels: dict[str, Channel] = {}
    if s.alert_webhook_url is not None:
        from codecdash.alerts.channels.webhook import WebhookChannel

        channels["webhook"] = WebhookChannel(
            s.alert_webhook_url.get_secret_value(), _secret(s.alert_webhook_secret), timeout
        )
    if s.alert_slack_webhook_url is not None:
        from codecdash.alerts.channels.chat import SlackChannel

        channels["slack"] = SlackChannel(s.alert_slack_webhook_url.get_secret_value(), timeout)
    if s.alert_teams_webhook_url is not None:
        from codecdash.alerts.channels.chat import TeamsChannel

        channels["teams"] = TeamsChannel(s.alert_teams_webhook_url.get_secret_value(), timeout)
    if s.alert_smtp_host and s.alert_email_to:
        from codecdash.alerts.channels.email import EmailChannel

        channels["email"] = EmailChannel(
            s.alert_smtp_host,
            s.alert_smtp_port,
            s.alert_smtp_security,
            s.alert_email_from or f"codecdash@{s.alert_smtp_host}",
            list(s.alert_email_to),
            s.alert_smtp_username,
            _secret(s.alert_smtp_password),
            timeout,
        )
    if s.alert_sns_topic_arn:
        from codecdash.alerts.channels.sns import SnsChannel

        channels["sns"] = SnsChannel(s.alert_sns_topic_arn, timeout)
    return channels


def unconfigured(name: str) -> str:
    """Why channel ``name`` is not there: the settings it needs."""
    needs = {
        "webhook": "CODECDASH_ALERT_WEBHOOK_URL (and CODECDASH_ALERT_WEBHOOK_SECRET)",
        "slack": "CODECDASH_ALERT_SLACK_WEBHOOK_URL",
        "teams": "CODECDASH_ALERT_TEAMS_WEBHOOK_URL",
        "email": "CODECDASH_ALERT_SMTP_HOST and CODECDASH_ALERT_EMAIL_TO",
        "sns": "CODECDASH_ALERT_SNS_TOPIC_ARN",
    }
    if name not in needs:
        return f"unknown channel {name!r}; the channels are {', '.join(NAMES)}"
    return f"the {name} channel is not configured: set {needs[name]}"
