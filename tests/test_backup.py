"""`codecdash backup`: a consistent online copy of a live SQLite store, written atomically,
verified on request; damaged copies are caught; PostgreSQL gets the pg_dump recipe.

The restore side (locks, migration, refusals) is in tests/test_restore.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backup_helpers import Cli, filled_store, make_cli
from codecdash.backup.make import make_backup
from codecdash.models import ExperimentIn
from codecdash.store import ListQuery, Store
from codecdash.store.db import LATEST_VERSION
from codecdash.store.integrity import verify
from conftest import LiveServer, PgServer, writes
from test_leaders import check_invariant, random_item

BATCH = 40


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    return make_cli(monkeypatch, tmp_path)


def batch_items(k: int, rng: random.Random) -> list[dict[str, Any]]:
    """Batch k: BATCH new experiments (ids b<k>-<j>), and rewrites of a few older ones
    (status and results move: counters and leaderboards change both ways)."""
    items: list[dict[str, Any]] = [
        {
            "id": f"b{k:05d}-{j:02d}",
            "status": rng.choice(["completed", "completed", "failed", "running"]),
            "psnr_db": round(rng.uniform(28, 40), 2),
            "bitrate_reduction_pct": round(rng.uniform(0, 90), 1),
        }
        for j in range(BATCH)
    ]
    for _ in range(5):
        i = rng.randrange(4000)
        items.append({"id": f"e{i:04d}", "status": rng.choice(["completed", "failed"])})
    return items


def wait_for(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Writer:
    """One client pushing batches through the API, one after another, noting each ack."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.acked: list[int] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def _run(self) -> None:
        rng = random.Random(11)
        headers = {"Authorization": f"Bearer {self.live.token}"}
        try:
            with httpx.Client(base_url=self.live.url, headers=headers, timeout=30) as http:
                k = 0
                while not self.stop.is_set():
                    body = {"items": batch_items(k, rng)}
                    response = http.post("/api/v1/experiments/batch", json=body)
                    assert response.status_code == 200, response.text
                    self.acked.append(k)
                    k += 1
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


def batches_present(store: Store, upto: int) -> list[int]:
    """The batches whose new experiments are stored; each must be all there or absent."""
    with store.db.read() as conn:
        ids = [str(r[0]) for r in conn.exec_driver_sql("SELECT id FROM experiments")]
    counts: dict[int, int] = {}
    for i in ids:
        if match := re.fullmatch(r"b(\d{5})-\d{2}", i):
            counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
    assert all(n == BATCH for n in counts.values()), "a batch is half stored"
    assert max(counts, default=-1) < upto
    return sorted(counts)


def assert_consistent(store: Store) -> None:
    """Counters equal the table's counts; leaderboards hold exactly what they should."""
    check_invariant(store)
    with store.db.read() as conn:
        grouped = conn.exec_driver_sql("SELECT status, count(*) FROM experiments GROUP BY status")
        actual = {str(s): int(n) for s, n in grouped}
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        total = store.list_experiments(ListQuery(status=[status], limit=1))[2]
        assert total == actual.get(status, 0), status


