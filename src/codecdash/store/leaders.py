"""Leaderboards: the best experiments of each ranked metric, kept current on write.

Why they exist, and how "best first" pages read them: ``store/ranking.py``. For each
metric in ``METRICS`` the small table ``leaders`` holds every experiment whose value is at
or better than the metric's ``bound`` (``leader_bounds``), whatever its status:

* a write adds or removes a row only when an experiment's value crosses the bound, which
  after the first few thousand experiments is rare;
* when a metric holds more than ``2 * KEEP`` rows, the bound moves up to the
  ``KEEP``-th best value and the rest are dropped;
* when results are withdrawn and fewer than ``KEEP // 2`` remain, the metric is rebuilt
  from the experiments table (one scan);
* a NULL bound means every experiment with a value is in ``leaders``.

Each row also carries copies of the experiment's columns that list filters test
(``CARRIED``: status, creation time, the threshold filters); a write that changes one of
them rewrites the experiment's rows here.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
)

from codecdash.experiments.vocabulary import LARGER_IS_BETTER
from codecdash.store import schema

E = schema.experiments
L = schema.leaders
B = schema.leader_bounds
METRICS = LARGER_IS_BETTER  # metric -> True when larger is better
KEEP = 5000
# The experiment's columns copied into its leaders rows, for filters.
CARRIED = tuple(str(c.name) for c in L.columns if c.name not in ("metric", "value", "id"))
_copies = operator.itemgetter(*CARRIED)


def serves(metric: str, descending: bool) -> bool:
    """Whether ``leaders`` can answer a sort on ``metric`` in this direction (best first)."""
    return metric in METRICS and METRICS[metric] == descending


def bounds(conn: Connection, *, lock: bool = False) -> dict[str, tuple[float | None, int]]:
    """Each metric's (bound, rows in leaders). ``lock``: for a write that will follow them.

    On PostgreSQL the rows are locked until the transaction ends: writers on several
    replicas take turns from there on, so each reads the rows it replaces after the
    previous writer committed (two replicas upserting the same new id at once otherwise
    both took it for new). SQLite has one writer at a time anyway.
    """
    # A constant statement: read twice by every write (a third of the cost of one that
    # SQLAlchemy builds and compiles each time).
    sql = "SELECT metric, bound, n FROM leader_bounds"
    if lock and conn.dialect.name == "postgresql":
        sql += " FOR UPDATE"
    found: dict[str, tuple[float | None, int]] = {
        str(row[0]): (row[1], int(row[2])) for row in conn.exec_driver_sql(sql).all()
    }
    return {metric: found.get(metric, (None, 0)) for metric in METRICS}


def _within(value: float, bound: float | None, larger: bool) -> bool:
    return bound is None or (value >= bound if larger else value <= bound)


def update(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    old: Mapping[str, Mapping[str, Any]],
    current: Mapping[str, tuple[float | None, int]],
) -> None:
    """Follow a write: ``rows`` are the new rows, ``old`` the previous ones by id, and
    ``current`` the bounds read with ``lock=True`` before ``old`` was."""
    fresh = [row for row in rows if row["id"] not in old]
    # (new row, previous row, whether a carried column changed)
    replaced = [
        (row, previous, _copies(row) != _copies(previous))
        for row in rows
        if (previous := old.get(row["id"])) is not None
    ]
    for metric, larger in METRICS.items():
        bound, n = current[metric]
        # The hot path (new experiments, bound set): one comparison per row.
        if bound is None:
            adds = [(row, v) for row in fresh if (v := row[metric]) is not None]
        elif larger:
            adds = [(row, v) for row in fresh if (v := row[metric]) is not None and v >= bound]
        else:
            adds = [(row, v) for row in fresh if (v := row[metric]) is not None and v <= bound]
        removes: list[tuple[str, float]] = []
        for row, previous, moved in replaced:
            before, after = previous[metric], row[metric]
            if before == after and not moved:
                continue
            if before is not None and _within(before, bound, larger):
                removes.append((row["id"], before))
            if after is not None and _within(after, bound, larger):
                adds.append((row, after))
        if not removes and not adds:
            continue
        if removes:
            conn.execute(
                delete(L).where(
                    L.c.metric == metric, L.c.value == bindparam("v"), L.c.id == bindparam("i")
                ),
                [{"i": i, "v": v} for i, v in removes],
            )
        if adds:
            conn.execute(insert(L), [_entry(metric, v, row) for row, v in adds])
        n += len(adds) - len(removes)
        if n > 2 * KEEP:
            bound, n = _trim(conn, metric, larger)
        elif bound is not None and n < KEEP // 2:
            rebuild(conn, metric)
            continue
        _save(conn, metric, bound, n)


def withdraw(
    conn: Connection,
    old: Mapping[str, Mapping[str, Any]],
    current: Mapping[str, tuple[float | None, int]],
) -> None:
    """Follow a removal: ``old`` are the rows that left the experiments table, by id;
    ``current`` the bounds read with ``lock=True`` before they were read."""
    for metric, larger in METRICS.items():
        bound, n = current[metric]
        removes = [
            {"i": i, "v": v}
            for i, row in old.items()
            if (v := row[metric]) is not None and _within(v, bound, larger)
        ]
        if not removes:
            continue
        conn.execute(
            delete(L).where(
                L.c.metric == metric, L.c.value == bindparam("v"), L.c.id == bindparam("i")
            ),
            removes,
        )
        n -= len(removes)
        if bound is not None and n < KEEP // 2:
            rebuild(conn, metric)
            continue
        _save(conn, metric, bound, n)


def _entry(metric: str, value: float, row: Mapping[str, Any]) -> dict[str, Any]:
    entry = {"metric": metric, "value": value, "id": row["id"]}
    entry.update(zip(CARRIED, _copies(row), strict=True))
    return entry


def _order(column: Any, larger: bool) -> list[Any]:
    return [column.desc(), L.c.id.desc()] if larger else [column.asc(), L.c.id.asc()]


def _trim(conn: Connection, metric: str, larger: bool) -> tuple[float, int]:
    """Move the bound up to the KEEP-th best value and drop what falls below it."""
    bound: float = conn.execute(
        select(L.c.value)
        .where(L.c.metric == metric)
        .order_by(*_order(L.c.value, larger))
        .offset(KEEP - 1)
        .limit(1)
    ).scalar_one()
    beyond = L.c.value < bound if larger else L.c.value > bound
    conn.execute(delete(L).where(L.c.metric == metric, beyond))
    n = conn.execute(select(func.count()).select_from(L).where(L.c.metric == metric)).scalar_one()
    _analyze(conn)
    return float(bound), int(n)


def _analyze(conn: Connection) -> None:
    """PostgreSQL plans "best first" pages well only with statistics on ``leaders`` (a
    backward scan of its key, not a sort); its few thousand rows take milliseconds."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE leaders")


