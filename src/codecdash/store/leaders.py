"""Leaderboards: the best experiments of each ranked metric, kept current on write.

An index on a random-valued column (PSNR, compression, ...) makes every batch rewrite
pages all over that index; at a million rows two such indexes cost more than half of the
ingest time (docs/performance.md). Nobody pages through a million results by PSNR, though:
people look at the best few hundred. So for each metric in ``METRICS`` the small table
``leaders`` holds every experiment whose value is at or better than the metric's
``bound`` (``leader_bounds``), whatever its status:

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

A "best first" page reads ``leaders`` in order and keeps the experiments that pass the
page's other filters: one range scan of ``leaders`` when every filter is on its carried
columns (:func:`scan`), else a walk that checks each leader in the experiments table
(:func:`page`). The answer is exact when the page filled up (every experiment outside
``leaders`` ranks below every one inside) or when the metric is complete; otherwise the
caller runs the plain query, which scans.
"""

from __future__ import annotations

import functools
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
    tuple_,
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
    found: dict[str, tuple[float | None, int]] = {}
    stmt = select(B.c.metric, B.c.bound, B.c.n)
    if lock:
        stmt = stmt.with_for_update()
    for row in conn.execute(stmt):
        found[str(row.metric)] = (row.bound, int(row.n))
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


def _usable(cursor: tuple[Any, str] | None) -> bool:
    """A cursor that can continue a leaders page: one made from a number."""
    return cursor is None or (cursor[0] is not None and isinstance(cursor[0], int | float))


def _after(position: tuple[Any, str], larger: bool) -> ColumnElement[bool]:
    """Leaders after ``position`` (value, id) in best-first order."""
    key, last = tuple_(L.c.value, L.c.id), tuple_(literal(position[0]), position[1])
    return key < last if larger else key > last


def _short(conn: Connection, metric: str, chosen: list[Any], values_only: bool) -> list[Any] | None:
    """A page that came out short is exact only if nothing ranks after it: experiments
    without a value (sorted last) and, below a bound, the ones outside ``leaders`` may."""
    return chosen if values_only and bounds(conn)[metric][0] is None else None


# A filter on a carried column: (column, operator, value); "IN" takes a tuple of values.
Condition = tuple[str, str, Any]
OPERATORS = ("=", "IN", ">=", "<", "<=")


def scan(
    conn: Connection,
    metric: str,
    conditions: Sequence[Condition],
    cursor: tuple[Any, str] | None,
    limit: int,
    values_only: bool = False,
) -> list[dict[str, Any]] | None:
    """Like :func:`page` when every filter is on a carried column: the experiments'
    whole rows (best first), from one statement that takes the page from ``leaders``
    with one range scan of its key and joins the experiments by id.

    Unlike :func:`page`'s, this join is planned well by both databases whatever their
    statistics: its outer side is the page itself (``LIMIT``), so each experiment is
    one primary-key lookup. Hand-written SQL, cached per shape of the filters: building
    and compiling the statement with SQLAlchemy cost more than both databases' work."""
    if not _usable(cursor):
        return None
    larger = METRICS[metric]
    shape = tuple((c, op, len(v) if op == "IN" else 1) for c, op, v in conditions)
    sql = _scan_sql(conn.dialect.name, shape, cursor is not None, larger)
    params: list[Any] = [metric]
    for _column, op, value in conditions:
        params += value if op == "IN" else [value]
    if cursor is not None:
        params += [cursor[0], cursor[1]]
    params.append(limit)
    rows = [
        dict(zip(schema.EXPERIMENT_FIELDS, r, strict=True))
        for r in conn.exec_driver_sql(sql, tuple(params))
    ]
    rows.sort(key=lambda r: (r[metric], r["id"]), reverse=larger)
    return rows if len(rows) == limit else _short(conn, metric, rows, values_only)


@functools.cache
def _scan_sql(
    dialect: str, shape: tuple[tuple[str, str, int], ...], after: bool, larger: bool
) -> str:
    mark = schema.marker(dialect)
    where = ["metric = " + mark]
    for column, op, n in shape:
        if column not in CARRIED or op not in OPERATORS:  # names are never user input
            raise ValueError(f"not a filter on leaders: {column} {op}")
        where.append(
            f"{column} IN ({', '.join([mark] * n)})" if op == "IN" else f"{column} {op} {mark}"
        )
    if after:
        where.append(f"(value, id) {'<' if larger else '>'} ({mark}, {mark})")
    order = "value DESC, id DESC" if larger else "value ASC, id ASC"
    condition = " AND ".join(where)
    page = f"SELECT id FROM leaders WHERE {condition} ORDER BY {order} LIMIT {mark}"  # noqa: S608
    columns = ", ".join(f"e.{name}" for name in schema.EXPERIMENT_FIELDS)
    return f"SELECT {columns} FROM ({page}) AS l JOIN experiments AS e ON e.id = l.id"  # noqa: S608


def page(
    conn: Connection,
    metric: str,
    where: Sequence[ColumnElement[bool]],
    cursor: tuple[Any, str] | None,
    limit: int,
    values_only: bool = False,
) -> list[str] | None:
    """The ids of up to ``limit`` experiments best first (ties by id), or None when inexact.

    ``where`` filters the experiments table; ``cursor`` is the (value, id) of the last
    row of the previous page; ``values_only``: ``where`` leaves out experiments without a
    value. None tells the caller to run the plain query: the page may reach below the
    bound, or into the experiments without a value.

    Two simple statements in a loop rather than one join: the next leaders in key order
    (a range scan of the primary key), then those experiments by id with the filters;
    twice as many leaders each round until the page is full. Both databases run these
    the same fast way whatever their statistics say (PostgreSQL, right after a bulk
    load, planned the join as a hash join over the whole table).
    """
    if not _usable(cursor):
        return None
    larger = METRICS[metric]
    position = cursor
    chunk = limit
    chosen: list[str] = []
    while True:
        stmt = select(L.c.value, L.c.id).where(L.c.metric == metric)
        if position is not None:
            stmt = stmt.where(_after(position, larger))
        ranked = conn.execute(stmt.order_by(*_order(L.c.value, larger)).limit(chunk)).all()
        if ranked:
            ids = [str(r.id) for r in ranked]
            passed = {
                str(i) for (i,) in conn.execute(select(E.c.id).where(E.c.id.in_(ids), *where))
            }
            chosen += [i for i in ids if i in passed][: limit - len(chosen)]
            if len(chosen) == limit:
                return chosen
        if len(ranked) < chunk:  # no leaders left
            return _short(conn, metric, chosen, values_only)
        position = (ranked[-1].value, ranked[-1].id)
        chunk = min(2 * chunk, 2 * KEEP)
