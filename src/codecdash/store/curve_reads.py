"""Training curves, the reads: downsampled curves for charts, raw points for export, and
retention (raw points of quiet series dropped, their tiers kept)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection

from codecdash.curve_rules import MAX_NAMES_PER_QUERY, encode_value
from codecdash.store import chunks, schema
from codecdash.store.rows import exists as experiment_exists
from codecdash.store.training import LOSS_NAMES
from codecdash.timefmt import iso

EXPORT_CHUNKS = 64  # raw chunks per read transaction of an export (up to 32,768 points)


@dataclass(frozen=True)
class SeriesInfo:
    id: int
    name: str
    points: int
    first_step: int
    last_step: int
    raw_pruned_through: int | None


def series_of(conn: Connection, experiment_id: str) -> list[SeriesInfo]:
    """The experiment's metrics: the loss first (as the summary picks it), then by name."""
    mark = schema.marker(conn.dialect.name)
    rows = conn.exec_driver_sql(
        "SELECT id, name, points, first_step, last_step, raw_pruned_through "  # noqa: S608
        f"FROM metric_series WHERE experiment_id = {mark}",
        (experiment_id,),
    ).all()
    found = [SeriesInfo(int(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows]
    rank = {name: i for i, name in enumerate(LOSS_NAMES)}
    return sorted(found, key=lambda s: (rank.get(s.name, len(rank)), s.name))


def history(
    conn: Connection,
    experiment_id: str,
    names: Sequence[str] | None,
    max_points: int,
    after_step: int | None = None,
) -> dict[str, Any] | None:
    """The answer of GET …/metrics, or None when there is no such experiment.

    Each series holds the points with step > `after_step` (all without it) in buckets of
    ``2**k`` steps, the smallest power of two that gives at most `max_points` non-empty
    buckets (1: the raw points). With `after_step`, a bucket that starts at or before it
    is left out (it would mix in older points): ask again without `after_step` then.
    """
    if not experiment_exists(conn, experiment_id):
        return None
    every = series_of(conn, experiment_id)
    if names is None:
        chosen = every[:MAX_NAMES_PER_QUERY]
    else:
        wanted = set(names)
        chosen = [s for s in every if s.name in wanted]
    answer: dict[str, Any] = {}
    for s in chosen:
        lo = s.first_step if after_step is None else max(s.first_step, after_step + 1)
        finest = 1 if s.raw_pruned_through is not None and lo <= s.raw_pruned_through else 0
        bits, records = chunks.downsample(_reader(conn, s.id), lo, s.last_step, max_points, finest)
        if after_step is not None and bits:
            records = records[(records["step"] >> bits << bits) >= lo]
        answer[s.name] = _series_json(records, bits, s.points)
    return {
        "series": answer,
        "total_points": sum(s.points for s in chosen),
        "names": [s.name for s in every],
    }


def _reader(conn: Connection, series_id: int) -> chunks.ReadTier:
    mark = schema.marker(conn.dialect.name)
    sql = (
        f"SELECT data FROM metric_chunks WHERE series_id = {mark} AND tier = {mark} "  # noqa: S608
        f"AND chunk BETWEEN {mark} AND {mark} ORDER BY chunk"
    )

    def read(tier: int, lo: int, hi: int) -> chunks.Records:
        bits = chunks.chunk_bits(tier)
        params = (series_id, tier, lo >> bits, hi >> bits)
        parts = [chunks.unpack(tier, bytes(r[0])) for r in conn.exec_driver_sql(sql, params)]
        if not parts:
            return chunks.empty(tier)
        records = np.concatenate(parts)
        steps = records["step"]
        inside: chunks.Records = records[(steps >= lo) & (steps <= hi)]
        return inside

    return read


def _series_json(records: chunks.Records, bits: int, points: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "step": records["step"].tolist(),
        "value": _json_floats(records["last"]),
        "time": np.round(records["at"], 3).tolist(),
    }
    if bits:
        out["min"] = _json_floats(records["min"])
        out["max"] = _json_floats(records["max"])
    out["bucket_steps"] = 1 << bits
    out["points"] = points
    return out


def _json_floats(values: np.ndarray[Any, Any]) -> list[Any]:
    """Floats as JSON carries them: NaN and the infinities as their strings."""
    out: list[Any] = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = encode_value(out[i])
    return out


# -- export ---------------------------------------------------------------------------------
CSV_HEADER = b"metric,step,time,value\n"


def export_csv(
    read: Callable[[], contextlib.AbstractContextManager[Connection]],
    series: Sequence[SeriesInfo],
) -> Iterator[bytes]:
    """The raw points of `series` as CSV (metric, step, ISO time, value), in pieces: each
    piece is read in its own short transaction, so a slow download holds no lock."""
    yield CSV_HEADER
    for s in series:
        after = -1
        while True:
            with read() as conn:
                mark = schema.marker(conn.dialect.name)
                rows = conn.exec_driver_sql(
                    f"SELECT chunk, data FROM metric_chunks WHERE series_id = {mark} "  # noqa: S608
                    f"AND tier = 0 AND chunk > {mark} ORDER BY chunk LIMIT {mark}",
                    (s.id, after, EXPORT_CHUNKS),
                ).all()
            if not rows:
                break
            after = int(rows[-1][0])
            records = np.concatenate([chunks.unpack(0, bytes(r[1])) for r in rows])
            yield _csv_lines(s.name, records)


def _csv_lines(name: str, records: chunks.Records) -> bytes:
    # Metric names are letters, digits and _ . - / only: nothing to quote.
    values = _json_floats(records["value"])
    lines = [
        f"{name},{step},{iso(at)},{value!r}\n"
        if isinstance(value, float)
        else f"{name},{step},{iso(at)},{value}\n"
        for step, at, value in zip(
            records["step"].tolist(), records["at"].tolist(), values, strict=True
        )
    ]
    return "".join(lines).encode()


# -- retention ------------------------------------------------------------------------------
def prune_raw(conn: Connection, before: float) -> int:
    """Drop the raw points of every series that received nothing since `before` (epoch
    seconds); their tiers stay, so charts still draw them. Returns how many series."""
    mark = schema.marker(conn.dialect.name)
    ids = [
        int(r[0])
        for r in conn.exec_driver_sql(
            f"SELECT id FROM metric_series WHERE last_at < {mark} "  # noqa: S608
            "AND (raw_pruned_through IS NULL OR raw_pruned_through < last_step)",
            (before,),
        )
    ]
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ", ".join([mark] * len(part))
        conn.exec_driver_sql(
            f"DELETE FROM metric_chunks WHERE tier = 0 AND series_id IN ({marks})",  # noqa: S608
            tuple(part),
        )
        conn.exec_driver_sql(
            f"UPDATE metric_series SET raw_pruned_through = last_step WHERE id IN ({marks})",  # noqa: S608
            tuple(part),
        )
    return len(ids)
