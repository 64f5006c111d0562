"""The report's prose: what was done to MLflow's two databases, and how each figure was
made (kept beside the code that does it, so that the two change together)."""

from __future__ import annotations

import argparse


def databases_section(mlflow_version: str) -> list[str]:
    return [
        "## MLflow's two databases",
        "",
        "MLflow keeps its runs in SQLite here (`mlflow server --backend-store-uri "
        "sqlite:///…`). SQLite's query planner chooses how to join MLflow's tables from "
        "statistics that only the `ANALYZE` statement gathers, into a table `sqlite_stat1`. "
        "MLflow never runs it (neither its server nor its migrations), so a database grown "
        "through MLflow's API has no statistics and the planner guesses. For the ranked "
        "queries the guess is costly: `EXPLAIN QUERY PLAN` of the statement MLflow "
        f"{mlflow_version} sends for `order_by metrics.psnr DESC` shows that, without "
        "statistics, SQLite scans the materialised `psnr` rows once for every run (time "
        "growing with N²); with them, it first builds an index on those rows. So every MLflow "
        "query is measured on two databases holding identical data, each behind its own "
        "`mlflow server` (same version, same options):",
        "",
        "- **MLflow as shipped**: the file exactly as MLflow's API and a plain bulk copy leave "
        "it: rows written by the API, rows added with plain `INSERT`s, the earlier ingest "
        "repeats' runs deleted and the file `VACUUM`ed (which gathers no statistics), and "
        "nothing else. This is MLflow as its users run it. The run checks that `sqlite_stat1` "
        "is absent after MLflow's API wrote its runs, after the bulk copy, and again after "
        "the queries (MLflow added none while serving).",
        "- **MLflow with statistics**: a page-for-page copy of that file (SQLite's backup "
        "API), then `ANALYZE`. The best case a careful administrator could give MLflow by "
        "hand; it is not what MLflow does. The run checks that `sqlite_stat1` is there.",
        "",
        "The tables give both, and a ratio against each. MLflow's ingest and its page are "
        "measured on MLflow as shipped only (see note ² under each table).",
        "",
    ]


def method_section(args: argparse.Namespace, chrome_flags: str, mlflow_page: int) -> list[str]:
    return [
        "## What was measured, and how fair it is",
        "",
        "- **Data.** The same N experiments in all (seeded): params `model`, `lambda`, "
        "`lr`; metrics `psnr`, `bitrate_reduction`, `cost_usd`; a status (85 % completed, "
        "8 % failed, 4 % running, 2 % queued, 1 % cancelled). In MLflow, one run per "
        "experiment in one experiment; in codecdash, one experiment each.",
        "- **Ingest.** Each one's fastest API over HTTP from the same Python client (httpx, "
        "one keep-alive connection, bodies serialised with orjson inside the timed loop). "
        "MLflow has no multi-run write: a run takes `runs/create`, `runs/log-batch` "
        "(3 params + 3 metrics) and `runs/update` (final status and end time; runs still "
        "running skip it). codecdash takes `POST /api/v1/experiments/batch` with 1,000 "
        "experiments a request. Each repeat starts from an empty experiment (MLflow) or an "
        "empty database (codecdash).",
        '- **Queries.** MLflow `runs/search` with `order_by=["metrics.psnr DESC"]`, '
        '`max_results=100` and, for the second, `filter="metrics.bitrate_reduction > 80"`; '
        "codecdash `GET /api/v1/experiments?sort=-psnr_db&limit=100` and "
        "`&min_bitrate_reduction_pct=80` (≥ 80: no value equals 80 exactly, and the answers "
        "are checked against the expected ids). MLflow has no count endpoint: the count pages "
        f"through `runs/search` at its largest page ({mlflow_page:,} runs), as a script "
        "would; codecdash reads `total` from `GET /api/v1/experiments?limit=1`.",
        "- **Slow calls.** A measure whose first call took longer than "
        f"`--slow-call-s` ({args.slow_call_s:g} s) is repeated `--slow-repeats` "
        f"({args.slow_repeats}) times rather than {args.repeats}. A call still unanswered "
        f"after `--cap-s` ({args.cap_s:g} s) is abandoned and shown as "
        f'"> {args.cap_s:g} s (capped)"; its server is killed (which ends the abandoned '
        "query, so it cannot slow the next measurement), started again on the same file and "
        "warmed with one small untimed call, and that measure is not called on it again. "
        "The cap applies to every system alike.",
        "- **Pages.** Lighthouse's first load with its mobile defaults (simulated throttling) "
        "of MLflow's runs page of the experiment (`#/experiments/<id>/runs`, the experiment "
        "tagged as classic ML so the runs table shows rather than the GenAI overview) on "
        "MLflow as shipped, and of codecdash's dashboard at `/`. Chromium flags: "
        f"`{chrome_flags}`.",
        "- **Servers.** All on SQLite files on the same disk, each in its default journal "
        "mode (MLflow: rollback journal, a sync per commit; codecdash: WAL with "
        "`synchronous=NORMAL`). That choice is part of each product; `--dbdir /dev/shm` "
        "puts the databases in memory to take the disk's syncs out of the comparison. "
        f"Both MLflow servers run with `--workers {args.mlflow_workers}` (its default is "
        "4 uvicorn workers; the client is sequential, SQLite has one writer and the machine "
        "two cores, so more workers would not help a single client), without access log, "
        "telemetry or its GenAI job runner (all in MLflow's favour); codecdash runs "
        "`codecdash serve --db PATH --port P` as shipped (one uvicorn process, no access "
        "log). The three servers stay up through the query phase; the two not being timed "
        "are idle.",
        "- **Noise.** The machine is shared (the load average is given for each N); all "
        "systems see the same noise because they take turns within each repeat, and each "
        "timed query starts once the CPUs are nearly idle (two 50 ms windows in a row "
        "under 15 % busy, waiting at most 3 s), so work one server leaves behind after "
        "answering does not land in another's measurement. The client's garbage "
        "collector is off during each timed call (as in `timeit`; it holds all N "
        "experiments, and a full collection would land in whichever call triggered it). "
        "The first call of each measure after a server start is kept out of the medians. "
        "Medians, not means; all samples are listed.",
        "- **Not compared.** MLflow stores each metric as a history (steps, timestamps) and "
        "does far more than experiment tracking (artifacts, models, traces); codecdash keeps "
        "one value per field. That difference is the point of the comparison for this job, "
        "but it is a difference of scope as well as of speed.",
        "",
    ]
