"""Lighthouse 12 on the dashboard page (issue "Page": performance ≥ 95, accessibility 100,
best practices ≥ 95, SEO ≥ 90, first-load transfer ≤ 150 KB).

    .venv/bin/python bench/lighthouse.py                 # 3 runs, writes docs/lighthouse.md
    .venv/bin/python bench/lighthouse.py --runs 5 --out /tmp/lh.md

Starts `codecdash serve` (a subprocess, on a free loopback port) over a fresh SQLite file,
fills it through the HTTP API with 200 experiments, a few heartbeats and this month's costs,
then runs Lighthouse 12.2.3 with its defaults — mobile form factor, simulated throttling
(slow 4G, 4× CPU slowdown) — `--runs` times against `/`, and reports the median of each
category score, of the key metrics and of the total transfer size. Lighthouse is installed
with npm into a work directory outside the repository (`--workdir`, default /tmp/cdlh) when
it is not there yet; Chromium comes from CHROME_PATH (default /usr/bin/chromium). The JSON
reports stay in `<workdir>/reports/` for a closer look.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from _serve import create_token, start
from codecdash.net import free_port

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE_VERSION = "12.2.3"
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-background-networking "
    "--disable-component-update"
)
CATEGORIES = ["performance", "accessibility", "best-practices", "seo"]
TARGETS = {"performance": 95, "accessibility": 100, "best-practices": 95, "seo": 90}
TRANSFER_LIMIT = 150 * 1024
METRICS = [
    ("first-contentful-paint", "First Contentful Paint", "ms"),
    ("largest-contentful-paint", "Largest Contentful Paint", "ms"),
    ("total-blocking-time", "Total Blocking Time", "ms"),
    ("cumulative-layout-shift", "Cumulative Layout Shift", ""),
    ("speed-index", "Speed Index", "ms"),
    ("interactive", "Time to Interactive", "ms"),
]
STATUSES = ["completed"] * 70 + ["failed"] * 12 + ["running"] * 10 + ["queued"] * 8


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def experiments(n: int, rng: random.Random) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    items = []
    for i in range(n):
        status = rng.choice(STATUSES)
        created = now - timedelta(hours=(n - i) * 2.5)
        item: dict[str, Any] = {
            "id": f"exp-{i:05d}",
            "name": f"ssf2020-attn λ={rng.choice([0.0018, 0.0035, 0.0067, 0.013])} run {i}",
            "status": status,
            "created_at": iso(created),
            "params": {"model": "ssf2020", "lambda": round(rng.random() / 50, 5), "lr": 1e-4},
            "tags": ["uvg", rng.choice(["mse", "ms-ssim"])],
            "worker_id": f"train-g5-{i % 8:02d}",
        }
        if status != "queued":
            item["started_at"] = iso(created + timedelta(minutes=5))
        if status in ("completed", "failed"):
            item["finished_at"] = iso(created + timedelta(hours=rng.uniform(0.5, 2)))
            item["cost_usd"] = round(rng.uniform(2, 30), 2)
        if status == "completed":
            progress = i / n
            item |= {
                "bitrate_reduction_pct": round(30 + 50 * progress + rng.uniform(-8, 4), 2),
                "psnr_db": round(31 + 5 * progress + rng.uniform(-1, 0.5), 3),
                "ms_ssim": round(0.95 + 0.03 * progress, 4),
                "bpp": round(rng.uniform(0.05, 0.4), 4),
                "rd_points": [
                    {"bitrate_kbps": 400.0 * k, "psnr_db": round(30 + 1.7 * k + 4 * progress, 2)}
                    for k in range(1, 5)
                ],
            }
        if status == "failed":
            item["error"] = "RuntimeError: CUDA out of memory"
        items.append(item)
    return items


def fill(url: str, token: str, n: int) -> None:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        http.post(
            "/api/v1/experiments/batch", json={"items": experiments(n, rng)}
        ).raise_for_status()
        beats = [
            {
                "worker_id": "orchestrator-01",
                "role": "orchestrator",
                "cpu_pct": 14.0,
                "mem_pct": 41.0,
            },
            *(
                {
                    "worker_id": f"train-g5-{i:02d}",
                    "role": "training",
                    "spot": i % 2 == 0,
                    "gpu_util_pct": 90.0 + i,
                    "queue_depth": 3,
                }
                for i in range(4)
            ),
            *(
                {"worker_id": f"infer-{i:02d}", "role": "inference", "fps": 25.0, "queue_depth": 1}
                for i in range(2)
            ),
        ]
        for beat in beats:
            http.post("/api/v1/heartbeats", json=beat).raise_for_status()
        costs = [
            {"component": c, "amount_usd": a}
            for c, a in (
                ("training", 2100.0),
                ("inference", 450.0),
                ("storage", 90.0),
                ("orchestrator", 40.0),
            )
        ]
        http.post("/api/v1/costs", json={"items": costs}).raise_for_status()


def start_server(db: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    token = create_token(db, "lighthouse")
    port = free_port()
    try:
        proc = start(db, port, timeout=30)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    return proc, f"http://127.0.0.1:{port}", token


def lighthouse_bin(workdir: Path) -> Path:
    """Lighthouse LIGHTHOUSE_VERSION under ``workdir/node_modules``, installed with npm when it
    is not there yet (one installer at a time: a lock in ``workdir``)."""
    binary = workdir / "node_modules" / ".bin" / "lighthouse"
    installed = workdir / "node_modules" / "lighthouse" / "package.json"
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / ".lighthouse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (
            binary.exists()
            and installed.exists()
            and json.loads(installed.read_text()).get("version") == LIGHTHOUSE_VERSION
        ):
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise LighthouseFailed("Lighthouse needs Node.js and npm on the PATH")
        print(f"installing lighthouse@{LIGHTHOUSE_VERSION} into {workdir} …", file=sys.stderr)
        subprocess.run(
            [
                npm,
                "i",
                "-E",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(workdir),
                f"lighthouse@{LIGHTHOUSE_VERSION}",
            ],
            check=True,
        )
    return binary


class LighthouseFailed(RuntimeError):
    """Lighthouse could not be installed, or failed every attempt on a page."""


def run_lighthouse(
    binary: Path, url: str, out: Path, chrome: str, attempts: int = 3
) -> dict[str, Any]:
    """One Lighthouse run (mobile defaults, CHROME_FLAGS); its JSON report. A run that
    Lighthouse itself reports as failed (NO_NAVSTART and the like, which a loaded machine
    sometimes causes), that leaves a category without a score (an audit it needs failed,
    NO_LCP and the like) or that takes over 300 s is retried, up to `attempts` times."""
    env = {**os.environ, "CHROME_PATH": chrome}
    command = [
        str(binary),
        url,
        "--quiet",
        "--output=json",
        f"--output-path={out}",
        f"--chrome-flags={CHROME_FLAGS}",
    ]
    problem = ""
    for _ in range(attempts):
        out.unlink(missing_ok=True)
        try:
            done = subprocess.run(command, env=env, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            problem = "timed out after 300 s"
        else:
            if done.returncode == 0 and out.exists():
                report: dict[str, Any] = json.loads(out.read_text())
                problem = report_problem(report)
                if not problem:
                    return report
            else:
                problem = f"exit status {done.returncode}"
        print(f"lighthouse failed ({problem}); trying again", file=sys.stderr)
    raise LighthouseFailed(f"lighthouse failed {attempts} times: {problem}")


def report_problem(report: dict[str, Any]) -> str:
    """Why a finished run's report cannot be used ("" when it can)."""
    if report.get("runtimeError"):
        return str(report["runtimeError"])
    unscored = [c for c in CATEGORIES if report["categories"][c].get("score") is None]
    if not unscored:
        return ""
    errors = [
        f"{name}: {audit['errorMessage'][:80]}"
        for name, audit in report["audits"].items()
        if audit.get("errorMessage")
    ]
    return f"no score for {', '.join(unscored)} (audit errors: {'; '.join(errors[:3])})"


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    audits = report["audits"]
    return {
        "scores": {c: round(report["categories"][c]["score"] * 100) for c in CATEGORIES},
        "metrics": {key: audits[key]["numericValue"] for key, _, _ in METRICS},
        "transfer": audits["total-byte-weight"]["numericValue"],
        "requests": len(audits["network-requests"]["details"]["items"]),
        "benchmark_index": report["environment"]["benchmarkIndex"],
        "warnings": report.get("runWarnings", []),
        "failed": {  # category -> {audit id: score} for weighted audits below 1
            c: {
                ref["id"]: audits[ref["id"]]["score"]
                for ref in report["categories"][c]["auditRefs"]
                if ref["weight"] > 0 and audits[ref["id"]]["score"] not in (None, 1)
            }
            for c in CATEGORIES
        },
    }


