"""bench/compare_mlflow.py still works: a tiny N, one repeat, no Lighthouse.

A benchmark, not a test of speed: this only proves the script runs end to end against real
MLflow servers (installed into their own cached venv, never this environment), on both of
MLflow's databases (as shipped and with statistics), and writes its table and the headline
block of a performance page. The first run installs MLflow (a few minutes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "compare_mlflow.py"
INSTALL = REPO / "bench" / "mlflow_compare" / "install.py"
WORKDIR = Path(os.environ.get("CODECDASH_BENCH_WORKDIR", "/tmp/cdbench"))
PERFORMANCE = REPO / "docs" / "performance.md"


def _mlflow_version() -> str:
    for line in INSTALL.read_text().splitlines():
        if line.startswith("MLFLOW_VERSION = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"MLFLOW_VERSION not found in {INSTALL}")


def _mlflow_cached() -> bool:
    return (WORKDIR / "mlflow-venv" / f".codecdash-bench-mlflow-{_mlflow_version()}").exists()


def _pypi_reachable() -> bool:
    """Ask pip (the ordinary client, with this machine's settings) whether MLflow is there."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--dest",
                str(WORKDIR / ".pip-probe"),
                f"mlflow-skinny=={_mlflow_version()}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """bench/compare_mlflow.py with these arguments, from the repository root."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def mlflow_venv() -> Path:
    """MLflow's own venv, installed once (a few minutes) under its own 10-minute bound."""
    if not _mlflow_cached():
        if not _pypi_reachable():
            pytest.skip(f"PyPI is unreachable and no MLflow venv is cached in {WORKDIR}")
        done = _script(
            "--install-only", "--skip-lighthouse", "--workdir", str(WORKDIR), timeout=600
        )
        assert done.returncode == 0, done.stderr[-4000:]
    assert _mlflow_cached()
    return WORKDIR / "mlflow-venv"


@pytest.mark.slow
@pytest.mark.timeout(600, func_only=True)  # the first install is bounded by the fixture
def test_compare_mlflow_runs_at_a_tiny_n(tmp_path: Path, mlflow_venv: Path) -> None:
    # MLflow lives in its own venv, never in the environment running codecdash
    assert not Path(sys.prefix).resolve().is_relative_to(mlflow_venv.resolve())
    out = tmp_path / "mlflow-comparison.md"
    perf = tmp_path / "performance.md"  # the real page, with its marker lines
    perf.write_text(PERFORMANCE.read_text())
    done = _script(
        *("--n", "60", "--repeats", "1", "--mlflow-api-runs", "30", "--skip-lighthouse"),
        *("--workdir", str(WORKDIR), "--out", str(out), "--headline-out", str(perf)),
        timeout=560,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert (
        "| measure | MLflow as shipped | MLflow with statistics | codecdash | codecdash better "
        "by, vs MLflow as shipped | vs MLflow with statistics |" in text
    )
    for row in (
        "Ingest (experiments/s",
        "Top 100 by PSNR (ms)",
        "Top 100 by PSNR among",
        "Count all experiments (ms)",
    ):
        assert f"| {row}" in text, row
    # 30 of the 60 runs went through MLflow's API; the rest were bulk-loaded, and it says so
    assert "bulk-loaded with SQL" in text
    # MLflow's own API and the bulk copy left no planner statistics; the copy has them
    assert (
        "as shipped, `sqlite_stat1` absent after MLflow's API wrote its runs, absent after "
        "the bulk copy and absent after the queries" in text
    )
    assert re.search(r"`ANALYZE` on the copy took [\d.]+ s and left \d+ rows", text)
    assert (
        "top-100 lists identical to the expected ids and counts 60 (MLflow as shipped) / "
        "60 (MLflow with statistics) / 60 (codecdash): **yes**" in text
    )
    assert "MLflow 3." in text and "--n 60" in text
    assert "Page lighter and scoring higher: **not measured**" in text
    # the headline block was replaced, and nothing around it
    before, page = PERFORMANCE.read_text().splitlines(), perf.read_text().splitlines()
    begin = next(i for i, line in enumerate(before) if line.startswith("<!-- mlflow-headline"))
    end = before.index("<!-- /mlflow-headline -->")
    assert page[: begin + 1] == before[: begin + 1]
    assert page[len(page) - (len(before) - end) :] == before[end:]
    block = "\n".join(page[begin + 1 : len(page) - (len(before) - end)])
    assert "| top 100 by PSNR | " in block and "N = 60," in block
    assert "--headline-out" in block


def test_a_performance_page_without_markers_stops_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    perf = tmp_path / "performance.md"
    perf.write_text("# Performance\n\nno markers here\n")
    done = _script("--headline-out", str(perf), "--workdir", str(tmp_path), timeout=60)
    assert done.returncode != 0
    assert "needs one line" in done.stderr and "<!-- /mlflow-headline -->" in done.stderr
    assert not (tmp_path / "mlflow-venv").exists()  # it stopped before installing anything
