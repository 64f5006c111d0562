"""Derives each experiment's BD-rate against the anchor in force, on write."""

from __future__ import annotations

import logging
import threading
from typing import Any

from codecdash.config import Settings
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
        from codecdash.codec_metrics import bd_rate
        from codecdash.results import rd_pairs

        quality = self.settings.quality_metric
        try:
            anchor_pairs = rd_pairs(anchor["rd_points"], quality=quality)
            test_pairs = rd_pairs(rd_points, quality=quality)
            if _unit(anchor["rd_points"]) != _unit(rd_points):
                return None
            return round(bd_rate(anchor_pairs, test_pairs), 4), str(anchor["name"])
        except ValueError as exc:
            log.debug("no BD-rate: %s", exc)
            return None


def _unit(points: list[dict[str, Any]]) -> str:
    return "kbps" if points and points[0].get("bitrate_kbps") is not None else "bpp"


def install_bd_rate(store: Store, settings: Settings) -> AnchorBdRate:
    derive = AnchorBdRate(store, settings)
    store.bd_rate = derive
    return derive
