"""The `codecdash deploy` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from codecdash.config import ConfigError
from codecdash.deploy.parameters import TEMPLATE
from codecdash.deploy.stack import Deployer, DeployOptions
from codecdash.serving import command_settings, page_dir_option

PREVIOUS = "__previous__"  # --rollback without a release: the one before the current one


@click.command("deploy")
@click.option("--stack", required=True, help="CloudFormation stack name (created or updated).")
@click.option("--region", default=None, help="AWS region (default: the configured one).")
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Template (default: ./{TEMPLATE}).",
)
@click.option(
    "--artifacts-bucket",
    default=None,
    help="Bucket for the Lambda package (default: the stack's, else a new private one "
    "with a random name).",
)
@click.option(
    "--arch",
    type=click.Choice(["x86_64", "arm64"]),
    default="arm64",
    show_default=True,
    help="Lambda architecture (arm64 costs 20 % less).",
)
@click.option(
    "--alarm-email",
    default=None,
    help="Subscribe this address to the stack's alarms (default: keep the stack's; '' removes it).",
)
@click.option(
    "--health-dashboard/--no-health-dashboard",
    default=None,
    help="Add (or remove) the CloudWatch dashboard of the dashboard's own health: $3 a month "
    "at list price, free within an account's first three (default: keep the stack's; none on "
    "a first deployment).",
)
@click.option(
    "--releases",
    "list_releases",
    is_flag=True,
    help="List the stack's releases (newest first) and exit.",
)
@click.option(
    "--rollback",
    "rollback",
    is_flag=False,
    flag_value=PREVIOUS,
    default=None,
    metavar="[RELEASE]",
    help="Return site and functions to RELEASE (default: the release before the current "
    "one), without building or updating the stack.",
)
@click.option(
    "--lambda-zip",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Use this Lambda package instead of building one.",
)
@click.option(
    "--package-from",
    "package_mode",
    type=click.Choice(["auto", "env", "pip"]),
    default="auto",
    show_default=True,
    help="Where the package's dependencies come from.",
)
@click.option(
    "--rebuild-read-model",
    is_flag=True,
    help="Only rebuild the stack's read replica of the experiments from one scan of the "
    "table (docs/aws.md), then exit.",
)
@page_dir_option("Page files to upload instead of the installed ones (see `codecdash page eject`).")
@click.pass_obj
def deploy(
    obj: dict[str, Any] | None,
    stack: str,
    region: str | None,
    template: Path | None,
    artifacts_bucket: str | None,
    arch: str,
    alarm_email: str | None,
    health_dashboard: bool | None,
    list_releases: bool,
    rollback: str | None,
    lambda_zip: Path | None,
    package_mode: str,
    rebuild_read_model: bool,
    page_dir: str | None,
) -> None:
    """Deploy the dashboard to AWS (S3 + CloudFront, API Gateway + Lambda)."""
    from codecdash.export import warn_page_dir

    try:
        settings = command_settings(obj, page_dir=page_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.page_dir:
        warn_page_dir(settings.page_dir)
    options = DeployOptions(
        stack=stack,
        region=region,
        template=template,
        artifacts_bucket=artifacts_bucket,
        arch=arch,
        lambda_zip=lambda_zip.read_bytes() if lambda_zip else None,
        package_mode=package_mode,
        alarm_email=alarm_email,
        health_dashboard=health_dashboard,
    )
    if rebuild_read_model:
        rebuilt = Deployer(options, settings).rebuild_read_model()
        click.echo(f"Read replica rebuilt: {rebuilt.get('total', '?')} experiments")
        return
    deployer = Deployer(options, settings)
    if list_releases:
        releases, current = deployer.list_releases()
        if not releases:
            click.echo(f"No releases recorded for stack {stack} yet.")
        for release in releases:
            mark = "*" if release.id == current else " "
            click.echo(f"{mark} {release.describe()}")
        return
    if rollback is not None:
        target = deployer.rollback(None if rollback == PREVIOUS else rollback)
        click.echo(f"Rolled back to release {target.id}")
        return
    result = deployer.run()
    if result.outputs.get("ReadModelBucketName"):
        click.echo(
            f"Read replica bucket: {result.outputs['ReadModelBucketName']} "
            "(CODECDASH_AWS_READ_MODEL_BUCKET, for serve --source aws and doctor)"
        )
    click.echo(f"API URL: {result.api_url}")
    click.echo(f"Dashboard URL: {result.dashboard_url}")
