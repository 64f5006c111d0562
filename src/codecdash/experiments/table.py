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

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from codecdash.codec_metrics import bd_report, ms_ssim_db, pareto_front
from codecdash.config import Settings
from codecdash.experiments.service import choose_anchor
from codecdash.experiments.vocabulary import QualityMetric, point_rate
from codecdash.store import Store
from codecdash.store.rd_curves import CurveReading, CurveRow

Per = Literal["method", "experiment"]
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


@dataclass
class _Curve:
    """One experiment's points, parsed once per stored text: per quality axis, (rate,
    quality dB) pairs of the set's average and of each sequence, and the rate units."""

    average: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    sequences: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    units: frozenset[str] = frozenset()


def _parse(text: str) -> _Curve:
    curve = _Curve()
    units: set[str] = set()
    try:
        points = orjson.loads(text)
    except orjson.JSONDecodeError:
        return curve
    for index, point in enumerate(points if isinstance(points, list) else []):
        try:
            rate, unit = point_rate(point, index)
        except (ValueError, AttributeError):
            continue
        units.add(unit)
        sequence = point.get("sequence")
        for axis, key in (("psnr", "psnr_db"), ("ms_ssim", "ms_ssim")):
            value = point.get(key)
            if value is None:
                continue
            if axis == "ms_ssim":
                try:
                    value = ms_ssim_db(value)
                except ValueError:
                    continue
            target = curve.average if sequence is None else curve.sequences.setdefault(sequence, {})
            target.setdefault(axis, []).append((rate, value))
    curve.units = frozenset(units)
    return curve


@dataclass
class _Group:
    """A row's experiments on one set."""

    ids: list[str] = field(default_factory=list)
    curves: list[_Curve] = field(default_factory=list)


@dataclass
class _Row:
    label: str
    own: str | None
    """The experiment's id when the row is one experiment (its own method)."""
    sets: dict[str | None, _Group] = field(default_factory=dict)


