"""docs/mlflow-comparison.md: the medians per N, the goals, and how each figure was made."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lighthouse import CHROME_FLAGS
from mlflow_compare.clients import MLFLOW_PAGE
from mlflow_compare.measure import CODECDASH, MEASURES, MLFLOW, MLFLOW_STATS, SYSTEMS, Result
from mlflow_compare.method import databases_section, method_section
from mlflow_compare.pages import PAGE_FIELDS, page_median

MEASURE_NAMES = {
    "ingest": "Ingest (experiments/s, higher is better)",
    "top_psnr": "Top 100 by PSNR (ms)",
    "top_br80": "Top 100 by PSNR among bitrate reduction > 80 % (ms)",
    "count": "Count all experiments (ms)",
}
SYSTEM_NAMES = {
    MLFLOW: "MLflow as shipped",
    MLFLOW_STATS: "MLflow with statistics",
    CODECDASH: "codecdash",
}


# -- figures -----------------------------------------------------------------------------
def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio_text(r: float) -> str:
    if r != r:
        return "n/a"
    return f"{r:.3g}" if r < 1000 else f"{r:,.0f}"


def query_ms(res: Result, m: str, system: str) -> tuple[float, bool]:
    """A measure's median on one system in ms, and whether it is a cap (a lower bound):
    a median that is itself a capped call, or no samples because the first call was."""
    done = res.samples[m][system]
    if (m, system) in res.capped and (not done or math.isinf(med(done))):
        return res.cap_s * 1000, True
    return med(done) * 1000, False


def query_cell(res: Result, m: str, system: str, digits: int = 1) -> str:
    ms, capped = query_ms(res, m, system)
    return f"> {res.cap_s:g} s (capped)" if capped else fmt(ms, digits)


def better_by(res: Result, m: str, mlflow_system: str) -> tuple[float, str]:
    """How many times faster codecdash answered than one MLflow, as a number and as text
    ("> N×" where MLflow's figure is a cap)."""
    ml_ms, capped = query_ms(res, m, mlflow_system)
    cd_ms, _ = query_ms(res, m, CODECDASH)
    r = ml_ms / cd_ms
    return r, ("> " if capped else "") + f"{ratio_text(r)}×"


def ranked_goal(res: Result, m: str) -> str:
    """The ranked-query goal (≥ 100× faster than MLflow with statistics, the stricter):
    "met", "not met", or "unknown" (a capped figure below 100× is only a lower bound)."""
    r, _ = better_by(res, m, MLFLOW_STATS)
    if r >= 100:
        return "met"
    return "unknown" if query_ms(res, m, MLFLOW_STATS)[1] else "not met"


def ingest_rates(res: Result) -> tuple[float, float]:
    return med(res.ingest[MLFLOW]), med(res.ingest[CODECDASH])


# -- one N ---------------------------------------------------------------------------------
def n_section(res: Result, repeats: int) -> list[str]:
    lines = [
        f"### N = {res.n:,}",
        "",
        "| measure | MLflow as shipped | MLflow with statistics | codecdash | codecdash better "
        "by, vs MLflow as shipped | vs MLflow with statistics |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ml_rate, cd_rate = ingest_rates(res)
    ml_note = " ¹" if res.api_runs < res.n else ""
    by = f"{ratio_text(cd_rate / ml_rate)}×"
    lines.append(
        f"| {MEASURE_NAMES['ingest']} | {fmt(ml_rate)}{ml_note} | — ² | {fmt(cd_rate)} | {by} | — |"
    )
    lines.append(
        f"| Time to ingest N (s) | {fmt(res.n / ml_rate)}{ml_note} | — ² | "
        f"{fmt(res.n / cd_rate, 2)} | {by} | — |"
    )
    for m in MEASURES:
        lines.append(
            f"| {MEASURE_NAMES[m]} | {query_cell(res, m, MLFLOW)} | "
            f"{query_cell(res, m, MLFLOW_STATS)} | {query_cell(res, m, CODECDASH, 2)} | "
            f"{better_by(res, m, MLFLOW)[1]} | {better_by(res, m, MLFLOW_STATS)[1]} |"
        )
    if res.pages or res.page_note:
        for key, name, better in PAGE_FIELDS:
            ml_v, cd_v = page_pair(res, key)
            if cd_v is None or ml_v is None or ml_v == 0:
                by_text = res.page_note or "n/a"
            elif better == "higher":
                by_text = f"{cd_v - ml_v:+.0f} points"
            else:
                by_text = f"{ml_v / cd_v:.3g}×" if cd_v else "∞"
            lines.append(
                f"| Page (Lighthouse, mobile): {name} | {fmt(ml_v)} | — ² | "
                f"{res.page_note or fmt(cd_v)} | {by_text} | — |"
            )
    lines.append("")
    lines.extend(f"- {note}" for note in n_notes(res, repeats))
    lines.append("")
    lines.extend(all_samples(res))
    return lines


def page_pair(res: Result, key: str) -> tuple[float | None, float | None]:
    """MLflow's and codecdash's median of one Lighthouse field (KiB for transfer)."""
    ml_v = page_median(res.pages.get(MLFLOW, []), key)
    cd_v = None if res.page_note else page_median(res.pages.get(CODECDASH, []), key)
    if key == "transfer_bytes":
        ml_v = ml_v / 1024 if ml_v is not None else None
        cd_v = cd_v / 1024 if cd_v is not None else None
    return ml_v, cd_v


def n_notes(res: Result, repeats: int) -> list[str]:
    notes = []
    if res.api_runs < res.n:
        notes.append(
            f"¹ MLflow's ingest rate is measured on {res.api_runs:,} runs written through its "
            f"REST API into an empty experiment in each repeat (its best case: the tables "
            f"grow no further); the time for N is that rate extrapolated. The other "
            f"{res.bulk_loaded:,} runs were **bulk-loaded with SQL** from the rows its API "
            f"wrote (runs, params, metrics, latest_metrics, tags; {res.bulk_s:.1f} s, not "
            f"timed as ingest), so that its queries and page see the same N experiments as "
            f"codecdash. codecdash ingested all {res.n:,} through its API in every repeat."
        )
    notes.append(
        "² Ingest and the page are measured on MLflow as shipped only: the ingest repeats "
        "write the database that becomes MLflow as shipped, before the copy with statistics "
        "exists, and the page is what MLflow's users load."
    )
    st = res.statistics
    absent = {k: "absent" if st.get(k) is None else f"{st[k]} rows" for k in st}
    notes.append(
        "MLflow's databases: as shipped, `sqlite_stat1` "
        f"{absent.get('api')} after MLflow's API wrote its runs, {absent.get('bulk')} after "
        f"the bulk copy and {absent.get('after')} after the queries; with statistics, "
        f"`ANALYZE` on the copy took {res.analyze_s:.1f} s and left {absent.get('stats')}."
    )
    checked = {k: v for k, v in res.agree.items() if v is not None}
    agree = bool(checked) and all(checked.values())
    unchecked = [k for k, v in res.agree.items() if v is None]
    counts = " / ".join(f"{res.counts[s]} ({SYSTEM_NAMES[s]})" for s in SYSTEMS if s in res.counts)
    notes.append(
        f"All systems answered the same: top-100 lists identical to the expected ids and "
        f"counts {counts}: **{'yes' if agree else 'NO'}**"
        + ("" if agree else f" ({', '.join(k for k, v in checked.items() if not v)})")
        + (f"; not checked where capped ({', '.join(unchecked)})" if unchecked else "")
        + "."
    )
    if res.capped:
        capped = sorted(f"{m} {SYSTEM_NAMES[s]}" for m, s in res.capped)
        notes.append(
            f"**Capped** (a call still unanswered after --cap-s {res.cap_s:g} s; the server "
            f"was restarted and the measure not called on it again): {', '.join(capped)}. "
            "Those figures are lower bounds, and so are the ratios against them."
        )
    few = [
        f"{m} {SYSTEM_NAMES[s]} ({len(v)})"
        for m in MEASURES
        for s, v in res.samples[m].items()
        if len(v) < repeats and (m, s) not in res.capped
    ]
    if few:
        notes.append(
            "Calls slower than --slow-call-s were repeated fewer times: " + ", ".join(few) + "."
        )
    notes.append(
        "First call after a server start (not in the medians): "
        + "; ".join(
            f"{m} "
            + ", ".join(
                f"{SYSTEM_NAMES[s]} "
                + (
                    f"> {res.cap_s:g} s (capped)"
                    if math.isinf(res.first[m][s])
                    else f"{fmt(res.first[m][s] * 1000, 1)} ms"
                )
                for s in SYSTEMS
            )
            for m in MEASURES
        )
        + "."
    )
    if res.pages:
        errors = [f"{s} {p['error']}" for s, ps in res.pages.items() for p in ps if p.get("error")]
        urls = {s: ps[0].get("final_url") for s, ps in res.pages.items() if ps}
        notes.append(
            f"Lighthouse runs per system: {len(res.pages.get(MLFLOW, []))}; final "
            f"URLs {urls}" + (f"; errors: {errors}" if errors else "") + "."
        )
    notes.append(
        f"Load average (1 min) at start / end of this N: "
        f"{res.load[0]:.1f} / {res.load[-1]:.1f} on {os.cpu_count()} CPUs."
    )
    return notes


def all_samples(res: Result) -> list[str]:
    lines = ["<details><summary>All samples</summary>", ""]
    lines.append(f"- ingest/s MLflow as shipped: {[round(v, 2) for v in res.ingest[MLFLOW]]}")
    lines.append(f"- ingest/s codecdash: {[round(v) for v in res.ingest[CODECDASH]]}")
    for m in MEASURES:
        for system in SYSTEMS:
            shown = [
                "capped" if math.isinf(v) else round(v * 1000, 2) for v in res.samples[m][system]
            ]
            lines.append(f"- {m} {SYSTEM_NAMES[system]} ms: {shown}")
    for system, ps in res.pages.items():
        for p in ps:
            lines.append(f"- page {SYSTEM_NAMES[system]}: {json.dumps(p)}")
    return [*lines, "", "</details>", ""]


# -- goals ---------------------------------------------------------------------------------
def goal_lines(results: list[Result]) -> list[str]:
    lines = ["## Goals", ""]
    for res in results:
        ml_rate, cd_rate = ingest_rates(res)
        r = cd_rate / ml_rate
        lines.append(
            f"- Ingest ≥ 100× MLflow's at N = {res.n:,}: **{'met' if r >= 100 else 'not met'}** "
            f"({ratio_text(r)}×)."
        )
    big = [r for r in results if r.n >= 100_000]
    if big:
        res = max(big, key=lambda r: r.n)
        for m in ("top_psnr", "top_br80"):
            _, stats_text = better_by(res, m, MLFLOW_STATS)
            _, shipped_text = better_by(res, m, MLFLOW)
            verdict = ranked_goal(res, m)
            if verdict == "unknown":
                verdict = "not known (MLflow's call was capped below 100×)"
            lines.append(
                f"- {MEASURE_NAMES[m].split(' (')[0]} at N = {res.n:,} ≥ 100× faster: "
                f"**{verdict}** against MLflow with statistics, the stricter "
                f"({stats_text}; {shipped_text} against MLflow as shipped)."
            )
    else:
        lines.append(
            "- Ranked queries at 100,000 ≥ 100× faster: **not measured** "
            "(no N ≥ 100,000 in this run)."
        )
    paged = [r for r in results if r.pages or r.page_note]
    if not paged:
        lines.append("- Page lighter and scoring higher: **not measured** (--skip-lighthouse).")
    for res in paged:
        lines.append(page_goal(res))
    lines.append("")
    return lines


def page_goal(res: Result) -> str:
    ml_t, cd_t = page_pair(res, "transfer_bytes")
    ml_p, cd_p = page_pair(res, "performance")
    if res.page_note or cd_t is None or ml_t is None or cd_p is None or ml_p is None:
        return f"- Page lighter and scoring higher at N = {res.n:,}: **{res.page_note or 'n/a'}**."
    others = [k for k, _, b in PAGE_FIELDS if b == "higher" and k != "performance"]
    higher = [k for k in others if (page_pair(res, k)[1] or 0) >= (page_pair(res, k)[0] or 0)]
    met = "met" if cd_t < ml_t and cd_p > ml_p else "not met"
    return (
        f"- Page lighter and scoring higher at N = {res.n:,}: **{met}** (transfer "
        f"{cd_t:,.0f} KiB vs {ml_t:,.0f} KiB; performance {cd_p:.0f} vs {ml_p:.0f}; "
        f"codecdash at least equal on {len(higher)} of {len(others)} other categories)."
    )


# -- the document --------------------------------------------------------------------------
def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem}"


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        return (out.stdout.strip() or out.stderr.strip()).splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "n/a"


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "--output=fstype", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
        return out[-1] if len(out) > 1 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def display_command() -> str:
    py = Path(sys.executable)
    with contextlib.suppress(ValueError):
        py = py.relative_to(Path.cwd())
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.join([str(py), str(script), *sys.argv[1:]])


def report(
    args: argparse.Namespace,
    results: list[Result],
    versions: dict[str, Any],
    started: datetime,
    elapsed: float,
) -> str:
    ml, cd = versions["mlflow"], versions["codecdash"]
    lines = [
        "# codecdash and MLflow, side by side",
        "",
        f"Generated by `bench/compare_mlflow.py` on {started:%Y-%m-%d %H:%M} UTC in "
        f"{elapsed / 60:.0f} min. A benchmark, not a test: rerun it with the command below.",
        "",
        "```",
        display_command(),
        "```",
        "",
        "## Versions and machine",
        "",
        f"- MLflow {ml['mlflow']} (own venv, `--workers {args.mlflow_workers}`, uvicorn "
        f"{ml['uvicorn']}, SQLAlchemy {ml['sqlalchemy']}), Python {ml['python']}, "
        f"SQLite {ml['sqlite']}",
        f"- codecdash {cd['codecdash']} (SQLAlchemy {cd['sqlalchemy']}), Python "
        f"{cd['python']}, SQLite {cd['sqlite']}; client httpx {cd['httpx']}",
        f"- Lighthouse {versions.get('lighthouse', 'not run')}, "
        f"{versions.get('chromium', 'n/a')}, Node.js {versions.get('node', 'n/a')}",
        f"- {machine()}; all servers and the client on the same machine, loopback only",
        f"- All databases in `{args.dbdir or args.workdir}` ({versions.get('fs', '?')})",
        "",
        *databases_section(ml["mlflow"]),
        "## Medians",
        "",
        f"{args.repeats} repeats per measure (Lighthouse: {args.lighthouse_repeats}). In each "
        "repeat the three servers take turns, the order rotating by one from repeat to repeat "
        "so that each goes first equally often (ingest and pages: MLflow and codecdash "
        "alternate). Times are wall-clock at the client, request sent to answer parsed. "
        "\"Better by\" divides MLflow's median by codecdash's for times, codecdash's by "
        "MLflow's for ingest rates; scores are compared in points. A figure shown as "
        f'"> {args.cap_s:g} s (capped)" is a call abandoned at --cap-s: a lower bound, and '
        'the ratio against it ("> N×") is one too.',
        "",
    ]
    for res in results:
        lines.extend(n_section(res, args.repeats))
    lines.extend(goal_lines(results))
    lines.extend(method_section(args, CHROME_FLAGS, MLFLOW_PAGE))
    return "\n".join(lines)
