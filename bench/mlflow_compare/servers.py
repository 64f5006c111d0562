"""Starting and stopping the two servers, each in a process group of its own."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from _serve import clean_env, serve_cmd
from codecdash.net import HEALTH_PATH, NotHealthy, wait_healthy

REPO = Path(__file__).resolve().parents[2]


class Server:
    """A server process in its own session, stopped by its process group id (MLflow's
    workers and codecdash's uvicorn go with it)."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        url: str,
        health_path: str,
        log_path: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.cmd, self.url, self.health_path = name, cmd, url, health_path
        self.log_path, self.cwd, self.env = log_path, cwd, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> float:
        """Start it and wait until it answers its health endpoint; the seconds that took."""
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            return wait_healthy(
                self.url, timeout, proc=self.proc, path=self.health_path, interval=0.25
            )
        except NotHealthy as exc:
            self.stop()
            raise RuntimeError(f"{self.name}: {exc}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, kill: bool = False) -> None:
        """SIGTERM, then SIGKILL after 20 s; ``kill``: SIGKILL at once (for a server busy
        with an abandoned read, which a graceful shutdown would wait for)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        signals = ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0))
        for sig, wait in signals[1:] if kill else signals:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


@contextlib.contextmanager
def running(server: Server, timeout: float) -> Iterator[float]:
    try:
        yield server.start(timeout)
    finally:
        server.stop()


# -- MLflow --------------------------------------------------------------------------------
def mlflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # The GenAI job runner (huey consumers) is not part of run tracking; off, it leaves
            # the CPUs to the tracking server.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    return env


def mlflow_server(
    venv: Path, db: Path, port: int, rundir: Path, workers: int, name: str = "mlflow"
) -> Server:
    cmd = [
        str(venv / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        str(rundir / "mlflow-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--uvicorn-opts",
        "--no-access-log",
    ]
    url = f"http://127.0.0.1:{port}"
    return Server(name, cmd, url, "/health", rundir / f"{name}.log", rundir, mlflow_env())


# -- codecdash -----------------------------------------------------------------------------
def codecdash_page_present() -> bool:
    if (REPO / "src" / "codecdash" / "dashboard" / "index.html").exists():
        return True
    spec = importlib.util.find_spec("codecdash")
    origin = spec.origin if spec else None
    return bool(origin) and (Path(str(origin)).parent / "dashboard" / "index.html").exists()


def codecdash_versions() -> dict[str, str]:
    import sqlalchemy

    import codecdash

    return {
        "codecdash": str(getattr(codecdash, "__version__", "?")),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "httpx": httpx.__version__,
    }


def codecdash_server(db: Path, port: int, rundir: Path) -> Server:
    url = f"http://127.0.0.1:{port}"
    log = rundir / "codecdash.log"
    return Server("codecdash", serve_cmd(db, port), url, HEALTH_PATH, log, rundir, clean_env())
