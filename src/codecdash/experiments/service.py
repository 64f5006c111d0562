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
from codecdash.experiments.vocabulary import QualityMetric, rate_unit
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
    """Each curve's BD-rate against the anchor in force (the configured `default_anchor`,
    else the first imported anchor), on the `quality_metric` axis.

    The anchor is read from the store once and kept until `reload()`; its curve is
    prepared for `bd_rate` once per anchor, not on every call."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._anchor: dict[str, Any] | None = None
        self._loaded = False
        self._lock = threading.Lock()
        # (the anchor it was made from, the quality axis, its rate unit, its curve or None)
        self._prepared: tuple[dict[str, Any], str, str, RateCurve | None] | None = None

    @property
    def axis(self) -> tuple[str | None, QualityMetric]:
        """What the figures depend on besides the anchors: the settings that choose."""
        return self.settings.default_anchor, self.settings.quality_metric

    def reload(self) -> None:
        with self._lock:
            self._loaded = False

    def anchor(self) -> dict[str, Any] | None:
        """The anchor in force, or None."""
        with self._lock:
            if not self._loaded:
                anchors = self.store.anchors()
                wanted = self.settings.default_anchor
                chosen = next((a for a in anchors if a["name"] == wanted), None)
                if chosen is None and anchors and not wanted:
                    chosen = anchors[0]
                self._anchor, self._loaded = chosen, True
            return self._anchor

    def derive(self, rd_points: Sequence[Mapping[str, Any]] | None) -> Derived:
        """The curve's (BD-rate in %, rounded to 4 places, anchor name), or (None, None)
        when there is no anchor in force or no BD-rate to compute."""
        if not rd_points:
            return NONE
        anchor = self.anchor()
        if anchor is None:
            return NONE
        quality = self.settings.quality_metric
        unit, curve = self._prepare(anchor, quality)
        if curve is None:
            return NONE
        try:
            test_pairs = rd_pairs(rd_points, quality=quality)
            if unit != rate_unit(rd_points):
                return NONE
            return round(bd_rate(curve, test_pairs), 4), str(anchor["name"])
        except ValueError as exc:
            log.debug("no BD-rate: %s", exc)
            return NONE

    def _prepare(
        self, anchor: dict[str, Any], quality: QualityMetric
    ) -> tuple[str, RateCurve | None]:
        prepared = self._prepared
        if prepared is not None and prepared[0] is anchor and prepared[1] == quality:
            return prepared[2], prepared[3]
        curve: RateCurve | None = None
        unit = ""
        try:
            unit = rate_unit(anchor["rd_points"])
            curve = rate_curve(rd_pairs(anchor["rd_points"], quality=quality), "anchor")
        except ValueError as exc:
            log.debug("the anchor in force gives no BD-rates: %s", exc)
        self._prepared = (anchor, quality, unit, curve)
        return unit, curve


_BD_RATES: weakref.WeakKeyDictionary[Store, BdRates] = weakref.WeakKeyDictionary()
_BD_RATES_GUARD = threading.Lock()


def bd_rates_for(store: Store, settings: Settings) -> BdRates:
    """The store's BD-rate deriver: one per store in a process, so that every writer sees
    the same anchor in force; made anew when the settings that choose it differ."""
    with _BD_RATES_GUARD:
        found = _BD_RATES.get(store)
        if found is None or found.axis != (settings.default_anchor, settings.quality_metric):
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
        if "rd_points" in changes:  # a new curve: a new BD-rate
            changes["bd_rate_pct"], changes["bd_rate_anchor"] = self.bd_rates.derive(
                changes["rd_points"]
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
        out["bd_rate_pct"], out["bd_rate_anchor"] = self.bd_rates.derive(out["rd_points"])
        return out
