"""`codecdash export --out DIR`: the static site plus a `dashboard.json` snapshot.

Beside them, `vocabulary.json` (the rules and labels the page reads: `GET /api/v1/vocabulary`
where there is an API); `codecdash deploy` uploads it with the page's files.

The page reads `./dashboard.json` (named in its `codecdash-snapshot-url` meta tag, unless
`--api-base` names an API to try first), so the export works from any static file server
(S3 behind CloudFront, `python -m http.server`, a file share). The files are the ones
`codecdash serve` serves, with the same versioned references (`./app.js?v=<release>`), so a
versioned file can be cached for a year. As `serve` does, `index.html` carries the snapshot
too (the headline figures in the first response), and its no-JavaScript link points to
`dashboard.json`. Beside it, the BD-rate table as the page's BD-rate Table section reads it
in an export: `bd-rates.json` (every set against its anchor in force, the `quality_metric`
setting, one row per method) and the same as `bd-rates.csv` and `bd-rates.tex` (its
downloads).
"""

from __future__ import annotations

import asyncio
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
import orjson

from codecdash.config import Settings
from codecdash.serving import command_settings, page_dir_option

SNAPSHOT_NAME = "dashboard.json"
BD_RATES_NAME = "bd-rates.json"
"""The BD-rate table (as `GET /api/v1/bd-rates` answers it), beside the snapshot."""
INDEX = "index.html"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
SHORT = "public, max-age=300"
SNAPSHOT_CACHE = "public, max-age=15"
API_BASE_META = re.compile(rb'(<meta\s+name="codecdash-api-base"\s+content=")[^"]*(")')
# The API's parts a deployment has not: `<meta name="codecdash-NAME" content="off">` each.
FEATURE_META = rb'(<meta\s+name="codecdash-%s"\s+content=")[^"]*(")'
SNAPSHOT_URL_META = re.compile(rb'(<meta\s+name="codecdash-snapshot-url"\s+content=")[^"]*(")')
# The no-JavaScript link to the data: the API's path, or in an export the snapshot file.
DATA_LINK = re.compile(rb'(<noscript>.*?<a href=")api/v1/dashboard(">)api/v1/dashboard(</a>)', re.S)


@dataclass(frozen=True)
class SiteFile:
    name: str  # relative path, "/"-separated
    body: bytes
    content_type: str
    cache_control: str


def site_files(
    api_base: str | None = None,
    *,
    page_dir: Path | None = None,
    snapshot: dict[str, Any] | None = None,
    api_without: tuple[str, ...] = (),
) -> list[SiteFile]:
    """The page's files as served: versioned references, content types, cache headers.

    With `snapshot` (a static export), index.html reads `dashboard.json` (unless
    `api_base` names an API), links to it for readers without JavaScript, and carries the
    snapshot itself. `api_without` names the API's parts a deployment has not (the AWS
    deployment: ``events``, as API Gateway holds no connection open, and ``alerts``, which
    only `codecdash serve` evaluates): the page is told so and never asks for them.
    """
    from codecdash.api.static import load_assets, with_snapshot

    assets, release = load_assets(page_dir)
    bodies = b"\n".join(a.body for a in assets.values())
    files: list[SiteFile] = []
    for name, asset in sorted(assets.items()):
        body = asset.body
        if name == INDEX:
            cache = REVALIDATE
            if api_base is not None:
                value = html.escape(api_base.rstrip("/"), quote=True).encode()
                body = API_BASE_META.sub(
                    rb"\g<1>" + value.replace(b"\\", b"\\\\") + rb"\g<2>", body
                )
            for feature in api_without:
                meta = re.compile(FEATURE_META % re.escape(feature.encode()))
                body = meta.sub(rb"\g<1>off\g<2>", body)
            if snapshot is not None:
                link = SNAPSHOT_NAME.encode()
                if not api_base:
                    body = SNAPSHOT_URL_META.sub(rb"\g<1>" + link + rb"\g<2>", body)
                body = DATA_LINK.sub(rb"\g<1>" + link + rb"\g<2>" + link + rb"\g<3>", body)
                body = with_snapshot(
                    body,
                    orjson.dumps(snapshot),
                    draw=None if api_base else "static",
                    theme_js=assets["theme.js"].body if "theme.js" in assets else None,
                )
        elif f"{name}?v={release}".encode() in bodies:
            cache = IMMUTABLE  # only ever fetched under a release-specific URL
        else:
            cache = SHORT
        files.append(SiteFile(name, body, asset.media_type, cache))
    files.append(vocabulary_file())
    return files


