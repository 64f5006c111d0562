"""Training curves, the write path: per-step metrics in, every tier kept current.

A write touches, for each metric and each tier, only the chunks its steps fall in: it
reads them, merges the new points (a step logged again replaces its value), recomputes
the buckets those chunks hold from the finer tier, and writes them back. So ingest costs
a few row writes per metric and request, and a chart of any history reads a few chunks
of one tier (store/curve_reads.py). The training summary (store/training.py) is updated
in the same transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection

from codecdash.curve_rules import NON_FINITE
from codecdash.experiments.vocabulary import FINISHED
from codecdash.store import chunks, schema, training
from codecdash.store.counters import bump_counters

MAX_METRICS = 1000  # per experiment
MAX_PARAMS = 500  # bound parameters per statement (SQLite allows 32,766; plenty of margin)
PG_LOCK_CLASS = 0x63757276  # pg_advisory_xact_lock's first key for curves: "curv"
SEQ = "metrics_version"

Columns = dict[str, chunks.Records]
"""Metric name → its raw records of one write, sorted by step, one per step."""


class Point(Protocol):
    """One training step as the store takes it (a validated curve_models.MetricPoint, or
    anything with these fields): its number, its wall time (None: when received), and
    its metrics' values (NaN and infinities as curve_rules' strings)."""

    @property
    def step(self) -> int: ...

    @property
    def at(self) -> datetime | None: ...

    @property
    def values(self) -> Mapping[str, float | str]: ...


class UnknownExperiments(LookupError):
    def __init__(self, ids: Sequence[str]) -> None:
        shown = ", ".join(repr(i) for i in ids[:5]) + (" …" if len(ids) > 5 else "")
        super().__init__(f"no experiment {shown}: create it before logging its metrics")
        self.ids = list(ids)


class TooManyMetrics(ValueError):
    pass


@dataclass
class Written:
    newest: dict[str, int] = field(default_factory=dict)  # experiment id → newest step
    alerts_changed: bool = False


@dataclass
class _Series:
    id: int
    name: str
    points: int
    first_step: int
    last_step: int
    last_at: float
    raw_pruned_through: int | None


def columns(points: Iterable[Point], now: float) -> Columns:
    """Validated points as one array of raw records per metric (the CPU-heavy part of a
    write, done before the write transaction)."""
    steps: dict[str, list[int]] = {}
    ats: dict[str, list[float]] = {}
    values: dict[str, list[float]] = {}
    for point in points:
        at = point.at.timestamp() if point.at is not None else now
        step = point.step
        for name, value in point.values.items():
            if name not in steps:
                steps[name], ats[name], values[name] = [], [], []
            steps[name].append(step)
            ats[name].append(at)
            values[name].append(NON_FINITE[value] if isinstance(value, str) else value)
    return {name: chunks.raw_points(steps[name], ats[name], values[name]) for name in steps}


def append(
    conn: Connection, items: Sequence[tuple[str, Columns]], now: float, rise: float
) -> Written:
    """Store the points of each (experiment id, columns); all or nothing."""
    merged: dict[str, Columns] = {}
    for experiment_id, cols in items:
        into = merged.setdefault(experiment_id, {})
        for name, records in cols.items():
            before = into.get(name)
            into[name] = records if before is None else chunks.merge_raw(before, records)
    merged = {i: cols for i, cols in merged.items() if cols}
    written = Written()
    if not merged:
        return written
    ids = sorted(merged)
    statuses = _statuses(conn, ids)
    unknown = [i for i in ids if i not in statuses]
    if unknown:
        raise UnknownExperiments(unknown)
    if conn.dialect.name == "postgresql":  # replicas: one writer per experiment's curves
        for key in sorted({zlib.crc32(i.encode()) - 2**31 for i in ids}):
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (PG_LOCK_CLASS, key))
    series = _series(conn, merged, now)
    needed = {
        (series[i][name].id, tier, chunk)
        for i, cols in merged.items()
        for name, records in cols.items()
        for tier in range(chunks.TIERS + 1)
        for chunk in _chunk_ids(records, tier)
    }
    loaded = _load(conn, needed)
    changed: dict[tuple[int, int, int], chunks.Records] = {}
    updates = []
    latest: dict[str, dict[str, float]] = {}
    for experiment_id, cols in merged.items():
        newest = latest[experiment_id] = {}
        for name, records in cols.items():
            s = series[experiment_id][name]
            if s.points == 0 or int(records["step"][-1]) >= s.last_step:
                newest[name] = float(records["value"][-1])
            added = _apply(s, records, loaded, changed)
            s.points += added
            s.first_step = min(s.first_step, int(records["step"][0]))
            s.last_step = max(s.last_step, int(records["step"][-1]))
            s.last_at = now
            updates.append((s.points, s.first_step, s.last_step, s.last_at, s.id))
    mark = schema.marker(conn.dialect.name)
    conn.exec_driver_sql(_upsert_chunk_sql(mark), [_chunk_row(k, v) for k, v in changed.items()])
    conn.exec_driver_sql(
        f"UPDATE metric_series SET points = {mark}, first_step = {mark}, "  # noqa: S608
        f"last_step = {mark}, last_at = {mark} WHERE id = {mark}",
        updates,
    )
    bump_counters(conn, {SEQ: 1})
    seq = int(
        conn.exec_driver_sql(f"SELECT n FROM counters WHERE name = {mark}", (SEQ,)).scalar_one()  # noqa: S608
    )
    for experiment_id, cols in merged.items():
        update = training.update(
            conn, experiment_id, cols, latest[experiment_id], series[experiment_id], now, seq, rise
        )
        written.newest[experiment_id] = update.step
        written.alerts_changed |= update.alert_changed and statuses[experiment_id] not in FINISHED
    return written


def _statuses(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    mark = schema.marker(conn.dialect.name)
    for part in _parts(ids, MAX_PARAMS):
        sql = f"SELECT id, status FROM experiments WHERE id IN ({', '.join([mark] * len(part))})"  # noqa: S608
        found.update((str(r[0]), str(r[1])) for r in conn.exec_driver_sql(sql, tuple(part)))
    return found


def _series(
    conn: Connection, merged: Mapping[str, Columns], now: float
) -> dict[str, dict[str, _Series]]:
    """Each experiment's series by name, created where new (at most MAX_METRICS each)."""
    mark = schema.marker(conn.dialect.name)
    found: dict[str, dict[str, _Series]] = {i: {} for i in merged}
    columns_sql = (
        "id, experiment_id, name, points, first_step, last_step, last_at, raw_pruned_through"
    )

    def read(ids: Sequence[str]) -> None:
        for part in _parts(ids, MAX_PARAMS):
            sql = (
                f"SELECT {columns_sql} FROM metric_series "  # noqa: S608
                f"WHERE experiment_id IN ({', '.join([mark] * len(part))})"
            )
            for r in conn.exec_driver_sql(sql, tuple(part)):
                found[str(r[1])][str(r[2])] = _Series(
                    int(r[0]),
                    str(r[2]),
                    int(r[3]),
                    int(r[4]),
                    int(r[5]),
                    float(r[6]),
                    None if r[7] is None else int(r[7]),
                )

    read(list(merged))
    new_rows = []
    for experiment_id, cols in merged.items():
        missing = [name for name in cols if name not in found[experiment_id]]
        if len(found[experiment_id]) + len(missing) > MAX_METRICS:
            raise TooManyMetrics(
                f"experiment {experiment_id!r} would have more than {MAX_METRICS} metrics"
            )
        for name in missing:
            steps = cols[name]["step"]
            new_rows.append((experiment_id, name, 0, int(steps[0]), int(steps[-1]), now))
    if new_rows:
        conn.exec_driver_sql(
            "INSERT INTO metric_series (experiment_id, name, points, first_step, last_step, "  # noqa: S608
            f"last_at) VALUES ({', '.join([mark] * 6)})",
            new_rows,
        )
        read(sorted({row[0] for row in new_rows}))
    return found


