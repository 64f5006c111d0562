"""The `codecdash` command line."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from codecdash import __version__
from codecdash.config import ConfigError, Settings, load_settings
from codecdash.store import StoreUnavailable

log = logging.getLogger("codecdash")


def _settings(ctx_obj: dict[str, Any], **overrides: Any) -> Settings:
    return load_settings(ctx_obj.get("config"), **overrides)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures become one clear line and exit code 2 (or 1), never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, StoreUnavailable, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="codecdash")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    help="TOML settings file (default: ./codecdash.toml if present).",
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """codecdash: the live dashboard of AI video codec research."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
        click.option("--port", default=8050, show_default=True, type=click.IntRange(0, 65535)),
        click.option(
            "--db",
            "db",
            default=None,
            help="SQLite file or SQLAlchemy URL (default ./codecdash.db).",
        ),
        click.option(
            "--source",
            type=click.Choice(["local", "aws"]),
            default=None,
            help="Where facts come from (default local).",
        ),
        click.option(
            "--private",
            is_flag=True,
            default=None,
            help="Require a read token for the page and the API.",
        ),
        click.option(
            "--allowed-hosts",
            default=None,
            help="Comma-separated Host names accepted (when bound beyond loopback).",
        ),
        click.option(
            "--forwarded-allow-ips",
            default=None,
            help="Comma-separated addresses or networks of the reverse proxies whose "
            "X-Forwarded-For/-Proto are trusted (default: none; '*': any).",
        ),
        click.option("--access-log/--no-access-log", default=False, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_server(settings: Settings, host: str, port: int, access_log: bool) -> None:
    import uvicorn

    from codecdash.api.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    if settings.page_dir:
        announce_page_dir(settings.page_dir)
    app = create_app(settings, bind_host=host)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 # nosec B104
    store = settings.database_url.split("@")[-1]  # never print a password
    click.echo(f"codecdash {__version__} serving http://{shown}:{port}/ (store: {store})")
    # The imported modules and the app live as long as the process: keep them out of the
    # collector's full passes, and collect the young generation less often (a batch of
    # 1,000 experiments makes ~100,000 short-lived objects). About 10 % of ingest time.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=3,
        **UVICORN_OPTIONS,
    )


def announce_page_dir(page_dir: str) -> None:
    """Says where the page comes from, and warns when the copy may not match this version."""
    from pathlib import Path

    from codecdash.page import inspect

    report = inspect(Path(page_dir))
    log.info(
        "page files from %s (%d of its own, %d from the installed copy)",
        report.root,
        len(report.own),
        len(report.fallback),
    )
    if report.warning:
        log.warning("%s", report.warning)


page_dir_option = click.option(
    "--page-dir",
    "page_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Page files to use instead of the installed ones (see `codecdash page eject`).",
)


UVICORN_OPTIONS: dict[str, Any] = {
    # Proxy headers are the app's business (the `forwarded_allow_ips` setting): uvicorn's
    # own default would trust X-Forwarded-For from 127.0.0.1, so that any local process,
    # or a proxy that passes the header through, could choose its rate-limit address.
    "proxy_headers": False,
}


@main.command()
@server_options
@page_dir_option
@click.pass_obj
@friendly_errors
def serve(
    obj: dict[str, Any],
    host: str,
    port: int,
    db: str | None,
    source: str | None,
    private: bool | None,
    allowed_hosts: str | None,
    forwarded_allow_ips: str | None,
    access_log: bool,
    page_dir: str | None,
) -> None:
    """Serve the dashboard page and the API."""
    settings = _settings(
        obj,
        database_url=db,
        source=source,
        private=private,
        allowed_hosts=allowed_hosts,
        page_dir=page_dir,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    run_server(settings, host, port, access_log)


@main.group()
def token() -> None:
    """Make, list and revoke API tokens."""


def _store(obj: dict[str, Any], db: str | None) -> Any:
    from codecdash.store import Store

    settings = _settings(obj, database_url=db)
    return Store(settings.database_url)


@token.command("create")
@click.argument("name")
@click.option("--db", default=None, help="SQLite file or SQLAlchemy URL.")
@click.option("--scope", type=click.Choice(["write", "read"]), default="write", show_default=True)
@click.pass_obj
@friendly_errors
def token_create(obj: dict[str, Any], name: str, db: str | None, scope: str) -> None:
    """Make a token; it is printed once, alone on the last line."""
    from codecdash.store import TokenExists
    from codecdash.store.tokens import BadTokenName

    store = _store(obj, db)
    try:
        value = store.create_token(name, "read" if scope == "read" else "write")
    except (TokenExists, BadTokenName) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Created {scope} token {name!r}. It is shown only this once; store it safely:", err=True
    )
    click.echo(value)


@token.command("list")
@click.option("--db", default=None)
@click.pass_obj
@friendly_errors
def token_list(obj: dict[str, Any], db: str | None) -> None:
    """List tokens (names and dates, never the tokens)."""
    from codecdash.timefmt import iso

    rows = _store(obj, db).list_tokens()
    if not rows:
        click.echo("no tokens; make one with `codecdash token create NAME`")
    for row in rows:
        state = f"revoked {iso(row['revoked_at'])}" if row["revoked_at"] else "active"
        click.echo(f"{row['name']}\t{row['scope']}\tcreated {iso(row['created_at'])}\t{state}")


@token.command("revoke")
@click.argument("name")
@click.option("--db", default=None)
@click.pass_obj
@friendly_errors
def token_revoke(obj: dict[str, Any], name: str, db: str | None) -> None:
    """Revoke a token by name."""
    if not _store(obj, db).revoke_token(name):
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {name}")


def _register_commands() -> None:
    """Commands that live in their own modules."""
    from codecdash.agent.command import agent
    from codecdash.alerts.command import alerts
    from codecdash.demo.command import demo
    from codecdash.deploy import deploy
    from codecdash.doctor import doctor
    from codecdash.export import export
    from codecdash.importer import import_results
    from codecdash.page import page

    for command in (agent, alerts, demo, import_results, export, deploy, doctor, page):
        main.add_command(command)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
