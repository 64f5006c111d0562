#!/usr/bin/env python3
"""Side by side with MLflow: the same experiments, the same machine, one run.

A benchmark, not a test. It installs MLflow into a virtual environment of its own
(``<workdir>/mlflow-venv``, never the codecdash environment), starts ``mlflow server`` on
SQLite and ``codecdash serve`` on SQLite, all on loopback, loads the same experiments into
both and measures, the systems taking turns within each repeat:

* ingest through each one's fastest API (MLflow: runs/create + runs/log-batch + runs/update
  per run over REST; codecdash: ``POST /api/v1/experiments/batch`` with 1,000 items),
* the top 100 by PSNR,
* the top 100 among bitrate reduction > 80 %,
* counting all experiments,
* the first load of each one's page in Lighthouse (mobile defaults), with transfer size.

MLflow's queries are measured on two databases holding the same data: **as shipped** (as
its API and a plain SQL bulk copy leave it: no planner statistics, since MLflow never runs
``ANALYZE``) and **with statistics** (a copy after ``ANALYZE``, its best case), each behind
its own ``mlflow server``. A call still unanswered after ``--cap-s`` is reported as a cap.

It writes a Markdown report (medians, how much better codecdash is against each MLflow,
versions, the exact command) and, with ``--headline-out``, the MLflow headline of
docs/performance.md. Run from the repository root with the codecdash environment::

    .venv/bin/python bench/compare_mlflow.py --n 10000 100000 --repeats 9 \\
        --mlflow-api-runs 250 --lighthouse-repeats 3 --lighthouse-n 100000 \\
        --headline-out docs/performance.md

(the command behind docs/mlflow-comparison.md and that headline; about 15 minutes once
MLflow and Lighthouse are installed).

MLflow's REST API writes a run with three requests, each a few SQLite commits, so loading
10,000 or 100,000 runs through it takes hours here. Each repeat therefore times MLflow on
``--mlflow-api-runs`` runs written through its API into an empty experiment (its best
case), and the rest of the N runs are bulk-loaded with SQL from the rows its API wrote, for
the query and page measures. The report says so wherever it applies.

The parts live in ``bench/mlflow_compare/`` (one concern a module); the Lighthouse runner is
``bench/lighthouse.py``'s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lighthouse import LIGHTHOUSE_VERSION, LighthouseFailed, lighthouse_bin
from mlflow_compare import log
from mlflow_compare.headline import check_markers, headline, write_headline
from mlflow_compare.install import ensure_mlflow, mlflow_versions
from mlflow_compare.measure import Result, run_n
from mlflow_compare.report import fs_type, report, tool_version
from mlflow_compare.servers import codecdash_versions


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="numbers of experiments (default: 10000 100000)",
    )
    p.add_argument("--repeats", type=int, default=5, help="repeats per measure (default 5)")
    p.add_argument(
        "--lighthouse-repeats",
        type=int,
        default=3,
        help="Lighthouse loads per system and N (default 3)",
    )
    p.add_argument(
        "--lighthouse-n",
        type=int,
        nargs="*",
        default=[],
        help="the N at which to run Lighthouse (default: every N)",
    )
    p.add_argument(
        "--slow-call-s",
        type=float,
        default=3.0,
        help="a measure whose first call took longer is repeated only "
        "--slow-repeats times (default 3 s: such a call's own jitter is small beside it)",
    )
    p.add_argument("--slow-repeats", type=int, default=3)
    p.add_argument(
        "--cap-s",
        type=float,
        default=30.0,
        help="a call still unanswered after this many seconds is abandoned and reported as "
        "a cap (a lower bound); its server is restarted and the measure not called on it "
        "again (default 30 s)",
    )
    p.add_argument(
        "--mlflow-api-runs",
        type=int,
        default=1000,
        help="runs written through MLflow's API per ingest repeat; the rest of N "
        "is bulk-loaded with SQL from those rows (default 1000)",
    )
    p.add_argument(
        "--mlflow-workers",
        type=int,
        default=1,
        help="mlflow server --workers (MLflow's default is 4; default here 1)",
    )
    p.add_argument("--out", type=Path, default=Path("docs/mlflow-comparison.md"))
    p.add_argument(
        "--headline-out",
        type=Path,
        default=None,
        help="also rewrite the MLflow headline (the largest N) between the marker lines of "
        "this file, e.g. docs/performance.md",
    )
    p.add_argument("--skip-lighthouse", action="store_true")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/cdbench"),
        help="MLflow's venv and Lighthouse are cached here (default /tmp/cdbench)",
    )
    p.add_argument(
        "--dbdir",
        type=Path,
        default=None,
        help="where the databases live (default: the workdir; /dev/shm takes "
        "the disk's syncs out of the comparison)",
    )
    p.add_argument("--python", default="python3", help="interpreter for MLflow's venv")
    p.add_argument(
        "--chrome",
        default=os.environ.get("CHROME_PATH") or shutil.which("chromium") or "/usr/bin/chromium",
    )
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument(
        "--start-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for a server to answer (MLflow starts slowly)",
    )
    p.add_argument("--keep", action="store_true", help="keep the databases and logs")
    p.add_argument(
        "--install-only",
        action="store_true",
        help="install (or check) MLflow's venv and Lighthouse, then exit",
    )
    args = p.parse_args(argv)
    if any(n < 1 for n in args.n) or args.repeats < 1 or args.mlflow_api_runs < 1:
        p.error("--n, --repeats and --mlflow-api-runs must be positive")
    if args.cap_s <= 0 or args.slow_repeats < 1:
        p.error("--cap-s and --slow-repeats must be positive")
    return args


def write(
    args: argparse.Namespace,
    results: list[Result],
    versions: dict[str, Any],
    started: datetime,
    elapsed: float,
) -> None:
    """The report, and the headline (the largest N so far) where asked for."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(args, results, versions, started, elapsed), encoding="utf-8")
    log(f"wrote {args.out} (N = {', '.join(str(r.n) for r in results)})")
    if args.headline_out is not None:
        largest = max(results, key=lambda r: r.n)
        block = headline(args, largest, versions["mlflow"]["mlflow"], started, elapsed)
        write_headline(args.headline_out, block)
        log(f"wrote the MLflow headline of {args.headline_out} (N = {largest.n})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.headline_out is not None:
        check_markers(args.headline_out)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    args.workdir = args.workdir.resolve()
    venv = ensure_mlflow(args.workdir, args.python)
    versions: dict[str, Any] = {"mlflow": mlflow_versions(venv), "codecdash": codecdash_versions()}
    lh_binary = None
    if not args.skip_lighthouse:
        try:
            lh_binary = lighthouse_bin(args.workdir)
        except LighthouseFailed as exc:
            raise SystemExit(f"{exc}; or pass --skip-lighthouse") from None
    if args.install_only:
        log(f"MLflow {versions['mlflow']['mlflow']} in {venv}; Lighthouse: {lh_binary}")
        return 0
    if not args.skip_lighthouse:
        versions["lighthouse"] = LIGHTHOUSE_VERSION
        versions["chromium"] = tool_version([args.chrome, "--version"])
        versions["node"] = tool_version(["node", "--version"])
    rundir = (args.dbdir or args.workdir).resolve() / f"run-{os.getpid()}-{int(time.time())}"
    rundir.mkdir(parents=True)
    versions["fs"] = fs_type(rundir)
    log(f"work in {rundir}")
    results: list[Result] = []
    try:
        for n in args.n:
            results.append(run_n(args, n, venv, rundir, lh_binary))
            write(args, results, versions, started, time.perf_counter() - t0)
    finally:
        if not args.keep:
            shutil.rmtree(rundir, ignore_errors=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
