"""The page's static files over HTTP (in-process): compression, versioned URLs and their
caching, revalidation, security headers, and a release query on every reference between them."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from codecdash.api.csp import csp_allowing
from codecdash.api.static import dashboard_dir

pytestmark = pytest.mark.anyio

DASHBOARD = dashboard_dir()
YEAR = 31536000
GZIP = {"Accept-Encoding": "gzip, deflate, br"}
# The files a first visit loads: the page, its stylesheet, its scripts and modules.
TEXT_FILES = sorted(
    p.relative_to(DASHBOARD).as_posix()
    for p in DASHBOARD.rglob("*")
    if p.suffix in (".html", ".js", ".css", ".svg") and p.is_file()
)
BIG = [name for name in TEXT_FILES if (DASHBOARD / name).stat().st_size > 1024]


class Refs(HTMLParser):
    """src/href attributes, inline scripts and inline styles of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self.data_blocks: list[str] = []  # <script type="application/json">: never executed
        self.style_attrs: list[str] = []
        self.style_elements = 0
        self.handlers: list[str] = []
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.refs.append(a[key] or "")
        if "style" in a:
            self.style_attrs.append(tag)
        self.handlers += [k for k in a if k.startswith("on")]
        if tag == "style":
            self.style_elements += 1
        self._in_script_without_src = tag == "script" and not a.get("src")
        if self._in_script_without_src and a.get("type") == "application/json":
            self._in_script_without_src = False
            self.data_blocks.append(a.get("id") or "")

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script_without_src = False


async def page_refs(client: httpx.AsyncClient) -> tuple[str, Refs]:
    response = await client.get("/")
    assert response.status_code == 200
    parser = Refs()
    parser.feed(response.text)
    match = re.search(r"\?v=([0-9a-f]{8,})", response.text)
    assert match, "index.html references no versioned file"
    return match.group(1), parser


def local(refs: list[str]) -> list[str]:
    return [r for r in refs if r.startswith("./")]


# -- compression ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BIG)
async def test_big_text_files_are_gzipped(client: httpx.AsyncClient, name: str) -> None:
    plain = (DASHBOARD / name).read_bytes()
    response = await client.get(f"/{name}", headers=GZIP)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"].lower()
    assert int(response.headers["content-length"]) < len(plain) * 0.6  # it is compressed
    # httpx decodes it: the same file, but for the release on its references (and, in
    # index.html, the snapshot it carries, theme.js written in and the cards drawn).
    if name == "index.html":
        assert b"<!doctype html>" in response.content and b"</html>" in response.content
        return
    assert re.sub(rb"\?v=[0-9a-f]+", b"", response.content) == plain


