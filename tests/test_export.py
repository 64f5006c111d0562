"""`codecdash export --out DIR`: the static site plus dashboard.json, from the local store
or from AWS, readable from a plain static file server."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from aws_fixtures import AwsEnv, aws, moto_server  # noqa: F401 - fixtures for the AWS test
from codecdash.api.bdrates import BdTableAnswer
from codecdash.cli import main
from codecdash.export import IMMUTABLE, REVALIDATE, site_files
from codecdash.models import ExperimentIn
from codecdash.snapshot_models import Snapshot
from codecdash.store import Store
from conftest import writes

FIXTURE = Path(__file__).parent / "fixtures" / "experiments.json"


@pytest.fixture
def filled_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'export.db'}"
    store = Store(url)
    items = json.loads(FIXTURE.read_text())["items"]
    writes(store).batch(
        [ExperimentIn(**{k: v for k, v in i.items() if k != "duration_s"}) for i in items]
    )
    store.close()
    return url


def test_export_writes_the_site_and_the_snapshot(filled_db: str, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(main, ["export", "--out", str(out), "--db", filled_db])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    for name in ("index.html", "app.js", "styles.css", "dashboard.json"):
        assert (out / name).is_file(), name
    assert any((out / "vendor").iterdir())
    snapshot = json.loads((out / "dashboard.json").read_text())
    Snapshot.model_validate(snapshot)
    assert snapshot["summary"]["total_experiments"] == 46
    assert len(snapshot["recent_experiments"]) == 20
    assert [s["name"] for s in snapshot["sources"]] == [
        "local.experiments",
        "local.heartbeats",
        "local.costs",
        "local.storage",
    ]
    index = (out / "index.html").read_text()
    assert "./app.js?v=" in index  # versioned references, as `serve` sends them
    assert '<meta name="codecdash-api-base" content="">' in index
    # The headline cards drawn into it (the first paint shows them), the modules put in after
    # that paint, and no inline script (its host's fixed CSP would refuse one).
    assert '<div class="grid grid-kpi is-drawn">' in index
    assert '<span class="stat-value">46</span><span class="stat-unit">experiments</span>' in index
    assert '<template id="codecdash-modules">' in index
    assert '<script src="./theme.js?v=' in index and "<script>" not in index
    # the BD-rate table beside it, as GET /api/v1/bd-rates answers it
    table = BdTableAnswer.model_validate_json((out / "bd-rates.json").read_text())
    assert table.per == "method" and table.quality_metric == "psnr"


def test_export_api_base_is_written_and_escaped(filled_db: str, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--out",
            str(out),
            "--db",
            filled_db,
            "--api-base",
            'https://api.example.com/"x"/',
        ],
    )
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text()
    assert (
        '<meta name="codecdash-api-base" content="https://api.example.com/&quot;x&quot;">' in index
    )


def test_export_into_an_existing_directory_replaces_files(filled_db: str, tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "dashboard.json").write_text("old")
    (out / "keep.txt").write_text("mine")
    assert CliRunner().invoke(main, ["export", "--out", str(out), "--db", filled_db]).exit_code == 0
    assert json.loads((out / "dashboard.json").read_text())["summary"]["total_experiments"] == 46
    assert (out / "keep.txt").read_text() == "mine"


def test_export_bad_directory_is_a_clear_error(filled_db: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["export", "--out", str(blocker / "site"), "--db", filled_db])
    assert result.exit_code != 0
    assert "Traceback" not in result.output


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_export_works_from_a_plain_file_server(
    filled_db: str, file_server: tuple[str, Path]
) -> None:
    url, root = file_server
    assert (
        CliRunner().invoke(main, ["export", "--out", str(root), "--db", filled_db]).exit_code == 0
    )
    with urllib.request.urlopen(f"{url}/", timeout=5) as page:
        html = page.read().decode()
    assert "codecdash" in html
    # Every versioned reference of the page resolves (the server ignores ?v=).
    import re

    for ref in re.findall(r'(?:src|href)="\./([^"?]+)\?v=', html):
        with urllib.request.urlopen(f"{url}/{ref}", timeout=5) as asset:
            assert asset.status == 200, ref
    with urllib.request.urlopen(f"{url}/dashboard.json", timeout=5) as snap:
        assert snap.headers["Content-Type"] == "application/json"
        assert json.loads(snap.read())["summary"]["total_experiments"] == 46


def test_site_files_cache_rules() -> None:
    files = {f.name: f for f in site_files()}
    assert files["index.html"].cache_control == REVALIDATE
    assert files["index.html"].content_type == "text/html; charset=utf-8"
    assert files["app.js"].cache_control == IMMUTABLE
    assert files["app.js"].content_type == "text/javascript; charset=utf-8"
    vendored = [
        f for name, f in files.items() if name.startswith("vendor/") and name.endswith(".js")
    ]
    assert vendored and all(f.cache_control == IMMUTABLE for f in vendored)


@pytest.mark.aws
def test_export_from_aws(aws: AwsEnv, tmp_path: Path) -> None:  # noqa: F811
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="inference")["QueueUrl"]
    for n in range(4):
        sqs.send_message(QueueUrl=queue, MessageBody=str(n))
    out = tmp_path / "site"
    result = CliRunner().invoke(
        main,
        ["export", "--out", str(out), "--source", "aws"],
        env={
            "CODECDASH_AWS_INFERENCE_QUEUE_URL": queue,
            "CODECDASH_DATABASE_URL": str(tmp_path / "unused.db"),
        },
    )
    assert result.exit_code == 0, result.output
    snapshot = json.loads((out / "dashboard.json").read_text())
    assert snapshot["infrastructure"]["inference_workers"]["queue_depth"] == 4
    assert {s["name"] for s in snapshot["sources"]} >= {"aws.fleet", "aws.fleet.sqs", "aws.costs"}


def test_export_writes_the_bd_rate_table(tmp_path: Path) -> None:
    """bd-rates.json (what the page's BD-rate Table reads in an export), .csv and .tex."""
    from codecdash.codec_metrics import bd_rate, pareto_front
    from codecdash.config import Settings
    from codecdash.experiments.anchors import save_anchor
    from codecdash.results import read_result_file

    uvg = Path(__file__).parents[1] / "src" / "codecdash" / "data" / "rd-results" / "UVG-1080p"

    def points(name: str) -> list[dict[str, object]]:
        found = read_result_file(uvg / f"{name}.json").points
        return [{k: v for k, v in p.items() if v is not None} for p in found]

    url = f"sqlite:///{tmp_path / 'bd.db'}"
    store = Store(url)
    settings = Settings(database_url=url)
    x265 = "x265-medium-tune-zerolatency"
    save_anchor(store, settings, x265, None, points(x265), dataset="UVG-1080p")
    writes(store, settings).batch(
        [
            ExperimentIn(
                id="ssf",
                name="SSF",
                status="completed",
                dataset="UVG-1080p",
                method="ssf2020",
                rd_points=points("ssf2020-mse-ans-vimeo"),
            )
        ]
    )
    store.close()

    out = tmp_path / "site"
    result = CliRunner().invoke(main, ["export", "--out", str(out), "--db", url])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "bd-rates.json").read_text())
    assert table["datasets"] == [
        {"name": "UVG-1080p", "key": "UVG-1080p", "anchor": x265, "rate_unit": "kbps"}
    ]
    [row] = table["rows"]
    assert row["method"] == "ssf2020" and row["experiments"] == 1
    cell = row["cells"]["UVG-1080p"]
    pairs = {
        name: pareto_front([(p["bitrate_kbps"], p["psnr_db"]) for p in points(name)])
        for name in (x265, "ssf2020-mse-ans-vimeo")
    }
    expected = bd_rate(pairs[x265], pairs["ssf2020-mse-ans-vimeo"])
    assert cell["bd_rate_pct"] == pytest.approx(expected, abs=1e-3)
    assert (out / "bd-rates.csv").read_text().startswith("method,experiments,")
    assert "\\begin{tabular}" in (out / "bd-rates.tex").read_text()
