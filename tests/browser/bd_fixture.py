"""A BD-rate table answer of the exact shape of `GET /api/v1/bd-rates`, served to the page by
Playwright's routing, for the page's behaviour (sorting, filtering, overrides, breakdown,
downloads) independent of the figures; `tests/browser/test_bdtable.py` checks real figures
against the real endpoint too."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Page, Route

UVG = "UVG-1080p"
MCL = "MCL-JCV"
X265 = "x265-medium-tune-zerolatency"
VTM = "VTM-v15.0-lowdelay"
X265_MCL = "x265-mcl"
WARNING = "the curves share only 62 % of their quality range"


def cell(
    rate: float, psnr: float, overlap: float = 1.0, warning: str | None = None
) -> dict[str, Any]:
    return {"bd_rate_pct": rate, "bd_psnr_db": psnr, "overlap": overlap, "warning": warning}


def table(quality: str, anchors: dict[str, str]) -> dict[str, Any]:
    """Three methods on two sets; one reason, one warning; no `best` marks (the page finds
    the lowest BD-rate of each column itself then: VTM on UVG, ssf on MCL)."""
    uvg_anchor = anchors.get(UVG, X265)
    shift = 0.0 if uvg_anchor == X265 else 25.0  # against VTM every figure moves up
    ssim = 1.0 if quality == "psnr" else 0.5
    return {
        "quality_metric": quality,
        "per": "method",
        "datasets": [
            {"name": UVG, "key": UVG, "anchor": uvg_anchor, "rate_unit": "kbps"},
            {"name": MCL, "key": MCL, "anchor": X265_MCL, "rate_unit": "kbps"},
        ],
        "rows": [
            {
                "method": "ssf2020-mse",
                "experiments": 4,
                "cells": {
                    UVG: cell(-12.4 * ssim + shift, 0.45),
                    MCL: cell(-31.0, 1.31),
                },
            },
            {
                "method": "vtm-15",
                "experiments": 1,
                "cells": {
                    UVG: cell(-30.1 * ssim + shift, 1.2),
                    MCL: cell(
                        -25.0, 0.9, 0.62, "the curves share only 62 % of their quality range"
                    ),
                },
            },
            {
                "method": "x264-medium",
                "experiments": 1,
                "cells": {
                    UVG: cell(53.5 * ssim + shift, -1.5),
                    MCL: {"reason": "no R-D points on this test set"},
                },
            },
        ],
    }


def sequences(method: str) -> dict[str, Any]:
    return {
        UVG: {
            "Beauty": cell(-8.0, 0.2),
            "Bosphorus": cell(-15.5, 0.6),
            "HoneyBee": {"reason": "fewer than 4 points"},
        }
    }


CSV = "method,experiments,UVG-1080p,MCL-JCV\nssf2020-mse,4,-12.3,-31.0\n"
LATEX = "\\begin{tabular}{lrr}\n\\toprule\nMethod & UVG-1080p & MCL-JCV \\\\\n\\end{tabular}\n"
ANCHORS = [
    {"name": X265, "dataset": UVG, "description": None, "rd_points": [], "rate_unit": "kbps"},
    {"name": VTM, "dataset": UVG, "description": None, "rd_points": [], "rate_unit": "kbps"},
    {"name": X265_MCL, "dataset": MCL, "description": None, "rd_points": [], "rate_unit": "kbps"},
]


@dataclass
class FakeBdRates:
    """Answers api/v1/bd-rates (and api/v1/anchors) for one page; records the queries."""

    queries: list[dict[str, list[str]]] = field(default_factory=list)

    def install(self, page: Page) -> None:
        page.route("**/api/v1/bd-rates*", self._bd_rates)
        page.route("**/api/v1/anchors", self._anchors)

    def _anchors(self, route: Route) -> None:
        body = {"items": ANCHORS, "default": None, "configured_default": None}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def _bd_rates(self, route: Route) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        self.queries.append(query)
        fmt = query.get("format", [""])[0]
        if fmt == "csv":
            route.fulfill(status=200, content_type="text/csv", body=CSV)
            return
        if fmt == "latex":
            route.fulfill(status=200, content_type="application/x-tex", body=LATEX)
            return
        anchors = dict(value.split(":", 1) for value in query.get("anchor", []))
        body = table(query.get("quality", ["psnr"])[0], anchors)
        if query.get("sequences") == ["true"]:
            for row in body["rows"]:
                for key, seqs in sequences(row["method"]).items():
                    row["cells"][key]["sequences"] = seqs
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    def last(self, key: str) -> str | None:
        found = [q[key][0] for q in self.queries if key in q and "format" not in q]
        return found[-1] if found else None