def test_a_backup_during_heavy_ingest_restores_every_acknowledged_write(
    make_live_server: Callable[..., LiveServer], tmp_path: Path, cli: Cli
) -> None:
    live = make_live_server()
    db = Path(live.settings.database_url)
    rng = random.Random(5)
    for start in range(0, 12_000, 1000):  # leaderboards past their trim size
        writes(live.store).batch([random_item(rng, i) for i in range(start, start + 1000)])
    out = tmp_path / "backup.db"
    during: list[int] = []

    def writes_go_on() -> None:
        """The snapshot is fixed: the writer gets three more batches acknowledged before a
        single page is copied (writers never wait for the backup)."""
        first = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= first + 3, "writes while the backup runs")
        during.extend(writer.acked[first:])

    with Writer(live) as writer:
        wait_for(lambda: len(writer.acked) >= 5, "the first batches")
        acked_before = len(writer.acked)  # every one of these must be in the backup
        made = make_backup(db, out, check=True, pinned=writes_go_on)
        wait_for(lambda: len(writer.acked) >= len(during) + acked_before + 5, "later batches")
    live.server.should_exit = True
    live.thread.join(10)
    live.store.close()
    assert made.verdict is not None and made.verdict.ok

    result = cli("restore", out, "--db", db)
    assert result.exit_code == 0, result.output
    restored = Store(str(db))
    try:
        present = batches_present(restored, upto=len(writer.acked))
        # a prefix of the batches in the order they were acknowledged (one transaction each)
        assert present == list(range(len(present)))
        assert len(present) >= acked_before
        # written after the snapshot was fixed: not in the backup (the first one acked
        # there may have been committed just before it)
        assert not set(during[1:]) & set(present)
        assert_consistent(restored)
        assert made.copied.facts.total_experiments == sum(
            restored.list_experiments(ListQuery(status=[s], limit=1))[2]
            for s in ("queued", "running", "completed", "failed", "cancelled")
        )
    finally:
        restored.close()
    assert verify(db).ok


