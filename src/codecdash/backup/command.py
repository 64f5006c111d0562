"""``codecdash backup`` and ``codecdash restore``.

Exit status, for scripts: 0 done; 1 failed, nothing changed (OUT or the database as it
was); 2 a usage error, a PostgreSQL store among them (the message gives the ``pg_dump`` /
``pg_restore`` recipe); 3 the backup is damaged (the copy just made, the file checked by
``--verify-only``, or the file given to restore).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from codecdash.config import ConfigError, load_settings
from codecdash.store import StoreUnavailable
from codecdash.store.backup import NotSQLite, sqlite_file
from codecdash.store.db import postgres_target

FAILED, USAGE, DAMAGED = 1, 2, 3


class Failed(click.ClickException):
    exit_code = FAILED


class Usage(click.ClickException):
    exit_code = USAGE


class Damaged(click.ClickException):
    exit_code = DAMAGED


def _store_file(obj: dict[str, Any] | None, db: str | None, verb: str) -> Path:
    try:
        url = load_settings((obj or {}).get("config"), database_url=db).database_url
        return sqlite_file(url)
    except ConfigError as exc:
        raise Usage(str(exc)) from None
    except NotSQLite as exc:
        if exc.url.startswith("postgresql"):
            raise Usage(postgres_recipe(exc.url, verb)) from None
        raise Usage(f"cannot {verb} this store: {exc}") from None
    except ValueError as exc:
        raise Usage(str(exc)) from None


def postgres_recipe(url: str, verb: str) -> str:
    """What to do instead for a PostgreSQL store (never showing its password)."""
    target, schema = postgres_target(url)
    only = f" --schema '{schema}'" if schema else ""
    return "\n".join(
        [
            f"codecdash {verb} works on SQLite files; this store is PostgreSQL ({target}).",
            "Use PostgreSQL's own tools: pg_dump takes a consistent copy of a live database,",
            f"  pg_dump -Fc --dbname '{target}'{only} --file codecdash.dump",
            "and, with every codecdash server on it stopped, pg_restore puts it back:",
            f"  pg_restore --clean --if-exists --dbname '{target}'{only} codecdash.dump",
            "(the password from PGPASSWORD or ~/.pgpass; docs/backups.md covers replicas).",
        ]
    )


@click.command("backup")
@click.argument("out_arg", metavar="OUT", type=click.Path())
@click.option(
    "--db", default=None, help="SQLite file (or sqlite:/// URL) of the store; default: configured."
)
@click.option(
    "--verify",
    "check",
    is_flag=True,
    help="Check the copy (integrity, schema version, counts) before it takes the name OUT.",
)
@click.option(
    "--verify-only", is_flag=True, help="Check the existing backup OUT instead; write nothing."
)
@click.pass_obj
def backup(
    obj: dict[str, Any] | None, out_arg: str, db: str | None, check: bool, verify_only: bool
) -> None:
    """Write a consistent copy of the live SQLite store to OUT (a file, or a directory to put
    a file named by the UTC time in), while servers keep writing.

    Exit status: 0 done, 1 failed (OUT untouched), 2 usage (for PostgreSQL: the pg_dump
    recipe), 3 damaged (the copy, or the file checked with --verify-only).
    """
    from codecdash.backup.make import BackupDamaged, make_backup
    from codecdash.store.integrity import verify

    out = Path(out_arg)

    if verify_only:
        if db is not None:
            raise Usage("--verify-only checks the file OUT; --db has no use with it")
        verdict = verify(out.absolute())
        if not verdict.ok:
            raise Damaged(verdict.describe())
        assert verdict.facts is not None
        click.echo(f"{verdict.describe()}\n{verdict.facts.describe()}")
        return
    if out_arg.endswith(("/", os.sep)) and not out.is_dir():
        raise Failed(f"no directory {out}: make it first, or name a file")
    source = _store_file(obj, db, "backup")
    try:
        made = make_backup(source, out, check=check)
    except BackupDamaged as exc:
        raise Damaged(f"{exc}\nnothing was written at {out}") from None
    except (OSError, ValueError, StoreUnavailable) as exc:
        raise Failed(f"backup failed, nothing was written: {_reason(exc)}") from None
    click.echo(made.describe())


@click.command("restore")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--db", default=None, help="SQLite file of the store to replace; default: configured."
)
@click.option(
    "--no-keep",
    is_flag=True,
    help="Delete the replaced database instead of keeping it as <db>.before-restore-<time>.",
)
@click.pass_obj
def restore(obj: dict[str, Any] | None, file: Path, db: str | None, no_keep: bool) -> None:
    """Put a backup back as the store: checked first, refused while a server uses the
    store, the replaced database kept, an older backup migrated to this version.

    Exit status: 0 done, 1 refused or failed (the store untouched), 2 usage (for
    PostgreSQL: the pg_restore recipe), 3 the backup is damaged.
    """
    from codecdash.backup.lease import StoreInUse
    from codecdash.backup.make import BackupDamaged
    from codecdash.backup.restore import NewerBackup
    from codecdash.backup.restore import restore as put_back

    target = _store_file(obj, db, "restore")
    try:
        restored = put_back(file, target, keep=not no_keep)
    except BackupDamaged as exc:
        raise Damaged(f"{exc}\nnot restored; {target} is untouched") from None
    except (NewerBackup, StoreInUse) as exc:
        raise Failed(f"not restored: {exc}") from None
    except (OSError, ValueError, RuntimeError, StoreUnavailable) as exc:
        raise Failed(f"restore failed, {target} is untouched: {_reason(exc)}") from None
    click.echo(restored.describe())


def _reason(exc: BaseException) -> str:
    return str(exc).strip() or type(exc).__name__