def vocabulary_file() -> SiteFile:
    """`vocabulary.json`: the rules and labels the page reads where it has no API (a static
    export, the AWS site when the API cannot be reached), as `GET /api/v1/vocabulary`."""
    from codecdash.page_vocabulary import CACHE_CONTROL, VOCABULARY_NAME, vocabulary_body

    return SiteFile(
        VOCABULARY_NAME, vocabulary_body()[0], "application/json", f"public, {CACHE_CONTROL}"
    )


def warn_page_dir(page_dir: str) -> None:
    """A page directory that may not match this version is said so (export, deploy)."""
    from codecdash.page import inspect

    report = inspect(Path(page_dir))
    if report.warning:
        click.echo(f"warning: {report.warning}", err=True)


def build_snapshot(settings: Settings) -> dict[str, Any]:
    """One snapshot from the configured sources (local store or AWS)."""
    from codecdash.api.app import build_sources
    from codecdash.snapshot import SnapshotBuilder
    from codecdash.store import Store

    store = Store(settings.database_url, active_window_s=settings.active_window_seconds)
    try:
        builder = SnapshotBuilder(settings, build_sources(settings, store))
        data: dict[str, Any] = asyncio.run(builder.build())
        return data
    finally:
        store.close()


def snapshot_file(snapshot: dict[str, Any]) -> SiteFile:
    return SiteFile(SNAPSHOT_NAME, orjson.dumps(snapshot), "application/json", SNAPSHOT_CACHE)


def bd_table_files(settings: Settings) -> list[SiteFile]:
    """The BD-rate table of the local store, for a static export: the bytes the API answers
    for `GET /api/v1/bd-rates` (and its `format=csv` and `format=latex`) with no query. None
    from AWS: the experiments are in DynamoDB there."""
    if settings.source != "local":
        return []
    from codecdash.experiments.table import TableQuery, table_for
    from codecdash.store import Store

    store = Store(settings.database_url, active_window_s=settings.active_window_seconds)
    try:
        table = table_for(store, settings)
        query = TableQuery(quality=settings.quality_metric)
        formats: tuple[Literal["json", "csv", "latex"], ...] = ("json", "csv", "latex")
        bodies = {fmt: table.encoded(query, fmt) for fmt in formats}
    finally:
        store.close()
    return [
        SiteFile(BD_RATES_NAME, bodies["json"], "application/json", SNAPSHOT_CACHE),
        SiteFile("bd-rates.csv", bodies["csv"], "text/csv; charset=utf-8", SNAPSHOT_CACHE),
        SiteFile(
            "bd-rates.tex", bodies["latex"], "application/x-latex; charset=utf-8", SNAPSHOT_CACHE
        ),
    ]


def write_export(out: Path, settings: Settings, api_base: str | None = None) -> list[Path]:
    """Writes the site, the snapshot and the BD-rate table under `out`; returns the paths
    written."""
    out.mkdir(parents=True, exist_ok=True)
    snapshot = build_snapshot(settings)
    page_dir = Path(settings.page_dir) if settings.page_dir else None
    files = [
        *site_files(api_base, page_dir=page_dir, snapshot=snapshot),
        snapshot_file(snapshot),
        *bd_table_files(settings),
    ]
    written: list[Path] = []
    for item in files:
        path = out.joinpath(*item.name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.body)
        written.append(path)
    return written


@click.command("export")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write (created if needed; existing files are replaced).",
)
@click.option("--db", default=None, help="SQLite file or SQLAlchemy URL (local source).")
@click.option(
    "--source",
    type=click.Choice(["local", "aws"]),
    default=None,
    help="Where facts come from (default: the configured source).",
)
@click.option(
    "--api-base",
    default=None,
    help="URL of an API on another origin, for the page to try before "
    "dashboard.json (written into index.html).",
)
@page_dir_option("Page files to use instead of the installed ones (see `codecdash page eject`).")
@click.pass_obj
def export(
    obj: dict[str, Any] | None,
    out: Path,
    db: str | None,
    source: str | None,
    api_base: str | None,
    page_dir: str | None,
) -> None:
    """Write the static site plus a dashboard.json snapshot (and, from a local store, the
    BD-rate table as bd-rates.json) to --out."""
    from codecdash.config import ConfigError
    from codecdash.store import StoreUnavailable

    try:
        settings = command_settings(obj, database_url=db, source=source, page_dir=page_dir)
        if settings.page_dir:
            warn_page_dir(settings.page_dir)
        written = write_export(out, settings, api_base)
    except (ConfigError, StoreUnavailable, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    snapshot = orjson.loads(out.joinpath(SNAPSHOT_NAME).read_bytes())
    failing = [s["name"] for s in snapshot.get("sources", []) if not s.get("ok")]
    click.echo(f"wrote {len(written)} files to {out} (snapshot of {snapshot['generated_at']})")
    if failing:
        click.echo(f"warning: these sources failed: {', '.join(failing)}", err=True)
