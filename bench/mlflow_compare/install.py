"""MLflow in a virtual environment of its own (``<workdir>/mlflow-venv``), made once and
cached; never the environment that runs codecdash."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow_compare import log

MLFLOW_VERSION = "3.17.2"


def marker(venv: Path) -> Path:
    """The file that says the venv holds this MLflow version, fully installed."""
    return venv / f".codecdash-bench-mlflow-{MLFLOW_VERSION}"


def ensure_mlflow(workdir: Path, python: str) -> Path:
    """<workdir>/mlflow-venv with mlflow==MLFLOW_VERSION, made once and cached."""
    venv = workdir / "mlflow-venv"
    if Path(sys.prefix).resolve() in (venv.resolve(), *venv.resolve().parents):
        raise SystemExit("refusing to install MLflow into the environment running codecdash")
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / ".mlflow-venv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker(venv).exists():
            log(f"installing mlflow=={MLFLOW_VERSION} into {venv} (minutes, once)")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, f"mlflow=={MLFLOW_VERSION}"], check=True)
            marker(venv).write_text(f"mlflow=={MLFLOW_VERSION}\n")
    return venv


def mlflow_versions(venv: Path) -> dict[str, str]:
    code = (
        "import json, sys, sqlite3, mlflow, sqlalchemy, uvicorn; print(json.dumps({"
        "'mlflow': mlflow.__version__, 'python': sys.version.split()[0], "
        "'sqlite': sqlite3.sqlite_version, 'sqlalchemy': sqlalchemy.__version__, "
        "'uvicorn': uvicorn.__version__}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))
