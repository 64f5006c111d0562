"""Real receivers for the alert tests: an HTTP webhook server, an SMTP server (aiosmtpd,
plain or STARTTLS with a login), snapshot makers, and training runs in a store.

Use with ``from alert_fixtures import *``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from codecdash.curve_models import MetricPoint
from codecdash.curve_rules import encode_value
from codecdash.models import ExperimentIn
from codecdash.store import Store, schema
from conftest import free_port

__all__ = [
    "Receiver",
    "Smtp",
    "age_steps",
    "log_losses",
    "receiver",
    "smtp_server",
    "snapshot",
    "tls_cert",
]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on a free port that records each POST and answers with the next of
    ``answers`` (status, body), then 200."""

    url: str
    requests: list[Received] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold: threading.Event | None = None  # set: answer; unset: hang (timeouts)

    def answer(self) -> tuple[int, str]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, "ok")

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with box.lock:
                box.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            if box.hold is not None:
                box.hold.wait(10)
            status, text = box.answer()
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        if box.hold is not None:
            box.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- SMTP -------------------------------------------------------------------------------------
@dataclass
class Smtp:
    host: str
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "codecdash test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``smtp_server(starttls=None | (cert, key), users={name: password})`` → :class:`Smtp`."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    controllers: list[Controller] = []

    def start(
        starttls: tuple[Path, Path] | None = None, users: dict[str, str] | None = None
    ) -> Smtp:
        box = Smtp("127.0.0.1", free_port())

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.messages.append(
                    (
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        message_from_bytes(envelope.content, policy=policy.default),
                    )
                )
                return "250 OK"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            if isinstance(data, LoginPassword):
                login, password = data.login.decode(), data.password.decode()
                if users and users.get(login) == password:
                    box.logins.append(login)
                    return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        kwargs: dict[str, Any] = {}
        if starttls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(starttls[0]), str(starttls[1]))
            kwargs.update(tls_context=context, require_starttls=True)
        if users is not None:
            # a login over plain SMTP too (the e-mail channel's "none" security) unless TLS
            kwargs.update(
                authenticator=authenticate,
                auth_required=bool(starttls),
                auth_require_tls=bool(starttls),
            )
        controller = Controller(Handler(), hostname=box.host, port=box.port, **kwargs)
        controller.start()
        controllers.append(controller)
        return box

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()


# -- snapshots --------------------------------------------------------------------------------
def snapshot(**changes: Any) -> dict[str, Any]:
    """A healthy snapshot (the parts rules read); keyword arguments replace sections, e.g.
    ``snapshot(summary={"month_to_date_usd": 4000})`` (merged into the section)."""
    base: dict[str, Any] = {
        "targets": {
            "compression_pct": 90.0,
            "psnr_db": 35.0,
            "ms_ssim": 0.95,
            "quality_metric": "psnr",
            "monthly_budget_usd": 5000.0,
        },
        "summary": {
            "month_to_date_usd": 100.0,
            "forecast_month_usd": 1000.0,
            "best_compression": None,
            "best_quality": None,
        },
        "infrastructure": {
            "orchestrator": {"status": "ok", "last_seen": "2025-03-14T12:00:00.000Z"},
            "training_workers": {"active": 2, "queue_depth": 0},
            "inference_workers": {"active": 1, "queue_depth": 0},
        },
        "recent_experiments": [],
    }
    for key, value in changes.items():
        if key == "infrastructure":
            for part, figures in value.items():
                base["infrastructure"][part] = {**base["infrastructure"][part], **figures}
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


# -- training runs ----------------------------------------------------------------------------
def log_losses(store: Store, experiment_id: str, losses: list[float], first: int = 0) -> None:
    """Logs one step per loss (from step `first`) for `experiment_id`, created running if
    it is new."""
    if store.get_experiment(experiment_id) is None:
        store.create_experiment(ExperimentIn(id=experiment_id, status="running"))
    points = [
        MetricPoint.model_validate({"step": first + i, "values": {"loss": encode_value(loss)}})
        for i, loss in enumerate(losses)
    ]
    store.log_metrics([(experiment_id, points)])


def age_steps(store: Store, experiment_id: str, seconds: float) -> None:
    """As if the experiment's newest metrics write had reached the server `seconds` earlier
    (the store dates each write by its own clock, which a test cannot set)."""
    summary = schema.training_summary
    with store.db.write() as conn:
        conn.execute(
            update(summary)
            .where(summary.c.experiment_id == experiment_id)
            .values(received_at=summary.c.received_at - seconds)
        )