class BdTable:
    """The BD-rate table of one store (one per store and settings; thread-safe).

    :meth:`answer` is the only entry point. How it stays fast, by layer:

    1. **Whole answers** are kept per (data version, query): a repeated request costs one
       read of the data version (a counter) and a dictionary lookup; any write (an
       experiment, an anchor) bumps the version, so a kept answer is never stale.
    2. **Parsed curves** are kept per experiment, keyed by the stored `rd_points` text: after
       a write only the rewritten experiments are parsed again.
    3. **Cells** are kept per (set, row, anchor, quality) with the exact input they were
       computed from (the anchor's points and the row's merged points): after a write only
       the cells whose inputs changed are computed again (BD maths is the costly part).

    So after one experiment's write the table costs one scan of the curves (a plain read of
    id, set, method and points), the grouping, and the one or two cells that changed.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self._answers: dict[tuple[int, TableQuery], dict[str, Any]] = {}
        self._parsed: dict[str, tuple[str, _Curve]] = {}
        self._cells: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}

    def answer(self, query: TableQuery) -> dict[str, Any]:
        """The table as the API answers it (JSON-ready): ``{"datasets": [{"name", "key",
        "anchor", "rate_unit"}], "quality_metric", "per", "rows": [{"method",
        "experiments", "cells": {KEY: cell}}]}``; TableError for an anchor= that names
        no anchor."""
        version = self.store.version()
        with self._lock:
            kept = self._answers.get((version, query))
        if kept is not None:
            return kept
        reading = self.store.rd_curves(labels=self.settings.method_from is not None)
        table = self._build(reading, query)
        with self._lock:
            if len(self._answers) > 64:
                self._answers.clear()
            self._answers[(reading.version, query)] = table
        return table

    # -- assembly -----------------------------------------------------------------------
    def _build(self, reading: CurveReading, query: TableQuery) -> dict[str, Any]:
        rows = self._group(reading.rows, query.per)
        anchors = _anchors_in_force(reading.anchors, rows, query, self.settings)
        wanted_sets = set(query.datasets)
        sets = sorted(
            {d for row in rows.values() for d in row.sets} | set(anchors),
            key=lambda d: (d is None, d or ""),
        )
        if wanted_sets:
            sets = [d for d in sets if (d or UNSPECIFIED_KEY) in wanted_sets]
        shown = [
            row
            for row in rows.values()
            if (not query.methods or row.label in query.methods)
            and (not query.q or query.q.casefold() in row.label.casefold())
            and any(d in row.sets for d in sets)
        ]
        out_rows = []
        for row in shown:
            cells = {}
            count = 0
            for dataset in sets:
                group = row.sets.get(dataset)
                if group is None:
                    continue
                count += len(group.ids)
                cells[dataset or UNSPECIFIED_KEY] = self._cell(
                    dataset, row, group, anchors.get(dataset), query
                )
            entry: dict[str, Any] = {"method": row.label, "experiments": count, "cells": cells}
            if row.own is not None:
                entry["experiment_id"] = row.own
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
                    "rate_unit": _unit_of(anchors[d]) if d in anchors else None,
                }
                for d in sets
            ],
            "rows": out_rows,
        }

    def _group(self, found: Sequence[CurveRow], per: Per) -> dict[tuple[str, str], _Row]:
        rows: dict[tuple[str, str], _Row] = {}
        method_from = self.settings.method_from
        parsed = self._parsed
        seen: set[str] = set()
        for item in found:
            seen.add(item.id)
            kept = parsed.get(item.id)
            if kept is None or kept[0] != item.rd_points:
                kept = parsed[item.id] = (item.rd_points, _parse(item.rd_points))
            curve = kept[1]
            method = item.method if per == "method" else None
            if method is None and per == "method" and method_from is not None:
                method = method_of(item.params, item.tags, method_from)
            if method is not None:
                key = ("m", method)
                row = rows.get(key)
                if row is None:
                    row = rows[key] = _Row(method, None)
            else:
                key = ("e", item.id)
                row = rows[key] = _Row(item.name or item.id, item.id)
            group = row.sets.get(item.dataset)
            if group is None:
                group = row.sets[item.dataset] = _Group()
            group.ids.append(item.id)
            group.curves.append(curve)
        if len(parsed) > len(seen) + 1000:  # experiments gone or withdrawn: forget them
            for gone in set(parsed) - seen:
                del parsed[gone]
        return rows

    def _cell(
        self,
        dataset: str | None,
        row: _Row,
        group: _Group,
        anchor: dict[str, Any] | None,
        query: TableQuery,
    ) -> dict[str, Any]:
        quality = query.quality
        pairs = sorted(p for c in group.curves for p in c.average.get(quality, ()))
        units = frozenset().union(*(c.units for c in group.curves))
        anchor_key = None if anchor is None else (anchor["name"], _points_key(anchor))
        sequences: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()
        if query.sequences:
            merged = _merged_sequences(group.curves, quality)
            sequences = tuple((name, tuple(sorted(merged[name]))) for name in sorted(merged))
        inputs = (anchor_key, tuple(pairs), units, sequences, len(group.ids))
        row_key = ("e", row.own) if row.own is not None else ("m", row.label)
        key = (dataset, row_key, quality, query.sequences)
        with self._lock:
            kept = self._cells.get(key)
        if kept is not None and kept[0] == inputs:
            return dict(kept[1])
        cell = _compute(dataset, anchor, pairs, units, quality, len(group.ids))
        if query.sequences:
            cell["sequences"] = {
                name: _compute_sequence(anchor, name, list(pts), units, quality)
                for name, pts in sequences
            }
        with self._lock:
            if len(self._cells) > MAX_CELLS:
                self._cells.clear()
            self._cells[key] = (inputs, cell)
        return dict(cell)


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


def _merged_sequences(
    curves: Iterable[_Curve], quality: str
) -> dict[str, list[tuple[float, float]]]:
    merged: dict[str, list[tuple[float, float]]] = {}
    for curve in curves:
        for name, axes in curve.sequences.items():
            merged.setdefault(name, []).extend(axes.get(quality, ()))
    return merged


def _points_key(anchor: Mapping[str, Any]) -> str:
    return orjson.dumps(anchor["rd_points"]).decode()


def _unit_of(anchor: Mapping[str, Any]) -> str | None:
    units = _parse(_points_key(anchor)).units
    return next(iter(units)) if len(units) == 1 else None


def _set_label(dataset: str | None) -> str:
    return "the unspecified test set" if dataset is None else f"test set {dataset!r}"


def _compute(
    dataset: str | None,
    anchor: dict[str, Any] | None,
    pairs: list[tuple[float, float]],
    units: frozenset[str],
    quality: QualityMetric,
    experiments: int,
) -> dict[str, Any]:
    """One cell: the BD report of the row's merged curve against the set's anchor, or the
    reason there is none."""
    counts = {"experiments": experiments}
    if anchor is None:
        return {
            "reason": f"no anchor in force on {_set_label(dataset)}: import one for the set "
            "or name one (default_anchors, or anchor=SET:NAME)",
            **counts,
        }
    reason = _reason(anchor, pairs, units, quality, "the method's curve")
    if isinstance(reason, str):
        return {"reason": reason, **counts}
    anchor_pairs, front = reason
    try:
        report = bd_report(anchor_pairs, front)
    except ValueError as exc:
        return {"reason": f"no BD-rate against {anchor['name']!r}: {exc}", **counts}
    return {
        "bd_rate_pct": round(report.bd_rate_pct, 4),
        "bd_psnr_db": None if report.bd_psnr_db is None else round(report.bd_psnr_db, 4),
        "overlap": round(report.overlap, 4),
        "warning": report.warning,
        "points": len(front),
        **counts,
    }


def _reason(
    anchor: dict[str, Any],
    pairs: list[tuple[float, float]],
    units: frozenset[str],
    quality: QualityMetric,
    whose: str,
    sequence: str | None = None,
) -> str | tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Why the curves cannot be compared, or (anchor pairs, the row's Pareto front)."""
    parsed = _parse(_points_key(anchor))
    anchor_units = parsed.units
    name = anchor["name"]
    if len(units) > 1:
        return f"{whose} mixes rates in kbps and bpp"
    if anchor_units and units and units != anchor_units:
        return (
            f"{whose} is in {next(iter(units))} but anchor {name!r} is in "
            f"{next(iter(anchor_units))}: BD-rate compares curves in one rate unit"
        )
    source = parsed.average if sequence is None else parsed.sequences.get(sequence, {})
    anchor_pairs = source.get(quality, [])
    label = "MS-SSIM" if quality == "ms_ssim" else "PSNR"
    if sequence is not None and not anchor_pairs:
        return f"anchor {name!r} has no {label} points for sequence {sequence!r}"
    if not pairs:
        return f"{whose} has no points with {label}"
    return anchor_pairs, pareto_front(pairs)


