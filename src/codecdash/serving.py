"""What the commands share, above all `codecdash serve` and `codecdash demo`.

The options that choose where and how to serve (:func:`server_options`, gathered into one
:class:`ServerOptions`), uvicorn's settings (:func:`uvicorn_options`, written once for both
commands), logging, a command's settings (:func:`command_settings`), the --page-dir option, and
the wrapper that turns known failures into one clear line (:func:`friendly_errors`). The
commands import this module; none imports another command's module or the CLI's.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import wraps
from pathlib import Path
from typing import Any

import click

from codecdash import __version__
from codecdash.config import ConfigError, Settings, load_settings
from codecdash.store import StoreUnavailable

log = logging.getLogger("codecdash")

Command = Callable[..., Any]

DB_HELP = "SQLite file or SQLAlchemy URL (default ./codecdash.db)."


def friendly_errors(func: Command) -> Command:
    """Known failures become one clear line and exit code 2 (or 1), never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, StoreUnavailable, ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def command_settings(obj: Any, **overrides: Any) -> Settings:
    """A command's settings: the file named by the group's --config (else ./codecdash.toml),
    the environment, then the command's own options (`overrides`; None: not given)."""
    config = obj.get("config") if isinstance(obj, dict) else None
    return load_settings(config, **overrides)


def page_dir_option(help: str) -> Callable[[Command], Command]:
    return click.option(
        "--page-dir", "page_dir", default=None, type=click.Path(file_okay=False), help=help
    )


@dataclass(frozen=True)
class ServerOptions:
    """What `serve` and `demo` are told about where and how to serve."""

    host: str
    port: int
    db: str | None
    source: str | None
    private: bool | None
    allowed_hosts: str | None
    forwarded_allow_ips: str | None
    access_log: bool

    def overrides(self) -> dict[str, Any]:
        """The settings these options give (None: not given)."""
        return {
            "database_url": self.db,
            "source": self.source,
            "private": self.private,
            "allowed_hosts": self.allowed_hosts,
            "forwarded_allow_ips": self.forwarded_allow_ips,
        }


def server_options(*, db_help: str = DB_HELP) -> Callable[[Command], Command]:
    """The options of a command that serves the dashboard, first in its --help in this order:
    --host, --port, --db (described by `db_help`), --source, --private, --allowed-hosts,
    --forwarded-allow-ips, --access-log. The command receives them as one
    ``server: ServerOptions`` argument."""
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
        click.option("--port", default=8050, show_default=True, type=click.IntRange(0, 65535)),
        click.option("--db", "db", default=None, help=db_help),
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
    names = [f.name for f in fields(ServerOptions)]

    def decorate(func: Command) -> Command:
        @wraps(func)
        def gathered(*args: Any, **kwargs: Any) -> Any:
            server = ServerOptions(**{name: kwargs.pop(name) for name in names})
            return func(*args, server=server, **kwargs)

        for option in reversed(options):
            gathered = option(gathered)
        return gathered

    return decorate


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )


def uvicorn_options(settings: Settings, access_log: bool) -> dict[str, Any]:
    """uvicorn's settings for codecdash, besides the app and where it listens."""
    return {
        "log_level": settings.log_level.lower(),
        "access_log": access_log,
        "server_header": False,
        "timeout_graceful_shutdown": 3,
        # Proxy headers are the app's business (the `forwarded_allow_ips` setting): uvicorn's
        # own default would trust X-Forwarded-For from 127.0.0.1, so that any local process,
        # or a proxy that passes the header through, could choose its rate-limit address.
        "proxy_headers": False,
    }


def run_server(settings: Settings, server: ServerOptions) -> None:
    """`codecdash serve`: the app where `server` says, until Ctrl-C."""
    import uvicorn

    from codecdash.api.app import create_app

    configure_logging(settings)
    if settings.page_dir:
        announce_page_dir(settings.page_dir)
    host, port = server.host, server.port
    app = create_app(settings, bind_host=host)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 # nosec B104
    store = settings.database_url.split("@")[-1]  # never print a password
    click.echo(f"codecdash {__version__} serving http://{shown}:{port}/ (store: {store})")
    # The imported modules and the app live as long as the process: keep them out of the
    # collector's full passes, and collect the young generation less often (a batch of
    # 1,000 experiments makes ~100,000 short-lived objects). About 10 % of ingest time.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    uvicorn.run(app, host=host, port=port, **uvicorn_options(settings, server.access_log))


def announce_page_dir(page_dir: str) -> None:
    """Says where the page comes from, and warns when the copy may not match this version."""
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
