"""The BD-rate table: methods down, test sets across, each cell a method's BD-rate (and
BD-PSNR, overlap, warning) against the anchor in force of that set, as codec papers print it.

A *method*'s curve on a set is the union of its experiments' average points there (one point
per λ run, or whole curves), reduced to its Pareto front (``codec_metrics.pareto_front``).
An experiment's method is its `method` field; else what the `method_from` setting names (a
param's value, or the rest of a tag after a prefix); else the experiment is its own method.
``per="experiment"`` makes every experiment its own row instead.

The anchor in force of a set is the settings' (``service.choose_anchor``) unless the query
names one: ``NAME`` for every set, or ``SET:NAME`` for one. A cell that cannot be computed
says why (`reason`): no anchor on the set, another rate unit, too few points, no overlap.
BD-rates are only ever computed between curves of one set.

:meth:`BdTable.answer` is the one entry point; how it stays fast is in its docstring.
"""

from __future__ import annotations

import gzip
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from codecdash.config import Settings
from codecdash.experiments import table_cells as cells
from codecdash.experiments.service import choose_anchor
from codecdash.experiments.table_formats import to_csv, to_latex
from codecdash.experiments.vocabulary import QualityMetric
from codecdash.store import Store
from codecdash.store.rd_curves import CurveRow, stamp

Per = Literal["method", "experiment"]
Format = Literal["json", "csv", "latex"]
UNSPECIFIED_KEY = ""
"""The unspecified set's key in `cells` (its `datasets` entry has `name` null)."""
MAX_CELLS = 200_000
"""Cached cells kept per store (a bound, far above a real table's)."""


class TableError(ValueError):
    """A query the table cannot answer: `status` 404 (no such anchor) or 400."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TableQuery:
    """What a table asks for; every field is part of the cached answer's key."""

    quality: QualityMetric = "psnr"
    anchors: tuple[str, ...] = ()
    """`anchor=` values: NAME (every set) or SET:NAME (one set; ":NAME" the unspecified)."""
    datasets: tuple[str, ...] = ()
    """Only these sets (columns); empty: all."""
    methods: tuple[str, ...] = ()
    """Only these methods (rows, by label); empty: all."""
    q: str | None = None
    """Text in the method's label (case-insensitive)."""
    sort: str = "method"
    """`method`, or a set's name (best BD-rate first); `-` first reverses."""
    per: Per = "method"
    sequences: bool = False
    """Add each cell's per-sequence breakdown."""


RowKey = tuple[str, str]
"""("m", method) for a method's row, ("e", id) for an experiment that is its own row."""
GroupKey = tuple[RowKey, str | None]
"""A row on one set: a cell."""
MARGIN_S = 2.0
"""A later reading re-reads the experiments written this long before the newest one it
saw (a write that began earlier but committed after that reading). One missed anyway (a
slow commit, another replica's lagging clock) changes the count or the checksum of the
counted curves, and everything is read again."""
FULL_EVERY_S = 300.0
"""And every this often the index reads everything again (a safety net)."""


