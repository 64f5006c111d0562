"""`codecdash doctor`: checks each configured source in turn and says how to fix what is wrong.

For the local source: the store opens and answers, the page's files are there. For AWS:
credentials and region, then every named resource (exists, readable with these
permissions, set up as the dashboard needs: the table's stream, the read replica, the S3 and
CloudWatch metrics, the Cost Explorer tag activated), then one snapshot built from the
AWS sources with each source's result. Exit status 1 when something is wrong.

Asking Cost Explorer costs $0.01 a request: the tag check makes one request, and
``--skip-cost-explorer`` leaves it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from codecdash.config import ConfigError, Settings
from codecdash.serving import command_settings
from codecdash.sources.base import Source
from codecdash.sources.checks import FAIL, OK, WARN, Finding, Status

MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}


class Doctor:
    def __init__(
        self, settings: Settings, echo: Callable[[str], None] = click.echo, session: Any = None
    ) -> None:
        from codecdash.aws_clients import ClientFactory

        self.settings = settings
        self.echo = echo
        self.checks: list[Finding] = []
        self.session = session
        self.clients = ClientFactory(settings.aws_region, session=session)

    # -- reporting
    def add(self, status: Status, what: str, detail: str = "", fix: str = "") -> Finding:
        check = Finding(status, what, detail, fix)
        self.checks.append(check)
        line = f"{MARKS[status]} {what}" + (f": {detail}" if detail else "")
        self.echo(line)
        if fix and status != OK:
            self.echo(f"    fix: {fix}")
        return check

    def report(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.add(finding.status, finding.what, finding.detail, finding.fix)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checks if c.status == FAIL)

    # -- the checks
    def run(
        self,
        skip_cost_explorer: bool = False,
        rebuild_aggregate: bool = False,
        stack: str | None = None,
    ) -> int:
        s = self.settings
        self.echo(f"codecdash doctor (source: {s.source})")
        if s.source == "local":
            self.local()
        self.alert_channels()
        if (s.source == "aws" or _any_aws(s) or stack) and self.credentials():
            if rebuild_aggregate:
                self.rebuild_read_model(stack)
            if s.source == "aws" or _any_aws(s):
                self.aws_sources(skip_cost_explorer)
            if stack:
                self.deployment(stack)
        self.echo("")
        if self.failed:
            self.echo(
                f"{self.failed} problem{'s' if self.failed != 1 else ''} found; "
                "docs/troubleshooting.md has more."
            )
        else:
            self.echo("No problems found.")
        return 1 if self.failed else 0

    def local(self) -> None:
        from codecdash.api.static import dashboard_dir
        from codecdash.store import Store
        from codecdash.store.db import shown_url

        url = self.settings.database_url
        shown = shown_url(url)
        try:
            store = Store(url)
            version = store.version()
            store.close()
        except Exception as exc:
            self.add(
                FAIL,
                f"store {shown}",
                str(exc).splitlines()[0][:200].replace(url, shown),
                "check --db / CODECDASH_DATABASE_URL, the file's directory and "
                "permissions, or that PostgreSQL is up",
            )
        else:
            self.add(OK, f"store {shown}", f"data version {version}")
        from codecdash.backup.health import check_backups

        self.report(check_backups(self.settings))
        root = dashboard_dir()
        if self.settings.page_dir:
            self.page_dir(self.settings.page_dir)
        if (root / "index.html").is_file():
            self.add(OK, "dashboard page", str(root))
        else:
            self.add(
                FAIL,
                "dashboard page",
                f"{root}/index.html is missing",
                "reinstall codecdash (pip install --force-reinstall codecdash)",
            )

    def page_dir(self, page_dir: str) -> None:
        from pathlib import Path

        from codecdash.page import inspect

        try:
            report = inspect(Path(page_dir))
        except click.ClickException as exc:
            self.add(FAIL, "page directory", exc.message, f"codecdash page eject {page_dir}")
            return
        detail = (
            f"{report.root}: {len(report.own)} files, "
            f"{len(report.fallback)} from the installed copy"
        )
        if report.warning:
            fix = "see docs/customizing.md"
            self.add(WARN, "page directory", f"{detail}; {report.warning}", fix)
        else:
            self.add(OK, "page directory", detail)

    def alert_channels(self) -> None:
        """Which channels alerts go to (never their secrets); no message is sent."""
        from codecdash.alerts.channels import build_channels

        channels = build_channels(self.settings)
        if not channels:
            self.add(OK, "alert channels", "none (alerts show on the page, the API and /metrics)")
        for name, channel in channels.items():
            unsigned = name == "webhook" and self.settings.alert_webhook_secret is None
            self.add(
                WARN if unsigned else OK,
                f"alert channel {name}",
                f"{channel.target()}; try it with `codecdash alerts test --channel {name}`",
                "set CODECDASH_ALERT_WEBHOOK_SECRET so receivers can check the signature",
            )

    def credentials(self) -> bool:
        from codecdash.sources.aws.checks import Checkup

        region = self.clients.region_name
        if not region:
            self.add(
                FAIL,
                "AWS region",
                "none configured",
                "set AWS_REGION (or CODECDASH_AWS_REGION, or a profile's region)",
            )
            return False
        checkup = Checkup()
        identity = checkup.call(
            "AWS credentials",
            lambda: self.clients("sts").get_caller_identity(),
            "configure credentials: `aws configure`, `aws sso login`, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            ok=lambda answer: f"{answer.get('Arn')} in region {region}",
        )
        self.report(checkup.findings)
        return identity is not None

    def aws_sources(self, skip_cost_explorer: bool) -> None:
        """Each AWS source checks its resources; then one refresh of them all."""
        from codecdash.sources.aws import CostsSource, FleetSource, StorageSource, aws_sources
        from codecdash.sources.aws.checks import check_read_model, check_table
        from codecdash.sources.aws.read_model import NO_REPLICA_BUCKET

        s = self.settings
        if s.aws_experiments_table:
            self.report(
                check_table(
                    self.clients("dynamodb"), s.aws_experiments_table, self.clients.region_name
                )
            )
        if s.aws_read_model_bucket:
            bucket, key = s.aws_read_model_bucket, s.aws_read_model_key
            self.report(check_read_model(self.clients("s3"), bucket, key))
        elif s.aws_experiments_table:
            self.add(FAIL, "experiments read replica", "not configured", NO_REPLICA_BUCKET)
        else:
            self.add(
                WARN,
                "experiments table",
                "not configured (no experiments card)",
                "set CODECDASH_AWS_EXPERIMENTS_TABLE",
            )
        with contextlib.ExitStack() as stack:
            copy = None
            if s.aws_read_model_bucket:
                from codecdash.sources.aws.replica import ReplicaCopy

                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                copy = ReplicaCopy.from_settings(s, self.clients("s3"), folder / "replica.db")
                stack.callback(copy.close)
            sources = aws_sources(
                s, clients=self.clients, cost_explorer=False, replica=copy, refresh_replica=True
            )
            for source in sources:
                if isinstance(source, (FleetSource, StorageSource)):
                    self.report(source.check())
                elif isinstance(source, CostsSource):
                    self.report(source.check(tag=not skip_cost_explorer))
            self.refresh(sources)

    def rebuild_read_model(self, stack: str | None) -> None:
        """`--rebuild-aggregate`, the deprecated name: the read replica anew, as `codecdash
        deploy --stack STACK --rebuild-read-model` makes it (by the stack's stream function)."""
        from codecdash.deploy.package import DeployError
        from codecdash.deploy.stack import Deployer, DeployOptions

        what = "experiments read replica rebuild"
        self.echo("note: --rebuild-aggregate is a deprecated name: it rebuilds the read replica")
        if not stack:
            self.add(
                FAIL,
                what,
                "needs the dashboard stack, whose stream function rebuilds the replica",
                "codecdash deploy --stack STACK --rebuild-read-model "
                "(or codecdash doctor --stack STACK --rebuild-aggregate)",
            )
            return
        options = DeployOptions(stack=stack, region=self.clients.region_name)
        try:
            deployer = Deployer(options, self.settings, echo=self.echo, session=self.session)
            rebuilt = deployer.rebuild_read_model()
        except DeployError as exc:
            self.add(FAIL, what, str(exc), f"codecdash deploy --stack {stack}")
            return
        self.add(OK, what, f"rebuilt: {rebuilt.get('total', '?')} experiments")

    def deployment(self, stack: str) -> None:
        """The deployed dashboard: its alarms, its snapshot's age, its failure queue."""
        import time

        from codecdash.aws_lambda import SNAPSHOT_KEY
        from codecdash.sources.aws.checks import (
            Checkup,
            check_alarms,
            check_failure_queue,
            check_snapshot_age,
        )

        self.echo("")
        self.echo(f"Deployed dashboard (stack {stack}):")
        checkup = Checkup()
        described = checkup.call(
            f"stack {stack}",
            lambda: self.clients("cloudformation").describe_stacks(StackName=stack),
            f"check the name and the region ({self.clients.region_name}); "
            f"deploy it with codecdash deploy --stack {stack}",
            missing=("ValidationError",),
        )
        self.report(checkup.findings)
        if described is None:
            return
        found = described["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
        self.add(OK, f"stack {stack}", str(found.get("StackStatus", "")))
        self.report(check_alarms(self.clients("cloudwatch"), stack))
        if outputs.get("SiteBucketName"):
            self.report(
                check_snapshot_age(
                    self.clients("s3"), outputs["SiteBucketName"], SNAPSHOT_KEY, time.time()
                )
            )
        if outputs.get("StreamFailureQueueUrl"):
            self.report(check_failure_queue(self.clients("sqs"), outputs["StreamFailureQueueUrl"]))

    def cost_explorer(self) -> None:
        """The cost-allocation tag (one Cost Explorer request, $0.01)."""
        from codecdash.sources.aws import CostsSource

        self.report(CostsSource(self.settings, self.clients).check(bucket=False))

    def refresh(self, sources: list[Source]) -> None:
        """One snapshot from the AWS sources (Cost Explorer only from the shared cache)."""
        from codecdash.snapshot import SnapshotBuilder

        snapshot = asyncio.run(SnapshotBuilder(self.settings, sources).build())
        self.echo("")
        self.echo("Sources (one refresh):")
        for row in snapshot["sources"]:
            if row["ok"]:
                self.add(OK, f"source {row['name']}")
            elif row["name"].startswith("aws.costs") and "yet" in str(row["error"]):
                self.add(
                    WARN,
                    f"source {row['name']}",
                    str(row["error"]),
                    "the deployed snapshot function fetches costs; with `serve --source "
                    "aws`, they appear after the first refresh",
                )
            else:
                self.add(FAIL, f"source {row['name']}", str(row["error"]))


def _any_aws(s: Settings) -> bool:
    return any(
        (
            s.aws_experiments_table,
            s.aws_stack_name,
            s.aws_training_queue_url,
            s.aws_inference_queue_url,
            s.aws_training_asg,
            s.aws_inference_asg,
            s.aws_buckets,
            s.aws_efs_id,
            s.aws_site_bucket,
            s.aws_read_model_bucket,
        )
    )


@click.command("doctor")
@click.option(
    "--skip-cost-explorer",
    is_flag=True,
    help="Do not check the Cost Explorer tag (that check costs $0.01).",
)
@click.option(
    "--rebuild-aggregate",
    is_flag=True,
    help="Deprecated name: rebuild the read replica of the experiments of the dashboard "
    "--stack from one scan of the table, as `codecdash deploy --stack STACK "
    "--rebuild-read-model` does.",
)
@click.option(
    "--stack",
    default=None,
    help="Also check this deployed dashboard stack: its alarms, snapshot and failure queue.",
)
@click.pass_context
def doctor(
    ctx: click.Context, skip_cost_explorer: bool, rebuild_aggregate: bool, stack: str | None
) -> None:
    """Check each configured source and say how to fix what is wrong."""
    try:
        settings = command_settings(ctx.obj)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    status = Doctor(settings).run(skip_cost_explorer, rebuild_aggregate, stack)
    ctx.exit(status)
