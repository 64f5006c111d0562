"""Experiments: the one write path (upsert with summaries kept current) and the reads."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    and_,
    cast,
    func,
    or_,
    select,
    true,
)

from codecdash.experiments.vocabulary import FINISHED, STATUSES
from codecdash.ids import new_id
from codecdash.models import ExperimentFields
from codecdash.store import leaders, schema
from codecdash.store.counters import bump_counters, data_version, read_counters
from codecdash.store.progress import merge_progress, recompute_hours
from codecdash.timefmt import iso

T = schema.experiments
JSON_FIELDS = ("params", "tags", "rd_points")
FILLED = "_server_filled"  # a row key (not a column): times to_row filled in
TIME_FIELDS = ("created_at", "started_at", "finished_at", "updated_at")
SORTABLE = (
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "duration_s",
    "bitrate_reduction_pct",
    "psnr_db",
    "ms_ssim",
    "bpp",
    "bitrate_kbps",
    "cost_usd",
    "bd_rate_pct",
    "name",
    "status",
    "id",
)
FIELDS = schema.EXPERIMENT_FIELDS

# (rd_points) -> (bd_rate_pct, anchor name) or None; installed by the app (codec view).
BdRateFn = Callable[[list[dict[str, Any]]], tuple[float, str] | None]


class BadCursor(ValueError):
    """A pagination cursor that this server did not make."""


@dataclass
class ListQuery:
    status: Sequence[str] = ()
    q: str | None = None
    worker_id: str | None = None
    tag: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    min_psnr_db: float | None = None
    min_bitrate_reduction_pct: float | None = None
    max_bd_rate_pct: float | None = None
    sort: str = "-created_at"
    limit: int = 50
    cursor: str | None = None
    extra_filters: list[ColumnElement[bool]] = field(default_factory=list)


_BLANK_ROW: dict[str, Any] = dict.fromkeys(FIELDS)
_AS_PARAMETERS = operator.itemgetter(*FIELDS)  # a row as the upsert's parameter tuple


def to_row(
    values: Mapping[str, Any], now: float, bd_rate: BdRateFn | None = None
) -> dict[str, Any]:
    """A validated experiment (model_dump of ExperimentIn) as a full table row."""
    row = _BLANK_ROW.copy()
    row.update(values)  # the ingest hot path: keys are columns (and FILLED is set below)
    if row["id"] is None:
        row["id"] = new_id()
    created, started, finished = row["created_at"], row["started_at"], row["finished_at"]
    if created is not None and not isinstance(created, float | int):
        row["created_at"] = created.timestamp()
    if started is not None and not isinstance(started, float | int):
        started = row["started_at"] = started.timestamp()
    if finished is not None and not isinstance(finished, float | int):
        finished = row["finished_at"] = finished.timestamp()
    status = row["status"]
    filled: tuple[str, ...] = ()  # times the server fills in; a retry keeps the first ones
    if status == "running" and started is None:
        started = row["started_at"] = now
        filled = ("started_at",)
    elif status in FINISHED and finished is None:
        finished = row["finished_at"] = now
        filled = ("finished_at",)
    row[FILLED] = filled
    row["updated_at"] = now
    row["duration_s"] = max(0.0, finished - started) if started and finished else None
    row["bd_rate_pct"] = row["bd_rate_anchor"] = None
    points = row["rd_points"]
    if points is not None:
        derived = bd_rate(points) if bd_rate is not None and points else None
        if derived is not None:
            row["bd_rate_pct"], row["bd_rate_anchor"] = derived
        row["rd_points"] = orjson.dumps(points).decode()
    if row["params"] is not None:
        row["params"] = orjson.dumps(row["params"]).decode()
    if row["tags"] is not None:
        row["tags"] = orjson.dumps(row["tags"]).decode()
    return row


def _derive_duration(row: dict[str, Any]) -> None:
    started, finished = row["started_at"], row["finished_at"]
    row["duration_s"] = max(0.0, finished - started) if started and finished else None


def from_row(row: Mapping[Any, Any], now: float | None = None) -> dict[str, Any]:
    """A table row as the API's Experiment (JSON-ready, ISO times)."""
    out = dict(row)
    if type(next(iter(out), "")) is not str:  # SQLAlchemy's quoted_name: plain str for orjson
        out = {str(k): v for k, v in out.items()}
    out.pop(FILLED, None)
    for name in JSON_FIELDS:
        if (text := out.get(name)) is not None:
            out[name] = orjson.loads(text)
    if out.get("duration_s") is None and out.get("status") == "running" and out["started_at"]:
        out["duration_s"] = max(0.0, (now or time.time()) - out["started_at"])
    for name in TIME_FIELDS:
        if (ts := out.get(name)) is not None:
            out[name] = iso(ts)
    return out