class _Index:
    """The counted experiments, grouped into rows both ways (`per`), kept current from the
    experiments written since the previous reading. Each group (a cell's experiments) has a
    generation that changes when its experiments or their curves do."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.newest: float | None = None
        self.full_at = 0.0
        self.items: dict[str, CurveRow] = {}
        self.checksum = 0
        """The sum of the counted experiments' `stamp(updated_at)`."""
        self.curves: dict[str, cells.Curve] = {}
        self.rows: dict[Per, dict[RowKey, dict[str | None, set[str]]]] = {
            "method": {},
            "experiment": {},
        }
        self.labels: dict[RowKey, str] = {}
        self.generation: dict[tuple[Per, GroupKey], int] = {}
        self._counter = 0
        self.anchors: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def apply(self, found: Sequence[CurveRow], method_from: str | None) -> None:
        for item in found:
            old = self.items.get(item.id)
            if old is not None:
                self.checksum -= stamp(old.updated_at)
                if old[:8] == item[:8]:  # all but updated_at: it stays where it is
                    self.items[item.id] = item
                    self.checksum += stamp(item.updated_at)
                    continue
                self._leave(old, method_from)
            if item.counted:
                self.items[item.id] = item
                self.checksum += stamp(item.updated_at)
                if old is None or old.rd_points != item.rd_points:
                    self.curves[item.id] = cells.parse(item.rd_points or "[]")
                self._join(item, method_from)
            else:
                self.items.pop(item.id, None)
                self.curves.pop(item.id, None)
            if item.updated_at is not None and (
                self.newest is None or item.updated_at > self.newest
            ):
                self.newest = item.updated_at

    def _keys(self, item: CurveRow, method_from: str | None) -> dict[Per, tuple[RowKey, str]]:
        own: tuple[RowKey, str] = (("e", item.id), item.name or item.id)
        method = item.method
        if method is None and method_from is not None:
            method = method_of(item.params, item.tags, method_from)
        return {"method": (("m", method), method) if method is not None else own, "experiment": own}

    def _bump(self, per: Per, key: GroupKey) -> None:
        self._counter += 1
        self.generation[(per, key)] = self._counter

    def _join(self, item: CurveRow, method_from: str | None) -> None:
        for per, (key, label) in self._keys(item, method_from).items():
            self.rows[per].setdefault(key, {}).setdefault(item.dataset, set()).add(item.id)
            self.labels[key] = label
            self._bump(per, (key, item.dataset))

    def _leave(self, item: CurveRow, method_from: str | None) -> None:
        for per, (key, _label) in self._keys(item, method_from).items():
            sets = self.rows[per].get(key)
            if sets is None or item.dataset not in sets:
                continue
            sets[item.dataset].discard(item.id)
            if not sets[item.dataset]:
                del sets[item.dataset]
                self.generation.pop((per, (key, item.dataset)), None)
            else:
                self._bump(per, (key, item.dataset))
            if not sets:
                del self.rows[per][key]
                self.labels.pop(key, None)


