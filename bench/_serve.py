"""``codecdash serve`` as the benchmarks start it: this environment's ``codecdash`` command,
in a subprocess on a loopback port, over one database (a SQLite path or a database URL).

Imported by the scripts in ``bench/`` (``bench/`` is first on ``sys.path`` when one runs);
the leading underscore marks it as no benchmark of its own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from codecdash.net import NotHealthy, wait_healthy


def codecdash_cmd() -> list[str]:
    """The ``codecdash`` command of the environment running this script."""
    exe = Path(sys.executable).with_name("codecdash")
    if exe.exists():
        return [str(exe)]
    if importlib.util.find_spec("codecdash") is None:
        raise SystemExit("run this with the codecdash environment (.venv/bin/python)")
    return [sys.executable, "-c", "from codecdash.cli import main; main()"]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any ``CODECDASH_*`` setting, plus ``settings``
    (``CODECDASH_RATE_LIMIT_PER_MINUTE="1000000000"``): the server as shipped, but for
    what a benchmark sets on purpose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECDASH_")}
    env.update(settings)
    return env


def create_token(db: Path | str, name: str = "bench", env: dict[str, str] | None = None) -> str:
    """A write token, made with ``codecdash token create`` on the database."""
    out = subprocess.run(
        [*codecdash_cmd(), "token", "create", name, "--db", str(db)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip().splitlines()[-1].strip()


def serve_cmd(db: Path | str, port: int) -> list[str]:
    """``codecdash serve --db DB --port PORT``, as shipped (loopback, one process)."""
    return [*codecdash_cmd(), "serve", "--db", str(db), "--port", str(port)]


def serve(
    db: Path | str,
    port: int,
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start :func:`serve_cmd`; its output goes to ``log`` (appended) or nowhere.
    ``new_session``: in a process group of its own (stop it with killpg)."""
    out = log.open("ab") if log else None
    try:
        return subprocess.Popen(
            serve_cmd(db, port),
            cwd=cwd,
            env=env,
            stdout=out or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    finally:
        if out:
            out.close()


def start(
    db: Path | str,
    port: int,
    *,
    timeout: float = 30.0,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """:func:`serve`, then wait until it answers its health endpoint; a server that does not
    is killed and the failure raised as RuntimeError, with the end of its log."""
    proc = serve(db, port, log=log, env=env, cwd=cwd)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout, proc=proc)
    except NotHealthy as exc:
        proc.kill()
        proc.wait(30)
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"codecdash serve: {exc}\n{tail}".rstrip()) from None
    return proc
