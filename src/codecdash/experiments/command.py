"""``codecdash experiments list|delete|restore|tag|note|purge|audit``: curation on the local
store (``--db``, else the configured one), as the API does it (docs/curation.md).

The audit log names the operator ``local:<user>`` (the command needs no token: whoever
runs it can open the database). Exit status: 0 done (or nothing matched), 1 failed or
refused (an unknown id, a declined confirmation), 2 a usage error.
"""

from __future__ import annotations

import dataclasses
import getpass
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click

from codecdash.serving import command_settings, friendly_errors

SHOWN_IDS = 10
F = TypeVar("F", bound=Callable[..., Any])


def _actor() -> str:
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name (a container without a passwd entry)
        return "local"


def _services(obj: dict[str, Any], db: str | None) -> tuple[Any, Any]:
    """(the CurationService, the ExperimentService) over the store."""
    from codecdash.experiments.curation import CurationService
    from codecdash.experiments.service import ExperimentService
    from codecdash.store import Store

    settings = command_settings(obj, database_url=db)
    store = Store(settings.database_url)
    return CurationService(store, settings), ExperimentService(store, settings)


def _when(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.UsageError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def filter_options(func: F) -> F:
    """The list's filters, as `list` and `delete` take them."""
    from codecdash.experiments.vocabulary import STATUSES

    options = [
        click.option("--status", multiple=True, type=click.Choice(STATUSES), help="Repeatable."),
        click.option("--created-before", default=None, help="ISO 8601 (UTC when no offset)."),
        click.option("--created-after", default=None, help="ISO 8601 (UTC when no offset)."),
        click.option("--tag", default=None, help="A tag the experiment has."),
        click.option("--q", "q", default=None, help="Text in the id, the name or a tag."),
        click.option("--worker-id", default=None),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter(**given: Any) -> Any:
    from codecdash.experiments.curation import Filter

    return Filter(
        status=tuple(given["status"]),
        q=given["q"],
        worker_id=given["worker_id"],
        tag=given["tag"],
        created_after=_when(given["created_after"]),
        created_before=_when(given["created_before"]),
    )


def db_option(func: F) -> F:
    return click.option("--db", default=None, help="SQLite file or SQLAlchemy URL.")(func)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(f"{question} Refused: not a terminal; pass --yes to confirm.")
    if not click.confirm(question, default=False):
        raise click.ClickException("nothing changed")


def _ids_line(ids: Sequence[str], total: int) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    more = f" and {total - min(len(ids), SHOWN_IDS):,} more" if total > SHOWN_IDS else ""
    return shown + more


def _plural(n: int, noun: str = "experiment") -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _line(item: dict[str, Any]) -> str:
    tags = ",".join(item.get("tags") or [])
    cells = [item["id"], item["status"], item["created_at"], item.get("name") or "", tags]
    if item.get("deleted_at"):
        cells.append(f"deleted {item['deleted_at']} by {item.get('deleted_by') or '?'}")
    return "\t".join(cells)


def handled(func: F) -> F:
    """A refusal of the store (an id in the trash, tags past the limits) is one line."""
    from codecdash.experiments.service import TagsRefused
    from codecdash.store import Conflict
    from codecdash.store.trash import Exists, InTrash

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InTrash, Exists, Conflict, TagsRefused) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group("experiments")
def experiments() -> None:
    """List, delete, restore, tag and annotate experiments (the local store)."""


@experiments.command("list")
@filter_options
@click.option("--deleted", is_flag=True, help="List the trash instead (newest deletion first).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
@click.pass_obj
@friendly_errors
def list_command(
    obj: dict[str, Any], deleted: bool, limit: int, as_json: bool, db: str | None, **given: Any
) -> None:
    """List experiments, newest first: id, status, created, name, tags."""
    import orjson

    curation, _writes = _services(obj, db)
    if deleted:
        page = curation.trash(limit)
        items, total = page["items"], page["total"]
    else:
        from codecdash.experiments.readmodel import experiment

        query = dataclasses.replace(_filter(**given).query(), limit=limit)
        found = curation.store.list_experiments(query)
        items, total = [experiment(r) for r in found[0]], found[2]
    for item in items:
        click.echo(orjson.dumps(item).decode() if as_json else _line(item))
    if not as_json:
        where = "in the trash" if deleted else "match"
        click.echo(f"{_plural(total)} {where}; {len(items):,} shown", err=True)


@experiments.command("delete")
@click.argument("ids", nargs=-1)
@filter_options
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@db_option
@click.pass_obj
@friendly_errors
@handled
def delete_command(
    obj: dict[str, Any],
    ids: tuple[str, ...],
    yes: bool,
    dry_run: bool,
    db: str | None,
    **given: Any,
) -> None:
    """Move experiments to the trash: IDS, or those the filters match (restorable)."""
    curation, _writes = _services(obj, db)
    chosen = _filter(**given)
    if ids and not chosen.empty():
        raise click.UsageError("give ids or filters, not both")
    if not ids and chosen.empty():
        raise click.UsageError("name the experiments: ids, or at least one filter")
    actor = _actor()
    if ids:
        counted = curation.delete_ids(ids, actor, dry_run=True)
        missing = sorted(set(ids) - set(counted["ids"]))
        if missing:
            raise click.ClickException(f"no live experiment {missing[0]!r}; nothing changed")
    else:
        counted = curation.delete_matching(chosen, actor, dry_run=True)
    n = counted["matched"]
    if n == 0:
        click.echo("no experiment matches; nothing to delete")
        return
    click.echo(f"{_plural(n)} match: {_ids_line(counted['ids'], n)}")
    if dry_run:
        return
    _confirm(f"Move {_plural(n)} to the trash?", yes)
    done = (
        curation.delete_ids(ids, actor, dry_run=False)
        if ids
        else curation.delete_matching(chosen, actor, dry_run=False)
    )
    click.echo(f"moved {_plural(done['deleted'])} to the trash")
    if done["deleted"] < done["matched"]:
        left = done["matched"] - done["deleted"]
        click.echo(f"{_plural(left)} still match: run the command again", err=True)


@experiments.command("restore")
@click.argument("ids", nargs=-1, required=True)
@db_option
@click.pass_obj
@friendly_errors
@handled
def restore_command(obj: dict[str, Any], ids: tuple[str, ...], db: str | None) -> None:
    """Bring experiments back from the trash, as they were."""
    curation, _writes = _services(obj, db)
    back = curation.restore(list(ids), _actor())
    for item in back:
        click.echo(f"restored {item['id']}")
    missing = sorted(set(ids) - {item["id"] for item in back})
    if missing:
        raise click.ClickException(f"not in the trash: {', '.join(missing)}")


@experiments.command("tag")
@click.argument("experiment_id")
@click.option("--add", "add", multiple=True, help="A tag to add (repeatable).")
@click.option("--remove", "remove", multiple=True, help="A tag to remove (repeatable).")
@db_option
@click.pass_obj
@friendly_errors
@handled
def tag_command(
    obj: dict[str, Any],
    experiment_id: str,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    db: str | None,
) -> None:
    """Add or remove tags of an experiment (the others are kept)."""
    from codecdash.models import ExperimentPatch

    if not add and not remove:
        raise click.UsageError("give --add TAG or --remove TAG")
    patch = ExperimentPatch.model_validate({"add_tags": list(add), "remove_tags": list(remove)})
    _edit(obj, db, experiment_id, patch)


@experiments.command("note")
@click.argument("experiment_id")
@click.argument("text", required=False)
@click.option("--file", "from_file", type=click.File("r"), help="Read the note ('-': stdin).")
@click.option("--clear", is_flag=True, help="Remove the note.")
@db_option
@click.pass_obj
@friendly_errors
@handled
def note_command(
    obj: dict[str, Any],
    experiment_id: str,
    text: str | None,
    from_file: Any,
    clear: bool,
    db: str | None,
) -> None:
    """Set the free-text note of an experiment (Markdown, shown as text; ≤ 10,000 chars)."""
    from pydantic import ValidationError

    from codecdash.models import ExperimentPatch

    given = [text is not None, from_file is not None, clear]
    if sum(given) != 1:
        raise click.UsageError("give TEXT, --file PATH or --clear (one of them)")
    note = None if clear else (text if text is not None else from_file.read())
    try:
        patch = ExperimentPatch.model_validate({"notes": note})
    except ValidationError as exc:
        raise click.ClickException(f"note refused: {exc.errors()[0]['msg']}") from None
    _edit(obj, db, experiment_id, patch)


def _edit(obj: dict[str, Any], db: str | None, experiment_id: str, patch: Any) -> None:
    curation, writes = _services(obj, db)
    stored = writes.patch(experiment_id, patch, _actor())
    if stored is None:
        where = (
            " (it is in the trash: restore it first)" if curation.in_trash(experiment_id) else ""
        )
        raise click.ClickException(f"no experiment {experiment_id!r}{where}")
    tags = ", ".join(stored.get("tags") or []) or "none"
    notes = stored.get("notes")
    click.echo(
        f"{experiment_id}: tags {tags}; note {len(notes):,} chars"
        if notes
        else f"{experiment_id}: tags {tags}; no note"
    )


@experiments.command("purge")
@click.argument("ids", nargs=-1)
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Deleted more than this many days ago (default: the trash_retention_days setting).",
)
@click.option("--all", "everything", is_flag=True, help="The whole trash.")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@click.option("--dry-run", is_flag=True, help="Only count.")
@db_option
@click.pass_obj
@friendly_errors
def purge_command(
    obj: dict[str, Any],
    ids: tuple[str, ...],
    older_than_days: float | None,
    everything: bool,
    yes: bool,
    dry_run: bool,
    db: str | None,
) -> None:
    """Drop trashed experiments for good, with their training curves: IDS, those deleted
    more than --older-than-days ago, or --all."""
    curation, _writes = _services(obj, db)
    if everything and (ids or older_than_days is not None):
        raise click.UsageError("--all takes no ids and no --older-than-days")
    days = older_than_days
    if not ids and not everything and days is None:
        days = curation.settings.trash_retention_days
        if days <= 0:
            raise click.UsageError(
                "trash_retention_days is 0 (keep): give --older-than-days N, ids or --all"
            )
    chosen = list(ids) if ids else None
    counted = curation.purge(_actor(), older_than_days=days, ids=chosen, dry_run=True)
    n = counted["matched"]
    what = f"deleted over {days:g} days ago" if days is not None else "chosen"
    if n == 0:
        click.echo(f"the trash holds no experiment {what}; nothing to purge")
        return
    click.echo(f"{_plural(n)} in the trash {what}")
    if dry_run:
        return
    _confirm(f"Purge {_plural(n)} for good (no restore after this)?", yes)
    done = curation.purge(_actor(), older_than_days=days, ids=chosen)
    click.echo(f"purged {_plural(done['purged'])}")


@experiments.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--action", type=click.Choice(["delete", "restore", "purge", "edit"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
@click.pass_obj
@friendly_errors
def audit_command(
    obj: dict[str, Any], limit: int, action: str | None, as_json: bool, db: str | None
) -> None:
    """The audit log, newest first: when, who, what, how many, which ids."""
    import orjson

    curation, _writes = _services(obj, db)
    for entry in curation.audit(limit, action=action)["items"]:
        if as_json:
            click.echo(orjson.dumps(entry).decode())
            continue
        details = orjson.dumps(entry["details"]).decode() if entry["details"] else ""
        cells = [
            entry["at"],
            entry["actor"] or "-",
            entry["action"],
            str(entry["count"]),
            _ids_line(entry["ids"], entry["count"]),
            details,
        ]
        click.echo("\t".join(cells))
