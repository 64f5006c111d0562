"""The parts of bench/compare_mlflow.py that need no MLflow: MLflow's two databases, the
cap on a call and the restart after it, the turns, the capped figures in the report, and
the headline block of docs/performance.md.

The benchmark's modules are imported as the script imports them, with ``bench/`` first on
``sys.path`` (for these tests only); the whole script against a real MLflow is
tests/test_bench_mlflow_smoke.py.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def part(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(REPO / "bench"))

    def load(name: str) -> ModuleType:
        return importlib.import_module(f"mlflow_compare.{name}")

    return load


# -- MLflow's two databases ----------------------------------------------------------------
def test_the_copy_with_statistics_has_the_same_rows_and_the_original_stays_as_it_was(
    part: Any, tmp_path: Path
) -> None:
    mlflow_db = part("mlflow_db")
    shipped, copy = tmp_path / "mlflow.db", tmp_path / "mlflow-stats.db"
    con = sqlite3.connect(shipped)
    with con:
        con.execute("CREATE TABLE latest_metrics (run_uuid TEXT, key TEXT, value REAL)")
        con.execute("CREATE INDEX by_run ON latest_metrics (run_uuid)")
        con.executemany(
            "INSERT INTO latest_metrics VALUES (?, ?, ?)",
            [(f"r{i}", k, i / 7) for i in range(300) for k in ("psnr", "bitrate_reduction")],
        )
    con.close()
    before = hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert mlflow_db.statistics_rows(shipped) is None

    mlflow_db.with_statistics(shipped, copy)

    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == before
    assert mlflow_db.statistics_rows(shipped) is None
    assert (mlflow_db.statistics_rows(copy) or 0) > 0

    def rows(db: Path) -> list[Any]:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT * FROM latest_metrics ORDER BY rowid").fetchall()

    assert rows(copy) == rows(shipped)


# -- the cap and the restart ---------------------------------------------------------------
class SlowSearch(BaseHTTPRequestHandler):
    """MLflow's runs/search as a slow server would answer it: ranked queries take 30 s,
    a plain one answers at once."""

    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if "order_by" in body:
            self.stop.wait(30)
        data = b'{"runs": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_mlflow() -> Iterator[str]:
    SlowSearch.seen = []
    SlowSearch.stop.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSearch)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    SlowSearch.stop.set()
    server.shutdown()
    server.server_close()


class FakeServer:
    def __init__(self, url: str) -> None:
        self.url, self.events = url, []

    def stop(self, kill: bool = False) -> None:
        self.events.append("kill" if kill else "stop")

    def start(self, timeout: float) -> float:
        self.events.append("start")
        return 0.0


@pytest.mark.timeout(60)
def test_a_call_past_the_cap_is_capped_and_its_server_restarted_and_warmed(
    part: Any, slow_mlflow: str
) -> None:
    measure = part("measure")
    server = FakeServer(slow_mlflow)
    res = measure.Result(n=10, api_runs=10, cap_s=0.3)
    fleet = measure.Fleet({"mlflow": server}, res, "7")
    try:
        t, value = fleet.call("top_psnr", "mlflow", 0.3, 5)
    finally:
        fleet.close()
    assert math.isinf(t) and value is None
    assert res.capped == {("top_psnr", "mlflow")} and res.restarts == {"mlflow": 1}
    assert server.events == ["kill", "start"]  # no graceful wait for the abandoned query
    # the restarted server got one small warm-up search, not the capped one again
    assert SlowSearch.seen[-1] == {"experiment_ids": ["7"], "max_results": 1}


@pytest.mark.timeout(60)
def test_a_cap_covers_every_page_of_a_count(part: Any) -> None:
    clients = part("clients")
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = clients.MLflow(silent.getsockname()[1])
        client.capped(0.2)
        with pytest.raises(clients.Capped):
            client.count("1")
        client.close()


def test_each_system_goes_first_equally_often(part: Any) -> None:
    turns = part("timing").turns
    systems = ("mlflow", "mlflow_stats", "codecdash")
    orders = [turns(r, systems) for r in range(6)]
    assert all(sorted(o) == sorted(systems) for o in orders)
    assert [o[0] for o in orders] == [*systems, *systems]
    assert turns(0, ("mlflow", "codecdash")) == ["mlflow", "codecdash"]
    assert turns(1, ("mlflow", "codecdash")) == ["codecdash", "mlflow"]


# -- capped figures in the report ----------------------------------------------------------
def capped_result(part: Any) -> Any:
    measure = part("measure")
    res = measure.Result(n=100_000, api_runs=250, cap_s=60)
    res.ingest = {"mlflow": [40.0], "codecdash": [36_000.0]}
    ms = {"mlflow": [], "mlflow_stats": [0.5], "codecdash": [0.004]}
    res.samples = {m: {s: list(v) for s, v in ms.items()} for m in measure.MEASURES}
    res.samples["count"]["mlflow_stats"] = []
    res.capped = {("top_psnr", "mlflow"), ("top_br80", "mlflow"), ("count", "mlflow")}
    res.capped.add(("count", "mlflow_stats"))
    return res


def test_a_capped_figure_and_the_ratio_against_it_read_as_lower_bounds(part: Any) -> None:
    report = part("report")
    res = capped_result(part)
    assert report.query_cell(res, "top_psnr", "mlflow") == "> 60 s (capped)"
    assert report.query_cell(res, "top_psnr", "mlflow_stats") == "500"
    assert report.better_by(res, "top_psnr", "mlflow")[1] == "> 15,000×"
    assert report.better_by(res, "top_psnr", "mlflow_stats")[1] == "125×"
    assert report.ranked_goal(res, "top_psnr") == "met"
    # a cap below the goal proves nothing either way
    res.cap_s = 0.2
    assert report.ranked_goal(res, "count") == "unknown"
    res.samples["top_psnr"]["mlflow_stats"] = [0.3]
    assert report.ranked_goal(res, "top_psnr") == "not met"


# -- the headline block --------------------------------------------------------------------
def test_the_headline_replaces_only_its_block(part: Any, tmp_path: Path) -> None:
    headline = part("headline")
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nabove\n{headline.BEGIN}\nold\n{headline.END}\nbelow\n")
    headline.write_headline(page, "new\nfigures")
    assert page.read_text() == (
        f"# Performance\n\nabove\n{headline.BEGIN}\nnew\nfigures\n{headline.END}\nbelow\n"
    )


@pytest.mark.parametrize(
    "text", ["no markers", "{BEGIN}\nonly the first", "{END}\n{BEGIN}\n", "{BEGIN}{BEGIN}{END}"]
)
def test_a_page_without_one_pair_of_markers_is_refused(
    part: Any, tmp_path: Path, text: str
) -> None:
    headline = part("headline")
    page = tmp_path / "performance.md"
    page.write_text(text.format(BEGIN=headline.BEGIN, END=headline.END))
    with pytest.raises(SystemExit, match="needs one line"):
        headline.check_markers(page)


def test_the_headline_names_the_database_of_every_mlflow_figure(part: Any) -> None:
    headline = part("headline")
    res = capped_result(part)
    res.load = [1.0, 1.5]
    args = argparse.Namespace(repeats=9)
    text = headline.headline(args, res, "3.17.2", datetime(2026, 12, 7, tzinfo=UTC), 840)
    header = next(line for line in text.splitlines() if line.startswith("| measure"))
    assert "MLflow 3.17.2 as shipped | MLflow 3.17.2 with statistics" in header
    row = next(line for line in text.splitlines() if line.startswith("| top 100 by PSNR |"))
    assert row.split(" | ")[1:6] == ["> 60 s (capped)", "500 ms", "4.00 ms", "> 15,000×", "125×"]
    assert "≥ 100× ✓" in row
    assert "Ingest and the page: MLflow as shipped only." in text


# -- Lighthouse: a report without scores is a failed run -----------------------------------
def lighthouse_report(performance: float | None) -> dict[str, Any]:
    categories = ("performance", "accessibility", "best-practices", "seo")
    audits: dict[str, Any] = {"largest-contentful-paint": {"score": None}}
    if performance is None:
        audits["largest-contentful-paint"]["errorMessage"] = "NO_LCP"
    return {
        "categories": {
            c: {"score": performance if c == "performance" else 1.0} for c in categories
        },
        "audits": audits,
    }


@pytest.fixture
def fake_lighthouse(tmp_path: Path) -> Path:
    """A stand-in for the lighthouse binary: writes the reports queued in reports.json, one
    per run, to --output-path."""
    script = tmp_path / "lighthouse"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"queue = pathlib.Path({str(tmp_path / 'reports.json')!r})\n"
        "reports = json.loads(queue.read_text())\n"
        "queue.write_text(json.dumps(reports[1:]))\n"
        "out = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--output-path='))\n"
        "pathlib.Path(out).write_text(json.dumps(reports[0]))\n"
    )
    script.chmod(0o755)
    return script


def test_a_run_that_leaves_a_category_unscored_is_tried_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_lighthouse: Path
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    lighthouse = importlib.import_module("lighthouse")
    assert "NO_LCP" in lighthouse.report_problem(lighthouse_report(None))
    assert lighthouse.report_problem(lighthouse_report(0.25)) == ""

    queue = tmp_path / "reports.json"
    queue.write_text(json.dumps([lighthouse_report(None), lighthouse_report(0.25)]))
    out = tmp_path / "run.json"
    report = lighthouse.run_lighthouse(fake_lighthouse, "http://x/", out, "chromium")
    assert report["categories"]["performance"]["score"] == 0.25

    queue.write_text(json.dumps([lighthouse_report(None)] * 3))
    with pytest.raises(lighthouse.LighthouseFailed, match="no score for performance"):
        lighthouse.run_lighthouse(fake_lighthouse, "http://x/", out, "chromium")
