"""`codecdash import-results`: rate-distortion result files in as experiments or anchors.

    codecdash import-results --anchor results/x264-medium-tune-zerolatency.json --db codecdash.db
    codecdash import-results results/*.json --url http://127.0.0.1:8050 --token "$TOKEN"

    codecdash import-results out/*.json --dataset UVG-1080p --method ssf-ours --db codecdash.db

Files are CompressAI's JSON result formats and their variants (`codecdash.results.reader`).
Without `--anchor` each file becomes one experiment whose id is the file's name (so importing
a file again replaces the experiment instead of adding one), per-sequence files of one model
one experiment together; with it, each file becomes an anchor of its test set named by its
`name`. Every file is read and checked before anything is written: one bad file and nothing
is imported (`codecdash.results.plan`). The CLI (`codecdash.cli`) registers this command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
from click.core import ParameterSource

from codecdash.experiments.vocabulary import STATUSES, QualityMetric
from codecdash.results.plan import (
    ImportProblem,
    Item,
    Options,
    check_anchor_curves,
    check_units,
    read_items,
)

if TYPE_CHECKING:
    from codecdash.client import Client
    from codecdash.config import Settings
    from codecdash.sources.aws.importing import TableWriter
    from codecdash.store import Store

RECOMPUTE_WAIT_S = 600.0
"""How long an import through the API waits for the server's BD-rates to follow an anchor."""


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

    def sync(self) -> None: ...

    def anchor_in_force(self, dataset: str | None) -> dict[str, Any] | None: ...

    def quality(self) -> QualityMetric: ...

    def put_anchor(self, item: Item) -> AnchorWrite: ...

    def put_experiment(self, item: Item) -> dict[str, Any]: ...

    def report(self, item: Item) -> dict[str, Any]: ...

    def close(self) -> None: ...


class StoreTarget:
    """Writes through the same service as the API (BD-rates derived, anchors followed)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        from codecdash.experiments.service import ExperimentService

        self.store = store
        self.settings = settings
        self.writes = ExperimentService(store, settings)

    def sync(self) -> None:
        from codecdash.experiments.rederive import sync_bd_rates

        # As a server does on start: the settings or another process may have changed the
        # anchor in force since the stored figures were derived.
        changed = sync_bd_rates(self.store, self.settings)
        if changed:
            click.echo(
                f"BD-rate of {changed} stored experiments derived again first "
                f"(the anchor in force changed since they were)"
            )

    def anchor_in_force(self, dataset: str | None) -> dict[str, Any] | None:
        return self.writes.bd_rates.anchor(dataset)

    def quality(self) -> QualityMetric:
        return self.settings.quality_metric

    def put_anchor(self, item: Item) -> AnchorWrite:
        from codecdash.experiments.anchors import save_anchor

        change = save_anchor(
            self.store,
            self.settings,
            item.key,
            item.body["description"],
            item.points,
            dataset=item.dataset,
        )
        return AnchorWrite(change.created, change.in_force, change.recomputed or 0)

    def put_experiment(self, item: Item) -> dict[str, Any]:
        from codecdash.models import ExperimentIn

        stored, _created = self.writes.put(item.key, ExperimentIn.model_validate(item.body))
        return stored

    def report(self, item: Item) -> dict[str, Any]:
        from codecdash.experiments.anchors import bd_report_for

        anchor = self.anchor_in_force(item.dataset)
        if anchor is None:
            raise ValueError(f"no anchor of {item.dataset or 'the unspecified set'} yet")
        return bd_report_for(anchor, item.points, self.quality())

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
        self.writer.put_anchor(item.key, item.body["description"], item.points, item.dataset)
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
        self._listing: dict[str, Any] = {}

    def sync(self) -> None:
        self._listing = self.client.anchors()
        quality = self._listing.get("quality_metric")
        self._quality = "ms_ssim" if quality == "ms_ssim" else "psnr"

    def anchor_in_force(self, dataset: str | None) -> dict[str, Any] | None:
        listing = self._listing
        if dataset is None:
            name = listing.get("default")
        else:
            name = next(
                (s["anchor"] for s in listing.get("in_force", []) if s["dataset"] == dataset),
                None,
            )
        return next(
            (
                a
                for a in listing.get("items", [])
                if a["name"] == name and a.get("dataset") == dataset
            ),
            None,
        )

    def quality(self) -> QualityMetric:
        return self._quality

    def put_anchor(self, item: Item) -> AnchorWrite:
        answer = self.client.put_anchor(
            item.key, item.body["description"], item.points, dataset=item.dataset
        )
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

    def report(self, item: Item) -> dict[str, Any]:
        from codecdash.client import ClientError

        try:
            return self.client.bd_report(item.key)
        except ClientError as exc:
            if exc.status in (404, 422):
                raise ValueError(exc.message) from None
            raise

    def close(self) -> None:
        self.client.close()


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
@click.option(
    "--dataset",
    default=None,
    help="The test set of every FILE (e.g. UVG-1080p); default: the set a file or its path "
    "names, else none.",
)
@click.option(
    "--method",
    default=None,
    help="The method the experiments belong to (e.g. a λ sweep's name); default: a one-point "
    "file's name, else none (each experiment is its own method).",
)
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
    dataset: str | None,
    method: str | None,
) -> None:
    """Import rate-distortion result files (CompressAI's JSON formats) as experiments.

    Each FILE becomes a completed experiment with its rd_points (per-sequence files of one
    model: one experiment), or with --anchor an anchor of its test set that BD-rates are
    measured against. Writes through a dashboard's API (--url and --token), into a store
    directly (--db; default: the configured database), or into an AWS deployment's table with
    your AWS credentials (--aws). Every file is checked first: one that
    cannot be read gets one line saying why, and then nothing is imported.
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
    if anchor and method is not None:
        raise click.UsageError("--method applies to experiments, not to anchors")

    options = Options(anchor, name, status, id_prefix, dataset, method)
    try:
        items = read_items(list(files), options)
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
        target.sync()
        in_force = {item.dataset: target.anchor_in_force(item.dataset) for item in items}
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
    missing = sorted({d or "the unspecified set" for d, a in in_force.items() if a is None})
    if not anchor and missing:
        click.echo(
            f"No anchor of {', '.join(missing)} yet: BD-rates are derived once one is "
            "imported (codecdash import-results --anchor FILE --dataset SET)."
        )


def _describe(item: Item) -> str:
    c = item.curve
    text = f"{len(item.points)} points ({c.rate_unit}, {c.quality_key} = {c.quality_label})"
    if item.dataset:
        text += f" on {item.dataset}"
    if item.averaged:
        text += f", the set's average made of {item.averaged} sequences"
    method = item.body.get("method")
    if method:
        text += f", method {method}"
    return text


def _anchor_line(item: Item, written: AnchorWrite) -> str:
    verb = "added" if written.created else "replaced"
    if written.in_force == item.key:
        force = "in force"
    elif written.in_force is None:
        force = "not in force (the set's configured anchor is missing)"
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
        report = target.report(item)
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
    if item.curve.quality != "rgb" and report.get("quality_metric") == "psnr":
        line += (
            f"\n  warning: the file has no RGB PSNR, so its {item.curve.quality_label} is "
            f"compared with {report['anchor']}'s: import an anchor measured the same way"
        )
    return line
