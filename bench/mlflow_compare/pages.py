"""The first load of each system's page in Lighthouse, with the runner of
``bench/lighthouse.py`` (install, run, retries), read into the fields the report compares."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from lighthouse import LighthouseFailed, run_lighthouse, summarize

PAGE_FIELDS = (
    ("performance", "Performance score", "higher"),
    ("accessibility", "Accessibility score", "higher"),
    ("best-practices", "Best-practices score", "higher"),
    ("seo", "SEO score", "higher"),
    ("transfer_bytes", "Transfer size (KiB)", "lower"),
    ("requests", "Requests", "lower"),
    ("fcp_ms", "First contentful paint (ms, simulated)", "lower"),
    ("lcp_ms", "Largest contentful paint (ms, simulated)", "lower"),
    ("tbt_ms", "Total blocking time (ms, simulated)", "lower"),
)


def page_load(binary: Path, url: str, out: Path, chrome: str) -> dict[str, Any]:
    """One first load of ``url``: the scores and figures in PAGE_FIELDS, or ``error``."""
    try:
        report = run_lighthouse(binary, url, out, chrome)
    except LighthouseFailed as exc:
        return {"error": str(exc)}
    s = summarize(report)
    return {
        **s["scores"],
        "transfer_bytes": s["transfer"],
        "requests": s["requests"],
        "fcp_ms": s["metrics"]["first-contentful-paint"],
        "lcp_ms": s["metrics"]["largest-contentful-paint"],
        "tbt_ms": s["metrics"]["total-blocking-time"],
        "final_url": report.get("finalDisplayedUrl"),
        "lighthouse": report.get("lighthouseVersion"),
        "benchmark_index": s["benchmark_index"],
    }


def page_median(pages: list[dict[str, Any]], key: str) -> float | None:
    values = [float(p[key]) for p in pages if p.get(key) is not None and not p.get("error")]
    return statistics.median(values) if values else None