class BdTable:
    """The BD-rate table of one store (one per store and settings; thread-safe).

    :meth:`answer` is the only entry point. How it stays fast, by layer:

    1. **Whole answers** are kept per (data version, query): a repeated request costs one
       read of the data version (a counter) and a dictionary lookup; any write (an
       experiment, an anchor) bumps the version, so a kept answer is never stale.
    2. **The index** (:class:`_Index`) of counted experiments, grouped into rows, is kept
       and brought up to date from the experiments written since the previous reading
       (`updated_at`, with a margin), checked against the number of counted curves (a
       withdrawn one it did not see: everything is read again), and read in full every
       few minutes anyway. A curve is parsed once per stored text.
    3. **Cells** are kept per (row, set, anchor, quality) with the generation of their
       group: after a write only the cells whose experiments changed are computed again
       (BD maths is the costly part); a new anchor recomputes its set's column.

    So after one experiment's write the table costs a read of the few experiments written
    lately, one or two cells, and the assembly of the answer.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self._answers: dict[tuple[int, TableQuery], dict[str, Any]] = {}
        self._encoded: dict[tuple[int, TableQuery, str], bytes] = {}
        self._gzipped: dict[tuple[int, TableQuery, str], bytes] = {}
        self._index = _Index()
        self._cells: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}

    def answer(self, query: TableQuery) -> dict[str, Any]:
        """The table as the API answers it (JSON-ready): ``{"datasets": [{"name", "key",
        "anchor", "rate_unit"}], "quality_metric", "per", "rows": [{"method",
        "experiments", "cells": {KEY: cell}}]}``; TableError for an anchor= that names
        no anchor or a sort that names no column."""
        version = self.store.version()
        with self._lock:
            kept = self._answers.get((version, query))
            if kept is not None:
                return kept
            if self._index.version != version:
                self._refresh()
            table = self._build(query)
            if len(self._answers) > 64:
                self._answers.clear()
            self._answers[(self._index.version or 0, query)] = table
            return table

    def encoded(self, query: TableQuery, fmt: Format = "json", gzipped: bool = False) -> bytes:
        """The answer as the API sends it: JSON, CSV or LaTeX bytes (`gzipped`: compressed
        with gzip), kept like the answer: a repeated request serialises and compresses
        nothing."""
        version = self.store.version()
        key = (version, query, fmt)
        with self._lock:
            kept = self._encoded.get(key)
            packed = self._gzipped.get(key) if gzipped else None
        if packed is not None:
            return packed
        if kept is not None:
            return self._gzip(key, kept) if gzipped else kept
        table = self.answer(query)
        if fmt == "csv":
            body = to_csv(table).encode()
        elif fmt == "latex":
            body = to_latex(table).encode()
        else:
            body = orjson.dumps(table)
        with self._lock:
            if len(self._encoded) > 64:
                self._encoded.clear()
                self._gzipped.clear()
            self._encoded[key] = body
        return self._gzip(key, body) if gzipped else body

    def _gzip(self, key: tuple[int, TableQuery, str], body: bytes) -> bytes:
        packed = gzip.compress(body, 5, mtime=0)
        with self._lock:
            self._gzipped[key] = packed
        return packed

    def _refresh(self) -> None:
        index = self._index
        labels = self.settings.method_from is not None
        now = time.monotonic()
        since = None
        if index.newest is not None and now - index.full_at < FULL_EVERY_S:
            since = index.newest - MARGIN_S
        reading = self.store.rd_curves(labels=labels, since=since)
        if since is None:
            index.reset()
            index.full_at = now
        index.apply(reading.rows, self.settings.method_from)
        if (len(index.items), index.checksum) != (reading.counted, reading.checksum):
            # a write it did not see (committed late, a lagging clock): read it all
            index.reset()
            index.full_at = now
            reading = self.store.rd_curves(labels=labels)
            index.apply(reading.rows, self.settings.method_from)
        index.version = reading.version
        index.anchors = reading.anchors

    # -- assembly -----------------------------------------------------------------------
    def _build(self, query: TableQuery) -> dict[str, Any]:
        index = self._index
        rows = index.rows[query.per]
        anchors = _anchors_in_force(index.anchors, rows, query, self.settings)
        sets = sorted(
            {d for row in rows.values() for d in row} | set(anchors),
            key=lambda d: (d is None, d or ""),
        )
        if query.datasets:
            wanted = set(query.datasets)
            sets = [d for d in sets if (d or UNSPECIFIED_KEY) in wanted]
        anchor_keys = {d: (a["name"], cells.points_key(a)) for d, a in anchors.items()}
        folded = query.q.casefold() if query.q else None
        out_rows = []
        for key, by_set in rows.items():
            label = index.labels[key]
            if query.methods and label not in query.methods:
                continue
            if folded is not None and folded not in label.casefold():
                continue
            found: dict[str, dict[str, Any]] = {}
            count = 0
            for dataset in sets:
                ids = by_set.get(dataset)
                if not ids:
                    continue
                count += len(ids)
                found[dataset or UNSPECIFIED_KEY] = self._cell(
                    query, key, dataset, ids, anchors.get(dataset), anchor_keys.get(dataset)
                )
            if not found:
                continue
            entry: dict[str, Any] = {"method": label, "experiments": count, "cells": found}
            if key[0] == "e":
                entry["experiment_id"] = key[1]
            out_rows.append(entry)
        _mark_best(out_rows, sets)
        _sort(out_rows, query.sort, sets)
        return {
            "quality_metric": query.quality,
            "per": query.per,
            "datasets": [
                {
                    "name": d,
                    "key": d or UNSPECIFIED_KEY,
                    "anchor": anchors[d]["name"] if d in anchors else None,
                    "rate_unit": cells.unit_of(anchors[d]) if d in anchors else None,
                }
                for d in sets
            ],
            "rows": out_rows,
        }

    def _cell(
        self,
        query: TableQuery,
        key: RowKey,
        dataset: str | None,
        ids: set[str],
        anchor: dict[str, Any] | None,
        anchor_key: Any,
    ) -> dict[str, Any]:
        """The cell of a row on a set: kept while its group's generation and its anchor
        stay; else computed from its experiments' merged curve (the dict is shared: the
        caller copies it to change it)."""
        generation = self._index.generation.get((query.per, (key, dataset)))
        cache_key = (query.per, key, dataset, query.quality, query.sequences)
        inputs = (generation, anchor_key)
        kept = self._cells.get(cache_key)
        if kept is not None and kept[0] == inputs:
            return kept[1]
        quality = query.quality
        curves = [self._index.curves[i] for i in sorted(ids)]
        pairs = sorted(p for c in curves for p in c.average.get(quality, ()))
        units = frozenset().union(*(c.units for c in curves))
        cell = cells.compute(dataset, anchor, pairs, units, quality, len(ids))
        if query.sequences:
            merged = cells.merged_sequences(curves, quality)
            cell["sequences"] = {
                name: cells.compute_sequence(anchor, name, merged[name], units, quality)
                for name in sorted(merged)
            }
        if len(self._cells) > MAX_CELLS:
            self._cells.clear()
        self._cells[cache_key] = (inputs, cell)
        return cell


def method_of(params: str | None, tags: str | None, method_from: str) -> str | None:
    """The method an experiment without `method` belongs to by the `method_from` setting:
    ``param:KEY`` (the param's value, as text) or ``tag:PREFIX`` (the rest of the first tag
    that starts with PREFIX); None when it names nothing there."""
    kind, _, name = method_from.partition(":")
    if kind == "param" and params:
        value = orjson.loads(params).get(name) if params.startswith("{") else None
        if value is None or isinstance(value, dict | list):
            return None
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return text[:200] or None
    if kind == "tag" and tags:
        for tag in orjson.loads(tags):
            if isinstance(tag, str) and tag.startswith(name) and len(tag) > len(name):
                return tag[len(name) :]
    return None


def _anchors_in_force(
    stored: list[dict[str, Any]],
    rows: Mapping[RowKey, Mapping[str | None, Any]],
    query: TableQuery,
    settings: Settings,
) -> dict[str | None, dict[str, Any]]:
    """Per set, the anchor the cells compare with: the query's, else the settings'."""
    sets = {a["dataset"] for a in stored} | {d for row in rows.values() for d in row}
    chosen: dict[str | None, dict[str, Any] | None] = {
        d: choose_anchor(stored, d, settings) for d in sets
    }
    for value in query.anchors:
        dataset, name = _split_anchor(value, {d for d in sets if d is not None})
        if dataset is _ALL:
            matching = {a["dataset"]: a for a in stored if a["name"] == name}
            if not matching:
                raise TableError(404, f"anchor={value}: no anchor {name!r} in any test set")
            for d in sets:
                chosen[d] = matching.get(d)
        else:
            target = None if dataset == "" else dataset
            found = next((a for a in stored if a["name"] == name and a["dataset"] == target), None)
            if found is None:
                raise TableError(
                    404, f"anchor={value}: no anchor {name!r} in {cells.set_label(target)}"
                )
            chosen[target] = found
    return {d: a for d, a in chosen.items() if a is not None}


_ALL = object()


def _split_anchor(value: str, sets: set[str]) -> tuple[Any, str]:
    """`SET:NAME` (the longest known set that prefixes the value; ":NAME" is the unspecified
    set) or a plain NAME for every set."""
    if value.startswith(":"):
        return "", value[1:]
    best = max((d for d in sets if value.startswith(d + ":")), key=len, default=None)
    if best is not None:
        return best, value[len(best) + 1 :]
    return _ALL, value


def _mark_best(rows: list[dict[str, Any]], sets: Sequence[str | None]) -> None:
    """`best: true` on the lowest BD-rate of each column."""
    for dataset in sets:
        key = dataset or UNSPECIFIED_KEY
        best: dict[str, Any] | None = None
        for row in rows:
            cell = row["cells"].get(key)
            if (
                cell is not None
                and "bd_rate_pct" in cell
                and (best is None or cell["bd_rate_pct"] < best["cells"][key]["bd_rate_pct"])
            ):
                best = row
        if best is not None:  # a copy: the cells are shared with the cache
            best["cells"][key] = {**best["cells"][key], "best": True}


def sort_keys(sets: Sequence[str | None]) -> list[str]:
    return ["method", *(d for d in sets if d is not None)]


def _sort(rows: list[dict[str, Any]], sort: str, sets: Sequence[str | None]) -> None:
    descending = sort.startswith("-")
    name = sort.lstrip("-+")
    if name == "method":
        rows.sort(key=lambda r: (r["method"].casefold(), r.get("experiment_id") or ""))
        if descending:
            rows.reverse()
        return
    if name not in sets:
        known = ", ".join(d for d in sets if d is not None) or "none yet"
        raise TableError(
            400, f"cannot sort by {name!r}: sort=method or a test set's name ({known})"
        )

    def value(row: dict[str, Any]) -> tuple[int, float, str]:
        cell = row["cells"].get(name) or {}
        pct = cell.get("bd_rate_pct")
        if pct is None:
            return (1, 0.0, row["method"].casefold())
        return (0, -pct if descending else pct, row["method"].casefold())

    rows.sort(key=value)


_TABLES: weakref.WeakKeyDictionary[Store, BdTable] = weakref.WeakKeyDictionary()
_TABLES_GUARD = threading.Lock()


def table_for(store: Store, settings: Settings) -> BdTable:
    """The store's table (its caches live as long as the store, and its settings, do)."""
    with _TABLES_GUARD:
        found = _TABLES.get(store)
        if found is None or found.settings != settings:
            found = _TABLES[store] = BdTable(store, settings)
        return found
