"""`codecdash demo`: the dashboard on its own database, with a live campaign written through the
real HTTP API by the SDK.

It takes `codecdash serve`'s options and uvicorn's settings from :mod:`codecdash.serving`.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any, Final

import click
import httpx

from codecdash import __version__
from codecdash.serving import (
    ServerOptions,
    command_settings,
    configure_logging,
    friendly_errors,
    server_options,
    uvicorn_options,
)
from codecdash.store import Store, maintenance
from codecdash.store.db import database_url

log = logging.getLogger("codecdash.demo")

DEFAULT_DB: Final = "codecdash-demo.db"
DEMO_TOKEN: Final = "codecdash-demo"  # noqa: S105 - a token's name, not its value
"""The write token the demo makes; its presence marks a database as a demo database."""
DEFAULT_ANCHOR: Final = "x264-medium-tune-zerolatency"  # = rd_model.X264 (no SciPy import here)
DB_HELP: Final = f"SQLite file or SQLAlchemy URL (default ./{DEFAULT_DB}; never a real one)."
BUDGET_SHARE: Final = 0.8
"""The demo's monthly budget, unless one is set, is this share of the month's forecast that its
fleet makes (see :func:`demo_budget`): the forecast passes it, so the budget alert fires in the
first minute, as the live hang makes a stale-worker alert."""


def demo_budget(now: float, history_days: float) -> float:
    """A budget the demo's forecast passes, whatever the day of the month: the forecast is the
    month's costs so far (the history, within this month) plus the fleet's hourly rate to the
    month's end; the budget is :data:`BUDGET_SHARE` of the instances' part of it, in $100s."""
    import calendar

    from codecdash.demo.fleet import planned_hourly_usd

    t = time.gmtime(now)
    month_start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    days = calendar.monthrange(t.tm_year, t.tm_mon)[1]
    month_end = month_start + days * 86400
    counted_s = min(history_days * 86400, now - month_start) + (month_end - now)
    usd = BUDGET_SHARE * planned_hourly_usd() * counted_s / 3600
    return max(100.0, float(int(usd // 100) * 100))


class NotADemoStore(click.ClickException):
    """The database holds data the demo did not write: the demo will not touch it."""


def open_demo_store(url: str, active_window_s: float = 90.0) -> Store:
    """Open the demo's store, emptied; refuse any database that holds other data.

    A database is the demo's when it is new (no tables, or codecdash's tables all empty) or
    when it holds the demo's own token. Anything else is refused before it is changed.
    """
    where = url.removeprefix("sqlite:///")
    store = Store(url, active_window_s=active_window_s, migrate=False)
    try:
        found = maintenance.survey(store.db, DEMO_TOKEN)
        if found.foreign:
            raise NotADemoStore(
                f"{where} is not a codecdash database; codecdash demo only uses a new "
                "database or one it made. Choose another --db."
            )
        if found.used and not found.has_token:
            raise NotADemoStore(
                f"{where} holds real data ({', '.join(found.used)}) that codecdash demo did not "
                "write; the demo never touches it. Use the default ./codecdash-demo.db or a "
                "new --db."
            )
        store.db.migrate()
        maintenance.empty(store.db)
    except BaseException:
        store.close()
        raise
    return store


def drive(
    url: str,
    token: str,
    *,
    seed: int,
    speed: float,
    history_days: float,
    window_s: float,
    stop: threading.Event,
) -> None:
    """The workload thread: once the server answers, run the campaign over HTTP.

    The rate-distortion model (and SciPy with it) loads here, after the server is up, not
    before it starts, so the page is served as soon as possible.
    """
    if not _wait_ready(url, stop):
        return
    try:
        from codecdash.demo.workload import Workload

        workload = Workload(
            url,
            token,
            seed=seed,
            speed=speed,
            history_days=history_days,
            window_s=window_s,
            stop=stop,
        )
    except Exception:
        log.exception("demo: the workload could not start")
        return
    workload.run()


def _wait_ready(url: str, stop: threading.Event, timeout_s: float = 60.0) -> bool:
    """Poll the health endpoint until it answers 200; False when stopped or timed out."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=2.0) as http:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if http.get("/api/v1/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            stop.wait(0.05)
    if not stop.is_set():
        log.error("demo: the server did not answer %s/api/v1/health", url)
    return False


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "; try another --port" if port else ""
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror}{hint}"
        ) from None
    return sock


