"""The interactive API reference at /api/docs: Swagger UI from files shipped with codecdash.

Swagger UI is vendored (`api/swagger/`: swagger-ui-dist from the npm registry, its version
in the file names, its licence and notices beside them) and served from this origin, from
memory, like the page's own files: no CDN, nothing unpinned runs on the origin of the page
that holds a read token. The docs page starts it from a file of its own (`docs-init.js`),
so it runs under the same strict Content-Security-Policy as every other answer: scripts
and styles from this origin only, nothing inline.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from codecdash.api.errors import ApiError
from codecdash.api.static import StaticPage

SWAGGER_UI_VERSION = "5.36.0"
BUNDLE = f"swagger-ui-{SWAGGER_UI_VERSION}-bundle.js"
STYLE = f"swagger-ui-{SWAGGER_UI_VERSION}.css"
INIT = "docs-init.js"

router = APIRouter()


def swagger_dir() -> Path:
    return Path(str(resources.files("codecdash").joinpath("api", "swagger")))


@functools.cache
def swagger_files() -> StaticPage:
    """The vendored files, read (and compressed) on the first visit, not at every start."""
    return StaticPage(swagger_dir())


def docs_page(release: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>codecdash API</title>
<link rel="icon" href="../favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="docs/{STYLE}?v={release}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/{BUNDLE}?v={release}"></script>
<script src="docs/{INIT}?v={release}"></script>
</body>
</html>
"""


@router.get("/api/docs", include_in_schema=False)
def api_docs() -> HTMLResponse:
    html = docs_page(swagger_files().release)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/api/docs/{name}", include_in_schema=False)
def api_docs_file(request: Request, name: str) -> Response:
    found = swagger_files().response(request, name) if name != "index.html" else None
    if found is None:
        raise ApiError(404, f"no such file: /api/docs/{name}")
    return found
