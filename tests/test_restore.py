"""`codecdash restore`: checks the backup, refuses while a server (or any program) uses the
store, keeps the replaced database, migrates an older backup, refuses a newer one."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from backup_helpers import Cli, filled_store, make_cli
from codecdash.backup.lease import Lease, StoreInUse
from codecdash.backup.make import make_backup
from codecdash.config import Settings
from codecdash.models import ExperimentIn
from codecdash.store import ListQuery, Store
from codecdash.store.db import LATEST_VERSION
from conftest import LiveServer, MakeApp, writes
from test_migrations import make_v1_sqlite


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    return make_cli(monkeypatch, tmp_path)


def ids(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM experiments")}


def backup_of(db: Path, out: Path) -> Path:
    make_backup(db, out, check=True)
    return out


def test_restore_refuses_while_a_server_runs_and_works_after_it_stops(
    make_live_server: Callable[..., LiveServer], cli: Cli, tmp_path: Path
) -> None:
    live = make_live_server()
    db = Path(live.settings.database_url)
    writes(live.store).batch([ExperimentIn(id=f"old{i}", status="completed") for i in range(3)])
    out = backup_of(db, tmp_path / "b.db")
    writes(live.store).batch([ExperimentIn(id="newer", status="running")])

    refused = cli("restore", out, "--db", db)
    assert refused.exit_code == 1, refused.output
    assert f"a codecdash server is using {db}" in refused.output
    assert "newer" in ids(db)

    live.server.should_exit = True
    live.thread.join(10)
    live.store.close()
    done = cli("restore", out, "--db", db)
    assert done.exit_code == 0, done.output
    assert ids(db) == {"old0", "old1", "old2"}
    [kept] = tmp_path.glob("codecdash.db.before-restore-*")
    assert f"the replaced database is kept as {kept}" in done.output
    assert "newer" in ids(kept)
    assert not list(tmp_path.glob("codecdash.db-wal"))  # no stale WAL beside the new file


HOLDER = """
import sys, time
from pathlib import Path
from codecdash.backup.lease import hold_for_server
lease = hold_for_server(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def test_a_server_that_died_never_blocks_a_restore(cli: Cli, tmp_path: Path) -> None:
    """kill -9 leaves the lock file behind, but not the lock."""
    db = filled_store(tmp_path / "live.db", n=10)
    out = backup_of(db, tmp_path / "b.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = cli("restore", out, "--db", db)
        assert refused.exit_code == 1 and "a codecdash server is using" in refused.output
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait(10)
    assert (tmp_path / "live.db.lock").exists()
    done = cli("restore", out, "--db", db)
    assert done.exit_code == 0, done.output


def test_restore_refuses_while_another_program_has_the_store_open(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=10)
    out = backup_of(db, tmp_path / "b.db")
    script = Store(str(db))  # a script or an import, not a server: no lease
    try:
        writes(script).batch([ExperimentIn(id="by-script", status="queued")])
        refused = cli("restore", out, "--db", db)
        assert refused.exit_code == 1, refused.output
        assert f"another program has {db} open" in refused.output
    finally:
        script.close()
    assert "by-script" in ids(db)
    done = cli("restore", out, "--db", db)
    assert done.exit_code == 0, done.output
    assert "by-script" not in ids(db)


@pytest.mark.anyio
async def test_a_server_does_not_start_while_a_restore_holds_the_store(
    make_app: MakeApp, settings: Settings
) -> None:
    db = Path(settings.database_url)
    Store(str(db)).close()
    restoring = Lease(db, exclusive=True)
    assert restoring.acquire()
    try:
        with pytest.raises(StoreInUse, match="a restore is replacing"):
            await make_app()
    finally:
        restoring.release()
    app = await make_app()  # and starts once it is done
    assert app.state.codecdash.store is not None


def test_restore_migrates_an_older_backup(cli: Cli, tmp_path: Path) -> None:
    old = tmp_path / "v1-backup.db"
    make_v1_sqlite(old)
    db = tmp_path / "codecdash.db"
    done = cli("restore", old, "--db", db)
    assert done.exit_code == 0, done.output
    assert f"migrated from schema version 1 to {LATEST_VERSION}" in done.output
    store = Store(str(db), migrate=False)
    try:
        rows, _cursor, total = store.list_experiments(ListQuery(sort="-psnr_db", limit=10))
        assert total == 3 and [r["id"] for r in rows][:2] == ["v1-a", "v1-c"]
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
                LATEST_VERSION
            )
    finally:
        store.close()
    assert old.read_bytes()[:16] == b"SQLite format 3\x00"  # the backup itself is untouched
    with contextlib.closing(sqlite3.connect(old)) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1


def test_restore_refuses_a_backup_from_a_newer_codecdash(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=10)
    out = backup_of(db, tmp_path / "b.db")
    with contextlib.closing(sqlite3.connect(out)) as conn, conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 0)", (LATEST_VERSION + 1,))
    before = db.read_bytes()
    refused = cli("restore", out, "--db", db)
    assert refused.exit_code == 1, refused.output
    assert "made by a newer codecdash" in refused.output
    assert f"schema version {LATEST_VERSION + 1}" in refused.output
    assert "upgrade codecdash" in refused.output
    assert db.read_bytes() == before