def markdown(runs: list[dict[str, Any]], meta: dict[str, str]) -> str:
    med = statistics.median
    lines = [
        "# Lighthouse on the dashboard page",
        "",
        f"Lighthouse {LIGHTHOUSE_VERSION}, its defaults: mobile form factor (Moto G Power "
        "viewport), simulated throttling (150 ms RTT, 1.6 Mbit/s, 4× CPU slowdown). "
        f"`codecdash serve` on a SQLite file holding {meta['experiments']} experiments, "
        "8 workers' heartbeats and this month's costs; the page at `/`, median of "
        f"{len(runs)} runs. Made by `bench/lighthouse.py`.",
        "",
        f"- When: {meta['when']}",
        f"- Machine: {meta['machine']}",
        f"- Load average before / after the runs (1, 5, 15 min): {meta['load_before']} / "
        f"{meta['load_after']}",
        f"- Browser: {meta['chrome']}",
        "",
        "| category | median | runs | target |",
        "| --- | --- | --- | --- |",
    ]
    for c in CATEGORIES:
        values = [r["scores"][c] for r in runs]
        ok = "✓" if med(values) >= TARGETS[c] else "✗"
        lines.append(
            f"| {c} | **{med(values):g}** | {', '.join(map(str, values))} | ≥ {TARGETS[c]} {ok} |"
        )
    transfers = [r["transfer"] for r in runs]
    ok = "✓" if med(transfers) <= TRANSFER_LIMIT else "✗"
    lines.append(
        f"| first-load transfer | **{med(transfers) / 1024:.1f} KiB** | "
        f"{', '.join(f'{t / 1024:.1f}' for t in transfers)} | ≤ 150 KB {ok} |"
    )
    lines += ["", "| metric (simulated) | median | runs |", "| --- | --- | --- |"]
    for key, label, unit in METRICS:
        values = [r["metrics"][key] for r in runs]
        fmt = (lambda v: f"{v:,.0f} ms") if unit == "ms" else (lambda v: f"{v:.3f}")
        lines.append(f"| {label} | {fmt(med(values))} | {', '.join(fmt(v) for v in values)} |")
    lines.append(f"| requests on first load | {med(r['requests'] for r in runs):g} | |")
    indexes = [r["benchmark_index"] for r in runs]
    lines.append(
        f"| Lighthouse benchmarkIndex (CPU speed) | {med(indexes):.0f} | "
        f"{', '.join(f'{v:.0f}' for v in indexes)} |"
    )
    slow = sum(1 for r in runs if any("slower CPU" in w for w in r["warnings"]))
    if slow:
        lines += [
            "",
            f"Lighthouse warned in {slow} of {len(runs)} runs that this machine's CPU is slower "
            "than it expects (it applies its 4× CPU slowdown on top): the machine was shared "
            "and loaded, so Total Blocking Time reads higher, and the performance score lower, "
            "than on an idle machine.",
        ]
    below: dict[str, dict[str, list[float]]] = {c: {} for c in CATEGORIES}
    for r in runs:
        for c, audits in r["failed"].items():
            for audit, score in audits.items():
                below[c].setdefault(audit, []).append(score)
    if any(below.values()):
        lines += ["", "Audits below full score (lowest–highest score, in how many runs):", ""]
        for c, audits in below.items():
            if audits:
                parts = [
                    f"`{a}` {min(v):.2f}–{max(v):.2f} ({len(v)}/{len(runs)})"
                    for a, v in sorted(audits.items())
                ]
                lines.append(f"- {c}: " + ", ".join(parts))
    lines += ["", NOTES]
    return "\n".join(lines)


