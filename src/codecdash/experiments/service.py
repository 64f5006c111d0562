"""The experiments' writes: validated request models in, plain rows to the store.

The API, the importer (``codecdash import-results --db``) and anything else that writes
experiments calls :class:`ExperimentService`. It turns the request models into plain
values, derives each experiment's BD-rate against the anchor in force with the pure maths
(``codec_metrics``) and hands the store plain data; the store knows nothing of request
models, anchors or BD-rates. Re-deriving the stored figures when the anchor in force
changes is ``experiments/rederive.py``.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from codecdash.codec_metrics import RateCurve, bd_rate, rate_curve
from codecdash.config import Settings
from codecdash.experiments.readmodel import experiment
from codecdash.experiments.vocabulary import QualityMetric, average_points, rate_unit
from codecdash.models import MAX_TAGS, MAX_TAGS_BYTES, ExperimentIn, ExperimentPatch
from codecdash.results import rd_pairs
from codecdash.store import Store

log = logging.getLogger("codecdash.bdrate")

Derived = tuple[float | None, str | None]
"""(bd_rate_pct, bd_rate_anchor) of one experiment; (None, None) when there is none."""
NONE: Derived = (None, None)
AUDITED = frozenset({"name", "notes", "tags"})
"""Fields whose edits the audit log records (with tags added or removed)."""
IGNORED = ("duration_s", "updated_at", "bd_rate_pct", "bd_rate_anchor", "training")
"""Fields a client may send back as it got them: the server derives or sets them."""


class TagsRefused(ValueError):
    """Tags added past the limits (at most MAX_TAGS tags, MAX_TAGS_BYTES of JSON): 422."""


def edited_tags(
    current: Mapping[str, Any],
    *,
    changes: Mapping[str, Any],
    add: Sequence[str],
    remove: Sequence[str],
) -> dict[str, Any]:
    """The tags after `remove` then `add` (kept in order, each once) applied to the stored
    ones, or to those the same PATCH sets."""
    base = changes["tags"] if "tags" in changes else current.get("tags")
    dropped = set(remove)
    tags = [t for t in dict.fromkeys(base or []) if t not in dropped]
    tags += [t for t in dict.fromkeys(add) if t not in tags]
    if len(tags) > MAX_TAGS:
        raise TagsRefused(f"an experiment has at most {MAX_TAGS} tags ({len(tags)} after this)")
    if len(orjson.dumps(tags)) > MAX_TAGS_BYTES:
        raise TagsRefused(f"tags are limited to {MAX_TAGS_BYTES // 1024} KiB of JSON in all")
    return {"tags": tags}


class BdRates:
    """Each curve's BD-rate against the anchor in force of its test set, on the
    `quality_metric` axis (see :func:`choose_anchor`).

    The anchors are read from the store once and kept until `reload()`; each set's curve is
    prepared for `bd_rate` once per anchor, not on every call."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._anchors: list[dict[str, Any]] | None = None
        self._chosen: dict[str | None, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        # per set: (the anchor it was made from, the quality axis, its rate unit, its curve)
        self._prepared: dict[str | None, tuple[dict[str, Any], str, str, RateCurve | None]] = {}

    @property
    def axis(self) -> tuple[Any, ...]:
        """What the figures depend on besides the anchors: the settings that choose."""
        return (
            self.settings.default_anchor,
            tuple(sorted(self.settings.default_anchors.items())),
            self.settings.quality_metric,
        )

    def reload(self) -> None:
        with self._lock:
            self._anchors = None
            self._chosen = {}

    def all_anchors(self) -> list[dict[str, Any]]:
        """Every stored anchor (oldest first), as last read."""
        with self._lock:
            if self._anchors is None:
                self._anchors = self.store.anchors()
            return self._anchors

    def anchor(self, dataset: str | None = None) -> dict[str, Any] | None:
        """The anchor in force on this test set (None: the unspecified set), or None."""
        anchors = self.all_anchors()
        with self._lock:
            if dataset not in self._chosen:
                self._chosen[dataset] = choose_anchor(anchors, dataset, self.settings)
            return self._chosen[dataset]

    def in_force(self) -> dict[str | None, dict[str, Any]]:
        """The anchor in force of every set that has one, by set."""
        sets = dict.fromkeys(a["dataset"] for a in self.all_anchors())
        for name in self.settings.default_anchors:
            sets.setdefault(name, None)
        found = {d: self.anchor(d) for d in sets}
        return {d: a for d, a in found.items() if a is not None}

    def derive(
        self, rd_points: Sequence[Mapping[str, Any]] | None, dataset: str | None = None
    ) -> Derived:
        """The curve's (BD-rate in %, rounded to 4 places, anchor name) against the anchor
        in force of its set, or (None, None) when there is none or no BD-rate to compute
        (:func:`codecdash.experiments.anchors.bd_reason` says why)."""
        if not rd_points:
            return NONE
        anchor = self.anchor(dataset)
        if anchor is None:
            return NONE
        quality = self.settings.quality_metric
        unit, curve = self._prepare(dataset, anchor, quality)
        if curve is None:
            return NONE
        try:
            points = average_points(rd_points)
            test_pairs = rd_pairs(points, quality=quality)
            if unit != rate_unit(points):
                return NONE
            return round(bd_rate(curve, test_pairs), 4), str(anchor["name"])
        except ValueError as exc:
            log.debug("no BD-rate: %s", exc)
            return NONE

    def _prepare(
        self, dataset: str | None, anchor: dict[str, Any], quality: QualityMetric
    ) -> tuple[str, RateCurve | None]:
        prepared = self._prepared.get(dataset)
        if prepared is not None and prepared[0] is anchor and prepared[1] == quality:
            return prepared[2], prepared[3]
        curve: RateCurve | None = None
        unit = ""
        try:
            points = average_points(anchor["rd_points"])
            unit = rate_unit(points)
            curve = rate_curve(rd_pairs(points, quality=quality), "anchor")
        except ValueError as exc:
            log.debug("the anchor in force gives no BD-rates: %s", exc)
        self._prepared[dataset] = (anchor, quality, unit, curve)
        return unit, curve


def choose_anchor(
    anchors: Sequence[dict[str, Any]], dataset: str | None, settings: Settings
) -> dict[str, Any] | None:
    """The anchor in force on a test set, from the stored anchors (oldest first).

    1. `default_anchors[dataset]` names it (the key ``""`` is the unspecified set): that
       anchor of the set, or none while it is not imported;
    2. else `default_anchor`: on the unspecified set, that anchor or none (as before sets
       existed); on a named set, that anchor when the set has one of the name;
    3. else the set's first imported anchor.

    Never an anchor of another set: a BD-rate compares curves of one set.
    """
    of_set = [a for a in anchors if a.get("dataset") == dataset]
    per_set = settings.default_anchors.get("" if dataset is None else dataset)
    if per_set:
        return next((a for a in of_set if a["name"] == per_set), None)
    wanted = settings.default_anchor
    if wanted:
        found = next((a for a in of_set if a["name"] == wanted), None)
        if found is not None or dataset is None:
            return found
    return of_set[0] if of_set else None


_BD_RATES: weakref.WeakKeyDictionary[Store, BdRates] = weakref.WeakKeyDictionary()
_BD_RATES_GUARD = threading.Lock()


def bd_rates_for(store: Store, settings: Settings) -> BdRates:
    """The store's BD-rate deriver: one per store in a process, so that every writer sees
    the same anchor in force; made anew when the settings that choose it differ."""
    with _BD_RATES_GUARD:
        found = _BD_RATES.get(store)
        if found is None or found.axis != BdRates(store, settings).axis:
            found = _BD_RATES[store] = BdRates(store, settings)
        return found


class ExperimentService:
    """Writes of experiments (see the module's docstring). Answers Experiments as the API
    shows them; `batch` answers how many it wrote."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    @property
    def bd_rates(self) -> BdRates:
        return bd_rates_for(self.store, self.settings)

    def create(self, item: ExperimentIn) -> dict[str, Any]:
        """A new experiment (Conflict when its id exists)."""
        return experiment(self.store.create_experiment(self.values(item)))

    def put(self, experiment_id: str, item: ExperimentIn) -> tuple[dict[str, Any], bool]:
        """Create or replace; and whether it was created."""
        stored, created = self.store.put_experiment(experiment_id, self.values(item))
        return experiment(stored), created

    def patch(
        self, experiment_id: str, patch: ExperimentPatch, actor: str | None = None
    ) -> dict[str, Any] | None:
        """Change the fields present in `patch` (None: no such experiment); `add_tags` and
        `remove_tags` change the stored tags (TagsRefused past the limits). A change of the
        name, notes or tags is recorded in the audit log, by `actor`."""
        changes = patch.model_dump(include=patch.model_fields_set, mode="python")
        for name in IGNORED:
            changes.pop(name, None)
        add, remove = changes.pop("add_tags", None) or [], changes.pop("remove_tags", None) or []
        if "rd_points" in changes or "dataset" in changes:  # a new curve or set: a new BD-rate
            if "rd_points" in changes and "dataset" in changes:
                points, dataset = changes["rd_points"], changes["dataset"]
            else:
                current = self.store.get_experiment(experiment_id)
                if current is None:
                    return None
                points = changes.get("rd_points", current.get("rd_points"))
                dataset = changes.get("dataset", current.get("dataset"))
            changes["bd_rate_pct"], changes["bd_rate_anchor"] = self.bd_rates.derive(
                points, dataset
            )
        edit = None
        if add or remove:
            edit = functools.partial(edited_tags, changes=changes, add=add, remove=remove)
        curated = sorted(set(changes) & AUDITED)
        details: dict[str, Any] = {"fields": curated} if curated else {}
        if add:
            details["add_tags"] = add
        if remove:
            details["remove_tags"] = remove
        stored = self.store.patch_experiment(
            experiment_id, changes, edit=edit, audited=(actor, details) if details else None
        )
        return None if stored is None else experiment(stored)

    def batch(self, items: Sequence[ExperimentIn]) -> int:
        """Upsert all items in one transaction: all or nothing."""
        return self.store.batch([self.values(item) for item in items])

    def values(self, item: ExperimentIn) -> Mapping[str, Any]:
        """The item's fields as plain values for the store, its BD-rate derived.

        The ingest hot path: the model's own ``__dict__`` (read-only, not copied) when there
        is nothing to derive or to ignore."""
        values: Mapping[str, Any] = item.__dict__
        points = item.rd_points
        if points is None and item.bd_rate_pct is None and item.bd_rate_anchor is None:
            return values
        out = dict(values)
        if points is not None:
            out["rd_points"] = [p.model_dump(exclude_none=True) for p in points]
        out["bd_rate_pct"], out["bd_rate_anchor"] = self.bd_rates.derive(
            out["rd_points"], item.dataset
        )
        return out