def test_backup_says_what_it_copied(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db")
    result = cli("backup", tmp_path / "copy.db", "--db", db)
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith(f"backed up {db} to {tmp_path / 'copy.db'}: ")
    facts = Store(str(db))
    try:
        counts = {
            s: facts.list_experiments(ListQuery(status=[s], limit=1))[2]
            for s in ("completed", "failed", "running", "queued")
        }
    finally:
        facts.close()
    assert f"schema version {LATEST_VERSION}" in line
    assert f"{sum(counts.values())} experiments (" in line
    for status, n in counts.items():
        assert f"{status} {n}" in line
    assert "1 token," in line and "KB" in line
    # The copy is one file, out of WAL mode, with every row.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.db"]
    with contextlib.closing(sqlite3.connect(tmp_path / "copy.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT count(*) FROM experiments").fetchone()[0] == 300


def test_a_backup_is_as_private_as_the_database(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=5)
    db.chmod(0o600)
    result = cli("backup", tmp_path / "copy.db", "--db", db)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "copy.db").stat().st_mode & 0o777 == 0o600


def test_backup_into_a_directory_names_the_file_by_utc_time(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=20)
    (tmp_path / "backups").mkdir()
    result = cli("backup", tmp_path / "backups", "--db", db, "--verify")
    assert result.exit_code == 0, result.output
    [made] = (tmp_path / "backups").iterdir()
    assert re.fullmatch(r"codecdash-\d{8}T\d{6}Z\.db", made.name)
    assert "verified: integrity ok" in result.output


def test_a_failed_backup_leaves_out_as_it_was(tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=20)
    out = tmp_path / "nightly.db"
    out.write_bytes(b"yesterday's backup")

    def disk_full() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        make_backup(db, out, pinned=disk_full)
    assert out.read_bytes() == b"yesterday's backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.db", "nightly.db"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "missing.db"], "no SQLite database at"),
        (["--db", "sqlite://"], "in-memory"),
    ],
)
def test_backup_failures_are_one_line_and_exit_nonzero(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    result = cli("backup", tmp_path / "out.db", *args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.db").exists()
    assert not (tmp_path / "missing.db").exists()  # never created by trying


def test_backup_into_a_directory_that_does_not_exist(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=5)
    result = cli("backup", f"{tmp_path / 'nightly'}/", "--db", db)
    assert result.exit_code == 1
    assert f"no directory {tmp_path / 'nightly'}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.db"]


def test_backup_refuses_to_overwrite_the_database_itself(cli: Cli, tmp_path: Path) -> None:
    db = filled_store(tmp_path / "live.db", n=5)
    before = db.read_bytes()
    result = cli("backup", db, "--db", db)
    assert result.exit_code == 1
    assert "is the database itself" in result.output
    assert db.read_bytes() == before


# -- verify -------------------------------------------------------------------------------
def _flip_page_header(path: Path) -> None:
    """Garbage over the b-tree header and cell pointers of a page in the middle."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    middle = (len(data) // page // 2) * page
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def _change_a_status(path: Path) -> None:
    """One experiment's status rewritten in place: the file is sound, its counts are not."""
    data = path.read_bytes()
    at = data.index(b"completed", data.index(b"e0007"))
    path.write_bytes(data[:at] + b"cancelled" + data[at + 9 :])


def _truncate_pages(path: Path) -> None:
    data = path.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    path.write_bytes(data[: (len(data) // page // 2) * page])


def _truncate_mid_page(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _not_sqlite(path: Path) -> None:
    path.write_text("id,status\ne1,completed\n")


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (_flip_page_header, r"integrity_check|cannot be read"),
        (_change_a_status, r"counter experiments\.\w+ says|leaderboard"),
        (_truncate_pages, r"truncated: .* the header counts"),
        (_truncate_mid_page, r"truncated: .* not a whole number"),
        (_not_sqlite, r"not a SQLite database"),
    ],
    ids=["flipped-bytes", "changed-row", "truncated", "cut-mid-page", "not-sqlite"],
)
def test_verify_finds_a_damaged_backup(
    cli: Cli, tmp_path: Path, damage: Callable[[Path], None], found: str
) -> None:
    db = filled_store(tmp_path / "live.db", n=2000)
    out = tmp_path / "copy.db"
    result = cli("backup", out, "--db", db, "--verify")
    assert result.exit_code == 0, result.output
    good = cli("backup", "--verify-only", out)
    assert good.exit_code == 0 and good.output.startswith(f"OK {out}")

    damage(out)
    result = cli("backup", "--verify-only", out)
    assert result.exit_code == 3, result.output
    assert f"DAMAGED {out}" in result.output
    assert re.search(found, result.output), result.output
    assert "Traceback" not in result.output


def test_verify_only_of_a_missing_file(cli: Cli, tmp_path: Path) -> None:
    result = cli("backup", "--verify-only", tmp_path / "nope.db")
    assert result.exit_code == 3
    assert "no such file" in result.output


# -- PostgreSQL -----------------------------------------------------------------------------
PG_URL = "postgresql+psycopg://dash:s3cret@db.internal:5433/codec?options=-csearch_path%3Dteam_a"


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_a_postgresql_store_gets_the_pg_dump_recipe(cli: Cli, tmp_path: Path, command: str) -> None:
    (tmp_path / "x.db").write_bytes(b"")
    result = cli(command, tmp_path / "x.db", "--db", PG_URL)
    assert result.exit_code == 2, result.output
    text = result.output
    assert (
        "pg_dump -Fc --dbname 'postgresql://dash@db.internal:5433/codec' --schema 'team_a'" in text
    )
    assert "pg_restore --clean --if-exists" in text
    assert "s3cret" not in text  # never the password


@pytest.mark.postgres
@pytest.mark.skipif(not shutil.which("pg_dump"), reason="pg_dump is not installed")
def test_the_pg_dump_recipe_round_trips(cli: Cli, pg_server: PgServer, tmp_path: Path) -> None:
    """The commands that the message prints, run as printed: a dump of a live store,
    restored over later writes, gives back the store of the dump's moment."""
    url = pg_server.new_schema()
    store = Store(url)
    writes(store).batch(
        [ExperimentIn(id=f"p{i}", status="completed", psnr_db=30.0 + i) for i in range(50)]
    )
    store.close()
    recipe = cli("backup", tmp_path / "unused", "--db", url).output
    dump, put_back = (
        line.strip()
        for line in recipe.splitlines()
        if line.strip().startswith(("pg_dump", "pg_restore"))
    )
    env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
    subprocess.run(dump, shell=True, check=True, cwd=tmp_path, env=env, timeout=60)
    store = Store(url)
    writes(store).batch([ExperimentIn(id="later", status="failed")])
    store.close()
    subprocess.run(put_back, shell=True, check=True, cwd=tmp_path, env=env, timeout=60)
    store = Store(url)
    try:
        rows, _cursor, total = store.list_experiments(ListQuery(sort="-psnr_db", limit=3))
        assert total == 50 and [r["id"] for r in rows] == ["p49", "p48", "p47"]
        check_invariant(store)
    finally:
        store.close()
