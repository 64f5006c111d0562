"""The interactive API reference at /api/docs (Swagger UI), with a policy that lets it run.

Every other answer carries the page's strict Content-Security-Policy (scripts and styles
from this origin only). Swagger UI loads its script and style from a CDN and starts with
an inline script, so this one page gets its own policy: that CDN, and the inline scripts
by their SHA-256 digest (never 'unsafe-inline').
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse

CDN = "https://cdn.jsdelivr.net"
FAVICON_ORIGIN = "https://fastapi.tiangolo.com"
INLINE_SCRIPT = re.compile(r"<script(?:\s[^>]*)?>(.*?)</script>", re.S)

router = APIRouter()


def docs_policy(html: str) -> str:
    """The CSP for one rendering of the docs page: its own inline scripts, by digest."""
    digests = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in INLINE_SCRIPT.findall(html)
        if body.strip()
    ]
    return (
        f"default-src 'self'; script-src 'self' {CDN} {' '.join(digests)}; "
        f"style-src 'self' {CDN}; img-src 'self' data: {FAVICON_ORIGIN}; "
        "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


@router.get("/api/docs", include_in_schema=False)
def api_docs() -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url="/openapi.json", title="codecdash API")
    html = page.body.decode() if isinstance(page.body, bytes) else str(page.body)
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_policy(html)})
