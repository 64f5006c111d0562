"""JSON POSTs to webhooks: the generic one (signed) and the chat services' incoming webhooks."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from codecdash import __version__
from codecdash.alerts.channels.base import DeliveryError
from codecdash.alerts.redact import install_url_redaction, redact_url, scrub, url_secrets

SIGNATURE_HEADER = "X-Codecdash-Signature"
DELIVERY_HEADER = "X-Codecdash-Delivery"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def signature(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the body with the secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    secret: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """POST ``payload`` as JSON; :class:`DeliveryError` (secret-free) unless a 2xx answers."""
    body = orjson.dumps(payload)
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"codecdash/{__version__}",
        **(headers or {}),
    }
    if secret:
        sent[SIGNATURE_HEADER] = signature(body, secret)
    where = redact_url(url)
    hidden = [*url_secrets(url), secret]
    install_url_redaction()  # httpx logs each request's URL
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as http:
            response = http.post(url, content=body, headers=sent)
    except httpx.TimeoutException:
        raise DeliveryError(f"{where}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        reason = scrub(str(exc), hidden) or type(exc).__name__
        raise DeliveryError(f"{where}: {reason}") from None
    if response.is_success:
        return
    text = scrub(" ".join(response.text.split())[:200], hidden)
    status = f"{where}: HTTP {response.status_code}" + (f" ({text})" if text else "")
    if response.status_code in RETRY_STATUSES:
        raise DeliveryError(status, retry_after=_retry_after(response))
    raise DeliveryError(status, retry=False)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, min(float(value), 3600.0))
    except ValueError:
        return None
