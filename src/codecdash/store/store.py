"""The store's public face: whole operations, each one transaction, each one a new version."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from codecdash.curve_models import MetricPoint
from codecdash.models import CostRecord, ExperimentIn, ExperimentPatch, Heartbeat
from codecdash.store import (
    anchors,
    costs,
    curve_reads,
    curves,
    experiments,
    fleet,
    tokens,
    training,
)
from codecdash.store.counters import bump_data_version, data_version, read_counters
from codecdash.store.db import Database

TOKEN_CACHE_SECONDS = 2.0
ANALYZE_AFTER_ROWS = 10_000
log = logging.getLogger(__name__)


def _values(item: ExperimentIn) -> dict[str, Any]:
    """The item's fields as a mapping; cheaper than model_dump on the ingest hot path.

    Read-only: the model's own ``__dict__`` unless there are rate-distortion points to
    turn into plain dicts (``to_row`` copies what it changes)."""
    if item.rd_points is None:
        return item.__dict__
    values = dict(item.__dict__)
    values["rd_points"] = [p.model_dump(exclude_none=True) for p in item.rd_points]
    return values


class Conflict(Exception):
    """The experiment id already exists (POST)."""


class Superseded(Exception):
    """A re-derivation of BD-rates stopped because a newer one was asked for."""


class Store:
    """Thread-safe; every write bumps the data version and tells the listeners."""

    def __init__(self, url: str, *, active_window_s: float = 90.0, migrate: bool = True) -> None:
        self.db = Database(url)
        self.active_window_s = active_window_s
        self.bd_rate: experiments.BdRateFn | None = None
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
        self._totals = experiments.TotalCache()
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
    def create_experiment(self, item: ExperimentIn) -> dict[str, Any]:
        now = time.time()
        row = experiments.to_row(_values(item), now, self.bd_rate)
        with self.db.write() as conn:
            if experiments.exists(conn, row["id"]):
                raise Conflict(f"experiment {row['id']!r} already exists; use PUT to replace it")
            experiments.upsert(conn, [row])
            bump_data_version(conn)
        self.changed()
        return row

    def put_experiment(self, experiment_id: str, item: ExperimentIn) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns the row and whether it was created."""
        values = _values(item)
        values["id"] = experiment_id
        row = experiments.to_row(values, time.time(), self.bd_rate)
        with self.db.write() as conn:
            created = not experiments.exists(conn, experiment_id)
            experiments.upsert(conn, [row])
            bump_data_version(conn)
            stored = experiments.get(conn, experiment_id)
            if stored is not None:
                training.attach(conn, [stored])
        self.changed()
        assert stored is not None
        return stored, created

    def patch_experiment(self, experiment_id: str, patch: ExperimentPatch) -> dict[str, Any] | None:
        with self.db.write() as conn:
            current = experiments.get(conn, experiment_id)
            if current is None:
                return None
            row = experiments.merge_patch(current, patch, time.time(), self.bd_rate)
            experiments.upsert(conn, [row])
            bump_data_version(conn)
            training.attach(conn, [row])
        self.changed()
        return row

    def batch(self, items: Sequence[ExperimentIn]) -> int:
        """Upsert all items in one transaction: all or nothing."""
        now = time.time()
        rows = [experiments.to_row(_values(item), now, self.bd_rate) for item in items]
        with self.db.write() as conn:
            experiments.upsert(conn, rows)
            bump_data_version(conn)
        self.changed()
        self._after_bulk_write(len(rows))
        return len(rows)

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
        with self.db.read() as conn:
            row = experiments.get(conn, experiment_id)
            if row is not None:
                training.attach(conn, [row])
            return row

    def list_experiments(
        self, query: experiments.ListQuery
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        with self.db.read() as conn:
            rows, cursor, total = experiments.list_page(conn, query, self._totals)
            training.attach(conn, rows)
            return rows, cursor, total

    # -- training curves (store/curves.py, curve_reads.py, training.py) ---------------
    def on_metrics(self, listener: Callable[[Mapping[str, int]], None]) -> None:
        """`listener({experiment id: newest step})` after each metrics write."""
        self._metric_listeners.append(listener)

    def log_metrics(self, items: Sequence[tuple[str, Sequence[MetricPoint]]]) -> int:
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
            if not experiments.exists(conn, experiment_id):
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
    def heartbeat(self, beat: Heartbeat) -> None:
        """Record a heartbeat, dated its `at` but never later than now: one from a clock
        ahead (within the API's allowed skew) counts as received now."""
        values = beat.model_dump()
        now = time.time()
        values["at"] = min(beat.at.timestamp(), now) if beat.at else now
        with self.db.write() as conn:
            fleet.record_heartbeat(conn, values, self.active_window_s, now)
            bump_data_version(conn)
        self.changed()

    def add_costs(self, records: Sequence[CostRecord]) -> int:
        now = time.time()
        rows = []
        for record in records:
            row = record.model_dump()
            row["at"] = record.at.timestamp() if record.at else now
            rows.append(row)
        with self.db.write() as conn:
            costs.record_costs(conn, rows)
            bump_data_version(conn)
        self.changed()
        return len(rows)

    def prune_heartbeats(self, before: float) -> int:
        with self.db.write() as conn:
            return fleet.prune_heartbeats(conn, before)

    def analyze(self) -> None:
        """Refresh the planner's statistics (PostgreSQL; SQLite needs none for its plans)."""
        if self.db.dialect == "postgresql":
            with self.db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")

    # -- anchors ----------------------------------------------------------------------
    def put_anchor(self, name: str, description: str | None, points: list[dict[str, Any]]) -> bool:
        """Create or replace an anchor (keeping its creation time); True when created."""
        with self.db.write() as conn:
            created = anchors.put(conn, name, description, points, time.time())
            bump_data_version(conn)
        self.changed()
        return created

    def delete_anchor(self, name: str) -> bool:
        with self.db.write() as conn:
            deleted = anchors.delete(conn, name)
            if deleted:
                bump_data_version(conn)
        if deleted:
            self.changed()
        return deleted

    def anchors(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return anchors.list_all(conn)

    def recompute_bd_rates(
        self, batch_size: int = 500, stop: Callable[[], bool] | None = None
    ) -> int:
        """Derive every stored BD-rate again (the anchor in force changed).

        In batches of `batch_size` experiments: the figures are derived outside any
        transaction (BD-rates cost CPU), then written in one short transaction per batch.
        Returns how many experiments got a different value. `stop()` is asked between
        batches; when true, the run ends there (Superseded): a newer run will do it all.
        """
        changed_total, after = 0, None
        while True:
            if stop is not None and stop():
                raise Superseded("a newer re-derivation replaces this one")
            with self.db.read() as conn:
                curves = anchors.curves_after(conn, after, batch_size)
            if not curves:
                return changed_total
            after = curves[-1][0]
            derived = {i: (p, anchors.derive(p, self.bd_rate)) for i, p in curves}
            with self.db.write() as conn:
                changed = anchors.apply_derived(conn, derived, self.bd_rate)
                if changed:
                    bump_data_version(conn)
            if changed:
                changed_total += changed
                self.changed()

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