async def test_without_accept_encoding_the_body_is_plain(client: httpx.AsyncClient) -> None:
    response = await client.get("/styles.css", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.headers["content-type"].startswith("text/css")


# -- caching -------------------------------------------------------------------------------
async def test_index_html_is_revalidated(client: httpx.AsyncClient) -> None:
    for path in ("/", "/index.html"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-cache"


async def test_versioned_urls_are_immutable_for_a_year(client: httpx.AsyncClient) -> None:
    release, refs = await page_refs(client)
    versioned = [r for r in local(refs.refs) if f"?v={release}" in r]
    assert len(versioned) >= 5, refs.refs
    for ref in versioned:
        response = await client.get(ref[1:])  # "./app.js?v=…" → "/app.js?v=…"
        assert response.status_code == 200, ref
        cache = response.headers["cache-control"]
        assert "immutable" in cache and f"max-age={YEAR}" in cache and "public" in cache, ref

    # The same file without the release, or with another one, must be revalidated.
    for query in ("", "?v=0123456789ab", f"?v={release}x"):
        response = await client.get(f"/app.js{query}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache", query


async def test_etag_and_304(client: httpx.AsyncClient) -> None:
    release, _ = await page_refs(client)
    for path in ("/", f"/app.js?v={release}", "/styles.css", "/favicon.svg"):
        first = await client.get(path, headers=GZIP)
        etag = first.headers["etag"]
        assert re.fullmatch(r'(W/)?"[^"]+"', etag), etag
        again = await client.get(path, headers={**GZIP, "If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
        other = await client.get(path, headers={**GZIP, "If-None-Match": '"not-it"'})
        assert other.status_code == 200


# -- security headers ----------------------------------------------------------------------
async def test_security_headers_on_the_page_and_its_assets(client: httpx.AsyncClient) -> None:
    _, refs = await page_refs(client)
    paths = ["/", "/index.html", *(r[1:] for r in local(refs.refs)), "/app.js", "/no-such.js"]
    for path in paths:
        response = await client.get(path, headers=GZIP)
        h = response.headers
        directives = {
            d.strip().split(" ", 1)[0]: d.strip() for d in h["content-security-policy"].split(";")
        }
        assert directives["default-src"] == "default-src 'self'", path
        assert directives["frame-ancestors"] == "frame-ancestors 'none'", path
        for name in ("script-src", "style-src"):
            if name in directives:
                assert "'unsafe-inline'" not in directives[name], path
                assert "'unsafe-eval'" not in directives[name], path
        assert h["x-content-type-options"] == "nosniff", path
        assert h["referrer-policy"], path


async def test_index_html_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    """None but theme.js, which GET / carries inline, and its CSP allows by hash alone."""
    response = await client.get("/")
    _, refs = await page_refs(client)
    theme = (DASHBOARD / "theme.js").read_bytes()
    assert refs.inline_scripts == 1
    assert b"<script>" + theme + b"</script>" in response.content
    policy = response.headers["content-security-policy"]
    assert policy == csp_allowing(scripts=[theme])
    assert "'unsafe-inline'" not in policy
    # Data, which no browser executes: the snapshot and the alert strip's first answer.
    assert refs.data_blocks == ["codecdash-snapshot", "codecdash-alerts"]
    assert refs.style_attrs == []
    assert refs.style_elements == 0
    assert refs.handlers == []


# -- versioned references ------------------------------------------------------------------
IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,]+\bfrom\s*)?|\bimport\s*\(\s*|\bexport\s*[\w*{}\s,]+\bfrom\s*)"""
    r"""["']([^"']+)["']"""
)
QUOTED_LOCAL = re.compile(r"""["'](\./[^"'\s]+\.(?:js|mjs|css|svg))(?:\?[^"']*)?["']""")


async def test_every_reference_carries_the_release(client: httpx.AsyncClient) -> None:
    release, refs = await page_refs(client)
    page_local = local(refs.refs)
    assert {"./app.js", "./styles.css"} <= {r.split("?")[0] for r in page_local}
    for ref in page_local:
        assert ref.endswith(f"?v={release}"), ref

    # Every module the page loads, followed through its imports.
    seen: set[str] = set()
    todo = [r.split("?")[0][2:] for r in page_local if r.split("?")[0].endswith(".js")]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        response = await client.get(f"/{name}?v={release}")
        assert response.status_code == 200, name
        text = response.text
        for spec in IMPORT.findall(text):
            assert spec.startswith("./"), f"{name} imports {spec!r}: not a relative ./ path"
            assert spec.endswith(f"?v={release}"), f"{name} imports {spec!r} without the release"
            todo.append(spec.split("?")[0][2:])
        # Quoted "./x.js" strings (files loaded on demand, such as uPlot) too.
        for match in QUOTED_LOCAL.finditer(text):
            assert match.group(0)[1:-1].endswith(f"?v={release}"), f"{name}: {match.group(0)}"
            target = match.group(1)[2:]
            if "/" not in name:  # relative to the dashboard root
                assert (await client.get(f"/{target}?v={release}")).status_code == 200, target
    # app.js and everything it imports, transitively.
    source_modules = {p.name for p in DASHBOARD.glob("*.js") if p.name != "theme.js"}
    assert source_modules <= seen


async def test_the_release_changes_with_the_files(tmp_path: Path) -> None:
    from codecdash.api.static import load_assets

    copy = tmp_path / "dashboard"
    for p in DASHBOARD.rglob("*"):
        if p.is_file():
            target = copy / p.relative_to(DASHBOARD)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())
    _, before = load_assets(copy)
    _, same = load_assets(copy)
    (copy / "styles.css").write_text((copy / "styles.css").read_text() + "\n/* changed */\n")
    assets, after = load_assets(copy)
    assert before == same != after
    assert f"./styles.css?v={after}".encode() in assets["index.html"].body


def test_the_first_paint_loads_only_the_first_screens_modules() -> None:
    """app.js's static imports (followed through) are the first screen's: the charts, the
    Rate-Distortion section, the table, the details dialog, live updates and uPlot come by
    dynamic import() once the first figures are painted, and are not preloaded either."""
    static_import = re.compile(r"""^import\s[^;]*?\sfrom\s*["']\./([\w-]+\.js)["'];""", re.M | re.S)
    seen: set[str] = set()
    todo = ["app.js"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += static_import.findall((DASHBOARD / name).read_text(encoding="utf-8"))
    later = {"charts.js", "chart-sections.js", "rd.js", "table.js", "details.js", "curves.js"}
    later |= {"overlay.js", "live.js", "vocabulary.js"}
    assert seen & later == set(), sorted(seen & later)
    assert {"cards.js", "alerts.js", "state.js", "notices.js"} <= seen
    app = (DASHBOARD / "app.js").read_text(encoding="utf-8")
    for name in later - {"charts.js", "overlay.js", "vocabulary.js"}:
        assert f'import("./{name}")' in app, name
    index = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    preloaded = set(re.findall(r'<link rel="modulepreload" href="\./([\w-]+\.js)">', index))
    assert preloaded == seen - {"app.js"}, sorted(preloaded ^ (seen - {"app.js"}))


def test_the_stylesheet_closes_every_block() -> None:
    """An unclosed block (an @media left open by an edit) swallows every rule after it."""
    css = re.sub(r"/\*.*?\*/", "", (dashboard_dir() / "styles.css").read_text(), flags=re.S)
    depth = 0
    for number, line in enumerate(css.splitlines(), 1):
        depth += line.count("{") - line.count("}")
        assert depth >= 0, f"styles.css line {number} closes a block never opened"
    assert depth == 0, "styles.css leaves a block open"
