"""Keeping secrets out of messages: webhook URLs (their path and query are the secret),
passwords and keys."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

# A URL runs to the next space or quote, less the punctuation that ends a sentence.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!?)\]]")


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


def url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that are secret: the URL, its path and its query (a
    receiver's error page may echo the path alone)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url]
    if parts.path not in ("", "/"):
        found.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        found.append(parts.path)
    if parts.query:
        found.append(parts.query)
    return found


class RedactUrls(logging.Filter):
    """Reduces every URL in a log record to its scheme and host: httpx logs each request's
    URL at INFO, and a webhook's URL is its secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if type(value).__name__ == "URL":  # httpx.URL, without importing httpx here
        return redact_url(str(value))
    return value


def install_url_redaction(names: Iterable[str] = ("httpx",)) -> None:
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUrls) for f in logger.filters):
            logger.addFilter(RedactUrls())
