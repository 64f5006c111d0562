"""The MLflow headline of docs/performance.md, written between two marker lines by the same
run that writes docs/mlflow-comparison.md (``--headline-out``), so that it cannot drift."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from mlflow_compare.measure import CODECDASH, MLFLOW, MLFLOW_STATS, Result
from mlflow_compare.report import (
    better_by,
    display_command,
    fmt,
    ingest_rates,
    page_pair,
    query_ms,
    ranked_goal,
    ratio_text,
)

BEGIN = (
    "<!-- mlflow-headline: written by bench/compare_mlflow.py --headline-out; "
    "what stands between these lines is replaced on every run -->"
)
END = "<!-- /mlflow-headline -->"
ROWS = (
    ("top_psnr", "top 100 by PSNR"),
    ("top_br80", "top 100 by PSNR with bitrate reduction > 80"),
    ("count", "count all experiments"),
)


def check_markers(path: Path) -> None:
    """Fail before a long run, not after it, when ``path`` lacks the marker lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"--headline-out {path}: {exc.strerror}") from None
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(
            f"--headline-out {path}: needs one line\n{BEGIN}\nand, below it, one line\n{END}"
        )


def write_headline(path: Path, block: str) -> None:
    check_markers(path)
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}", encoding="utf-8")


def ms_cell(res: Result, m: str, system: str) -> str:
    ms, capped = query_ms(res, m, system)
    if capped:
        return f"> {res.cap_s:g} s (capped)"
    return f"{fmt(ms, 2 if system == CODECDASH else 1)} ms"


def headline(
    args: argparse.Namespace,
    res: Result,
    mlflow_version: str,
    started: datetime,
    elapsed: float,
) -> str:
    """The block for one N (the largest of the run)."""
    v = mlflow_version
    lines = [
        f"Headline ({started:%Y-%m-%d %H:%M} UTC, one {elapsed / 60:.0f}-minute run, "
        f"N = {res.n:,}, medians of {args.repeats}; load average {res.load[0]:.1f} at the "
        f"start of this N and {res.load[-1]:.1f} at its end, on {os.cpu_count()} CPUs). "
        "Each MLflow figure names the database it was measured on:",
        "",
        "- **as shipped**: MLflow's SQLite database as its API and a plain bulk copy leave "
        "it, with no planner statistics (MLflow never runs `ANALYZE`): what its users run;",
        "- **with statistics**: a copy of the same file after `ANALYZE`, the best case an "
        "administrator could give it by hand.",
        "",
        "The goals are judged against MLflow with statistics, the stricter of the two; a "
        f'figure "> {res.cap_s:g} s (capped)" is a call abandoned after {res.cap_s:g} s, so '
        "it and the ratio against it are lower bounds.",
        "",
        f"| measure | MLflow {v} as shipped | MLflow {v} with statistics | codecdash "
        "| codecdash better by, vs as shipped | vs with statistics | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    ml_rate, cd_rate = ingest_rates(res)
    r = cd_rate / ml_rate
    lines.append(
        f"| ingest, experiments/s | {fmt(ml_rate)} | — | {fmt(cd_rate)} | {ratio_text(r)}× "
        f"| — | ≥ 100× {'✓' if r >= 100 else '✗'} |"
    )
    for m, name in ROWS:
        shipped_text = better_by(res, m, MLFLOW)[1]
        _, stats_text = better_by(res, m, MLFLOW_STATS)
        mark = {"met": "✓", "not met": "✗", "unknown": "? (capped)"}[ranked_goal(res, m)]
        goal = f"≥ 100× {mark}" if m != "count" and res.n >= 100_000 else ""
        lines.append(
            f"| {name} | {ms_cell(res, m, MLFLOW)} | {ms_cell(res, m, MLFLOW_STATS)} | "
            f"{ms_cell(res, m, CODECDASH)} | {shipped_text} | {stats_text} | {goal} |"
        )
    ml_p, cd_p = page_pair(res, "performance")
    ml_t, cd_t = page_pair(res, "transfer_bytes")
    if None not in (ml_p, cd_p, ml_t, cd_t):
        assert ml_p is not None and cd_p is not None and ml_t is not None and cd_t is not None
        lines.append(
            f"| page: Lighthouse performance | {ml_p:.0f} | — | {cd_p:.0f} | "
            f"{cd_p - ml_p:+.0f} points | — | higher {'✓' if cd_p > ml_p else '✗'} |"
        )
        lines.append(
            f"| page: transfer | {ml_t:,.0f} KiB | — | {cd_t:,.0f} KiB | "
            f"{ml_t / cd_t:.3g}× lighter | — | lighter {'✓' if cd_t < ml_t else '✗'} |"
        )
    lines += [
        "",
        "Ingest and the page: MLflow as shipped only. Made by:",
        "",
        "```bash",
        display_command(),
        "```",
    ]
    return "\n".join(lines)