def _local_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 # nosec B104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


@click.command("demo")
@server_options(db_help=DB_HELP)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the campaign: the same seed gives the same experiments "
    "(default: a new one, printed).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001, max=1_000_000),
    default=60.0,
    show_default=True,
    help="Campaign seconds per real second (60: an hour a minute; 3600: a day in 24 s).",
)
@click.option(
    "--history",
    "history_days",
    type=click.FloatRange(0, 365),
    default=14.0,
    show_default=True,
    help="Days of past campaign in place from the first second.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.pass_obj
@friendly_errors
def demo(
    obj: dict[str, Any],
    server: ServerOptions,
    seed: int | None,
    speed: float,
    history_days: float,
    duration: float | None,
) -> None:
    """Serve the dashboard with a live demo campaign (demo data, on its own database).

    The workload writes through the real HTTP API with the Python SDK, as training workers
    would: experiments queued → running → completed or failed, heartbeats of an orchestrator
    and a fleet of GPU workers, costs by component. --db defaults to ./codecdash-demo.db, never
    the database of `codecdash serve`; the demo refuses any database holding real data.
    """
    import uvicorn

    from codecdash.api.app import create_app

    began = time.monotonic()
    if server.source == "aws":
        raise click.UsageError("the demo writes its own local store; --source aws cannot be used")
    path = server.db or DEFAULT_DB
    url = database_url(path)
    if url.startswith("sqlite") and url.split("///", 1)[-1] in ("", ":memory:"):
        raise click.UsageError("the demo needs a database file or server, not :memory:")
    settings = command_settings(
        obj,
        **{**server.overrides(), "database_url": path, "source": "local"},
        demo=True,
        default_anchor=DEFAULT_ANCHOR,
    )
    if "monthly_budget_usd" not in settings.model_fields_set:
        budget = demo_budget(time.time(), history_days)
        settings = settings.model_copy(update={"monthly_budget_usd": budget})
    configure_logging(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the workload's requests
    seed = random.SystemRandom().randrange(1, 100_000) if seed is None else seed
    store = open_demo_store(settings.database_url, settings.active_window_seconds)
    token = store.create_token(DEMO_TOKEN, "write")
    host = server.host
    app = create_app(settings, store=store, bind_host=host)
    sock = _listen(host, server.port)
    port = sock.getsockname()[1]
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, **uvicorn_options(settings, server.access_log))
    )
    stop = threading.Event()
    worker = threading.Thread(
        target=drive,
        name="codecdash-demo",
        daemon=True,
        args=(_local_url(host, port), token),
        kwargs={
            "seed": seed,
            "speed": speed,
            "history_days": history_days,
            "window_s": settings.active_window_seconds,
            "stop": stop,
        },
    )
    worker.start()
    timer: threading.Timer | None = None
    if duration is not None:
        timer = threading.Timer(
            duration - (time.monotonic() - began), _exit, (uvicorn_server, stop, worker)
        )
        timer.daemon = True
        timer.start()
    where = Path(path) if "://" not in path else path.split("@")[-1]
    click.echo(
        f"codecdash {__version__} demo serving {_local_url(host, port)}/ (demo data in {where})"
    )
    click.echo(
        f"  seed {seed} (repeat with --seed {seed}), speed ×{speed:g}, "
        f"{history_days:g} days of history; Ctrl-C to stop"
    )
    click.echo(
        f"  budget ${settings.monthly_budget_usd:,.0f} a month (alerts: "
        f"{_local_url(host, port)}/api/v1/alerts)"
    )
    click.echo(f"  write token for trying the API on this demo: {token}")
    try:
        uvicorn_server.run(sockets=[sock])
    finally:
        stop.set()
        if timer is not None:
            timer.cancel()
        worker.join(timeout=5)
        sock.close()
        store.close()


def _exit(server: Any, stop: threading.Event, worker: threading.Thread) -> None:
    """--duration is up: the workload sends its last costs, then the server stops."""
    stop.set()
    worker.join(timeout=5)
    server.should_exit = True
