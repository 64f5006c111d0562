"""`codecdash import-results`: rate-distortion result files in as experiments or anchors.

    codecdash import-results --anchor results/x264-medium-tune-zerolatency.json --db codecdash.db
    codecdash import-results results/*.json --url http://127.0.0.1:8050 --token "$TOKEN"

Files are CompressAI's JSON result format and its variants (`codecdash.results`). Without
`--anchor` each file becomes one experiment whose id is the file's name (so importing a file
again replaces the experiment instead of adding one); with it, each file becomes an anchor
named by its `name`. Every file is read and checked before anything is written: one bad file
and nothing is imported. The CLI (`codecdash.cli`) registers this command.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
from click.core import ParameterSource

from codecdash.experiments.vocabulary import STATUSES, QualityMetric

if TYPE_CHECKING:
    from codecdash.client import Client
    from codecdash.config import Settings
    from codecdash.results import ResultCurve
    from codecdash.sources.aws.importing import TableWriter
    from codecdash.store import Store

ID_CHARS = re.compile(r"[^A-Za-z0-9._:\-]+")
MAX_RD_POINTS = 64
RECOMPUTE_WAIT_S = 600.0
"""How long an import through the API waits for the server's BD-rates to follow an anchor."""


class ImportProblem(Exception):
    """Something about the files or the target that stops the import; nothing was written."""


@dataclass
class Item:
    path: Path
    curve: ResultCurve
    key: str
    """The anchor's name, or the experiment's id."""
    body: dict[str, Any]
    """The anchor's description and points, or the experiment's fields."""

    @property
    def points(self) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = self.body["rd_points"]
        return points


@dataclass(frozen=True)
class AnchorWrite:
    created: bool
    in_force: str | None
    recomputed: int
    recomputing: bool = False
    """The server is still deriving the stored BD-rates again."""
    rederived: bool = False
    """The server derived them again (how many changed, it does not say)."""


