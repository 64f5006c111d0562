"""The page's static files, served from memory: gzip-compressed, versioned, cached.

At start-up every file under `dashboard/` is read once. References between them
(`./app.js`, `./vendor/x.js`, ES-module imports) get `?v=<release hash>`, so a
versioned URL can be cached for a year (`immutable`) while `index.html` is revalidated.
Requests are looked up by exact name in a table: no path ever reaches the filesystem,
so traversal (`..`, encoded or not) finds nothing.

A page directory (`--page-dir`, `codecdash page eject`) is laid over the installed files:
its files replace theirs, and what it lacks comes from the installed copy.

`index.html` can carry the current snapshot (`with_snapshot`), so that the first response
already holds the headline figures (`serve` adds the current alerts, so that the alert strip
is drawn with them instead of pushing them down later): a `<script type="application/json">`
data block, which browsers never execute (the page's `script-src 'self'` has nothing to say
about it), with `<`, `>`, `&`, U+2028 and U+2029 escaped so no text in the data can end it.

`serve` also puts the small render-blocking files of `<head>` (`theme.js`, a classic script;
a stylesheet under INLINE_LIMIT) into `index.html` itself (`inline_head`), so that the first
paint waits for one request fewer, and draws the headline cards and the alert strip into it
(api/first_screen.py); the page's Content-Security-Policy then allows exactly those inline
blocks by their sha256 hashes (api/csp.py). A static export keeps them as files: its host
sends a fixed policy (the CloudFront stack's) that knows no hashes.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response

from codecdash.api.csp import CSP, csp_allowing
from codecdash.api.first_screen import defers_modules, draw_first_screen

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


def page_files(root: Path) -> dict[str, Path]:
    """relative name -> path of every file under root (dot-files left out)."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def read_files(root: Path) -> dict[str, bytes]:
    """relative name -> bytes of every file under root (dot-files left out)."""
    return {name: path.read_bytes() for name, path in page_files(root).items()}


def load_assets(root: Path | None = None) -> tuple[dict[str, Asset], str]:
    """name -> Asset for every page file (root's over the installed ones), and the release."""
    files = read_files(dashboard_dir())
    if root is not None and root.resolve() != dashboard_dir().resolve():
        files.update(read_files(root))
    files = dict(sorted(files.items()))
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


# In <head>: a stylesheet link and a classic script (not a module), each naming a page file.
HEAD_END = re.compile(rb"</head>", re.IGNORECASE)
STYLESHEET_LINK = re.compile(
    rb'<link rel="stylesheet" href="\./([A-Za-z0-9_./-]+\.css)(?:\?v=[0-9a-f]+)?">'
)
CLASSIC_SCRIPT = re.compile(rb'<script src="\./([A-Za-z0-9_./-]+\.js)(?:\?v=[0-9a-f]+)?"></script>')
# A bigger file stays linked: written into the page it would push the first response past
# what the first round trip carries (TCP's initial window, about 14 KB compressed), and the
# first paint would wait longer for it than for a second request beside it (styles.css).
INLINE_LIMIT = 4096
# What would end an inline block early: such a file stays linked.
BLOCK_END = {
    b"style": re.compile(rb"</style", re.I),
    b"script": re.compile(rb"</script|<!--", re.I),
}


@dataclass(frozen=True)
class InlinedHead:
    """index.html with the head's stylesheets and classic scripts written into it, and the
    texts of those blocks (their hashes go into the page's CSP)."""

    body: bytes
    scripts: tuple[bytes, ...]
    styles: tuple[bytes, ...]

    @property
    def csp(self) -> str:
        return csp_allowing(self.scripts, self.styles)


def inline_head(index_html: bytes, assets: dict[str, Asset]) -> InlinedHead:
    """Replaces each `<link rel="stylesheet" href="./x.css">` and `<script src="./x.js">` of
    `<head>` with the file's text in a `<style>` or `<script>` block (a file it cannot find,
    over INLINE_LIMIT, or whose text would end the block, stays linked)."""
    end = HEAD_END.search(index_html)
    if end is None:
        return InlinedHead(index_html, (), ())
    head, rest = index_html[: end.start()], index_html[end.start() :]
    found: dict[bytes, list[bytes]] = {b"script": [], b"style": []}

    def inline(tag: bytes) -> Callable[[re.Match[bytes]], bytes]:
        def replace(match: re.Match[bytes]) -> bytes:
            asset = assets.get(match.group(1).decode())
            if asset is None or len(asset.body) > INLINE_LIMIT or BLOCK_END[tag].search(asset.body):
                return match.group(0)
            found[tag].append(asset.body)
            return b"<" + tag + b">" + asset.body + b"</" + tag + b">"

        return replace

    head = STYLESHEET_LINK.sub(inline(b"style"), head)
    head = CLASSIC_SCRIPT.sub(inline(b"script"), head)
    return InlinedHead(head + rest, tuple(found[b"script"]), tuple(found[b"style"]))


