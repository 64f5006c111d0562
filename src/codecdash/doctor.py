"""`codecdash doctor`: checks each configured source in turn and says how to fix what is wrong.

For the local source: the store opens and answers, the page's files are there. For AWS:
credentials and region, then every named resource (exists, readable with these
permissions, set up as the dashboard needs: the table's stream and aggregate, the S3 and
CloudWatch metrics, the Cost Explorer tag activated), then one snapshot built from the
AWS sources with each source's result. Exit status 1 when something is wrong.

Asking Cost Explorer costs $0.01 a request: the tag check makes one request, and
``--skip-cost-explorer`` leaves it out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import click

from codecdash.config import ConfigError, Settings, load_settings

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}


@dataclass
class Check:
    status: str
    what: str
    detail: str = ""
    fix: str = ""


class Doctor:
    def __init__(
        self, settings: Settings, echo: Callable[[str], None] = click.echo, session: Any = None
    ) -> None:
        self.settings = settings
        self.echo = echo
        self.checks: list[Check] = []
        self._session = session
        self._clients: dict[str, Any] = {}

    # -- reporting
    def add(self, status: str, what: str, detail: str = "", fix: str = "") -> Check:
        check = Check(status, what, detail, fix)
        self.checks.append(check)
        line = f"{MARKS[status]} {what}" + (f": {detail}" if detail else "")
        self.echo(line)
        if fix and status != OK:
            self.echo(f"    fix: {fix}")
        return check

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checks if c.status == FAIL)

    # -- AWS plumbing
    @property
    def session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.settings.aws_region)
        return self._session

    def client(self, service: str, region: str | None = None) -> Any:
        key = f"{service}@{region}"
        if key not in self._clients:
            from codecdash.sources.aws._common import CLIENT_CONFIG, SINGLE_ATTEMPT

            self._clients[key] = self.session.client(
                service,
                region_name=region or self.session.region_name,
                config=SINGLE_ATTEMPT if service == "ce" else CLIENT_CONFIG,
            )
        return self._clients[key]

    def aws(
        self, what: str, call: Callable[[], Any], fix: str, missing: tuple[str, ...] = ()
    ) -> Any:
        """Runs `call`; on failure records why, with the fix (or a permissions hint)."""
        from botocore.exceptions import BotoCoreError, ClientError

        from codecdash.sources.aws._common import describe_error

        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            reason = describe_error(exc)
            if "denied" in reason or code in (
                "AccessDenied",
                "AccessDeniedException",
                "UnauthorizedOperation",
                "AuthorizationError",
            ):
                self.add(
                    FAIL,
                    what,
                    reason,
                    f"allow {exc.operation_name} on this resource to this identity "
                    "(docs/aws.md lists the permissions of each source)",
                )
            elif code in missing or "does not exist" in reason or "not found" in reason.lower():
                self.add(FAIL, what, f"not found ({reason})", fix)
            else:
                self.add(FAIL, what, reason, fix)
        except BotoCoreError as exc:
            self.add(FAIL, what, describe_error(exc), fix)
        return None

    # -- the checks
    def run(self, skip_cost_explorer: bool = False, rebuild_aggregate: bool = False) -> int:
        s = self.settings
        self.echo(f"codecdash doctor (source: {s.source})")
        if s.source == "local":
            self.local()
        self.alert_channels()
        if (s.source == "aws" or _any_aws(s)) and self.credentials():
            self.table(rebuild_aggregate)
            self.fleet()
            self.storage()
            self.site_bucket()
            if not skip_cost_explorer:
                self.cost_explorer()
            self.sources()
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

        url = self.settings.database_url
        try:
            store = Store(url)
            version = store.version()
            store.close()
        except Exception as exc:
            self.add(
                FAIL,
                f"store {url}",
                str(exc).splitlines()[0][:200],
                "check --db / CODECDASH_DATABASE_URL, the file's directory and "
                "permissions, or that PostgreSQL is up",
            )
        else:
            self.add(OK, f"store {url}", f"data version {version}")
        from codecdash.backup.health import check_backups

        check_backups(self)
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
        if not self.session.region_name:
            self.add(
                FAIL,
                "AWS region",
                "none configured",
                "set AWS_REGION (or CODECDASH_AWS_REGION, or a profile's region)",
            )
            return False
        identity = self.aws(
            "AWS credentials",
            lambda: self.client("sts").get_caller_identity(),
            "configure credentials: `aws configure`, `aws sso login`, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
        if identity is None:
            return False
        self.add(
            OK, "AWS credentials", f"{identity.get('Arn')} in region {self.session.region_name}"
        )
        return True

    def table(self, rebuild_aggregate: bool) -> None:
        from codecdash.sources.aws.dynamodb import AGGREGATE_ID, rebuild

        name = self.settings.aws_experiments_table
        if not name:
            self.add(
                WARN,
                "experiments table",
                "not configured (no experiments card)",
                "set CODECDASH_AWS_EXPERIMENTS_TABLE",
            )
            return
        what = f"experiments table {name}"
        ddb = self.client("dynamodb")
        described = self.aws(
            what,
            lambda: ddb.describe_table(TableName=name),
            f"check the name and the region ({self.session.region_name})",
            missing=("ResourceNotFoundException",),
        )
        if described is None:
            return
        table = described["Table"]
        keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
        if keys != {"id": "HASH"}:
            self.add(
                FAIL,
                what,
                f"key schema is {keys}, not a partition key `id`",
                "the experiments table needs partition key id (string) and no sort key",
            )
            return
        self.add(OK, what, f"about {table.get('ItemCount', 0)} items")
        spec = table.get("StreamSpecification") or {}
        if spec.get("StreamEnabled") and spec.get("StreamViewType") == "NEW_AND_OLD_IMAGES":
            self.add(OK, f"{what} stream", "NEW_AND_OLD_IMAGES")
        else:
            self.add(
                FAIL,
                f"{what} stream",
                "no stream with old and new images",
                f"aws dynamodb update-table --table-name {name} --stream-specification "
                "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES, then deploy again",
            )
        if rebuild_aggregate:
            agg = self.aws(
                f"{what} aggregate rebuild",
                lambda: rebuild(ddb, name),
                "the identity needs dynamodb:Scan and dynamodb:PutItem on the table",
            )
            if agg is not None:
                self.add(OK, f"{what} aggregate", f"rebuilt: {agg.total} experiments")
            return
        item = self.aws(
            f"{what} aggregate",
            lambda: ddb.get_item(TableName=name, Key={"id": {"S": AGGREGATE_ID}}),
            "",
        )
        if item is None:
            return
        if item.get("Item"):
            self.add(OK, f"{what} aggregate", "present")
        else:
            self.add(
                FAIL,
                f"{what} aggregate",
                "missing (the experiments card stays empty)",
                "codecdash doctor --rebuild-aggregate (once); the deployed stream "
                "function keeps it current",
            )

    def fleet(self) -> None:
        s = self.settings
        if s.aws_stack_name:
            stacks = self.aws(
                f"stack {s.aws_stack_name}",
                lambda: self.client("cloudformation").describe_stacks(StackName=s.aws_stack_name),
                "check CODECDASH_AWS_STACK_NAME and the region",
            )
            if stacks is not None:
                status = stacks["Stacks"][0]["StackStatus"]
                healthy = status.endswith("_COMPLETE") and "ROLLBACK" not in status
                self.add(
                    OK if healthy else WARN,
                    f"stack {s.aws_stack_name}",
                    status,
                    "see the stack's events in the CloudFormation console",
                )
        groups = [g for g in (s.aws_training_asg, s.aws_inference_asg) if g]
        if groups:
            found = self.aws(
                "Auto Scaling groups",
                lambda: self.client("autoscaling").describe_auto_scaling_groups(
                    AutoScalingGroupNames=groups
                ),
                "",
            )
            if found is not None:
                names = {g["AutoScalingGroupName"]: g for g in found["AutoScalingGroups"]}
                for group in groups:
                    if group in names:
                        in_service = sum(
                            1
                            for i in names[group].get("Instances", [])
                            if i.get("LifecycleState") == "InService"
                        )
                        self.add(OK, f"Auto Scaling group {group}", f"{in_service} InService")
                    else:
                        self.add(
                            FAIL,
                            f"Auto Scaling group {group}",
                            "not found",
                            "check CODECDASH_AWS_TRAINING_ASG / _INFERENCE_ASG and the region",
                        )
        for role, url in (
            ("training", s.aws_training_queue_url),
            ("inference", s.aws_inference_queue_url),
        ):
            if not url:
                continue
            attrs = self.aws(
                f"{role} queue",
                partial(
                    self.client("sqs").get_queue_attributes,
                    QueueUrl=url,
                    AttributeNames=["ApproximateNumberOfMessages"],
                ),
                f"check CODECDASH_AWS_{role.upper()}_QUEUE_URL",
                missing=("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"),
            )
            if attrs is not None:
                depth = attrs["Attributes"]["ApproximateNumberOfMessages"]
                self.add(OK, f"{role} queue", f"{depth} messages waiting")
        self.metrics()

    def metrics(self) -> None:
        s = self.settings
        queries: list[tuple[str, str, str, list[dict[str, str]], str]] = []
        if s.aws_orchestrator_instance_id:
            dims = [{"Name": "InstanceId", "Value": s.aws_orchestrator_instance_id}]
            queries += [
                (
                    "cpu",
                    "AWS/EC2",
                    "CPUUtilization",
                    dims,
                    "is the instance running? check CODECDASH_AWS_ORCHESTRATOR_INSTANCE_ID",
                ),
                (
                    "mem",
                    "CWAgent",
                    "mem_used_percent",
                    dims,
                    "install the CloudWatch agent on the orchestrator with mem_used_percent and "
                    "the InstanceId dimension",
                ),
            ]
        if s.aws_inference_asg:
            queries.append(
                (
                    "fps",
                    s.aws_metrics_namespace,
                    "InferenceFPS",
                    [],
                    f"publish InferenceFPS (no dimensions) to namespace "
                    f"{s.aws_metrics_namespace} from the inference workers",
                )
            )
        if not queries:
            return
        now = time.time()
        answer = self.aws(
            "CloudWatch metrics",
            lambda: self.client("cloudwatch").get_metric_data(
                MetricDataQueries=[
                    {
                        "Id": q[0],
                        "MetricStat": {
                            "Metric": {"Namespace": q[1], "MetricName": q[2], "Dimensions": q[3]},
                            "Period": 60,
                            "Stat": "Average",
                        },
                    }
                    for q in queries
                ],
                StartTime=now - 3600,
                EndTime=now,
            ),
            "",
        )
        if answer is None:
            return
        found = {r["Id"]: r.get("Values") for r in answer.get("MetricDataResults", [])}
        for qid, namespace, metric, _dims, fix in queries:
            if found.get(qid):
                self.add(OK, f"metric {namespace}/{metric}", "has data in the last hour")
            else:
                self.add(WARN, f"metric {namespace}/{metric}", "no data in the last hour", fix)

    def storage(self) -> None:
        s = self.settings
        for bucket in s.aws_buckets:
            listed = self.aws(
                f"bucket {bucket}",
                partial(self.client("s3").list_objects_v2, Bucket=bucket, MaxKeys=1),
                "check CODECDASH_AWS_BUCKETS",
                missing=("NoSuchBucket",),
            )
            if listed is not None:
                self.add(OK, f"bucket {bucket}", "readable")
        if s.aws_efs_id:
            fs = self.aws(
                f"EFS {s.aws_efs_id}",
                lambda: self.client("efs").describe_file_systems(FileSystemId=s.aws_efs_id),
                "check CODECDASH_AWS_EFS_ID and the region",
                missing=("FileSystemNotFound",),
            )
            if fs is not None:
                size = fs["FileSystems"][0]["SizeInBytes"]["Value"]
                self.add(OK, f"EFS {s.aws_efs_id}", f"{size} bytes")

    def site_bucket(self) -> None:
        bucket = self.settings.aws_site_bucket
        if not bucket:
            return
        if (
            self.aws(
                f"site bucket {bucket}",
                lambda: self.client("s3").head_bucket(Bucket=bucket),
                "check CODECDASH_AWS_SITE_BUCKET (the stack's SiteBucketName)",
                missing=("404", "NoSuchBucket"),
            )
            is not None
        ):
            self.add(OK, f"site bucket {bucket}", "reachable")

    def cost_explorer(self) -> None:
        tag = self.settings.aws_cost_tag
        ce = self.client("ce", region="us-east-1")
        answer = self.aws(
            f"Cost Explorer tag {tag}",
            lambda: ce.list_cost_allocation_tags(TagKeys=[tag], Type="UserDefined"),
            "enable Cost Explorer for the account (Billing console) and allow "
            "ce:ListCostAllocationTags, ce:GetCostAndUsage, ce:GetCostForecast",
        )
        if answer is None:
            return
        tags = {t["TagKey"]: t.get("Status") for t in answer.get("CostAllocationTags", [])}
        if tags.get(tag) == "Active":
            self.add(OK, f"Cost Explorer tag {tag}", "active")
        else:
            self.add(
                FAIL,
                f"Cost Explorer tag {tag}",
                "not activated as a cost-allocation tag"
                if tag in tags
                else "unknown to Billing (no resource carries it yet?)",
                f"tag the resources with {tag}=training|inference|storage|orchestrator, "
                "then activate it: aws ce update-cost-allocation-tags-status "
                f"--cost-allocation-tags-status TagKey={tag},Status=Active "
                "(figures appear within 24 hours)",
            )

    def sources(self) -> None:
        """One snapshot from the AWS sources (Cost Explorer only from the shared cache)."""
        from codecdash.snapshot import SnapshotBuilder
        from codecdash.sources.aws import aws_sources

        sources = aws_sources(self.settings, cost_explorer=False)
        builder = SnapshotBuilder(self.settings, sources)
        loop = asyncio.new_event_loop()
        try:
            snapshot = loop.run_until_complete(builder.build())
        finally:
            loop.close()
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
    help="Rebuild the experiments aggregate with one scan of the table.",
)
@click.pass_context
def doctor(ctx: click.Context, skip_cost_explorer: bool, rebuild_aggregate: bool) -> None:
    """Check each configured source and say how to fix what is wrong."""
    config = (ctx.obj or {}).get("config") if isinstance(ctx.obj, dict) else None
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    status = Doctor(settings).run(skip_cost_explorer, rebuild_aggregate)
    ctx.exit(status)
