"""The Content-Security-Policy: one strict policy for every answer, and the page's own copy
that also allows the inline blocks `GET /` carries, each by its sha256 hash.

No answer ever allows 'unsafe-inline' or 'unsafe-eval': an inline block runs only when its
exact text was hashed here, where the page is served, so an edited page (`--page-dir`) gets
the hashes of its own blocks.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def source_hash(text: bytes) -> str:
    """A CSP hash source for an inline block's text: `'sha256-…'`."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text).digest()).decode() + "'"


def csp_allowing(scripts: Iterable[bytes] = (), styles: Iterable[bytes] = ()) -> str:
    """CSP, with `script-src` and `style-src` also allowing these inline blocks' texts."""
    policy = CSP
    for directive, blocks in (("script-src", scripts), ("style-src", styles)):
        hashes = " ".join(dict.fromkeys(source_hash(b) for b in blocks))
        if hashes:
            policy = policy.replace(f"{directive} 'self'", f"{directive} 'self' {hashes}", 1)
    return policy
