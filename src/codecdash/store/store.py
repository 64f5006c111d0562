"""The store's public face: whole operations, each one transaction, each one a new version."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from codecdash.experiments.query import ListQuery
from codecdash.store import (
    anchors,
    audit,
    costs,
    curve_reads,
    curves,
    experiments,
    fleet,
    rd_curves,
    rows,
    tokens,
    training,
    trash,
)
from codecdash.store.anchors import Curve, Derived
from codecdash.store.counters import (
    RESULTS_VERSION,
    bump_counters,
    bump_data_version,
    data_version,
    read_counters,
)
from codecdash.store.curation import Curation
from codecdash.store.db import Database
from codecdash.store.reads import SqlRows

TOKEN_CACHE_SECONDS = 2.0
ANALYZE_AFTER_ROWS = 10_000
log = logging.getLogger(__name__)


def _seconds(at: datetime | float) -> float:
    return at if isinstance(at, float | int) else at.timestamp()


class Conflict(Exception):
    """The experiment id already exists (POST)."""


class Store:
    """Thread-safe; every write bumps the data version and tells the listeners."""

    def __init__(self, url: str, *, active_window_s: float = 90.0, migrate: bool = True) -> None:
        self.db = Database(url)
        self.active_window_s = active_window_s
        self._listeners: list[Callable[[], None]] = []
        self._metric_listeners: list[Callable[[Mapping[str, int]], None]] = []
        self.loss_rise = 0.5  # training_loss_rise_pct / 100 (see store/training.py)
        self._tokens: dict[str, tuple[str, str]] = {}
        self._tokens_at = 0.0
        self._tokens_lock = threading.Lock()
        # PostgreSQL plans from statistics that a bulk load outdates (a 24 h count went
        # from 0.2 ms to 20 ms, a seq scan, right after 100,000 rows): re-ANALYZE in the
        # background once the rows written since the last one reach a fifth of the table.
        self._written_since_analyze = 0
        self._rows_at_analyze = 0
        self._analyzing = threading.Lock()
        self.totals = experiments.TotalCache()  # of filtered listings, until a write
        self.curation = Curation(self)  # delete to the trash, restore, purge, audit
        if migrate:
            self.db.migrate()

    # -- change notification ----------------------------------------------------------
    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    def version(self) -> int:
        with self.db.read() as conn:
            return data_version(conn)

    # -- experiments ------------------------------------------------------------------
    # Writes take plain values: the Experiment's fields (times as datetimes or seconds,
    # params, tags and rd_points as JSON-ready objects) with `bd_rate_pct` and
    # `bd_rate_anchor` derived by the caller (codecdash.experiments.service). They answer
    # the experiment as stored, as a record: JSON fields decoded, times in seconds.
    def create_experiment(self, values: Mapping[str, Any]) -> dict[str, Any]:
        row = rows.to_row(values, time.time())
        with self.db.write() as conn:
            if rows.exists(conn, row["id"]):
                raise Conflict(f"experiment {row['id']!r} already exists; use PUT to replace it")
            trash.refuse_trashed(conn, [row["id"]])
            experiments.upsert(conn, [row])
            bump_data_version(conn)
        self.changed()
        return rows.decode(row)

    def put_experiment(
        self, experiment_id: str, values: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns the record and whether it was created."""
        row = rows.to_row(values, time.time())
        row["id"] = experiment_id
        with self.db.write() as conn:
            created = not rows.exists(conn, experiment_id)
            if created:
                trash.refuse_trashed(conn, [experiment_id])
            experiments.upsert(conn, [row])
            bump_data_version(conn)
            stored = SqlRows(conn).get(experiment_id)
        self.changed()
        assert stored is not None
        return stored, created

    def patch_experiment(
        self,
        experiment_id: str,
        changes: Mapping[str, Any],
        *,
        edit: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        audited: tuple[str | None, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """Change some fields of a stored experiment (None when there is none).

        `edit`: more changes made from the stored record, in the same transaction (tags
        added or removed); `audited`: (actor, details) of an audit entry "edit" to record."""
        now = time.time()
        with self.db.write() as conn:
            current = rows.get(conn, experiment_id)
            if current is None:
                return None
            if edit is not None:
                changes = {**changes, **edit(rows.decode(current))}
            row = rows.merged(current, changes, now)
            experiments.upsert(conn, [row])
            if audited is not None:
                audit.record(conn, "edit", [experiment_id], audited[0], now, audited[1])
            bump_data_version(conn)
            stored = rows.decode(row)
            training.attach(conn, [stored])
        self.changed()
        return stored

    def remove_experiment(self, experiment_id: str) -> bool:
        """Delete an experiment for good (a read replica following the source of truth);
        False when there is none."""
        with self.db.write() as conn:
            removed = experiments.remove(conn, experiment_id)
            if removed:
                bump_data_version(conn)
        if removed:
            self.changed()
        return removed

    def reopened(self) -> None:
        """The database file was replaced under this store (a read replica installed a new
        copy): forget pooled connections and everything cached of the old file."""
        self.db.engine.dispose()
        self.totals = experiments.TotalCache()
        with self._tokens_lock:
            self._tokens, self._tokens_at = {}, 0.0
        self.changed()

    def batch(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Upsert all items in one transaction: all or nothing."""
        now = time.time()
        written = [rows.to_row(values, now) for values in items]
        with self.db.write() as conn:
            trash.refuse_trashed(conn, [row["id"] for row in written])
            experiments.upsert(conn, written)
            bump_data_version(conn)
        self.changed()
        self._after_bulk_write(len(written))
        return len(written)

    def _after_bulk_write(self, n: int) -> None:
        if self.db.dialect != "postgresql":
            return
        self._written_since_analyze += n
        if self._written_since_analyze < max(ANALYZE_AFTER_ROWS, self._rows_at_analyze // 5):
            return
        if not self._analyzing.acquire(blocking=False):
            return  # one is running
        self._written_since_analyze = 0

        def run() -> None:
            try:
                self.analyze()
                with self.db.read() as conn:
                    self._rows_at_analyze = sum(experiments.status_counts(conn).values())
            except Exception as exc:  # statistics are an optimisation: log, go on
                log.warning("ANALYZE after a bulk write failed: %s", exc)
            finally:
                self._analyzing.release()

        threading.Thread(target=run, name="codecdash-analyze", daemon=True).start()

    def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        """The experiment as a record (JSON fields decoded, times in seconds), or None."""
        with self.db.read() as conn:
            return SqlRows(conn).get(experiment_id)

    def list_experiments(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None, int]:
        with self.db.read() as conn:
            page = SqlRows(conn, self.totals).list(query)
        return page.records, page.next_cursor, page.total

    # -- training curves (store/curves.py, curve_reads.py, training.py) ---------------
    def on_metrics(self, listener: Callable[[Mapping[str, int]], None]) -> None:
        """`listener({experiment id: newest step})` after each metrics write."""
        self._metric_listeners.append(listener)

    def log_metrics(self, items: Sequence[tuple[str, Sequence[curves.Point]]]) -> int:
        """Store each (experiment id, points) in one transaction; returns the points
        (step, metric, value) received (a step logged twice keeps the last value).

        A metrics write leaves the data version alone (the snapshot does not change)
        unless a running experiment's training alert did."""
        now = time.time()
        prepared = [(experiment_id, curves.columns(points, now)) for experiment_id, points in items]
        with self.db.write() as conn:
            written = curves.append(conn, prepared, now, self.loss_rise)
            if written.alerts_changed:
                bump_data_version(conn)
        if written.alerts_changed:
            self.changed()
        if written.newest:
            for listener in self._metric_listeners:
                listener(written.newest)
        return sum(len(point.values) for _, points in items for point in points)

    def metric_history(
        self,
        experiment_id: str,
        names: Sequence[str] | None,
        max_points: int,
        after_step: int | None = None,
    ) -> dict[str, Any] | None:
        with self.db.read() as conn:
            return curve_reads.history(conn, experiment_id, names, max_points, after_step)

    def metric_csv(self, experiment_id: str, names: Sequence[str] | None) -> Iterator[bytes] | None:
        """The raw points as CSV pieces, or None when there is no such experiment."""
        with self.db.read() as conn:
            if not rows.exists(conn, experiment_id):
                return None
            series = curve_reads.series_of(conn, experiment_id)
        if names is not None:
            series = [s for s in series if s.name in set(names)]
        return curve_reads.export_csv(self.db.read, series)

    def training_latest(
        self, *, running_only: bool = False, alert_only: bool = False
    ) -> list[dict[str, Any]]:
        """Each experiment's newest step and loss state (store/training.py's `latest`)."""
        with self.db.read() as conn:
            return training.latest(conn, running_only=running_only, alert_only=alert_only)

    def metrics_seq(self) -> int:
        """The newest metrics write's sequence number (see metrics_written_since)."""
        with self.db.read() as conn:
            return read_counters(conn, curves.SEQ).get(curves.SEQ, 0)

    def metrics_written_since(self, seq: int) -> list[tuple[str, int, int]]:
        """(experiment id, newest step, seq) written after `seq`: other processes' writes."""
        with self.db.read() as conn:
            return training.changed_since(conn, seq)

    def prune_metrics(self, before: float) -> int:
        with self.db.write() as conn:
            return curve_reads.prune_raw(conn, before)

    # -- fleet and costs --------------------------------------------------------------
    def heartbeat(self, values: Mapping[str, Any]) -> None:
        """Record a heartbeat (a Heartbeat's fields as plain values), dated its `at` but
        never later than now: one from a clock ahead (within the API's allowed skew)
        counts as received now."""
        now = time.time()
        at = values.get("at")
        row = {**values, "at": now if at is None else min(_seconds(at), now)}
        with self.db.write() as conn:
            fleet.record_heartbeat(conn, row, self.active_window_s, now)
            bump_data_version(conn)
        self.changed()

    def add_costs(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Record costs (CostRecords' fields as plain values), dated now when `at` is absent."""
        now = time.time()
        dated = [
            {**record, "at": now if record.get("at") is None else _seconds(record["at"])}
            for record in records
        ]
        with self.db.write() as conn:
            costs.record_costs(conn, dated)
            bump_data_version(conn)
        self.changed()
        return len(dated)

    def prune_heartbeats(self, before: float) -> int:
        with self.db.write() as conn:
            return fleet.prune_heartbeats(conn, before)

    def analyze(self) -> None:
        """Refresh the planner's statistics (PostgreSQL; SQLite needs none for its plans)."""
        if self.db.dialect == "postgresql":
            with self.db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")

    # -- anchors ----------------------------------------------------------------------
    def put_anchor(
        self,
        name: str,
        description: str | None,
        points: list[dict[str, Any]],
        dataset: str | None = None,
    ) -> bool:
        """Create or replace an anchor of a test set (None: unspecified), keeping its
        creation time; True when created."""
        with self.db.write() as conn:
            created = anchors.put(conn, name, description, points, time.time(), dataset)
            bump_counters(conn, {RESULTS_VERSION: 1})
            bump_data_version(conn)
        self.changed()
        return created

    def delete_anchor(self, name: str, dataset: str | None = None) -> bool:
        with self.db.write() as conn:
            deleted = anchors.delete(conn, name, dataset)
            if deleted:
                bump_counters(conn, {RESULTS_VERSION: 1})
                bump_data_version(conn)
        if deleted:
            self.changed()
        return deleted

    def anchors(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return anchors.list_all(conn)

    def rd_curves(self, labels: bool = False, since: float | None = None) -> rd_curves.CurveReading:
        """The counted experiments' curves with their set and method (or, `since` a time,
        every experiment written since), and the anchors, read together with the data
        version (the BD-rate table's input; `labels`: with params and tags, for the
        `method_from` setting)."""
        with self.db.read() as conn:
            return rd_curves.read(conn, labels, since)

    def curves_after(self, after_id: str | None, limit: int) -> list[tuple[str, str, str | None]]:
        """(id, rd_points as stored, dataset) of the next `limit` experiments with rd_points, by id:
        what a re-derivation of BD-rates reads, batch after batch."""
        with self.db.read() as conn:
            return anchors.curves_after(conn, after_id, limit)

    def write_derived(self, derived: Mapping[str, Derived]) -> tuple[int, dict[str, Curve]]:
        """Store BD-rates derived from the curves `curves_after` gave, in one short
        transaction (see `anchors.write_derived`): (rows changed, rows whose curve was
        rewritten meanwhile, with their curve now)."""
        with self.db.write() as conn:
            changed, moved = anchors.write_derived(conn, derived)
            if changed:
                bump_data_version(conn)
        if changed:
            self.changed()
        return changed, moved

    def read_basis(self) -> int | None:
        """What the stored BD-rates were last derived on (anchors.read_basis)."""
        with self.db.read() as conn:
            return anchors.read_basis(conn)

    def write_basis(self, value: int) -> None:
        with self.db.write() as conn:
            anchors.write_basis(conn, value)

    # -- tokens -----------------------------------------------------------------------
    def create_token(self, name: str, scope: tokens.Scope = "write") -> str:
        with self.db.write() as conn:
            token = tokens.create(conn, name, scope)
        self._tokens_at = 0.0
        return token

    def revoke_token(self, name: str) -> bool:
        with self.db.write() as conn:
            revoked = tokens.revoke(conn, name)
        self._tokens_at = 0.0
        return revoked

    def list_tokens(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return tokens.list_all(conn)

    def check_token(self, token: str, scopes: Sequence[str]) -> str | None:
        """The token's name when it is active and has one of `scopes`, else None."""
        if not token:
            return None
        with self._tokens_lock:
            if time.monotonic() - self._tokens_at > TOKEN_CACHE_SECONDS:
                with self.db.read() as conn:
                    self._tokens = tokens.active_hashes(conn)
                self._tokens_at = time.monotonic()
            known = self._tokens
        candidate = tokens.hash_token(token)
        found: str | None = None
        for stored, (name, scope) in known.items():
            # Compare against every stored hash so timing says nothing about matches.
            if tokens.matches(candidate, stored) and scope in scopes:
                found = name
        return found

    def close(self) -> None:
        self.db.close()
