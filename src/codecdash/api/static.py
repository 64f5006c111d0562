"""The page's static files, served from memory: gzip-compressed, versioned, cached.

At start-up every file under `dashboard/` is read once. References between them
(`./app.js`, `./vendor/x.js`, ES-module imports) get `?v=<release hash>`, so a
versioned URL can be cached for a year (`immutable`) while `index.html` is revalidated.
Requests are looked up by exact name in a table: no path ever reaches the filesystem,
so traversal (`..`, encoded or not) finds nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

DASHBOARD_PACKAGE = "codecdash"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
TEXT = (".html", ".js", ".mjs", ".css", ".svg", ".json", ".txt", ".webmanifest")
# ./relative references in src/href attributes, CSS url(), and JS import specifiers.
REF = re.compile(
    r"""(?<=["'(])(\./[A-Za-z0-9_./-]+\.(?:js|mjs|css|svg|png|ico|webmanifest))(?=["')])"""
)
YEAR = 31536000


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def dashboard_dir() -> Path:
    return Path(str(resources.files(DASHBOARD_PACKAGE).joinpath("dashboard")))


def load_assets(root: Path | None = None) -> tuple[dict[str, Asset], str]:
    """name -> Asset for every file under root, and the release hash."""
    root = root or dashboard_dir()
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + data)
    release = digest.hexdigest()[:12]
    assets: dict[str, Asset] = {}
    for name, data in files.items():
        suffix = Path(name).suffix
        if suffix in (".html", ".js", ".mjs", ".css"):
            data = _version_refs(data, release)
        media_type = (
            TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
        )
        gz = gzip.compress(data, 9, mtime=0) if suffix in TEXT and len(data) > 512 else None
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        assets[name] = Asset(data, gz, media_type, etag)
    return assets, release


def _version_refs(data: bytes, release: str) -> bytes:
    return REF.sub(rf"\1?v={release}", data.decode("utf-8")).encode("utf-8")


class StaticPage:
    def __init__(self, root: Path | None = None) -> None:
        self.assets, self.release = load_assets(root)

    def response(self, request: Request, name: str) -> Response | None:
        asset = self.assets.get(name or "index.html")
        if asset is None:
            return None
        versioned = request.query_params.get("v") == self.release
        if name in ("", "index.html") or not versioned:
            cache = "no-cache"
        else:
            cache = f"public, max-age={YEAR}, immutable"
        headers = {"ETag": asset.etag, "Cache-Control": cache, "Vary": "Accept-Encoding"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
            body = asset.gzipped
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(b"", headers=headers, media_type=asset.media_type)
        return Response(body, headers=headers, media_type=asset.media_type)
