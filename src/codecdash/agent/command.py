"""`codecdash agent`: the click command (the main CLI adds it with ``main.add_command``)."""

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import click

from codecdash.agent.gpu import GpuCollector
from codecdash.agent.host import HostCollector
from codecdash.agent.imds import DEFAULT_IMDS_URL, InstanceInfo, SpotNotice, fetch_instance_info
from codecdash.agent.local_input import LocalInputs, LocalSource, MetricsEndpoint, MetricsFile
from codecdash.agent.pricing import PriceTable, load_overrides
from codecdash.agent.runner import (
    Collector,
    Heartbeat,
    HeartbeatBuilder,
    Runner,
    Sender,
    install_signal_handlers,
)
from codecdash.client import Client

log = logging.getLogger("codecdash.agent")

WORKER_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
DEFAULT_CONFIG = Path("codecdash.toml")


def default_worker_id(instance: InstanceInfo | None) -> str:
    """The EC2 instance id where there is one, else the host name (made a valid id)."""
    if instance is not None:
        return instance.instance_id
    name = re.sub(r"[^A-Za-z0-9._:\-]", "-", socket.gethostname())[:128]
    return name or "worker"


def _check_worker_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (not WORKER_ID.match(value) or value in (".", "..")):
        raise click.BadParameter("use 1-128 characters of A-Z a-z 0-9 . _ : - (not . or ..)")
    return value


@click.command("agent")
@click.option("--url", envvar="CODECDASH_URL", required=True, help="The dashboard's base URL.")
@click.option(
    "--token", envvar="CODECDASH_TOKEN", required=True, help="A write token (token create)."
)
@click.option(
    "--role",
    envvar="CODECDASH_AGENT_ROLE",
    type=click.Choice(["training", "inference", "orchestrator"]),
    required=True,
    help="What this machine does.",
)
@click.option(
    "--worker-id",
    envvar="CODECDASH_AGENT_WORKER_ID",
    callback=_check_worker_id,
    help="Default: the EC2 instance id, else the host name.",
)
@click.option(
    "--interval",
    envvar="CODECDASH_AGENT_INTERVAL",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds between heartbeats.",
)
@click.option("--once", is_flag=True, help="Send one heartbeat and exit: 0 sent, 1 not.")
@click.option(
    "--workdir",
    envvar="CODECDASH_AGENT_WORKDIR",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory whose file system's use is reported.",
)
@click.option(
    "--instance-type", envvar="CODECDASH_AGENT_INSTANCE_TYPE", help="Default: from EC2 IMDS."
)
@click.option(
    "--spot/--on-demand",
    "spot",
    envvar="CODECDASH_AGENT_SPOT",
    default=None,
    help="Default: from EC2 IMDS (instance-life-cycle).",
)
@click.option(
    "--hourly-cost",
    envvar="CODECDASH_AGENT_HOURLY_COST",
    type=click.FloatRange(min=0, max=10_000),
    help="USD an hour. Default: the price table for the instance type.",
)
@click.option(
    "--metrics-file",
    envvar="CODECDASH_AGENT_METRICS_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON the worker rewrites, e.g. {"fps": 41.2, "queue_depth": 12}.',
)
@click.option(
    "--listen-port",
    envvar="CODECDASH_AGENT_LISTEN_PORT",
    type=click.IntRange(0, 65535),
    help="Accept POST /metrics (same JSON) on 127.0.0.1:PORT.",
)
@click.option("--print", "print_", is_flag=True, help="Print each heartbeat's JSON to stdout.")
@click.option(
    "--config",
    "config_file",
    envvar="CODECDASH_CONFIG",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML with a [pricing] table. Default: ./codecdash.toml if present.",
)
@click.option(
    "--imds/--no-imds",
    default=True,
    show_default=True,
    help="Ask the EC2 instance metadata service (1 s timeout; skipped quietly off EC2).",
)
@click.option("--imds-url", envvar="CODECDASH_IMDS_URL", default=DEFAULT_IMDS_URL, hidden=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=120),
    default=10.0,
    show_default=True,
    help="Seconds for each request to the dashboard.",
)
@click.option(
    "--log-level",
    envvar="CODECDASH_AGENT_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.pass_context
def agent(
    ctx: click.Context,
    url: str,
    token: str,
    role: str,
    worker_id: str | None,
    interval: float,
    once: bool,
    workdir: Path,
    instance_type: str | None,
    spot: bool | None,
    hourly_cost: float | None,
    metrics_file: Path | None,
    listen_port: int | None,
    print_: bool,
    config_file: Path | None,
    imds: bool,
    imds_url: str,
    timeout: float,
    log_level: str,
) -> None:
    """Report this machine's heartbeat (CPU, memory, disk, GPUs, cost) to a dashboard."""
    _setup_logging(log_level)
    if config_file is None and isinstance(ctx.obj, dict) and ctx.obj.get("config"):
        config_file = Path(ctx.obj["config"])  # `codecdash --config FILE agent ...`
    prices = _load_prices(config_file)
    instance = fetch_instance_info(imds_url) if imds else None
    stale_after = 3 * interval
    sources: list[LocalSource] = []
    if metrics_file is not None:
        sources.append(MetricsFile(metrics_file, stale_after))
    endpoint: MetricsEndpoint | None = None
    if listen_port is not None and not once:
        try:
            endpoint = MetricsEndpoint(listen_port, stale_after)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on 127.0.0.1:{listen_port}: {exc}") from None
        sources.append(endpoint)
    gpu = GpuCollector()
    collectors: list[tuple[str, Collector]] = [
        ("host", HostCollector(workdir)),
        ("gpu", gpu),
        ("worker", LocalInputs(sources)),
    ]
    if instance is not None and instance.spot:
        collectors.append(("spot", SpotNotice(imds_url)))
    builder = HeartbeatBuilder(
        worker_id=worker_id or default_worker_id(instance),
        role=role,
        collectors=collectors,
        instance=instance,
        instance_type=instance_type,
        spot=spot,
        hourly_cost_usd=hourly_cost,
        prices=prices,
        local_inputs_expected=bool(sources),
    )
    client = Client(url, token, timeout=timeout, retries=0)
    final_client = Client(url, token, timeout=min(timeout, 3.0), retries=0)
    runner = Runner(
        builder.build,
        _sender(client, print_),
        interval=interval,
        final=builder.shutdown,
        final_send=_sender(final_client, print_),
    )
    try:
        if once:
            code = runner.once()
        else:
            if endpoint is not None:
                endpoint.start()
                log.info("accepting POST /metrics on 127.0.0.1:%d", endpoint.port)
            restore = install_signal_handlers(runner)
            log.info("reporting %s (%s) to %s every %g s", builder.worker_id, role, url, interval)
            try:
                code = runner.run()
            finally:
                restore()
    finally:
        if endpoint is not None:
            endpoint.stop()
        gpu.close()
        client.close()
        final_client.close()
    ctx.exit(code)


def _sender(client: Client, echo: bool) -> Sender:
    def send(heartbeat: Heartbeat) -> None:
        if echo:
            click.echo(json.dumps(heartbeat, ensure_ascii=False))
        client.heartbeat(**heartbeat)

    return send


def _load_prices(config_file: Path | None) -> PriceTable:
    path = config_file or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    overrides: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            overrides = load_overrides(path)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    return PriceTable(overrides)


def _setup_logging(level: str) -> None:
    logger = logging.getLogger("codecdash")
    logger.setLevel(level.upper())
    if level != "debug":  # httpx logs every request at INFO: one line a tick is noise
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
