"""The AWS steps of a deployment (:class:`Deployer`): credentials, the Lambda package's upload,
the CloudFormation stack, the static site, the read replica, CloudFront."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import click

from codecdash.config import Settings
from codecdash.deploy.artifacts import new_bucket_name, upload_code
from codecdash.deploy.errors import explain
from codecdash.deploy.package import DeployError, Echo, build_lambda_zip
from codecdash.deploy.parameters import (
    find_template,
    new_origin_secret,
    output_values,
    parameter_values,
    stack_parameters,
)
from codecdash.deploy.releases import Release, Releases, new_release_id

# boto3 and the AWS sources load when a deployment runs, not when the CLI starts.

STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,49}$")


@dataclass
class DeployOptions:
    stack: str
    region: str | None = None
    template: Path | None = None
    artifacts_bucket: str | None = None
    arch: str = "arm64"
    lambda_zip: bytes | None = None
    package_mode: str = "auto"
    alarm_email: str | None = None  # None: keep the stack's (none on a first deployment)
    health_dashboard: bool | None = None  # None: keep the stack's (none on a first deployment)
    poll_seconds: float = 10.0
    timeout_s: float = 3600.0
    build_read_model: bool = True  # the first deployment's, when none is published


@dataclass
class DeployResult:
    dashboard_url: str
    api_url: str
    bucket: str
    distribution_id: str
    outputs: dict[str, str]
    uploaded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    release: str = ""


def aws_site_files(page_dir: Path | None = None) -> list[Any]:
    """The page's files as the AWS site serves them (SiteFile), index.html last: the API on
    the same origin, no event stream (API Gateway holds no connection open), so the page
    polls the snapshot CloudFront serves, and no alerts (only `codecdash serve` evaluates
    alert rules), so it never asks for them."""
    from codecdash.export import site_files

    files = site_files("", page_dir=page_dir, api_without=("events", "alerts"))
    files.sort(key=lambda f: f.name == "index.html")  # the page last, when all it needs is up
    return files


class Deployer:
    def __init__(
        self,
        options: DeployOptions,
        settings: Settings,
        echo: Echo = click.echo,
        session: Any = None,
    ) -> None:
        self.options = options
        self.settings = settings
        self.echo = echo
        from codecdash.aws_clients import PATIENT, ClientFactory

        self.clients = ClientFactory(
            options.region or settings.aws_region, session=session, config=PATIENT
        )
        region = self.clients.region_name
        if not region:
            raise DeployError(
                "no AWS region: pass --region, or set AWS_REGION or CODECDASH_AWS_REGION."
            )
        self.region: str = region

    def step(self, doing: str, call: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise explain(exc, doing) from None

    # -- the whole flow
    def run(self) -> DeployResult:
        opts = self.options
        if not STACK_NAME.match(opts.stack):
            raise DeployError(
                "--stack: letters, digits and hyphens, starting with a letter, "
                "at most 50 characters"
            )
        template = find_template(opts.template).read_text()
        identity = self.step(
            "checking the credentials", lambda: self.clients("sts").get_caller_identity()
        )
        account = identity["Account"]
        self.echo(
            f"Deploying stack {opts.stack} to account {account}, region {self.region} "
            f"as {identity.get('Arn', '?')}"
        )
        notes: list[str] = []
        stream_arn = self._stream(notes)
        existing = self._describe(opts.stack)
        if existing and existing["StackStatus"] == "ROLLBACK_COMPLETE":
            raise DeployError(
                f"stack {opts.stack} failed to create before and must be deleted first: "
                f"aws cloudformation delete-stack --stack-name {opts.stack}"
            )
        previous_params = parameter_values(existing)
        code = self._upload_code(account, previous_params.get("CodeBucket"))
        files = self._site_files()
        release = new_release_id(time.time(), code[1], [(f.name, f.body) for f in files])
        self.echo(f"Release {release}")
        previous = output_values(existing) if existing else {}
        origin = previous.get("SiteOriginValue", "")

        def parameters(site_origin: str) -> list[dict[str, Any]]:
            values: list[dict[str, Any]] = stack_parameters(
                self.settings,
                self.region,
                stream_arn,
                code,
                opts.arch,
                site_origin,
                release=release,
                alarm_email=opts.alarm_email or "",
                health_dashboard=bool(opts.health_dashboard),
            )
            kept = {"OriginSecret"}
            kept |= {"AlarmEmail"} if opts.alarm_email is None else set()
            kept |= {"WithHealthDashboard"} if opts.health_dashboard is None else set()
            values = [v for v in values if v["ParameterKey"] not in kept]
            for name in sorted(kept):
                if name in previous_params:  # NoEcho: its value is not readable, only kept
                    values.append({"ParameterKey": name, "UsePreviousValue": True})
                elif name == "OriginSecret":
                    values.append({"ParameterKey": name, "ParameterValue": new_origin_secret()})
                else:  # not in the stack yet: no e-mail, no health dashboard
                    fresh = "false" if name == "WithHealthDashboard" else ""
                    values.append({"ParameterKey": name, "ParameterValue": fresh})
            return values

        self._apply(template, parameters(origin), create=existing is None)
        outputs = output_values(self._describe(opts.stack))
        if outputs.get("SiteOriginValue") and outputs["SiteOriginValue"] != origin:
            self.echo("Allowing the dashboard's origin in the API's CORS…")
            previous_params = parameter_values(self._describe(opts.stack))
            self._apply(template, parameters(outputs["SiteOriginValue"]), create=False)
            outputs = output_values(self._describe(opts.stack))
        for name in ("DashboardURL", "ApiURL", "SiteBucketName", "DistributionId"):
            if not outputs.get(name):
                raise DeployError(f"the stack has no output {name}; is the template current?")
        bucket = outputs["SiteBucketName"]
        releases = self.releases(bucket, account)
        versions = releases.live_versions(outputs)
        releases.keep_files(release, files)
        uploaded = self._upload_site(bucket, files, account)
        releases.record(Release(release, iso_now(), code[1], versions, [f.name for f in files]))
        if stream_arn and opts.build_read_model and outputs.get("ReadModelBucketName"):
            self._first_read_model(outputs, notes)
        self._invalidate(outputs["DistributionId"])
        for note in notes:
            self.echo(f"note: {note}")
        return DeployResult(
            outputs["DashboardURL"],
            outputs["ApiURL"],
            outputs["SiteBucketName"],
            outputs["DistributionId"],
            outputs,
            uploaded,
            notes,
            release,
        )

    # -- releases
    def releases(self, bucket: str, account: str) -> Releases:
        return Releases(
            s3=self.clients("s3"),
            lambda_=self.clients("lambda"),
            bucket=bucket,
            account=account,
            step=self.step,
            echo=self.echo,
        )

    def _deployed(self) -> tuple[dict[str, str], Releases]:
        """The stack's outputs and its releases (for --releases and --rollback)."""
        if not STACK_NAME.match(self.options.stack):
            raise DeployError("--stack: letters, digits and hyphens, starting with a letter")
        account = self.step(
            "checking the credentials", lambda: self.clients("sts").get_caller_identity()
        )["Account"]
        stack = self._describe(self.options.stack)
        outputs = output_values(stack)
        if not outputs.get("SiteBucketName"):
            raise DeployError(
                f"stack {self.options.stack} is not deployed here (region {self.region}): "
                "nothing to list or roll back"
            )
        return outputs, self.releases(outputs["SiteBucketName"], account)

    def list_releases(self) -> tuple[list[Release], str | None]:
        """The recorded releases (newest first) and the current one's id."""
        _, releases = self._deployed()
        return releases.all(), releases.current()

    def rollback(self, wanted: str | None) -> Release:
        """Returns site and functions to release `wanted` (default: the one before)."""
        outputs, releases = self._deployed()
        target = releases.target(wanted)
        self.echo(f"Rolling back stack {self.options.stack} to release {target.id}")
        releases.rollback(target)
        if outputs.get("DistributionId"):
            self._invalidate(outputs["DistributionId"])
        return target

    # -- the steps
    def _stream(self, notes: list[str]) -> str:
        table = self.settings.aws_experiments_table
        if not table:
            return ""
        described = self.step(
            f"reading table {table}",
            lambda: self.clients("dynamodb").describe_table(TableName=table),
        )
        from codecdash.sources.aws.checks import enable_stream, stream_arn

        arn = stream_arn(described["Table"])
        if not arn:
            notes.append(
                f"table {table} has no stream with old and new images, so the experiments' "
                f"read replica cannot be kept; enable it and deploy again: {enable_stream(table)}"
            )
        return arn

    def _upload_code(self, account: str, previous_bucket: str | None) -> tuple[str, str]:
        opts = self.options
        data = (
            opts.lambda_zip
            if opts.lambda_zip is not None
            else build_lambda_zip(opts.arch, mode=opts.package_mode, echo=self.echo)
        )
        return upload_code(
            self.clients("s3"),
            data=data,
            bucket=opts.artifacts_bucket or previous_bucket or new_bucket_name(),
            account=account,
            region=self.region,
            step=self.step,
            echo=self.echo,
        )

    def _describe(self, stack: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        from codecdash.aws_clients import error_code

        try:
            answer = self.clients("cloudformation").describe_stacks(StackName=stack)
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                return None
            raise explain(exc, f"reading stack {stack}") from None
        stacks: list[dict[str, Any]] = answer["Stacks"]
        return stacks[0] if stacks else None

    def _apply(self, template: str, params: list[dict[str, Any]], create: bool) -> None:
        from botocore.exceptions import ClientError

        cfn = self.clients("cloudformation")
        stack = self.options.stack
        kwargs: dict[str, Any] = {
            "StackName": stack,
            "TemplateBody": template,
            "Parameters": params,
            "Capabilities": ["CAPABILITY_IAM"],
        }
        started = time.time()
        if create:
            self.echo(f"Creating stack {stack} (CloudFront takes a few minutes)…")
            self.step(
                f"creating stack {stack}",
                lambda: cfn.create_stack(**kwargs, Tags=[{"Key": "codecdash", "Value": stack}]),
            )
        else:
            self.echo(f"Updating stack {stack}…")
            try:
                cfn.update_stack(**kwargs)
            except ClientError as exc:
                if "No updates are to be performed" in str(exc):
                    self.echo("Stack already up to date")
                    return
                raise explain(exc, f"updating stack {stack}") from None
        self._wait(started)

    def _wait(self, started: float) -> None:
        from codecdash.sources.aws.fleet import stack_health

        stack = self.options.stack
        while True:
            described = self._describe(stack)
            status = described["StackStatus"] if described else "DELETE_COMPLETE"
            if stack_health(status) == "ok":
                self.echo(f"Stack {stack}: {status}")
                return
            if not status.endswith("_IN_PROGRESS"):  # failed, rolled back or gone
                raise DeployError(
                    f"stack {stack} ended in {status}: " + "; ".join(self._failures(started))
                )
            if time.time() - started > self.options.timeout_s:
                raise DeployError(
                    f"stack {stack} still {status} after "
                    f"{self.options.timeout_s:.0f} s; see the CloudFormation "
                    "console for its events"
                )
            time.sleep(self.options.poll_seconds)

    def _failures(self, since: float) -> list[str]:
        try:
            events = self.clients("cloudformation").describe_stack_events(
                StackName=self.options.stack
            )["StackEvents"]
        except Exception:
            return ["(could not read the stack's events)"]
        reasons = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
            for e in events
            if str(e.get("ResourceStatus", "")).endswith("FAILED")
            and e["Timestamp"].timestamp() >= since - 5
        ]
        return list(dict.fromkeys(reasons))[:8] or ["no failure reason recorded"]

    def _site_files(self) -> list[Any]:
        page_dir = Path(self.settings.page_dir) if self.settings.page_dir else None
        return aws_site_files(page_dir)

    def _upload_site(self, bucket: str, files: list[Any], account: str) -> list[str]:
        from botocore.exceptions import ClientError

        from codecdash.aws_clients import error_code
        from codecdash.aws_lambda import SNAPSHOT_KEY
        from codecdash.export import SiteFile, snapshot_file

        s3 = self.clients("s3")
        owner = {"ExpectedBucketOwner": account}
        files = list(files)
        try:
            s3.head_object(Bucket=bucket, Key=SNAPSHOT_KEY, **owner)
        except ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise explain(exc, f"checking s3://{bucket}/{SNAPSHOT_KEY}") from None
            placeholder = snapshot_file(_placeholder_snapshot(self.settings))
            files.insert(
                0,
                SiteFile(
                    SNAPSHOT_KEY,
                    placeholder.body,
                    placeholder.content_type,
                    placeholder.cache_control,
                ),
            )
        uploaded = []
        for item in files:
            self.step(
                f"uploading {item.name}",
                partial(
                    s3.put_object,
                    Bucket=bucket,
                    Key=item.name,
                    Body=item.body,
                    ContentType=item.content_type,
                    CacheControl=item.cache_control,
                    **owner,
                ),
            )
            uploaded.append(item.name)
        self.echo(f"Uploaded {len(uploaded)} files to s3://{bucket}")
        return uploaded

    # -- the read replica (docs/aws.md, "The read replica")
    def _first_read_model(self, outputs: dict[str, str], notes: list[str]) -> None:
        """After a deploy: the replica made from the table when none is published yet."""
        bucket = outputs["ReadModelBucketName"]
        key = self.settings.aws_read_model_key
        try:
            self.clients("s3").head_object(Bucket=bucket, Key=key)
        except Exception:  # 404: none yet; anything else is tried below all the same
            published = False
        else:
            published = True
        if published:
            return
        try:
            self.rebuild_read_model(outputs)
        except DeployError as exc:
            notes.append(f"{exc}; build it with `codecdash deploy --rebuild-read-model`")

    def rebuild_read_model(self, outputs: dict[str, str] | None = None) -> dict[str, Any]:
        """The read replica anew from one scan of the table, by the stack's stream
        function (its only writer); returns what the function answered."""
        if outputs is None:
            outputs = output_values(
                self.step("reading the stack", lambda: self._describe(self.options.stack))
            )
        function = outputs.get("StreamFunctionName")
        if not function or not outputs.get("ReadModelBucketName"):
            raise DeployError(
                f"stack {self.options.stack} has no read replica (no experiments table with "
                "a stream was configured, or the stack predates it: deploy again)"
            )
        table = self.settings.aws_experiments_table or "the table"
        self.echo(f"Rebuilding the read replica from {table} (one scan)…")
        answer = self.step(
            "rebuilding the read replica",
            lambda: self.clients("lambda").invoke(
                FunctionName=function, Payload=json.dumps({"rebuild": True}).encode()
            ),
        )
        payload = answer["Payload"].read().decode()
        if answer.get("FunctionError"):
            raise DeployError(f"the read replica was not rebuilt: {payload[:300]}")
        result: dict[str, Any] = json.loads(payload or "{}")
        return result

    def _invalidate(self, distribution: str) -> None:
        self.step(
            "invalidating CloudFront",
            lambda: self.clients("cloudfront").create_invalidation(
                DistributionId=distribution,
                InvalidationBatch={
                    "Paths": {"Quantity": 1, "Items": ["/*"]},
                    "CallerReference": f"codecdash-{time.time():.0f}",
                },
            ),
        )
        self.echo("CloudFront invalidation started (a minute or two)")


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _placeholder_snapshot(settings: Settings) -> dict[str, Any]:
    """A valid empty snapshot, until the schedule writes the first real one (a minute)."""
    from codecdash.snapshot import SnapshotBuilder

    data: dict[str, Any] = asyncio.run(SnapshotBuilder(settings, []).build())
    return data