SNAPSHOT_BLOCK_ID = "codecdash-snapshot"
ALERTS_BLOCK_ID = "codecdash-alerts"
# Before the first script of <head> (theme.js then knows the snapshot is there), else at its end.
HEAD_SCRIPT = re.compile(rb"<script\b|</head>", re.IGNORECASE)
JSON_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def snapshot_block(snapshot_json: bytes, etag: str | None = None) -> bytes:
    """The data block that carries a snapshot (JSON bytes) inside index.html."""
    return data_block(SNAPSHOT_BLOCK_ID, snapshot_json, etag)


def data_block(block_id: str, data_json: bytes, etag: str | None = None) -> bytes:
    """A JSON data block for index.html, escaped so that no text in the data ends it."""
    for raw, escaped in JSON_ESCAPES:
        data_json = data_json.replace(raw, escaped)
    attrs = f' data-etag="{html.escape(etag, quote=True)}"' if etag else ""
    return (
        f'<script type="application/json" id="{block_id}"{attrs}>'.encode()
        + data_json
        + b"</script>"
    )


def with_snapshot(
    index_html: bytes,
    snapshot_json: bytes,
    etag: str | None = None,
    alerts_json: bytes | None = None,
    *,
    draw: Literal["api", "static"] | None = None,
    theme_js: bytes | None = None,
) -> bytes:
    """index.html with the snapshot's data block in <head> (unchanged without a <head>),
    and the current alerts' block after it when given. With `draw`, the headline cards are
    drawn from it too (api/first_screen.py), for a page that reads the API beside it
    ("api", with `alerts_json`) or a static export ("static"); `theme_js`: the page's own,
    which says whether its modules can wait for the first paint."""
    match = HEAD_SCRIPT.search(index_html)
    if match is None:
        return index_html
    block = snapshot_block(snapshot_json, etag)
    if alerts_json is not None:
        block += b"\n" + data_block(ALERTS_BLOCK_ID, alerts_json)
    page = index_html[: match.start()] + block + b"\n" + index_html[match.start() :]
    if draw is None:
        return page
    alerts = orjson.loads(alerts_json) if alerts_json is not None else None
    drawn = draw_first_screen(
        page.decode("utf-8"),
        orjson.loads(snapshot_json),
        alerts=alerts,
        static=draw == "static",
        defer_modules=defers_modules(theme_js),
    )
    return drawn.encode("utf-8")


@dataclass(frozen=True)
class InlineSnapshot:
    """The snapshot to put in index.html: its JSON and its ETag (the API's); and the alert
    strip's first answer (`GET /api/v1/alerts?state=pending,firing`), when there is one."""

    body: bytes
    etag: str
    alerts: bytes | None = None


class StaticPage:
    """The page's files; with `inline_head` (`serve`), index.html carries its head's
    stylesheet and classic scripts, and answers with the CSP that allows them."""

    def __init__(self, root: Path | None = None, *, inline: bool = False) -> None:
        self.assets, self.release = load_assets(root)
        self.draw: Literal["api"] | None = "api" if inline else None
        self._index: tuple[InlineSnapshot, Asset] | None = None  # the last one made
        self.index_csp = CSP
        index = self.assets.get("index.html")
        if inline and index is not None:
            head = inline_head(index.body, self.assets)
            self.index_csp = head.csp
            self.assets["index.html"] = Asset(
                head.body,
                gzip.compress(head.body, 9, mtime=0),
                index.media_type,
                '"' + hashlib.sha256(head.body).hexdigest()[:16] + '"',
            )

    def _index_with(self, snapshot: InlineSnapshot) -> Asset:
        """index.html with this snapshot, made once per snapshot (its ETag: of the bytes)."""
        cached = self._index
        if cached is not None and cached[0] == snapshot:
            return cached[1]
        plain = self.assets["index.html"]
        body = with_snapshot(
            plain.body,
            snapshot.body,
            snapshot.etag,
            snapshot.alerts,
            draw=self.draw,
            theme_js=self.assets["theme.js"].body if "theme.js" in self.assets else None,
        )
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        asset = Asset(body, gzip.compress(body, 6, mtime=0), plain.media_type, etag)
        self._index = (snapshot, asset)
        return asset

    def response(
        self, request: Request, name: str, snapshot: InlineSnapshot | None = None
    ) -> Response | None:
        asset = self.assets.get(name or "index.html")
        if asset is None:
            return None
        if snapshot is not None and name in ("", "index.html"):
            asset = self._index_with(snapshot)
        versioned = request.query_params.get("v") == self.release
        if name in ("", "index.html") or not versioned:
            cache = "no-cache"
        else:
            cache = f"public, max-age={YEAR}, immutable"
        headers = {"ETag": asset.etag, "Cache-Control": cache, "Vary": "Accept-Encoding"}
        if name in ("", "index.html"):
            headers["Content-Security-Policy"] = self.index_csp
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
