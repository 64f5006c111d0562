"""`codecdash experiments list|delete|restore|tag|note|purge|audit` on the local store, on
both databases: filters, the dry-run count and its confirmation, `--yes` for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from codecdash.cli import main
from codecdash.models import ExperimentIn
from codecdash.store import Store
from conftest import writes

T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("CODECDASH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def filled(store: Store) -> Iterator[Store]:
    writes(store).batch(
        [
            ExperimentIn(
                id=f"e{i}",
                name=f"run {i}",
                status="failed" if i % 2 else "completed",
                created_at=T0 + timedelta(days=i),
                tags=["uvg"] if i < 3 else ["mcl"],
            )
            for i in range(6)
        ]
    )
    yield store


def run(runner: CliRunner, store: Store, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(main, ["experiments", *args, "--db", store.db.url], input=stdin)


def live(store: Store) -> list[str]:
    from codecdash.store import ListQuery

    return sorted(r["id"] for r in store.list_experiments(ListQuery(limit=100))[0])


def test_list_with_filters(runner: CliRunner, filled: Store) -> None:
    r = run(runner, filled, "list", "--status", "failed", "--created-before", "2026-05-05")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stdout.splitlines() if line]
    assert [line.split("\t")[0] for line in lines] == ["e3", "e1"]
    assert "2 experiments match" in r.stderr
    r = run(runner, filled, "list", "--tag", "mcl", "--q", "run 4", "--json")
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == ["e4"]
    assert run(runner, filled, "list", "--created-before", "yesterday").exit_code == 2


def test_delete_counts_then_asks_and_yes_skips_the_question(
    runner: CliRunner, filled: Store
) -> None:
    r = run(runner, filled, "delete", "--status", "failed", "--dry-run")
    assert r.exit_code == 0 and "3 experiments match: e1, e3, e5" in r.output
    assert len(live(filled)) == 6
    r = run(runner, filled, "delete", "--status", "failed")  # not a terminal, no --yes
    assert r.exit_code == 1 and "pass --yes" in r.output
    assert len(live(filled)) == 6
    r = run(runner, filled, "delete", "--status", "failed", "--tag", "uvg", "--yes")
    assert r.exit_code == 0 and "moved 1 experiment to the trash" in r.output
    assert live(filled) == ["e0", "e2", "e3", "e4", "e5"]
    r = run(runner, filled, "delete", "e3", "e5", "--yes")
    assert r.exit_code == 0 and "moved 2 experiments" in r.output
    r = run(runner, filled, "delete", "e0", "nope", "--yes")
    assert r.exit_code == 1 and "no live experiment 'nope'" in r.output
    assert run(runner, filled, "delete").exit_code == 2  # nothing named
    assert run(runner, filled, "delete", "e0", "--status", "failed").exit_code == 2
    r = run(runner, filled, "list", "--deleted")
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == [
        "e5",
        "e3",
        "e1",
    ]  # same deletion time: by id, descending
    assert "deleted " in r.stdout and "by local:" in r.stdout


def test_restore_tag_note(runner: CliRunner, filled: Store) -> None:
    run(runner, filled, "delete", "e1", "--yes")
    r = run(runner, filled, "restore", "e1", "e9")
    assert r.exit_code == 1 and "restored e1" in r.output and "not in the trash: e9" in r.output
    assert "e1" in live(filled)
    r = run(runner, filled, "tag", "e1", "--add", "best", "--remove", "uvg")
    assert r.exit_code == 0, r.output
    assert filled.get_experiment("e1")["tags"] == ["best"]  # type: ignore[index]
    r = run(runner, filled, "note", "e1", "**diverged** at step 9k")
    assert r.exit_code == 0
    assert filled.get_experiment("e1")["notes"] == "**diverged** at step 9k"  # type: ignore[index]
    r = run(runner, filled, "note", "e1", "--file", "-", stdin="from stdin\n")
    assert filled.get_experiment("e1")["notes"] == "from stdin\n"  # type: ignore[index]
    assert run(runner, filled, "note", "e1", "--clear").exit_code == 0
    assert filled.get_experiment("e1")["notes"] is None  # type: ignore[index]
    r = run(runner, filled, "note", "e1", "x" * 10_001)
    assert r.exit_code == 1 and "note refused" in r.output
    assert run(runner, filled, "tag", "e1").exit_code == 2
    run(runner, filled, "delete", "e1", "--yes")
    r = run(runner, filled, "tag", "e1", "--add", "x")
    assert r.exit_code == 1 and "in the trash" in r.output


def test_purge_and_audit(runner: CliRunner, filled: Store) -> None:
    run(runner, filled, "delete", "e0", "e1", "--yes")
    r = run(runner, filled, "purge", "--dry-run")  # default: trash_retention_days (30)
    assert r.exit_code == 0 and "nothing to purge" in r.output
    r = run(runner, filled, "purge", "--older-than-days", "0", "--dry-run")
    assert "2 experiments in the trash deleted over 0 days ago" in r.output
    r = run(runner, filled, "purge", "e0", "--yes")
    assert r.exit_code == 0 and "purged 1 experiment" in r.output
    r = run(runner, filled, "purge", "--all", "--yes")
    assert "purged 1 experiment" in r.output
    assert filled.curation.trash_count() == 0
    r = run(runner, filled, "audit")
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[2] for row in rows] == ["purge", "purge", "delete"]
    assert all(row[1].startswith("local") for row in rows)
    r = run(runner, filled, "audit", "--action", "delete", "--json")
    assert json.loads(r.stdout)["ids"] == ["e0", "e1"]
