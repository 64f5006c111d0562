"""Helpers shared by the backup tests (imported as a module: tests/ is on sys.path)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from codecdash.cli import main
from codecdash.store import Store
from conftest import writes
from test_leaders import random_item

Cli = Callable[..., Result]


def make_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """Runs `codecdash ARGS…` in-process, with no CODECDASH_* variable and no TOML file."""
    for name in list(os.environ):
        if name.startswith("CODECDASH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: Any) -> Result:
        return runner.invoke(main, [str(a) for a in args])

    return run


def filled_store(path: Path, n: int = 300, seed: int = 3) -> Path:
    """A store file with n random experiments (tests/test_leaders.py's) and one token."""
    store = Store(str(path))
    rng = random.Random(seed)
    writes(store).batch([random_item(rng, i) for i in range(n)])
    store.create_token("ci")
    store.close()
    return path