def rebuild(conn: Connection, metric: str) -> tuple[float | None, int]:
    """Fill ``metric``'s leaders from the experiments table (one scan); returns bound, n."""
    larger = METRICS[metric]
    col = E.c[metric]
    bound = conn.execute(
        select(col)
        .where(col.is_not(None))
        .order_by(col.desc() if larger else col.asc())
        .offset(KEEP - 1)
        .limit(1)
    ).scalar()
    conn.execute(delete(L).where(L.c.metric == metric))
    where: ColumnElement[bool] = col.is_not(None)
    if bound is not None:
        where = and_(where, col >= bound if larger else col <= bound)
    copied = [E.c[name] for name in CARRIED]
    conn.execute(
        insert(L).from_select(
            ["metric", "value", "id", *CARRIED],
            select(literal(metric, String(32)), col, E.c.id, *copied).where(where),
        )
    )
    n = conn.execute(select(func.count()).select_from(L).where(L.c.metric == metric)).scalar_one()
    _save(conn, metric, bound, int(n))
    _analyze(conn)
    return bound, int(n)


def _save(conn: Connection, metric: str, bound: float | None, n: int) -> None:
    done = conn.execute(B.update().where(B.c.metric == metric).values(bound=bound, n=n))
    if not done.rowcount:
        conn.execute(B.insert().values(metric=metric, bound=bound, n=n))


def rebuild_all(conn: Connection) -> None:
    for metric in METRICS:
        rebuild(conn, metric)
