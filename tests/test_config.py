"""Settings: defaults, then a TOML file, then CODECDASH_* variables, then flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codecdash.config import ENV_PREFIX, ConfigError, Settings, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray CODECDASH_* variable or ./codecdash.toml leaks into these tests."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_contracts() -> None:
    s = load_settings(env={})
    assert s.target_compression_pct == 90.0
    assert s.target_psnr_db == 35.0
    assert s.monthly_budget_usd == 5000.0
    assert s.refresh_seconds == 30.0
    assert s.active_window_seconds == 90.0
    assert s.database_url == "codecdash.db"
    assert s.source == "local"
    assert s.aws_metrics_namespace == "AIVideoCodec"
    assert s.aws_cost_tag == "Component"
    assert s.private is False and s.demo is False
    assert s.allowed_hosts == [] and s.aws_buckets == []


def test_contract_settings_exist() -> None:
    names = {
        "DATABASE_URL",
        "MONTHLY_BUDGET_USD",
        "TARGET_COMPRESSION_PCT",
        "TARGET_PSNR_DB",
        "REFRESH_SECONDS",
        "AWS_EXPERIMENTS_TABLE",
        "AWS_TRAINING_QUEUE_URL",
        "AWS_INFERENCE_QUEUE_URL",
        "AWS_STACK_NAME",
        "AWS_COST_TAG",
        "AWS_TRAINING_ASG",
        "AWS_INFERENCE_ASG",
        "AWS_BUCKETS",
        "AWS_EFS_ID",
        "AWS_METRICS_NAMESPACE",
    }
    fields = {name.upper() for name in Settings.model_fields}
    assert names <= fields, names - fields


def test_toml_file_flat_or_in_a_table(tmp_path: Path) -> None:
    flat = write(
        tmp_path / "flat.toml",
        "monthly_budget_usd = 1200\ntarget_psnr_db = 36.5\n"
        'aws_buckets = ["a", "b"]\nprivate = true\n',
    )
    s = load_settings(flat, env={})
    assert (s.monthly_budget_usd, s.target_psnr_db, s.aws_buckets, s.private) == (
        1200.0,
        36.5,
        ["a", "b"],
        True,
    )
    table = write(tmp_path / "table.toml", "[codecdash]\nrefresh_seconds = 10\n")
    s = load_settings(table, env={})
    assert s.refresh_seconds == 10.0 and s.active_window_seconds == 30.0


def test_default_file_is_read_when_present(tmp_path: Path) -> None:
    assert load_settings(env={}).target_psnr_db == 35.0  # no ./codecdash.toml: defaults
    write(tmp_path / "codecdash.toml", "target_psnr_db = 40\n")
    assert load_settings(env={}).target_psnr_db == 40.0


def test_environment_wins_over_the_file_and_flags_over_both(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        'monthly_budget_usd = 1200\ndatabase_url = "file.db"\ntarget_compression_pct = 80\n',
    )
    env = {
        "CODECDASH_MONTHLY_BUDGET_USD": "7500",
        "CODECDASH_DATABASE_URL": "env.db",
        "CODECDASH_AWS_BUCKETS": "raw, processed ,,models",
        "CODECDASH_PRIVATE": "true",
        "CODECDASH_ALLOWED_HOSTS": "dash.example.com",
        "OTHER_MONTHLY_BUDGET_USD": "1",
    }
    s = load_settings(path, env=env)
    assert s.monthly_budget_usd == 7500.0
    assert s.target_compression_pct == 80.0  # from the file, no variable
    assert s.database_url == "env.db"
    assert s.aws_buckets == ["raw", "processed", "models"]
    assert s.allowed_hosts == ["dash.example.com"]
    assert s.private is True
    s = load_settings(path, env=env, database_url="flag.db", source=None)
    assert s.database_url == "flag.db" and s.source == "local"


def test_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODECDASH_TARGET_PSNR_DB", "38.25")
    monkeypatch.setenv("CODECDASH_REFRESH_SECONDS", "15")
    s = load_settings()
    assert s.target_psnr_db == 38.25 and s.active_window_seconds == 45.0


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CODECDASH_MONTHLY_BUDGET_USD": "lots"}, "monthly_budget_usd"),
        ({"CODECDASH_MONTHLY_BUDGET_USD": "-1"}, "monthly_budget_usd"),
        ({"CODECDASH_REFRESH_SECONDS": "0"}, "refresh_seconds"),
        ({"CODECDASH_SOURCE": "gcp"}, "source"),
        ({"CODECDASH_PRIVATE": "sometimes"}, "private"),
        ({"CODECDASH_TARGET_MS_SSIM": "1.5"}, "target_ms_ssim"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_settings(env=env)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})
    broken = write(tmp_path / "broken.toml", "monthly_budget_usd = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, env={})
    unknown = write(tmp_path / "unknown.toml", "monthly_budget = 5\n")
    with pytest.raises(ConfigError, match="unknown settings monthly_budget"):
        load_settings(unknown, env={})
    wrong = write(tmp_path / "wrong.toml", "codecdash = 5\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings(wrong, env={})


def test_settings_are_frozen_and_strict() -> None:
    s = Settings()
    with pytest.raises(Exception):
        s.monthly_budget_usd = 1  # type: ignore[misc]
    with pytest.raises(Exception):
        Settings(no_such_setting=1)  # type: ignore[call-arg]
