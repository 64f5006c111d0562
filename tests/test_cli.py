"""The `codecdash` command line: tokens, --version, friendly errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from codecdash import __version__
from codecdash.cli import main
from codecdash.store import Store

TOKEN_RE = re.compile(r"^cdt_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("CODECDASH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./codecdash.toml, and ./codecdash.db lands here
    return CliRunner()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"codecdash, version {__version__}"


@pytest.mark.parametrize("name", ["x" * 101, "tab\there", ""])
def test_token_names_that_cannot_be_stored_are_refused_clearly(
    runner: CliRunner, tmp_path: Path, name: str
) -> None:
    result = runner.invoke(main, ["token", "create", name, "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 1
    assert "a token name is 1 to 100 printable characters" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "codecdash", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"codecdash, version {__version__}"


def test_token_create_prints_the_token_alone_on_the_last_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    db = str(tmp_path / "t.db")
    result = runner.invoke(main, ["token", "create", "ci", "--db", db])
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[-1]
    assert TOKEN_RE.match(token), result.stdout
    assert "shown only this once" in result.stderr
    assert token not in result.stderr
    store = Store(db)
    try:
        assert store.check_token(token, ("write",)) == "ci"
        assert token not in repr(store.list_tokens())
    finally:
        store.close()


def test_token_list_and_revoke(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    result = runner.invoke(main, ["token", "list", "--db", db])
    assert result.exit_code == 0 and "no tokens" in result.stdout
    created = runner.invoke(main, ["token", "create", "ci", "--db", db])
    token = created.stdout.splitlines()[-1]
    reader = runner.invoke(main, ["token", "create", "dash", "--scope", "read", "--db", db])
    assert reader.exit_code == 0
    listed = runner.invoke(main, ["token", "list", "--db", db])
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [["ci", "write"], ["dash", "read"]]
    assert all(line.endswith("active") for line in lines)
    assert token not in listed.stdout and "cdt_" not in listed.stdout
    revoked = runner.invoke(main, ["token", "revoke", "ci", "--db", db])
    assert revoked.exit_code == 0 and "revoked ci" in revoked.stdout
    listed = runner.invoke(main, ["token", "list", "--db", db])
    assert "revoked" in listed.stdout.splitlines()[0]
    store = Store(db)
    try:
        assert store.check_token(token, ("write",)) is None
    finally:
        store.close()
    # revoking again, or an unknown name: a clear error, no traceback
    again = runner.invoke(main, ["token", "revoke", "ci", "--db", db])
    assert again.exit_code == 1
    assert "no active token named 'ci'" in again.stderr
    assert again.exception is None or isinstance(again.exception, SystemExit)


def test_token_create_twice_is_a_friendly_error(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    assert runner.invoke(main, ["token", "create", "ci", "--db", db]).exit_code == 0
    result = runner.invoke(main, ["token", "create", "ci", "--db", db])
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "Traceback" not in result.output
    assert result.stdout == ""


def test_the_database_comes_from_the_environment(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("CODECDASH_DATABASE_URL", str(db))
    assert runner.invoke(main, ["token", "create", "ci"]).exit_code == 0
    assert db.exists()
    assert "ci\twrite" in runner.invoke(main, ["token", "list", "--db", str(db)]).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "list", "--db", "mysql://localhost/x"], "unsupported database"),
        (["token", "list", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"], "unavailable"),
        (["--config", "missing.toml", "token", "list"], "config file not found"),
        (["token", "list", "--db", "/proc/no/such/dir/x.db"], ""),
    ],
)
def test_known_failures_are_one_line_not_a_traceback(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_bad_settings_are_friendly(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "codecdash.toml").write_text("monthly_budget_usd = 'lots'\n")
    result = runner.invoke(main, ["token", "list"])
    assert result.exit_code == 1
    assert "monthly_budget_usd" in result.stderr and "Traceback" not in result.output
    (tmp_path / "codecdash.toml").unlink()
    monkeypatch.setenv("CODECDASH_REFRESH_SECONDS", "never")
    result = runner.invoke(main, ["token", "list"])
    assert result.exit_code == 1 and "refresh_seconds" in result.stderr


def test_usage_errors(runner: CliRunner) -> None:
    result = runner.invoke(main, ["token", "create"])
    assert result.exit_code == 2 and "Missing argument 'NAME'" in result.stderr
    result = runner.invoke(main, ["no-such-command"])
    assert result.exit_code == 2


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "token"):
        assert command in result.stdout
    result = runner.invoke(main, ["serve", "--help"])
    for option in ("--host", "--port", "--db", "--config", "--source"):
        assert option in result.stdout or option in runner.invoke(main, ["--help"]).stdout


def test_token_create_in_a_real_process(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECDASH_")}
    done = subprocess.run(
        [sys.executable, "-m", "codecdash.cli", "token", "create", "proc", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert TOKEN_RE.match(done.stdout.splitlines()[-1])
    assert done.stdout.count("\n") == 1  # the token is all there is on stdout


def test_doctor_never_prints_the_database_password() -> None:
    """A PostgreSQL URL's password stays out of doctor's report, whether the store answers
    or not."""
    url = "postgresql+psycopg://codecdash:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=1"
    result = CliRunner().invoke(main, ["doctor"], env={"CODECDASH_DATABASE_URL": url})
    assert "s3cret-pw" not in result.output
    assert "codecdash:***@127.0.0.1:1/nowhere" in result.output
