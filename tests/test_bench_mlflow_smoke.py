"""bench/compare_mlflow.py still works: a tiny N, one repeat, no Lighthouse.

A benchmark, not a test of speed: this only proves the script runs end to end against a
real MLflow server (installed into its own cached venv, never this environment) and
writes its table. The first run installs MLflow (a few minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "compare_mlflow.py"
WORKDIR = Path(os.environ.get("CODECDASH_BENCH_WORKDIR", "/tmp/cdbench"))


def _mlflow_version() -> str:
    for line in SCRIPT.read_text().splitlines():
        if line.startswith("MLFLOW_VERSION = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("MLFLOW_VERSION not found in the script")


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


@pytest.fixture(scope="module")
def mlflow_venv() -> Path:
    """MLflow's own venv, installed once (a few minutes) under its own 10-minute bound."""
    if not _mlflow_cached():
        if not _pypi_reachable():
            pytest.skip(f"PyPI is unreachable and no MLflow venv is cached in {WORKDIR}")
        done = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--install-only",
                "--skip-lighthouse",
                "--workdir",
                str(WORKDIR),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
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
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--n",
            "60",
            "--repeats",
            "1",
            "--mlflow-api-runs",
            "30",
            "--skip-lighthouse",
            "--workdir",
            str(WORKDIR),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=560,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert "| measure | MLflow (median) | codecdash (median) | codecdash ÷ MLflow" in text
    for row in (
        "Ingest (experiments/s",
        "Top 100 by PSNR (ms)",
        "Top 100 by PSNR among",
        "Count all experiments (ms)",
    ):
        assert f"| {row}" in text, row
    # 30 of the 60 runs went through MLflow's API; the rest were bulk-loaded, and it says so
    assert "bulk-loaded with SQL" in text
    assert (
        "same: top-100 lists identical to the expected ids and counts 60 (MLflow) / 60 "
        "(codecdash): **yes**" in text
    )
    assert "MLflow 3." in text and "--n 60" in text
    assert "Page lighter and scoring higher: **not measured**" in text
