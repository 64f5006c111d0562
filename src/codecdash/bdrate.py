"""Derives each experiment's BD-rate against the anchor in force, on write."""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from codecdash.codec_metrics import RateCurve, bd_rate, rate_curve
from codecdash.config import Settings
from codecdash.experiments.vocabulary import rate_unit
from codecdash.results import rd_pairs
from codecdash.store import Store

log = logging.getLogger("codecdash.bdrate")


class AnchorBdRate:
    """Callable(rd_points) -> (bd_rate_pct, anchor) | None, for Store.bd_rate."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._anchor: dict[str, Any] | None = None
        self._loaded = False
        self._lock = threading.Lock()
        # The anchor in force prepared for bd_rate once, not on every call: (the anchor dict it
        # was made from, the quality axis, its rate unit, its curve or None where it has none).
        self._prepared: tuple[dict[str, Any], str, str, RateCurve | None] | None = None

    def reload(self) -> None:
        with self._lock:
            self._loaded = False

    def anchor(self) -> dict[str, Any] | None:
        with self._lock:
            if not self._loaded:
                anchors = self.store.anchors()
                wanted = self.settings.default_anchor
                chosen = next((a for a in anchors if a["name"] == wanted), None)
                if chosen is None and anchors and not wanted:
                    chosen = anchors[0]
                self._anchor, self._loaded = chosen, True
            return self._anchor

    def __call__(self, rd_points: list[dict[str, Any]]) -> tuple[float, str] | None:
        anchor = self.anchor()
        if anchor is None:
            return None
        quality = self.settings.quality_metric
        unit, curve = self._prepare(anchor, quality)
        if curve is None:
            return None
        try:
            test_pairs = rd_pairs(rd_points, quality=quality)
            if unit != rate_unit(rd_points):
                return None
            return round(bd_rate(curve, test_pairs), 4), str(anchor["name"])
        except ValueError as exc:
            log.debug("no BD-rate: %s", exc)
            return None

    def _prepare(
        self, anchor: dict[str, Any], quality: Literal["psnr", "ms_ssim"]
    ) -> tuple[str, RateCurve | None]:
        """The anchor's rate unit and its curve prepared for bd_rate, made once per anchor."""
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


def install_bd_rate(store: Store, settings: Settings) -> AnchorBdRate:
    derive = AnchorBdRate(store, settings)
    store.bd_rate = derive
    return derive