@functools.cache
def _upsert_sql(dialect: str) -> str:
    mark = schema.marker(dialect)
    updates = ", ".join(f"{c} = excluded.{c}" for c in FIELDS if c != "id")
    # Constant column names; every value is a bound parameter.
    columns, marks = ", ".join(FIELDS), ", ".join([mark] * len(FIELDS))
    return " ".join(
        (
            "INSERT INTO experiments",
            f"({columns}) VALUES ({marks})",
            "ON CONFLICT (id) DO UPDATE SET",
            updates,
        )
    )


# What a write needs to know of the rows it replaces.
_OLD_COLUMNS = (
    "id",
    "status",
    "started_at",
    "finished_at",
    "bitrate_reduction_pct",
    "psnr_db",
    "ms_ssim",
    "bd_rate_pct",
    "created_at",
)


@functools.cache
def _by_id_sql(dialect: str, columns: tuple[str, ...], n: int) -> str:
    marks = ", ".join([schema.marker(dialect)] * n)
    return f"SELECT {', '.join(columns)} FROM experiments WHERE id IN ({marks})"  # noqa: S608


def _select_by_id(
    conn: Connection, columns: tuple[str, ...], ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """``columns`` (the first being ``id``) of these experiments, by id.

    Hand-written like the upsert, and read as plain tuples zipped with the names:
    compiling a 1,000-value IN cost ~1 ms a batch, and SQLAlchemy's rows ~20 µs each.
    """
    ids = tuple(ids)
    sql = _by_id_sql(conn.dialect.name, columns, len(ids))
    found = conn.exec_driver_sql(sql, ids).all()  # fetchall: not a fetchone per row
    return {r[0]: dict(zip(columns, r, strict=True)) for r in found}


def upsert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace whole rows, keeping counters and progress current."""
    if not rows:
        return
    by_id = {row["id"]: row for row in rows}  # the last of duplicate ids wins
    rows = list(by_id.values())
    # First: one writer at a time from here (PostgreSQL replicas; see leaders.bounds).
    current_bounds = leaders.bounds(conn, lock=True)
    old: dict[str, Mapping[str, Any]] = dict(_select_by_id(conn, _OLD_COLUMNS, by_id))
    for row in rows:
        previous = old.get(row["id"])
        if row["created_at"] is None:  # keep the stored creation time, else now
            row["created_at"] = previous["created_at"] if previous else row["updated_at"]
        if previous is not None and previous["status"] == row["status"] and row.get(FILLED):
            # A retried PUT or batch must not move the times the server filled in the
            # first time (idempotent retries).
            for name in row[FILLED]:
                row[name] = previous[name]
            _derive_duration(row)
    # Hand-written SQL on purpose: SQLAlchemy's per-row parameter processing cost more
    # than SQLite's own work here (docs/performance.md). The statement is the same on
    # both databases but for the placeholder.
    conn.exec_driver_sql(_upsert_sql(conn.dialect.name), [_AS_PARAMETERS(r) for r in rows])
    deltas: dict[str, int] = {}
    for row in rows:
        previous = old.get(row["id"])
        if previous is not None:
            key = f"experiments.{previous['status']}"
            deltas[key] = deltas.get(key, 0) - 1
        key = f"experiments.{row['status']}"
        deltas[key] = deltas.get(key, 0) + 1
    bump_counters(conn, deltas)
    leaders.update(conn, rows, old, current_bounds)
    merge_progress(conn, [r for r in rows if r["status"] == "completed"])
    recompute_hours(conn, _hours_to_recompute(rows, old))


def _hours_to_recompute(
    rows: Iterable[Mapping[str, Any]], old: Mapping[str, Mapping[str, Any]]
) -> set[int]:
    """Hours whose best values may have dropped because a completed row changed."""
    hours: set[int] = set()
    for row in rows:
        previous = old.get(row["id"])
        if previous is None or previous["status"] != "completed":
            continue
        if previous["finished_at"] is None:
            continue
        hour = int(previous["finished_at"] // 3600)
        same_hour = row["finished_at"] is not None and int(row["finished_at"] // 3600) == hour
        if row["status"] != "completed" or not same_hour:
            hours.add(hour)
            continue
        for name in ("bitrate_reduction_pct", "psnr_db", "ms_ssim"):
            if previous[name] is not None and (row[name] is None or row[name] < previous[name]):
                hours.add(hour)
        if previous["bd_rate_pct"] is not None and (
            row["bd_rate_pct"] is None or row["bd_rate_pct"] > previous["bd_rate_pct"]
        ):
            hours.add(hour)
    return hours


def rows_by_id(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Whole rows of these experiments, in this order (ids that exist)."""
    if not ids:
        return []
    found = _select_by_id(conn, FIELDS, ids)
    return [found[i] for i in ids if i in found]


def get(conn: Connection, experiment_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(T).where(T.c.id == experiment_id)).mappings().first()
    return dict(row) if row is not None else None


def exists(conn: Connection, experiment_id: str) -> bool:
    return conn.execute(select(T.c.id).where(T.c.id == experiment_id)).first() is not None


def merge_patch(
    current: Mapping[str, Any], patch: ExperimentFields, now: float, bd_rate: BdRateFn | None
) -> dict[str, Any]:
    """Apply a PATCH to a stored row; returns the full new row."""
    values = from_row_for_merge(current)
    values.update(patch.model_dump(include=patch.model_fields_set, mode="python"))
    if patch.status is None and "status" in patch.model_fields_set:
        values["status"] = current["status"]  # status can't be cleared
    if "created_at" in patch.model_fields_set and patch.created_at is None:
        values["created_at"] = current["created_at"]
    return to_row(values, now, bd_rate)


def from_row_for_merge(row: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(row)
    for name in JSON_FIELDS:
        if values.get(name) is not None:
            values[name] = orjson.loads(values[name])
    # Derived again by to_row.
    values["duration_s"] = None
    return values


# -- listing ---------------------------------------------------------------------------
def contains_pattern(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching values that contain `text` as it is:
    its `%`, `_` and `\\` are escaped, so that `tag=%` matches a tag "%", not every row."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%" + escaped + "%"


def _filters(query: ListQuery, dialect: str) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = list(query.extra_filters)
    where += [_COMPARE[op](T.c[column], value) for column, op, value in _conditions(query)]
    if query.q:
        where.append(_text_match(query.q, dialect))
    if query.worker_id:
        where.append(T.c.worker_id == query.worker_id)
    if query.tag:  # the tag as it is stored: a JSON string in the JSON list
        pattern = contains_pattern(orjson.dumps(query.tag).decode())
        where.append(T.c.tags.like(pattern, escape="\\"))
    return where


def _text_match(q: str, dialect: str) -> ColumnElement[bool]:
    """`q` as text (``%``, ``_`` and ``\\`` are plain characters) in the id, the name or one of
    the tags: case-insensitive as the database's own ``ILIKE`` (PostgreSQL) or ``LIKE``
    (SQLite: ASCII letters only) makes it, the same for all three."""
    pattern = contains_pattern(q)
    if dialect == "postgresql":
        tags = func.json_array_elements_text(cast(T.c.tags, JSON)).table_valued("value")
        return or_(
            T.c.name.ilike(pattern, escape="\\"),
            T.c.id.ilike(pattern, escape="\\"),
            select(tags.c.value).where(tags.c.value.ilike(pattern, escape="\\")).exists(),
        )
    tags = func.json_each(T.c.tags).table_valued("value")
    return or_(
        T.c.name.like(pattern, escape="\\"),
        T.c.id.like(pattern, escape="\\"),
        select(tags.c.value).where(tags.c.value.like(pattern, escape="\\")).exists(),
    )


def _conditions(query: ListQuery) -> list[leaders.Condition]:
    """The filters on plain columns (status, creation time, thresholds) as (column,
    operator, value): ``leaders`` carries copies of these columns."""
    found: list[leaders.Condition] = []
    if len(query.status) == 1:  # one status: a plain `=`
        found.append(("status", "=", query.status[0]))
    elif query.status:
        found.append(("status", "IN", tuple(query.status)))
    if query.created_after is not None:
        found.append(("created_at", ">=", query.created_after))
    if query.created_before is not None:
        found.append(("created_at", "<", query.created_before))
    if query.min_psnr_db is not None:
        found.append(("psnr_db", ">=", query.min_psnr_db))
    if query.min_bitrate_reduction_pct is not None:
        found.append(("bitrate_reduction_pct", ">=", query.min_bitrate_reduction_pct))
    if query.max_bd_rate_pct is not None:
        found.append(("bd_rate_pct", "<=", query.max_bd_rate_pct))
    return found


_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "IN": lambda column, values: column.in_(list(values)),
}


CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"
"""What encode_cursor makes: unpadded base64url."""


def encode_cursor(value: Any, experiment_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([value, experiment_id])).decode().rstrip("=")


TEXT_SORTS = frozenset({"name", "status", "id"})
_INT64 = 2**63


def decode_cursor(cursor: str, field: str | None = None) -> tuple[Any, str]:
    """(value, id) of the last row of the previous page; BadCursor unless it is one this
    server could have made for sorting by `field`: a value of the column's type (text, or a
    finite number within 64 bits; null only where the column may be null) and an id."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # json, not orjson: integers of any size stay integers (and are refused below)
        value, experiment_id = json.loads(raw, parse_constant=_no_constant)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise BadCursor("cursor is not one this server made") from None
    if not _storable_text(experiment_id, 128) or not _cursor_value_fits(value, field):
        raise BadCursor("cursor is not one this server made")
    return value, experiment_id


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable_text(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and len(value) <= max_length and "\x00" not in value


def _cursor_value_fits(value: Any, field: str | None) -> bool:
    if value is None:
        return field is None or not _not_null(field)
    text = field is None or field in TEXT_SORTS
    if type(value) is int:  # not bool
        return (field is None or not text) and -_INT64 <= value < _INT64
    if type(value) is float:
        return (field is None or not text) and math.isfinite(value)
    return text and _storable_text(value, 10_000)


def list_page(
    conn: Connection, query: ListQuery, totals: TotalCache | None = None
) -> tuple[list[dict[str, Any]], str | None, int]:
    rows = ranked(conn, query)
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last = rows[-1]
        next_cursor = encode_cursor(last[query.sort.lstrip("-+")], last["id"])
    return rows, next_cursor, _total(conn, query, totals)


def ranked(
    conn: Connection, query: ListQuery, *, values_only: bool = False
) -> list[dict[str, Any]]:
    """Up to ``limit + 1`` rows in the query's order, after its cursor.

    ``values_only`` leaves out the experiments without a value for the sort field.
    """
    descending = query.sort.startswith("-")
    name = query.sort.lstrip("-+")
    if name not in SORTABLE:
        raise ValueError(f"cannot sort by {name!r}; choose one of {', '.join(SORTABLE)}")
    cursor = decode_cursor(query.cursor, name) if query.cursor else None
    carried = not (query.q or query.worker_id or query.tag or query.extra_filters)
    served = leaders.serves(name, descending)
    if served and carried:  # one scan of the leaderboard
        rows = leaders.scan(conn, name, _conditions(query), cursor, query.limit + 1, values_only)
        if rows is not None:
            return rows
    where = _filters(query, conn.dialect.name)
    if values_only:
        where.append(T.c[name].is_not(None))
    if served and not carried:  # the leaderboard, checked
        ids = leaders.page(conn, name, where, cursor, query.limit + 1, values_only)
        if ids is not None:
            return rows_by_id(conn, ids)
    col = T.c[name]
    page_where = list(where)
    if cursor is not None:
        value, last_id = cursor
        page_where.append(_after(col, value, last_id, descending, nullable=not _not_null(name)))
    order = (
        [col.desc().nulls_last(), T.c.id.desc()]
        if descending
        else [col.asc().nulls_last(), T.c.id.asc()]
    )
    if _not_null(name):
        order = [col.desc(), T.c.id.desc()] if descending else [col.asc(), T.c.id.asc()]
    stmt = select(T).where(and_(true(), *page_where)).order_by(*order).limit(query.limit + 1)
    return [dict(zip(FIELDS, r, strict=True)) for r in conn.execute(stmt).all()]


def _not_null(name: str) -> bool:
    return name in ("id", "status", "created_at", "updated_at")


def _after(
    col: Any, value: Any, last_id: str, descending: bool, nullable: bool
) -> ColumnElement[bool]:
    """Rows after (value, last_id) in the order (col nulls last, id)."""
    id_after = T.c.id < last_id if descending else T.c.id > last_id
    if value is None:
        return and_(col.is_(None), id_after)
    beyond = col < value if descending else col > value
    cond = or_(beyond, and_(col == value, id_after))
    return or_(cond, col.is_(None)) if nullable else cond


class TotalCache:
    """Totals of filtered listings until the next write (a small LRU, thread-safe).

    Counting the matches of a filter reads the whole table; paging through the results
    asks for the same total on every page, and a page that refreshes asks again. The
    data version in the key makes any write a miss.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._totals: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> int | None:
        with self._lock:
            total = self._totals.pop(key, None)
            if total is not None:
                self._totals[key] = total  # most recent last
            return total

    def put(self, key: tuple[Any, ...], total: int) -> None:
        with self._lock:
            self._totals[key] = total
            while len(self._totals) > self.size:
                del self._totals[next(iter(self._totals))]


def _total(conn: Connection, query: ListQuery, cache: TotalCache | None = None) -> int:
    simple = not any(
        (
            query.q,
            query.worker_id,
            query.tag,
            query.created_after,
            query.created_before,
            query.min_psnr_db is not None,
            query.min_bitrate_reduction_pct is not None,
            query.max_bd_rate_pct is not None,
            query.extra_filters,
        )
    )
    if simple:
        counts = status_counts(conn)
        wanted = query.status or STATUSES
        return sum(counts.get(s, 0) for s in wanted)
    key = None
    if cache is not None and not query.extra_filters:
        key = (
            data_version(conn),
            tuple(query.status),
            query.q,
            query.worker_id,
            query.tag,
            query.created_after,
            query.created_before,
            query.min_psnr_db,
            query.min_bitrate_reduction_pct,
            query.max_bd_rate_pct,
        )
        cached = cache.get(key)
        if cached is not None:
            return cached
    where = _filters(query, conn.dialect.name)
    stmt = select(func.count()).select_from(T).where(and_(true(), *where))
    total = int(conn.execute(stmt).scalar_one())
    if key is not None and cache is not None:
        cache.put(key, total)
    return total


def status_counts(conn: Connection) -> dict[str, int]:
    counts = read_counters(conn, "experiments.")
    return {s: max(0, counts.get(f"experiments.{s}", 0)) for s in STATUSES}