def _chunk_ids(records: chunks.Records, tier: int) -> Iterator[int]:
    keys = records["step"] >> chunks.chunk_bits(tier)
    return (int(k) for k in np.unique(keys))


def _load(
    conn: Connection, needed: set[tuple[int, int, int]]
) -> dict[tuple[int, int, int], chunks.Records]:
    """The stored chunks among `needed` (series id, tier, chunk), unpacked."""
    mark = schema.marker(conn.dialect.name)
    by_series_tier: dict[tuple[int, int], list[int]] = {}
    for series_id, tier, chunk in sorted(needed):
        by_series_tier.setdefault((series_id, tier), []).append(chunk)
    terms: list[tuple[str, tuple[int, ...]]] = []
    for (series_id, tier), ids in by_series_tier.items():
        for part in _parts(ids, MAX_PARAMS - 2):
            marks = ", ".join([mark] * len(part))
            terms.append(
                (
                    f"(series_id = {mark} AND tier = {mark} AND chunk IN ({marks}))",
                    (series_id, tier, *part),
                )
            )
    loaded: dict[tuple[int, int, int], chunks.Records] = {}
    batch: list[tuple[str, tuple[int, ...]]] = []
    size = 0

    def flush() -> None:
        where = " OR ".join(t for t, _ in batch)  # constant terms; values are parameters
        sql = f"SELECT series_id, tier, chunk, data FROM metric_chunks WHERE {where}"  # noqa: S608
        params = tuple(p for _, ps in batch for p in ps)
        for row in conn.exec_driver_sql(sql, params):
            tier = int(row[1])
            loaded[(int(row[0]), tier, int(row[2]))] = chunks.unpack(tier, bytes(row[3]))

    for term in terms:
        if batch and size + len(term[1]) > MAX_PARAMS:
            flush()
            batch, size = [], 0
        batch.append(term)
        size += len(term[1])
    if batch:
        flush()
    return loaded


