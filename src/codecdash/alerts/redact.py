"""Keeping secrets out of messages: webhook URLs (their path and query are the secret),
passwords and keys."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/xyz`` → ``https://hooks.slack.com/…``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "[a URL]"
    if not parts.scheme or not host:
        return "[a URL]"
    shown = f"[{host}]" if ":" in host else host
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{shown}{port}{rest}"


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every URL reduced to its scheme and host and every secret replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
