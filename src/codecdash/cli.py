"""The `codecdash` command line."""

from __future__ import annotations

import sys
from typing import Any

import click

from codecdash import __version__
from codecdash.agent.command import agent
from codecdash.alerts.command import alerts
from codecdash.backup.command import backup, restore
from codecdash.demo.command import demo
from codecdash.deploy.command import deploy
from codecdash.doctor import doctor
from codecdash.experiments.command import experiments
from codecdash.export import export
from codecdash.importer import import_results
from codecdash.page import page
from codecdash.serving import (
    ServerOptions,
    command_settings,
    friendly_errors,
    page_dir_option,
    run_server,
    server_options,
)


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


@main.command()
@server_options()
@page_dir_option("Page files to use instead of the installed ones (see `codecdash page eject`).")
@click.pass_obj
@friendly_errors
def serve(obj: dict[str, Any], server: ServerOptions, page_dir: str | None) -> None:
    """Serve the dashboard page and the API."""
    run_server(command_settings(obj, **server.overrides(), page_dir=page_dir), server)


@main.group()
def token() -> None:
    """Make, list and revoke API tokens."""


def _store(obj: dict[str, Any], db: str | None) -> Any:
    from codecdash.store import Store

    settings = command_settings(obj, database_url=db)
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


for _command in (
    agent,
    alerts,
    backup,
    demo,
    experiments,
    import_results,
    export,
    deploy,
    doctor,
    page,
    restore,
):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