NOTES = """\
## Where the time goes (analysis of the reports, 2026-11-27; LCP updated 2026-12-07)

- **Total Blocking Time** (30 % of the score) is the figure that moves with the machine: the
  page's own JavaScript is small (about 90 ms of script over the whole load under the 4× CPU
  slowdown, measured with the DevTools profiler; a full relayout of the loaded page takes about
  2 ms), and the long tasks are the browser's first style, layout and commit of the page and
  tasks Lighthouse cannot attribute (garbage collection, compositing). On a shared 2-core machine
  those tasks run 2–5 × longer, and Lighthouse multiplies them by 4 again. Before the change
  below, five runs gave a median of 80 (62–97, TBT 84–1,288 ms) while other test suites kept the
  load average at 14, and 87–89 at a load average of 4–6.
- **Largest Contentful Paint** (25 %) is the first screen's cards. Since issue 16 the snapshot
  comes inside `index.html` (a JSON data block), so the cards no longer wait for a second
  request: median LCP 1,935 → 1,604 ms and FCP 1,393 → 1,291 ms (five runs each, 2026-12-06).
  Since issue 17 (2026-12-07) the first paint imports only the first screen's modules and the
  rest comes with `import()` after it, and the alert strip above the cards is drawn from a
  second data block in `index.html`: before, it arrived with its own request, pushed the cards
  down (CLS 0.35–0.84) and, the largest block on a phone, became the LCP element seconds
  late. Interleaved runs at a load average of 15: LCP 3,903 → 1,728 ms, CLS 0.828 → 0.001
  (docs/performance.md). Since 2026-12-07 (later) the server draws the headline cards and the
  alert strip into the HTML, writes `theme.js` into it (allowed by its hash in the CSP), and
  the modules are put in after the first paint: that paint is the LCP, and no script request
  precedes it. Interleaved runs: LCP about 1,450 → 900 ms (docs/performance.md). Total
  Blocking Time reads higher since: the page's big style and layout task now comes after the
  first paint, inside the window TBT counts.
- **Transfer**: a third of the first load was the Rate-Distortion section's data
  (`api/v1/experiments?status=completed&sort=bd_rate_pct`, about 36 KB, plus `api/v1/anchors`),
  fetched on every load although the section is below the fold on a phone; since 2026-12-07 it
  is read when the section comes within a screen of the viewport. In some loads the page's
  catch-up request (when the event stream opens) gets the whole snapshot again (+17 KB): the
  snapshot's ETag changes every 5 s with `generated_at` even when no figure did; an ETag over
  the figures alone would answer 304.
"""


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cdlh"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lighthouse.md")
    parser.add_argument("--chrome", default=os.environ.get("CHROME_PATH", "/usr/bin/chromium"))
    args = parser.parse_args()

    try:
        binary = lighthouse_bin(args.workdir)
    except LighthouseFailed as exc:
        raise SystemExit(str(exc)) from None
    reports_dir = args.workdir / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    chrome_version = subprocess.run(
        [args.chrome, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="codecdash-lh-") as tmp:
        db = Path(tmp) / "lighthouse.db"
        proc, url, token = start_server(db)
        try:
            fill(url, token, args.experiments)
            httpx.get(url + "/").raise_for_status()  # warm the server once
            load_before = loadavg()
            runs = []
            for i in range(args.runs):
                try:
                    report = run_lighthouse(
                        binary, url + "/", reports_dir / f"run-{i + 1}.json", args.chrome
                    )
                except LighthouseFailed as exc:
                    raise SystemExit(str(exc)) from None
                runs.append(summarize(report))
                s = runs[-1]
                print(
                    f"run {i + 1}: "
                    + ", ".join(f"{c} {v}" for c, v in s["scores"].items())
                    + f", transfer {s['transfer'] / 1024:.1f} KiB, "
                    f"TBT {s['metrics']['total-blocking-time']:.0f} ms, "
                    f"LCP {s['metrics']['largest-contentful-paint']:.0f} ms",
                    file=sys.stderr,
                )
            load_after = loadavg()
        finally:
            proc.terminate()
            proc.wait(10)
    meta = {
        "experiments": str(args.experiments),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": load_before,
        "load_after": load_after,
        "chrome": chrome_version or args.chrome,
    }
    text = markdown(runs, meta)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