def _compute_sequence(
    anchor: dict[str, Any] | None,
    sequence: str,
    pairs: list[tuple[float, float]],
    units: frozenset[str],
    quality: QualityMetric,
) -> dict[str, Any]:
    if anchor is None:
        return {"reason": "no anchor in force on this test set"}
    found = _reason(anchor, pairs, units, quality, f"sequence {sequence!r}", sequence)
    if isinstance(found, str):
        return {"reason": found}
    try:
        report = bd_report(*found)
    except ValueError as exc:
        return {"reason": f"no BD-rate against {anchor['name']!r}: {exc}"}
    return {
        "bd_rate_pct": round(report.bd_rate_pct, 4),
        "bd_psnr_db": None if report.bd_psnr_db is None else round(report.bd_psnr_db, 4),
        "overlap": round(report.overlap, 4),
        "warning": report.warning,
    }


def _anchors_in_force(
    stored: list[dict[str, Any]],
    rows: Mapping[Any, _Row],
    query: TableQuery,
    settings: Settings,
) -> dict[str | None, dict[str, Any]]:
    """Per set, the anchor the cells compare with: the query's, else the settings'."""
    sets = {a["dataset"] for a in stored} | {d for row in rows.values() for d in row.sets}
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
                raise TableError(404, f"anchor={value}: no anchor {name!r} in {_set_label(target)}")
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
                and (best is None or cell["bd_rate_pct"] < best["bd_rate_pct"])
            ):
                best = cell
        if best is not None:
            best["best"] = True


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
