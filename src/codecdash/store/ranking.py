"""Which experiments a list query matches, in its order: one function, three ways.

:func:`ranked_page` answers every page of the experiment list. Most sorts are the plain
query (filters, ``ORDER BY field, id``, keyset pagination after the cursor). "Best first"
sorts on a ranked metric (``-psnr_db``, ``-bitrate_reduction_pct``, ``-ms_ssim``,
``bd_rate_pct``, and the summary's best results) are served differently, and this is why:

*Why leaderboards.* An index on a random-valued column (PSNR, compression, ...) makes
every ingest batch rewrite pages all over it; at a million rows two such indexes cost more
than half the ingest time (docs/performance.md). The experiments table therefore has no
index on ranked columns, and the plain query sorts the whole table. People look at the best
few hundred results, though, so ``store/leaders.py`` keeps, for each ranked metric, the
experiments at or better than a bound (5,000 to 10,000 rows) in the small table
``leaders``, with copies of the columns that list filters test (``leaders.CARRIED``:
status, creation time, the threshold filters).

*When each path runs.*

1. **Scan** (:func:`_scan`): a best-first sort whose filters are all on carried columns
   (status, creation time, thresholds): one range scan of the leaderboard's key, joined to
   the experiments by id. This is the dashboard's "best result" and the ranked list.
2. **Walk** (:func:`_walk`): a best-first sort with a text, worker or tag filter: the
   leaderboard in order, each chunk of candidates checked against the experiments table
   with the filters, twice as many leaders each round until the page is full.
3. **Plain** (:func:`_plain`): every other sort, and any best-first page the two above
   cannot answer exactly: the full query, which scans.

*Why exact.* Every experiment outside ``leaders`` ranks below every one inside (that is
what the bound means), so a page filled from the leaderboard is the true page. A page that
comes out short is exact only when nothing can follow it: the metric's leaderboard holds
every experiment with a value (no bound yet) and the caller wants valued rows only.
Otherwise (deep pages, very selective filters, a cursor that is not a number) the scan
and the walk answer None and the plain query runs. ``tests/test_leaders.py`` checks every
page, filtered both ways, against brute force on both databases through trims and
rebuilds.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)

from codecdash.experiments.query import NOT_NULL, SORTABLE, ListQuery, decode_cursor
from codecdash.store import leaders, schema
from codecdash.store.rows import FIELDS, rows_by_id

E = schema.experiments
L = schema.leaders
Cursor = tuple[Any, str]
"""(sort value, id) of the last row of the previous page."""


def ranked_page(
    conn: Connection, query: ListQuery, *, values_only: bool = False
) -> list[dict[str, Any]]:
    """Up to ``limit + 1`` whole rows in the query's order, after its cursor.

    ``values_only`` leaves out the experiments without a value for the sort field.
    """
    name, descending = query.field, query.descending
    if name not in SORTABLE:
        raise ValueError(f"cannot sort by {name!r}; choose one of {', '.join(SORTABLE)}")
    cursor = decode_cursor(query.cursor, name) if query.cursor else None
    best_first = leaders.serves(name, descending)
    carried = not (query.q or query.worker_id or query.tag)
    if best_first and carried:
        rows = _scan(conn, name, conditions(query), cursor, query.limit + 1, values_only)
        if rows is not None:
            return rows
    where = matching(query, conn.dialect.name)
    if values_only:
        where.append(E.c[name].is_not(None))
    if best_first and not carried:
        ids = _walk(conn, name, where, cursor, query.limit + 1, values_only)
        if ids is not None:
            return rows_by_id(conn, ids)
    return _plain(conn, name, descending, where, cursor, query.limit + 1)


# -- filters ------------------------------------------------------------------------------
Condition = tuple[str, str, Any]
"""A filter on a carried column: (column, operator, value); "IN" takes a tuple of values."""
OPERATORS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "IN": lambda column, values: column.in_(list(values)),
}


# The query's one-value filters: (its field, the column, the comparison).
BOUNDS: tuple[tuple[str, str, str], ...] = (
    ("created_after", "created_at", ">="),
    ("created_before", "created_at", "<"),
    ("min_psnr_db", "psnr_db", ">="),
    ("min_bitrate_reduction_pct", "bitrate_reduction_pct", ">="),
    ("max_bd_rate_pct", "bd_rate_pct", "<="),
    ("dataset", "dataset", "="),
    ("method", "method", "="),
)


def conditions(query: ListQuery) -> list[Condition]:
    """The filters on plain columns (status, creation time, thresholds): ``leaders``
    carries copies of these columns."""
    found: list[Condition] = []
    if len(query.status) == 1:  # one status: a plain `=`
        found.append(("status", "=", query.status[0]))
    elif query.status:
        found.append(("status", "IN", tuple(query.status)))
    for field, column, op in BOUNDS:
        value = getattr(query, field)
        if value is not None:
            found.append((column, op, value))
    return found


def matching(query: ListQuery, dialect: str) -> list[ColumnElement[bool]]:
    """All the query's filters, on the experiments table."""
    where = [OPERATORS[op](E.c[column], value) for column, op, value in conditions(query)]
    if query.q:
        where.append(_text_match(query.q, dialect))
    if query.worker_id:
        where.append(E.c.worker_id == query.worker_id)
    if query.tag:  # the tag as it is stored: a JSON string in the JSON list
        pattern = contains_pattern(orjson.dumps(query.tag).decode())
        where.append(E.c.tags.like(pattern, escape="\\"))
    return where