def _apply(
    s: _Series,
    new: chunks.Records,
    loaded: Mapping[tuple[int, int, int], chunks.Records],
    changed: dict[tuple[int, int, int], chunks.Records],
) -> int:
    """Merge `new` raw records into series `s`, tier by tier; returns how many steps are
    new to the series (the others replaced a value)."""

    def stored(tier: int, ids: Iterable[int]) -> chunks.Records:
        parts = [loaded[key] for c in ids if (key := (s.id, tier, c)) in loaded]
        return np.concatenate(parts) if parts else chunks.empty(tier)

    raw_ids = list(_chunk_ids(new, 0))
    old = stored(0, raw_ids)
    merged = chunks.merge_raw(old, new)
    for chunk, records in chunks.split(merged, 0).items():
        changed[(s.id, 0, chunk)] = records
    src = chunks.as_buckets(merged)  # every point of the chunks in `covered`
    covered, covered_bits = np.asarray(raw_ids, dtype=np.int64), chunks.chunk_bits(0)
    for tier in range(1, chunks.TIERS + 1):
        fresh = chunks.reduce(src, chunks.bucket_bits(tier))
        ids = list(_chunk_ids(new, tier))
        existing = stored(tier, ids)
        redone = np.isin(existing["step"] >> covered_bits, covered)
        if tier == 1 and s.raw_pruned_through is not None:
            # Raw points dropped by retention are not in `src`: merge with their buckets.
            start = existing["step"] >> chunks.TIER_BITS << chunks.TIER_BITS
            merge = redone & (start <= s.raw_pruned_through)
            both = chunks.sort_steps(np.concatenate([existing[merge], fresh]))
            fresh = chunks.reduce(both, chunks.bucket_bits(1))
        buckets = chunks.sort_steps(np.concatenate([existing[~redone], fresh]))
        for chunk, records in chunks.split(buckets, tier).items():
            changed[(s.id, tier, chunk)] = records
        src = buckets
        covered, covered_bits = np.asarray(ids, dtype=np.int64), chunks.chunk_bits(tier)
    return len(merged) - len(old)


def _chunk_row(key: tuple[int, int, int], records: chunks.Records) -> tuple[Any, ...]:
    return (*key, len(records), records.tobytes())


def _upsert_chunk_sql(mark: str) -> str:
    return (
        "INSERT INTO metric_chunks (series_id, tier, chunk, n, data) "  # noqa: S608
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
        "ON CONFLICT (series_id, tier, chunk) DO UPDATE SET n = excluded.n, data = excluded.data"
    )


def _parts(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