def test_restore_refuses_a_damaged_backup(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=10)
    out = backup_of(db, tmp_path / "b.db")
    out.write_bytes(out.read_bytes()[:4096])
    before = db.read_bytes()
    refused = cli("restore", out, "--db", db)
    assert refused.exit_code == 3, refused.output
    assert "truncated" in refused.output and f"{db} is untouched" in refused.output
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.db", "live.db"]


def test_the_restored_store_keeps_the_replaced_ones_permissions(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=10)
    out = backup_of(db, tmp_path / "b.db")
    out.chmod(0o644)
    db.chmod(0o600)
    assert cli("restore", out, "--db", db).exit_code == 0
    assert db.stat().st_mode & 0o777 == 0o600


def test_no_keep_deletes_the_replaced_database(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=10)
    out = backup_of(db, tmp_path / "b.db")
    done = cli("restore", out, "--db", db, "--no-keep")
    assert done.exit_code == 0, done.output
    assert "kept as" not in done.output
    assert not list(tmp_path.glob("live.db.before-restore-*"))


def test_restore_over_a_damaged_database_sets_its_files_aside(cli: Cli, tmp_path: Path) -> None:
    """The reason to restore: the store is broken. Its WAL must not be applied to the
    restored file (it belongs to the old one): it goes aside with it."""
    out = backup_of(filled_store(tmp_path / "good.db", n=10), tmp_path / "b.db")
    db = tmp_path / "broken.db"
    db.write_bytes(b"\x00" * 8192)
    (tmp_path / "broken.db-wal").write_bytes(b"garbage frames")
    done = cli("restore", out, "--db", db)
    assert done.exit_code == 0, done.output
    assert not (tmp_path / "broken.db-wal").exists()
    [kept] = tmp_path.glob("broken.db.before-restore-*-wal")
    assert kept.read_bytes() == b"garbage frames"
    assert len(ids(db)) == 10


def test_restore_reads_a_backup_through_its_wal(cli: Cli, tmp_path: Path) -> None:
    """A store copied with its -wal (both files, nothing writing): the rows that are only in
    the WAL are restored too."""
    live = Store(str(tmp_path / "live.db"))
    try:
        writes(live).batch([ExperimentIn(id=f"w{i}", status="completed") for i in range(5)])
        assert (tmp_path / "live.db-wal").stat().st_size > 0
        for suffix in ("", "-wal"):
            (tmp_path / f"raw.db{suffix}").write_bytes((tmp_path / f"live.db{suffix}").read_bytes())
    finally:
        live.close()
    done = cli("restore", tmp_path / "raw.db", "--db", tmp_path / "codecdash.db")
    assert done.exit_code == 0, done.output
    assert ids(tmp_path / "codecdash.db") == {f"w{i}" for i in range(5)}
