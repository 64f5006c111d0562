"""The agent's loop, heartbeat building, worker figures, prices and the command itself."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codecdash.agent.gpu import GpuCollector
from codecdash.agent.host import HostCollector
from codecdash.agent.imds import InstanceInfo, SpotNotice
from codecdash.agent.local_input import (
    LocalInputs,
    MetricsEndpoint,
    MetricsFile,
    parse_figures,
)
from codecdash.agent.pricing import ON_DEMAND_USD, PriceTable, default_prices, load_overrides
from codecdash.agent.runner import Backoff, HeartbeatBuilder, Runner
from codecdash.client import ClientError

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-c", "from codecdash.agent.command import agent; agent()"]


def _server_available() -> bool:
    try:
        from codecdash.cli import main
    except ImportError:
        return False
    return {"serve", "token"} <= set(getattr(main, "commands", {}))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- backoff ---------------------------------------------------------------------------
def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(1))
    ceilings = []
    for _ in range(10):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    backoff.reset()
    assert backoff.ceiling() == 1 and backoff.failures == 0


def test_backoff_is_fully_jittered_within_its_ceiling() -> None:
    rng = random.Random(7)
    delays = []
    for _ in range(2000):
        backoff = Backoff(base=1.0, cap=60.0, rng=rng)
        for _ in range(8):
            delay = backoff.next_delay()
        delays.append(delay)  # the 8th delay: ceiling min(60, 128) = 60
    assert all(0 <= d <= 60 for d in delays)
    assert len(set(delays)) == len(delays)  # jittered, not one fixed wait
    assert sum(delays) / len(delays) == pytest.approx(30, abs=2)  # uniform on [0, 60]
    assert min(delays) < 3 and max(delays) > 57


def test_huge_failure_counts_do_not_overflow() -> None:
    backoff = Backoff(cap=60.0)
    backoff.failures = 10_000
    assert 0 <= backoff.next_delay() <= 60


# -- the loop --------------------------------------------------------------------------
@dataclass
class FakeDashboard:
    """A sender that fails while `down` and records what it received."""

    down: bool = False
    error: Exception = field(default_factory=lambda: ClientError(503, "unavailable", "down"))
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0

    def send(self, heartbeat: dict[str, Any]) -> None:
        self.attempts += 1
        if self.down:
            raise self.error
        self.received.append(heartbeat)


def counter() -> Callable[[], dict[str, Any]]:
    seq = iter(range(1, 10**6))
    return lambda: {"worker_id": "w", "role": "training", "seq": next(seq)}


def test_outage_keeps_only_the_newest_heartbeat() -> None:
    dashboard = FakeDashboard(down=True)
    runner = Runner(counter(), dashboard.send, interval=30, backoff=Backoff(base=0, cap=0))
    for _ in range(50):  # 50 ticks of outage, each followed by a failed attempt
        runner.tick()
        assert runner.attempt() is False
        assert runner.pending is not None
    assert runner.pending is not None and runner.pending["seq"] == 50
    dashboard.down = False
    assert runner.attempt() is True
    assert [h["seq"] for h in dashboard.received] == [50]  # no backlog replayed
    assert runner.pending is None
    assert runner.backoff.failures == 0


def test_refused_heartbeat_is_dropped_not_retried() -> None:
    dashboard = FakeDashboard(down=True, error=ClientError(422, "invalid", "cpu_pct > 100"))
    runner = Runner(counter(), dashboard.send, interval=30, backoff=Backoff(base=0, cap=0))
    runner.tick()
    assert runner.attempt() is False
    assert runner.pending is None


def test_loop_backs_off_during_an_outage_and_recovers() -> None:
    dashboard = FakeDashboard(down=True)
    runner = Runner(counter(), dashboard.send, interval=0.05, backoff=Backoff(base=0.02, cap=0.1))
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        time.sleep(0.6)
        failed = dashboard.attempts
        assert failed >= 3  # it keeps trying
        assert failed < 0.6 / 0.05 * 3  # but backs off rather than spinning
        dashboard.down = False
        wait_for(lambda: len(dashboard.received) >= 3)
    finally:
        runner.stop()
        thread.join(timeout=2)
    assert not thread.is_alive()
    seqs = [h["seq"] for h in dashboard.received]
    assert seqs == sorted(set(seqs))  # each sent once, newest first-come


def test_one_log_line_per_failure_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="codecdash")
    dashboard = FakeDashboard(down=True)
    runner = Runner(counter(), dashboard.send, interval=30)
    runner.tick()
    runner.attempt()
    records = [r for r in caplog.records if r.name.startswith("codecdash")]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    message = record.getMessage()
    assert "\n" not in message
    assert "503 unavailable: down" in message and "failure 1" in message


def test_unexpected_sender_errors_are_survived(caplog: pytest.LogCaptureFixture) -> None:
    dashboard = FakeDashboard(down=True, error=OSError("disk on fire"))
    runner = Runner(counter(), dashboard.send, interval=30, backoff=Backoff(base=0, cap=0))
    runner.tick()
    assert runner.attempt() is False
    assert "OSError: disk on fire" in caplog.text
    assert "Traceback" not in caplog.text


def test_once_exit_codes() -> None:
    assert Runner(counter(), FakeDashboard().send).once() == 0
    assert Runner(counter(), FakeDashboard(down=True).send).once() == 1


def test_stop_is_prompt_even_with_a_hung_request() -> None:
    hang = threading.Event()
    finals: list[dict[str, Any]] = []

    def hung(heartbeat: dict[str, Any]) -> None:  # a dashboard that accepts, never answers
        hang.wait()

    runner = Runner(
        counter(),
        hung,
        interval=30,
        final=lambda: {"status": "down", "extra": {"shutdown": True}},
        final_send=finals.append,
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    runner.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert time.monotonic() - started < 0.5
    assert finals == [{"status": "down", "extra": {"shutdown": True}}]
    hang.set()


# -- building the heartbeat -------------------------------------------------------------
class Static:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def update(self) -> dict[str, Any]:
        return self.data


class Broken:
    def update(self) -> dict[str, Any]:
        raise RuntimeError("sensor exploded")


INSTANCE = InstanceInfo("i-0abc", "g5.xlarge", "spot", "us-east-1")


def test_heartbeat_fields_and_extra(tmp_path: Path) -> None:
    gpu = GpuCollector(nvml=_FakeNvmlNoDriver())
    builder = HeartbeatBuilder(
        worker_id="train-1",
        role="training",
        collectors=[("host", HostCollector(tmp_path, cpu_sample_s=0.05)), ("gpu", gpu)],
        instance=INSTANCE,
        prices=PriceTable(),
    )
    hb = builder.build()
    assert hb["worker_id"] == "train-1"
    assert hb["status"] == "ok"
    assert hb["instance_type"] == "g5.xlarge"
    assert hb["spot"] is True
    assert hb["hourly_cost_usd"] == default_prices()["g5.xlarge"].spot
    assert 0 <= hb["cpu_pct"] <= 100 and 0 <= hb["mem_pct"] <= 100
    assert hb["at"].endswith("Z")
    # no GPU: no GPU fields at all, not nulls
    assert not {"gpu_util_pct", "gpu_mem_pct"} & set(hb)
    assert "gpus" not in hb["extra"]
    extra = hb["extra"]
    assert extra["instance_id"] == "i-0abc" and extra["region"] == "us-east-1"
    assert extra["cost_basis"] == "price table, spot"
    assert {"load_1m", "load_5m", "load_15m", "disk_used_pct", "agent_version"} <= set(extra)
    assert None not in hb.values()


def test_heartbeat_is_a_valid_contract_heartbeat(tmp_path: Path) -> None:
    models = pytest.importorskip("codecdash.models")
    gpus = [
        {"index": i, "name": "NVIDIA A10G", "util_pct": u, "mem_used_bytes": m,
         "mem_total_bytes": 24 * 2**30, "temperature_c": 60.0, "power_w": 150.2}
        for i, (u, m) in enumerate([(90.0, 18 * 2**30), (30.0, 6 * 2**30)])
    ]  # fmt: skip
    gpu = Static({"gpu_util_pct": 60.0, "gpu_mem_pct": 50.0, "gpu_count": 2, "gpus": gpus})
    builder = HeartbeatBuilder(
        worker_id="infer-1",
        role="inference",
        collectors=[
            ("host", HostCollector(tmp_path, cpu_sample_s=0.05)),
            ("gpu", gpu),
            ("worker", Static({"fps": 41.2, "queue_depth": 12})),
        ],
        instance_type="g5.2xlarge",
        spot=False,
        prices=PriceTable(),
    )
    hb = builder.build()
    models.Heartbeat.model_validate(hb)
    models.Heartbeat.model_validate(builder.shutdown())
    assert hb["gpu_util_pct"] == 60.0 and hb["gpu_mem_pct"] == 50.0
    assert len(hb["extra"]["gpus"]) == 2
    assert (hb["fps"], hb["queue_depth"]) == (41.2, 12)
    assert hb["hourly_cost_usd"] == ON_DEMAND_USD["g5.2xlarge"]


def test_flags_win_over_imds_and_table() -> None:
    hb = HeartbeatBuilder(
        worker_id="w",
        role="training",
        instance=INSTANCE,
        instance_type="p3.2xlarge",
        spot=False,
        hourly_cost_usd=2.5,
        prices=PriceTable(),
    ).build()
    assert (hb["instance_type"], hb["spot"], hb["hourly_cost_usd"]) == ("p3.2xlarge", False, 2.5)
    assert hb["extra"]["cost_basis"] == "flag"


def test_off_ec2_without_flags_sends_no_instance_fields() -> None:
    hb = HeartbeatBuilder(worker_id="w", role="orchestrator", prices=PriceTable()).build()
    assert not {"instance_type", "spot", "hourly_cost_usd"} & set(hb)


def test_shutdown_heartbeat_is_distinguishable() -> None:
    hb = HeartbeatBuilder(worker_id="w", role="training").shutdown()
    assert hb["status"] == "down"
    assert hb["extra"]["shutdown"] is True


def test_degraded_when_expected_worker_figures_are_missing_or_disk_full() -> None:
    builder = HeartbeatBuilder(
        worker_id="w",
        role="inference",
        collectors=[("host", Static({"disk_used_pct": 97.0})), ("worker", Static({}))],
        local_inputs_expected=True,
    )
    hb = builder.build()
    assert hb["status"] == "degraded"
    assert hb["extra"]["degraded_reasons"] == [
        "no fresh figures from the worker",
        "disk 97% full",
    ]


def test_spot_interruption_notice_degrades_the_worker() -> None:
    notice = {"spot_interruption": {"action": "terminate", "time": "2026-11-26T23:40:00Z"}}
    hb = HeartbeatBuilder(worker_id="w", role="training", collectors=[("spot", Static(notice))])
    built = hb.build()
    assert built["status"] == "degraded"
    assert built["extra"]["spot_interruption"]["action"] == "terminate"
    assert built["extra"]["degraded_reasons"] == [
        "spot interruption notice: terminate at 2026-11-26T23:40:00Z"
    ]
    final = hb.shutdown()  # a reclaimed spot worker's goodbye says why, and is not "clean"
    assert final["status"] == "down" and "spot_interruption" in final["extra"]
    assert final["extra"]["shutdown"] is False


def test_worker_verdict_is_kept_unless_worse() -> None:
    down = HeartbeatBuilder(
        worker_id="w", role="inference", collectors=[("worker", Static({"status": "down"}))]
    ).build()
    assert down["status"] == "down"
    degraded = HeartbeatBuilder(
        worker_id="w",
        role="inference",
        collectors=[("worker", Static({"status": "ok", "fps": 1.0}))],
    ).build()
    assert degraded["status"] == "ok"


def test_broken_collector_logs_once_and_the_heartbeat_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    builder = HeartbeatBuilder(
        worker_id="w",
        role="training",
        collectors=[("broken", Broken()), ("host", Static({"cpu_pct": 5.0}))],
    )
    for _ in range(3):
        hb = builder.build()
        assert hb["cpu_pct"] == 5.0
    lines = [r for r in caplog.records if "sensor exploded" in r.getMessage()]
    assert len(lines) == 1


def test_non_finite_figures_are_dropped_and_extra_fits_16_kib() -> None:
    gpus = [{"index": i, "name": "X" * 500, "util_pct": 1.0} for i in range(64)]
    hb = HeartbeatBuilder(
        worker_id="w",
        role="training",
        collectors=[("x", Static({"cpu_pct": math.nan, "load_1m": math.inf, "gpus": gpus}))],
    ).build()
    assert "cpu_pct" not in hb and "load_1m" not in hb["extra"]
    assert len(json.dumps(hb["extra"]).encode()) <= 16 * 1024
    assert hb["extra"]["gpus_truncated"] is True
    assert hb["extra"]["gpus"][0]["index"] == 0


figures = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["cpu_pct", "fps", "load_1m", "gpus", "x"]), figures))
def test_any_figures_give_strict_json(data: dict[str, Any]) -> None:
    hb = HeartbeatBuilder(worker_id="w", role="training", collectors=[("x", Static(data))]).build()
    json.dumps(hb, allow_nan=False)  # the API rejects NaN and infinities


class _FakeNvmlNoDriver:
    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        raise self.NVMLError("NVML Shared Library Not Found")


# -- the worker's own figures ------------------------------------------------------------
def test_parse_figures() -> None:
    assert parse_figures({"fps": 41.2, "queue_depth": 12.0, "other": 1}) == {
        "fps": 41.2,
        "queue_depth": 12,
    }
    bad: Any
    for bad in ([], {"fps": -1}, {"fps": "fast"}, {"queue_depth": 1.5}, {"status": "meh"}):
        with pytest.raises(ValueError):
            parse_figures(bad)
    with pytest.raises(ValueError):
        parse_figures({"fps": math.nan})


def test_metrics_file_is_reread_and_goes_stale(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    source = MetricsFile(path, stale_after_s=90)
    assert source.read() is None  # not written yet
    path.write_text('{"fps": 41.2, "queue_depth": 12}')
    reading = source.read()
    assert reading is not None and reading[1] == {"fps": 41.2, "queue_depth": 12}
    path.write_text('{"fps": 50}')
    assert source.read()[1] == {"fps": 50.0}  # type: ignore[index]
    old = time.time() - 91
    os.utime(path, (old, old))
    assert source.read() is None


def test_bad_metrics_file_logs_one_line_until_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    source = MetricsFile(path, stale_after_s=90)
    for _ in range(5):
        assert source.read() is None
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1
    path.write_text('{"fps": 1}')
    assert source.read() is not None


def post(port: int, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_metrics_endpoint_on_loopback() -> None:
    now = [1000.0]
    endpoint = MetricsEndpoint(0, stale_after_s=90, clock=lambda: now[0])
    endpoint.start()
    try:
        assert endpoint._server.server_address[0] == "127.0.0.1"
        assert endpoint.read() is None
        status, _ = post(endpoint.port, "/metrics", b'{"fps": 30.5, "queue_depth": 3}')
        assert status == 202
        assert endpoint.read() == (1000.0, {"fps": 30.5, "queue_depth": 3})
        assert post(endpoint.port, "/metrics", b"{oops")[0] == 400
        assert post(endpoint.port, "/metrics", b'{"fps": -2}')[0] == 400
        assert post(endpoint.port, "/elsewhere", b"{}")[0] == 404
        assert endpoint.read() == (1000.0, {"fps": 30.5, "queue_depth": 3})
        now[0] += 91
        assert endpoint.read() is None
    finally:
        endpoint.stop()


def test_local_inputs_newest_wins_key_by_key() -> None:
    class Reading:
        def __init__(self, at: float, figures: dict[str, Any]) -> None:
            self.value = (at, figures)

        def read(self) -> tuple[float, dict[str, Any]]:
            return self.value

    inputs = LocalInputs([Reading(20, {"fps": 2.0}), Reading(10, {"fps": 1.0, "queue_depth": 5})])
    assert inputs.update() == {"fps": 2.0, "queue_depth": 5}
    assert not LocalInputs().configured and LocalInputs().update() == {}


# -- prices ------------------------------------------------------------------------------
REQUIRED_TYPES = [
    "g4dn.xlarge",
    "g4dn.2xlarge",
    "g4dn.12xlarge",
    "g5.xlarge",
    "g5.2xlarge",
    "g5.12xlarge",
    "g5.48xlarge",
    "g6.xlarge",
    "g6.12xlarge",
    "p3.2xlarge",
    "p3.8xlarge",
    "p4d.24xlarge",
    "p5.48xlarge",
    "c6i.large",
    "c6i.xlarge",
    "m6i.large",
    "m6i.xlarge",
    "t3.micro",
    "t3.medium",
    "t3.large",
]


def test_default_prices_cover_the_fleet_and_spot_is_cheaper() -> None:
    prices = default_prices()
    for name in REQUIRED_TYPES:
        price = prices[name]
        assert price.on_demand is not None and price.spot is not None
        assert 0 < price.spot < price.on_demand
    assert prices["g5.xlarge"].on_demand == 1.006
    assert prices["g4dn.xlarge"].on_demand == 0.526


def test_price_table_overrides_and_lookup() -> None:
    table = PriceTable({"g5.xlarge": {"spot": 0.5}, "x9.huge": {"on_demand": 9.0}})
    assert table.hourly("g5.xlarge", True) == 0.5
    assert table.hourly("g5.xlarge", False) == 1.006
    assert table.hourly("g5.xlarge", None) == 1.006  # unknown life cycle: on-demand
    assert table.hourly("x9.huge", False) == 9.0
    assert table.hourly("x9.huge", True) is None
    assert table.hourly("nope.large", False) is None
    assert table.hourly(None, None) is None
    for bad in ({"g5.xlarge": {"spot": -1}}, {"g5.xlarge": {"spot": "cheap"}}):
        with pytest.raises(ValueError):
            PriceTable(bad)


def test_pricing_from_toml(tmp_path: Path) -> None:
    top = tmp_path / "a.toml"
    top.write_text('[pricing."g5.xlarge"]\non_demand = 1.1\nspot = 0.4\n')
    assert load_overrides(top) == {"g5.xlarge": {"on_demand": 1.1, "spot": 0.4}}
    nested = tmp_path / "b.toml"
    nested.write_text(
        '[codecdash]\nrefresh_seconds = 30\n[codecdash.pricing."t3.large"]\nspot = 0.03\n'
    )
    assert load_overrides(nested) == {"t3.large": {"spot": 0.03}}
    none = tmp_path / "c.toml"
    none.write_text("refresh_seconds = 30\n")
    assert load_overrides(none) == {}
    bad = tmp_path / "d.toml"
    bad.write_text('[pricing]\n"g5.xlarge" = 3\n')
    with pytest.raises(ValueError):
        load_overrides(bad)


# -- the command, as a process -----------------------------------------------------------
@dataclass
class FakeServer:
    url: str = ""
    status: int = 202
    bodies: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


@pytest.fixture
def dashboard() -> Iterator[FakeServer]:
    fake = FakeServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/api/v1/heartbeats":
                fake.bodies.append(json.loads(body))
                fake.auth.append(self.headers.get("Authorization", ""))
            payload = b'{"error": {"code": "x", "message": "y"}}' if fake.status >= 400 else b""
            self.send_response(fake.status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def run_agent(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=30, **kwargs)


def test_once_prints_and_sends_one_heartbeat(dashboard: FakeServer, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"fps": 41.2, "queue_depth": 12}')
    result = run_agent(
        "--url", dashboard.url, "--token", "s3cret", "--role", "inference", "--once",
        "--print", "--no-imds", "--workdir", str(tmp_path), "--worker-id", "infer-7",
        "--instance-type", "g5.xlarge", "--spot", "--metrics-file", str(metrics),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert dashboard.bodies == [printed]
    assert dashboard.auth == ["Bearer s3cret"]
    assert printed["worker_id"] == "infer-7"
    assert (printed["fps"], printed["queue_depth"]) == (41.2, 12)
    assert printed["hourly_cost_usd"] == default_prices()["g5.xlarge"].spot
    assert printed["extra"]["disk_path"] == str(tmp_path.resolve())


def test_once_fails_with_exit_1_and_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_agent(
        "--url", f"http://127.0.0.1:{port}", "--token", "t", "--role", "training",
        "--once", "--no-imds", "--workdir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_url_and_token_from_the_environment(dashboard: FakeServer, tmp_path: Path) -> None:
    env = {**os.environ, "CODECDASH_URL": dashboard.url, "CODECDASH_TOKEN": "env-token"}
    result = run_agent("--role", "orchestrator", "--once", "--no-imds", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert dashboard.auth == ["Bearer env-token"]


def test_pricing_from_the_main_cli_config(dashboard: FakeServer, tmp_path: Path) -> None:
    if not _server_available():
        pytest.skip("codecdash.cli is not there yet")
    config = tmp_path / "prices.toml"
    config.write_text(
        '[codecdash]\nrefresh_seconds = 30\n[pricing."g5.xlarge"]\non_demand = 0.99\n'
    )
    result = subprocess.run(
        [sys.executable, "-c", "from codecdash.cli import main; main()", "--config", str(config),
         "agent", "--url", dashboard.url, "--token", "t", "--role", "training", "--once",
         "--no-imds", "--instance-type", "g5.xlarge", "--on-demand", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert dashboard.bodies[0]["hourly_cost_usd"] == 0.99
    assert dashboard.bodies[0]["extra"]["cost_basis"] == "price table, on-demand"


def test_bad_worker_id_is_a_usage_error() -> None:
    result = run_agent("--url", "http://x", "--token", "t", "--role", "training",
                       "--worker-id", "has space", "--once")  # fmt: skip
    assert result.returncode == 2
    assert "worker-id" in result.stderr


def start_agent(
    url: str, tmp_path: Path, *extra: str, token: str = "t", worker_id: str = "train-9"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AGENT, "--url", url, "--token", token, "--role", "training", "--interval", "1",
         "--no-imds", "--workdir", str(tmp_path), "--worker-id", worker_id, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_stops_a_running_agent_cleanly(dashboard: FakeServer, tmp_path: Path) -> None:
    proc = start_agent(dashboard.url, tmp_path, "--interval", "30")  # asleep until stopped
    try:
        wait_for(lambda: len(dashboard.bodies) >= 1, timeout=15)
        time.sleep(0.3)  # let it settle into its 30 s wait
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert time.monotonic() - started < 2.0
    assert "Traceback" not in stderr
    assert [b["status"] for b in dashboard.bodies[:-1]] == ["ok"] * (len(dashboard.bodies) - 1)
    last = dashboard.bodies[-1]
    assert last["status"] == "down" and last["extra"]["shutdown"] is True


def test_agent_rides_out_an_outage(dashboard: FakeServer, tmp_path: Path) -> None:
    dashboard.status = 503
    proc = start_agent(dashboard.url, tmp_path)
    try:
        wait_for(lambda: len(dashboard.bodies) >= 2, timeout=15)
        dashboard.status = 202
        seen = len(dashboard.bodies)
        wait_for(lambda: len(dashboard.bodies) >= seen + 1, timeout=15)
        assert proc.poll() is None  # still running
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 0
    failures = [line for line in stderr.splitlines() if "heartbeat not sent" in line]
    assert failures and all("503" in line for line in failures)
    assert "Traceback" not in stderr
    assert "reachable again" in stderr


@pytest.mark.slow
@pytest.mark.skipif(not _server_available(), reason="the server is not there yet")
def test_clean_stop_and_vanished_spot_worker_are_told_apart(
    make_live_server: Any, settings: Any, tmp_path: Path
) -> None:
    """Against the real API: SIGTERM sends a clean `down`; a killed spot worker just vanishes."""
    live = make_live_server(settings.model_copy(update={"refresh_seconds": 0.5}))

    def training() -> dict[str, Any]:
        with urllib.request.urlopen(f"{live.url}/api/v1/dashboard", timeout=5) as response:
            return dict(json.loads(response.read())["infrastructure"]["training_workers"])

    clean = start_agent(live.url, tmp_path, "--spot", token=live.token, worker_id="spot-clean")
    vanish = start_agent(live.url, tmp_path, "--spot", token=live.token, worker_id="spot-gone")
    try:
        wait_for(lambda: training()["active"] == 2, timeout=20)
        clean.send_signal(signal.SIGTERM)
        vanish.kill()
        assert clean.wait(timeout=5) == 0
        vanish.wait(timeout=5)
        # once the active window (3 × 0.5 s) has passed, only the vanished one is counted
        wait_for(lambda: training()["spot_interruptions"] >= 1, timeout=20)
        assert training()["spot_interruptions"] == 1
        assert training()["active"] == 0
    finally:
        for proc in (clean, vanish):
            proc.kill()
            proc.communicate()


# -- docs --------------------------------------------------------------------------------
def test_docs_describe_every_field_and_option() -> None:
    from codecdash.agent.command import agent

    doc = (ROOT / "docs" / "agent.md").read_text()
    for collector in (HostCollector, GpuCollector, LocalInputs, InstanceInfo, SpotNotice):
        for f in collector.fields:
            assert f"`{f.name}`" in doc, f"docs/agent.md does not describe {f.name}"
    for param in agent.params:
        for opt in getattr(param, "opts", []):
            if not getattr(param, "hidden", False):
                assert opt in doc, f"docs/agent.md does not mention {opt}"
    unit = (ROOT / "docs" / "codecdash-agent.service").read_text()
    for line in ("Restart=on-failure", "EnvironmentFile=", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "User="):  # fmt: skip
        assert line in unit


# -- end to end, against the real server ---------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not _server_available(), reason="codecdash serve is not there yet")
def test_end_to_end_with_codecdash_serve(tmp_path: Path) -> None:
    cli = [sys.executable, "-c", "from codecdash.cli import main; main()"]
    db = str(tmp_path / "e2e.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECDASH_")}
    created = subprocess.run(
        [*cli, "token", "create", "agent-e2e", "--db", db],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:

        def healthy() -> bool:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout=30)
        result = run_agent(
            "--url", url, "--token", token, "--role", "orchestrator", "--once", "--print",
            "--no-imds", "--workdir", str(tmp_path), "--worker-id", "orch-e2e",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        sent = json.loads(result.stdout.strip().splitlines()[-1])
        with urllib.request.urlopen(f"{url}/api/v1/dashboard", timeout=5) as response:
            snapshot = json.loads(response.read())
        orchestrator = snapshot["infrastructure"]["orchestrator"]
        assert orchestrator["status"] == "ok"
        assert orchestrator["cpu_pct"] == pytest.approx(sent["cpu_pct"])
        assert orchestrator["mem_pct"] == pytest.approx(sent["mem_pct"])
        bad = run_agent(
            "--url", url, "--token", "wrong", "--role", "orchestrator", "--once", "--no-imds",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert bad.returncode == 1 and "401" in bad.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
