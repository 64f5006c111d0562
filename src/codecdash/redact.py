"""Error texts fit for anyone who can load the page: no account ids, ARNs, access keys or
AWS's own error messages.

The snapshot (its ``sources`` rows, the costs' ``error``) and the API's error answers are
public on a deployed dashboard. AWS error messages name the caller's role ARN, the account
and the resource ("User: arn:aws:sts::123456789012:assumed-role/… is not authorized to
perform: dynamodb:GetItem on resource: arn:aws:dynamodb:…"). :func:`public_text` keeps what
helps a viewer (the operation and the error code: ``GetItem: permission denied
(AccessDeniedException)``) and drops the rest; the full text stays in the server's log and
in `codecdash doctor`, which only the operator sees.
"""

from __future__ import annotations

import re
from typing import Final

# "Operation: Code: message" and "Operation: permission denied (Code): message", as
# codecdash.aws_clients.describe_error writes them: the message is AWS's own text.
_AWS_ERROR: Final = re.compile(
    r"\b(?P<head>[A-Z][A-Za-z0-9]+: "
    r"(?:permission denied \([A-Za-z0-9.]+\)|[A-Z][A-Za-z0-9.]+))(?=:|$)(?::[^;|]*)?"
)
_ARN: Final = re.compile(r"\barn:aws[a-z-]*:[^\s\"'`,;()<>\[\]{}]*")
_ACCOUNT: Final = re.compile(r"(?<![\d.])\d{12}(?![\d.])")
_ACCESS_KEY: Final = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA|AGPA|ANPA)[A-Z0-9]{12,}\b")
_AWS_HOST: Final = re.compile(
    r"\b[\w.-]*\d{12}[\w.-]*\.amazonaws\.com(?:\.cn)?\b|"  # hosts that carry the account
    r"\bhttps://sqs\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/\S*"  # queue URLs carry it too
)

MAX_CHARS: Final = 300


def public_text(text: str | None) -> str | None:
    """`text` without AWS error messages, ARNs, account ids or access key ids."""
    if text is None:
        return None
    out = _AWS_ERROR.sub(lambda m: m["head"], str(text))
    out = _AWS_HOST.sub("<aws address>", out)
    out = _ARN.sub("<arn>", out)
    out = _ACCESS_KEY.sub("<key>", out)
    out = _ACCOUNT.sub("<account>", out)
    out = out.splitlines()[0] if out else out
    return out[:MAX_CHARS]
