"""E-mail through SMTP: STARTTLS (default), implicit TLS or none, with an optional login."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal

from codecdash.alerts import message
from codecdash.alerts.channels.base import DeliveryError
from codecdash.alerts.model import Notification
from codecdash.alerts.redact import scrub

Security = Literal["starttls", "tls", "none"]


class EmailChannel:
    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        sender: str,
        recipients: list[str],
        username: str | None,
        password: str | None,
        timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.sender = sender
        self.recipients = recipients
        self.username = username
        self.password = password
        self.timeout = timeout

    def target(self) -> str:
        login = f", login {self.username}" if self.username else ""
        return (
            f"smtp {self.host}:{self.port} ({self.security}{login}) → {', '.join(self.recipients)}"
        )

    def compose(self, notification: Notification) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = message.title(notification)
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(notification.created_at, usegmt=True)
        mail["Message-ID"] = make_msgid(idstring=notification.delivery_id or None)
        mail["X-Codecdash-Delivery"] = notification.delivery_id
        mail.set_content(message.body(notification))
        return mail

    def send(self, notification: Notification) -> None:
        mail = self.compose(notification)
        where = f"smtp {self.host}:{self.port}"
        context = ssl.create_default_context()
        try:
            if self.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.security == "starttls":
                    client.starttls(context=context)
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where}: login refused ({_reply(exc)})", retry=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise DeliveryError(f"{where}: recipients refused: {refused}", retry=False) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{where}: {exc}", retry=False) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise DeliveryError(f"{where}: {_reply(exc)}", retry=not permanent) from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            reason = scrub(str(exc), [self.password]) or type(exc).__name__
            raise DeliveryError(f"{where}: {reason}") from None


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"{exc.smtp_code} {' '.join(text.split())[:200]}".strip()