class Target(Protocol):
    """Where the results go: the store itself, or a server through its API."""

    def anchor_in_force(self) -> dict[str, Any] | None: ...

    def quality(self) -> QualityMetric: ...

    def put_anchor(self, item: Item) -> AnchorWrite: ...

    def put_experiment(self, item: Item) -> dict[str, Any]: ...

    def report(self, experiment_id: str, points: list[dict[str, Any]]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class StoreTarget:
    """Writes through the same service as the API (BD-rates derived, anchors followed)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        from codecdash.experiments.service import ExperimentService

        self.store = store
        self.settings = settings
        self.writes = ExperimentService(store, settings)

    def anchor_in_force(self) -> dict[str, Any] | None:
        from codecdash.experiments.rederive import sync_bd_rates

        # As a server does on start: the settings or another process may have changed the
        # anchor in force since the stored figures were derived.
        changed = sync_bd_rates(self.store, self.settings)
        if changed:
            click.echo(
                f"BD-rate of {changed} stored experiments derived again first "
                f"(the anchor in force changed since they were)"
            )
        return self.writes.bd_rates.anchor()

    def quality(self) -> QualityMetric:
        return self.settings.quality_metric

    def put_anchor(self, item: Item) -> AnchorWrite:
        from codecdash.experiments.anchors import save_anchor

        change = save_anchor(
            self.store, self.settings, item.key, item.body["description"], item.points
        )
        return AnchorWrite(change.created, change.in_force, change.recomputed or 0)

    def put_experiment(self, item: Item) -> dict[str, Any]:
        from codecdash.models import ExperimentIn

        stored, _created = self.writes.put(item.key, ExperimentIn.model_validate(item.body))
        return stored

    def report(self, experiment_id: str, points: list[dict[str, Any]]) -> dict[str, Any]:
        from codecdash.experiments.anchors import bd_report_for

        anchor = self.writes.bd_rates.anchor()
        if anchor is None:
            raise ValueError("no anchor yet")
        return bd_report_for(anchor, points, self.quality())

    def close(self) -> None:
        self.store.close()


class AwsTarget(StoreTarget):
    """The AWS deployment (``--aws``): checked and reported on a private copy of the read
    replica, written into the DynamoDB table with the caller's AWS credentials; the
    stream function carries the writes into the replica (``sources/aws/importing.py``)."""

    def __init__(self, writer: TableWriter, settings: Settings) -> None:
        super().__init__(writer.store, settings)
        self.writer = writer

    def put_anchor(self, item: Item) -> AnchorWrite:
        written = super().put_anchor(item)
        self.writer.put_anchor(item.key, item.body["description"], item.points)
        return written

    def put_experiment(self, item: Item) -> dict[str, Any]:
        from codecdash.models import ExperimentIn

        stored = super().put_experiment(item)
        self.writer.put_experiment(item.key, ExperimentIn.model_validate(item.body))
        return stored

    def close(self) -> None:
        self.writer.close()


class ApiTarget:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._quality: QualityMetric = "psnr"

    def anchor_in_force(self) -> dict[str, Any] | None:
        listing = self.client.anchors()
        self._quality = "ms_ssim" if listing.get("quality_metric") == "ms_ssim" else "psnr"
        name = listing.get("default")
        return next((a for a in listing.get("items", []) if a["name"] == name), None)

    def quality(self) -> QualityMetric:
        return self._quality

    def put_anchor(self, item: Item) -> AnchorWrite:
        answer = self.client.put_anchor(item.key, item.body["description"], item.points)
        recomputing = bool(answer.get("recomputing"))
        # The server derives the stored BD-rates again in the background: wait for it (a
        # while), so that what is imported next is reported against the anchor in force.
        deadline = time.monotonic() + RECOMPUTE_WAIT_S
        while recomputing and time.monotonic() < deadline:
            time.sleep(0.2)
            recomputing = bool(self.client.anchors().get("recomputing"))
        return AnchorWrite(
            bool(answer.get("created")),
            answer.get("default"),
            int(answer.get("recomputed") or 0),
            recomputing,
            rederived=bool(answer.get("recomputing")) and not recomputing,
        )

    def put_experiment(self, item: Item) -> dict[str, Any]:
        return self.client.put_experiment(item.key, **item.body)

    def report(self, experiment_id: str, points: list[dict[str, Any]]) -> dict[str, Any]:
        from codecdash.client import ClientError

        try:
            return self.client.bd_report(experiment_id)
        except ClientError as exc:
            if exc.status in (404, 422):
                raise ValueError(exc.message) from None
            raise

    def close(self) -> None:
        self.client.close()


# -- reading and checking the files ----------------------------------------------------------
def experiment_id(path: Path, prefix: str = "") -> str:
    """A stable id from the file's name: A-Z a-z 0-9 . _ : - kept, other runs become '-'."""
    stem = ID_CHARS.sub("-", path.stem).strip("-") or "results"
    return (prefix + stem)[:128]


def representative(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The middle point by rate (the lower middle of an even number)."""
    ordered = sorted(points, key=lambda p: p.get("bitrate_kbps") or p.get("bpp") or 0.0)
    return ordered[(len(ordered) - 1) // 2]


def _points(curve: ResultCurve) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if v is not None} for p in curve.points]


def read_items(
    paths: list[Path], *, anchor: bool, name: str | None, status: str, id_prefix: str
) -> list[Item]:
    """Read every file and build what will be written; ImportProblem lists every problem."""
    from pydantic import ValidationError

    from codecdash.experiments.anchors import check_anchor_name, check_curve
    from codecdash.models import ExperimentIn
    from codecdash.results import read_result_file

    problems: list[str] = []
    items: list[Item] = []
    for path in paths:
        try:
            curve = read_result_file(path)
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
            continue
        except IsADirectoryError:
            problems.append(f"{path}: is a directory; name the .json files in it")
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot read it ({exc.strerror or exc})")
            continue
        except ValueError as exc:
            problems.append(str(exc))
            continue
        points = _points(curve)
        if len(points) > MAX_RD_POINTS:
            problems.append(f"{path}: {len(points)} points; at most {MAX_RD_POINTS} are kept")
            continue
        try:
            if anchor:
                key = check_anchor_name(name or curve.name)
                check_curve(points, "psnr")
                body: dict[str, Any] = {
                    "description": curve.description or None,
                    "rd_points": points,
                }
            else:
                key = experiment_id(path, id_prefix)
                body = experiment_body(path, curve, points, name, status)
                ExperimentIn.model_validate({"id": key, **body})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(f"{path}: not a valid experiment: {where}: {first['msg']}")
            continue
        except ValueError as exc:
            what = "an anchor" if anchor else "an experiment"
            problems.append(f"{path}: cannot be {what}: {exc}")
            continue
        items.append(Item(path, curve, key, body))
    seen: dict[str, Path] = {}
    for item in items:
        if item.key in seen:
            what = "anchor name" if anchor else "experiment id"
            hint = "" if anchor else " (use --id-prefix in separate runs)"
            problems.append(
                f"{seen[item.key]} and {item.path} give the same {what} {item.key!r}{hint}"
            )
        seen.setdefault(item.key, item.path)
    if problems:
        raise ImportProblem("\n".join(problems))
    return items


def experiment_body(
    path: Path, curve: ResultCurve, points: list[dict[str, Any]], name: str | None, status: str
) -> dict[str, Any]:
    middle = representative(points)
    body: dict[str, Any] = {
        "name": name or curve.name,
        "status": status,
        "rd_points": points,
        "psnr_db": middle.get("psnr_db"),
        "ms_ssim": middle.get("ms_ssim"),
        "params": {
            "source_file": path.name,
            "description": curve.description or None,
            "psnr_key": curve.quality_key,
        },
        "tags": ["imported"],
    }
    rate_key = "bitrate_kbps" if curve.rate_unit == "kbps" else "bpp"
    body[rate_key] = middle[rate_key]
    return {k: v for k, v in body.items() if v is not None}


def check_units(items: list[Item], anchor: dict[str, Any] | None) -> None:
    """Experiments must share the anchor's rate unit, or they could never get a BD-rate."""
    if anchor is None:
        return
    from codecdash.experiments.vocabulary import rate_unit

    unit = rate_unit(anchor["rd_points"])
    wrong = [
        f"{item.path}: rates in {item.curve.rate_unit} but the anchor in force "
        f"{anchor['name']!r} is in {unit}: no BD-rate could be derived (import a "
        f"{item.curve.rate_unit} anchor and set default_anchor to it)"
        for item in items
        if item.curve.rate_unit != unit
    ]
    if wrong:
        raise ImportProblem("\n".join(wrong))


def check_anchor_curves(items: list[Item], quality: QualityMetric) -> None:
    """Anchors must be usable on the quality axis the BD-rates are derived on."""
    from codecdash.experiments.anchors import check_curve

    problems = []
    for item in items:
        try:
            check_curve(item.points, quality)
        except ValueError as exc:
            problems.append(f"{item.path}: cannot anchor BD-rates in {quality}: {exc}")
    if problems:
        raise ImportProblem("\n".join(problems))


# -- the command -----------------------------------------------------------------------------
@click.command("import-results")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--anchor", is_flag=True, help="Import the files as anchors, not experiments.")
@click.option(
    "--url", envvar="CODECDASH_URL", help="A dashboard's base URL (write through its API)."
)
@click.option("--token", envvar="CODECDASH_TOKEN", help="A write token of that dashboard.")
@click.option(
    "--db", default=None, help="Write this store directly: SQLite file or SQLAlchemy URL."
)
@click.option(
    "--aws",
    "to_aws",
    is_flag=True,
    help="Write into the AWS deployment's DynamoDB table with your AWS credentials.",
)
@click.option("--name", default=None, help="Name instead of the file's (one FILE only).")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default="completed",
    show_default=True,
    help="Status of the imported experiments.",
)
@click.option("--id-prefix", default="", help="Prefix of the experiment ids (e.g. 'uvg1080p.').")
@click.pass_context
def import_results(
    ctx: click.Context,
    files: tuple[Path, ...],
    anchor: bool,
    url: str | None,
    token: str | None,
    db: str | None,
    to_aws: bool,
    name: str | None,
    status: str,
    id_prefix: str,
) -> None:
    """Import rate-distortion result files (CompressAI's JSON format) as experiments.

    Each FILE becomes a completed experiment with its rd_points, or with --anchor an anchor
    that BD-rates are measured against. Writes through a dashboard's API (--url and
    --token), into a store directly (--db; default: the configured database), or into an
    AWS deployment's table with your AWS credentials (--aws).
    """
    explicit = {
        p: ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE for p in ("url", "db")
    }
    if explicit["url"] and explicit["db"]:
        raise click.UsageError("use either --url (with --token) or --db, not both")
    if to_aws and (explicit["url"] or explicit["db"]):
        raise click.UsageError("--aws writes the AWS deployment: leave out --url and --db")
    if to_aws:
        url = None
    if db is not None:
        url = None
    if url is not None and not token:
        raise click.UsageError("--url needs --token (or CODECDASH_TOKEN): a write token")
    if name is not None and len(files) > 1:
        raise click.UsageError("--name names one file; import the files one by one")
    if anchor and ctx.get_parameter_source("status") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--status applies to experiments, not to anchors")

    try:
        items = read_items(
            list(files), anchor=anchor, name=name, status=status, id_prefix=id_prefix
        )
        target = _open_target(ctx, url, token, db, to_aws)
    except ImportProblem as exc:
        raise click.ClickException(f"nothing imported:\n{exc}") from None
    try:
        _import(target, items, anchor=anchor)
    finally:
        target.close()


def _open_target(
    ctx: click.Context, url: str | None, token: str | None, db: str | None, to_aws: bool = False
) -> Target:
    from codecdash.config import ConfigError, load_settings

    if to_aws:
        from codecdash.aws_clients import default_factory
        from codecdash.sources.aws.importing import TableWriter
        from codecdash.store import StoreUnavailable

        try:
            settings = load_settings((ctx.obj or {}).get("config"))
            return AwsTarget(TableWriter(settings, default_factory(settings.aws_region)), settings)
        except (ConfigError, StoreUnavailable, ValueError, OSError) as exc:
            raise ImportProblem(str(exc)) from None

    if url is not None:
        from codecdash.client import Client

        # The server answers an anchor write at once (the BD-rates follow in the
        # background, which put_anchor waits for): the client's own time limits serve.
        return ApiTarget(Client(url, token))
    from codecdash.store import Store, StoreUnavailable

    try:
        settings = load_settings((ctx.obj or {}).get("config"), database_url=db)
        return StoreTarget(Store(settings.database_url), settings)
    except (ConfigError, StoreUnavailable, ValueError, OSError) as exc:
        raise ImportProblem(str(exc)) from None


def _import(target: Target, items: list[Item], *, anchor: bool) -> None:
    from codecdash.client import ClientError
    from codecdash.store import StoreUnavailable

    done = 0
    try:
        in_force = target.anchor_in_force()
        if anchor:
            check_anchor_curves(items, target.quality())
        else:
            check_units(items, in_force)
        for item in items:
            if anchor:
                click.echo(_anchor_line(item, target.put_anchor(item)))
            else:
                stored = target.put_experiment(item)
                click.echo(_experiment_lines(item, stored, target))
            done += 1
    except ImportProblem as exc:
        raise click.ClickException(f"nothing imported:\n{exc}") from None
    except (ClientError, StoreUnavailable) as exc:
        raise click.ClickException(f"{exc} ({done} of {len(items)} files imported)") from None
    if not anchor and in_force is None:
        click.echo(
            "No anchor yet: BD-rates are derived once one is imported "
            "(codecdash import-results --anchor FILE)."
        )


def _describe(item: Item) -> str:
    c = item.curve
    return f"{len(item.points)} points ({c.rate_unit}, {c.quality_key})"


def _anchor_line(item: Item, written: AnchorWrite) -> str:
    verb = "added" if written.created else "replaced"
    if written.in_force == item.key:
        force = "in force"
    elif written.in_force is None:
        force = "not in force (the configured default_anchor is missing)"
    else:
        force = f"anchor in force: {written.in_force}"
    line = f"{item.key}: anchor {verb}, {_describe(item)}; {force}"
    if written.recomputed:
        line += f"; BD-rate of {written.recomputed} experiments derived again"
    elif written.rederived:
        line += "; the server derived the stored BD-rates again"
    elif written.recomputing:
        line += "; the server is still deriving the stored BD-rates again (in the background)"
    return line


def _experiment_lines(item: Item, stored: dict[str, Any], target: Target) -> str:
    line = f"{stored.get('name') or item.key}: experiment {item.key}, {_describe(item)}"
    try:
        report = target.report(item.key, item.points)
    except ValueError as exc:
        return f"{line}; no BD-rate: {exc}"
    bd_psnr = report.get("bd_psnr_db")
    quality = "BD-PSNR" if report.get("quality_metric") == "psnr" else "BD-MS-SSIM"
    extra = f", {quality} {bd_psnr:+.2f} dB" if bd_psnr is not None else ""
    line += (
        f"; BD-rate {report['bd_rate_pct']:+.2f} % vs {report['anchor']}"
        f" (overlap {report['overlap']:.0%}{extra})"
    )
    if report.get("warning"):
        line += f"\n  warning: {report['warning']}"
    return line