def contains_pattern(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching values that contain `text` as it is:
    its `%`, `_` and `\\` are escaped, so that `tag=%` matches a tag "%", not every row."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


def _text_match(q: str, dialect: str) -> ColumnElement[bool]:
    """`q` as text (``%``, ``_`` and ``\\`` are plain characters) in the id, the name or one of
    the tags: case-insensitive as the database's own ``ILIKE`` (PostgreSQL) or ``LIKE``
    (SQLite: ASCII letters only) makes it, the same for all three."""
    pattern = contains_pattern(q)
    if dialect == "postgresql":
        tags = func.json_array_elements_text(cast(E.c.tags, JSON)).table_valued("value")
        return or_(
            E.c.name.ilike(pattern, escape="\\"),
            E.c.id.ilike(pattern, escape="\\"),
            select(tags.c.value).where(tags.c.value.ilike(pattern, escape="\\")).exists(),
        )
    tags = func.json_each(E.c.tags).table_valued("value")
    return or_(
        E.c.name.like(pattern, escape="\\"),
        E.c.id.like(pattern, escape="\\"),
        select(tags.c.value).where(tags.c.value.like(pattern, escape="\\")).exists(),
    )


# -- 1. scan ------------------------------------------------------------------------------
def _scan(
    conn: Connection,
    metric: str,
    where: Sequence[Condition],
    cursor: Cursor | None,
    limit: int,
    values_only: bool,
) -> list[dict[str, Any]] | None:
    """The page's whole rows from one statement that takes the page from ``leaders`` with
    one range scan of its key and joins the experiments by id; None when inexact.

    Both databases plan this join well whatever their statistics: its outer side is the
    page itself (``LIMIT``), so each experiment is one primary-key lookup. Hand-written
    SQL, cached per shape of the filters: building and compiling the statement with
    SQLAlchemy cost more than both databases' work."""
    if not _usable(cursor):
        return None
    larger = leaders.METRICS[metric]
    shape = tuple((c, op, len(v) if op == "IN" else 1) for c, op, v in where)
    sql = _scan_sql(conn.dialect.name, shape, cursor is not None, larger)
    params: list[Any] = [metric]
    for _column, op, value in where:
        params += value if op == "IN" else [value]
    if cursor is not None:
        params += [cursor[0], cursor[1]]
    params.append(limit)
    rows = [dict(zip(FIELDS, r, strict=True)) for r in conn.exec_driver_sql(sql, tuple(params))]
    rows.sort(key=lambda r: (r[metric], r["id"]), reverse=larger)
    return rows if len(rows) == limit else _short(conn, metric, rows, values_only)


@functools.cache
def _scan_sql(
    dialect: str, shape: tuple[tuple[str, str, int], ...], after: bool, larger: bool
) -> str:
    mark = schema.marker(dialect)
    where = ["metric = " + mark]
    for column, op, n in shape:
        if column not in leaders.CARRIED or op not in OPERATORS:  # names are never user input
            raise ValueError(f"not a filter on leaders: {column} {op}")
        where.append(
            f"{column} IN ({', '.join([mark] * n)})" if op == "IN" else f"{column} {op} {mark}"
        )
    if after:
        where.append(f"(value, id) {'<' if larger else '>'} ({mark}, {mark})")
    order = "value DESC, id DESC" if larger else "value ASC, id ASC"
    condition = " AND ".join(where)
    page = f"SELECT id FROM leaders WHERE {condition} ORDER BY {order} LIMIT {mark}"  # noqa: S608
    columns = ", ".join(f"e.{name}" for name in FIELDS)
    return f"SELECT {columns} FROM ({page}) AS l JOIN experiments AS e ON e.id = l.id"  # noqa: S608


# -- 2. walk ------------------------------------------------------------------------------
def _walk(
    conn: Connection,
    metric: str,
    where: Sequence[ColumnElement[bool]],
    cursor: Cursor | None,
    limit: int,
    values_only: bool,
) -> list[str] | None:
    """The ids of up to ``limit`` experiments best first (ties by id), or None when inexact.

    ``where`` filters the experiments table. Two simple statements in a loop rather than
    one join: the next leaders in key order (a range scan of the primary key), then those
    experiments by id with the filters. Both databases run these the same fast way
    whatever their statistics say (PostgreSQL, right after a bulk load, planned the join
    as a hash join over the whole table).
    """
    if not _usable(cursor):
        return None
    larger = leaders.METRICS[metric]
    position = cursor
    chunk = limit
    chosen: list[str] = []
    order = [L.c.value.desc(), L.c.id.desc()] if larger else [L.c.value.asc(), L.c.id.asc()]
    while True:
        stmt = select(L.c.value, L.c.id).where(L.c.metric == metric)
        if position is not None:
            key, last = tuple_(L.c.value, L.c.id), tuple_(literal(position[0]), position[1])
            stmt = stmt.where(key < last if larger else key > last)
        ranked = conn.execute(stmt.order_by(*order).limit(chunk)).all()
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
        chunk = min(2 * chunk, 2 * leaders.KEEP)


def _usable(cursor: Cursor | None) -> bool:
    """A cursor that can continue a leaders page: one made from a number."""
    return cursor is None or (cursor[0] is not None and isinstance(cursor[0], int | float))


def _short(conn: Connection, metric: str, chosen: list[Any], values_only: bool) -> list[Any] | None:
    """A page that came out short is exact only if nothing ranks after it: experiments
    without a value (sorted last) and, below a bound, the ones outside ``leaders`` may."""
    return chosen if values_only and leaders.bounds(conn)[metric][0] is None else None


# -- 3. plain -----------------------------------------------------------------------------
def _plain(
    conn: Connection,
    name: str,
    descending: bool,
    where: list[ColumnElement[bool]],
    cursor: Cursor | None,
    limit: int,
) -> list[dict[str, Any]]:
    col = E.c[name]
    nullable = name not in NOT_NULL
    if cursor is not None:
        where = [*where, _after(col, cursor, descending, nullable)]
    if not nullable:
        order = [col.desc(), E.c.id.desc()] if descending else [col.asc(), E.c.id.asc()]
    elif descending:
        order = [col.desc().nulls_last(), E.c.id.desc()]
    else:
        order = [col.asc().nulls_last(), E.c.id.asc()]
    stmt = select(E).where(and_(true(), *where)).order_by(*order).limit(limit)
    return [dict(zip(FIELDS, r, strict=True)) for r in conn.execute(stmt).all()]


def _after(col: Any, cursor: Cursor, descending: bool, nullable: bool) -> ColumnElement[bool]:
    """Rows after (value, last_id) in the order (col nulls last, id)."""
    value, last_id = cursor
    id_after = E.c.id < last_id if descending else E.c.id > last_id
    if value is None:
        return and_(col.is_(None), id_after)
    beyond = col < value if descending else col > value
    cond = or_(beyond, and_(col == value, id_after))
    return or_(cond, col.is_(None)) if nullable else cond
