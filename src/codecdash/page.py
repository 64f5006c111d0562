"""Your own copy of the page: `codecdash page eject DIR`, and the check of a page directory.

`codecdash serve`, `export` and `deploy` take `--page-dir DIR` (setting `page_dir`,
``CODECDASH_PAGE_DIR``): DIR's files are served instead of the installed ones, and a file
DIR does not have comes from the installed copy. So DIR may hold only the files you
changed, and a new release's new files still arrive.

`eject` writes every page file and a marker, ``.codecdash-page.json``, with the codecdash
version and ``PAGE_API``: the version of what the page relies on (the snapshot's shape, the
API's paths, the module names). When an upgrade changes any of that, ``PAGE_API`` goes up,
and a directory ejected from an older version is reported at start-up (a log line), by
`codecdash doctor`, `export` and `deploy`: its files may no longer match the server.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import click

from codecdash import __version__
from codecdash.api.static import dashboard_dir, page_files

PAGE_API = 4
"""Bump when the page's files must change with the server (see the module docstring).
3: `app.js` split into modules (state, live updates, URL state, cards, notices…), the URL's
view read by `url-state.js`, not by `table.js`.
4: the server draws the headline cards and the alert strip into index.html
(api/first_screen.py), shown by `.is-drawn` in `styles.css`, and keeps the module tags in a
template that `theme.js` puts in after the first paint (only when that theme.js does)."""
MARKER = ".codecdash-page.json"


@dataclass(frozen=True)
class PageDirReport:
    """What a page directory holds: its own files, the installed ones it falls back to,
    and any warning (an older or foreign copy)."""

    root: Path
    own: list[str]
    fallback: list[str]
    warning: str | None


def eject(dest: Path, *, force: bool = False) -> list[Path]:
    """Copies the installed page files into `dest`, with the version marker."""
    if dest.exists() and not dest.is_dir():
        raise click.ClickException(f"{dest} exists and is not a directory")
    existing = page_files(dest) if dest.is_dir() else {}
    source = page_files(dashboard_dir())
    clash = sorted(set(existing) & set(source))
    if clash and not force:
        raise click.ClickException(
            f"{dest} already holds page files ({', '.join(clash[:3])}"
            f"{'…' if len(clash) > 3 else ''}); pass --force to overwrite them"
        )
    written = []
    for name, path in source.items():
        target = dest.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
    marker = dest / MARKER
    marker.write_text(
        json.dumps({"codecdash": __version__, "page_api": PAGE_API}, indent=2) + "\n",
        encoding="utf-8",
    )
    return [*written, marker]


def inspect(root: Path) -> PageDirReport:
    """Checks a page directory; raises click.ClickException when it cannot be used."""
    if not root.is_dir():
        raise click.ClickException(
            f"page directory {root} does not exist (make one with `codecdash page eject {root}`)"
        )
    own = sorted(page_files(root))
    fallback = sorted(set(page_files(dashboard_dir())) - set(own))
    warning = None
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
        api, version = int(marker["page_api"]), str(marker.get("codecdash", "?"))
    except FileNotFoundError:
        warning = (
            f"{root} has no {MARKER}: it was not made by `codecdash page eject`, so nothing "
            "says which codecdash version its files were written for"
        )
    except (ValueError, KeyError, TypeError):
        warning = f"{root}/{MARKER} is not readable; eject again to rewrite it"
    else:
        if api != PAGE_API:
            warning = (
                f"{root} was ejected from codecdash {version} (page API {api}); this is "
                f"codecdash {__version__} (page API {PAGE_API}), whose server may not match "
                "those files: eject this version's page elsewhere and carry your changes over"
            )
    return PageDirReport(root, own, fallback, warning)


@click.group("page")
def page() -> None:
    """Your own copy of the dashboard page (see --page-dir)."""


@page.command("eject")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite page files already in DEST.")
def eject_command(dest: Path, force: bool) -> None:
    """Write the page's files to DEST to edit, then serve them with --page-dir DEST."""
    try:
        written = eject(dest, force=force)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {len(written)} files to {dest}")
    click.echo(f"edit them, then: codecdash serve --page-dir {dest}")
