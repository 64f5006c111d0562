"""One N, from ingest to pages.

1. Ingest, alternating: MLflow writes ``--mlflow-api-runs`` runs through its API into a new,
   empty experiment each repeat; codecdash writes all N into a new, empty database each
   repeat.
2. MLflow's database keeps the last repeat's experiment, and the rest of the N runs are
   bulk-loaded into it with SQL: that file is MLflow **as shipped**. A page-for-page copy
   of it after ``ANALYZE`` is MLflow **with statistics** (see ``mlflow_db``).
3. Three servers, each on its own database, answer the same queries, taking turns.
4. Lighthouse loads MLflow's page (as shipped) and codecdash's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _serve import clean_env, create_token
from codecdash.net import free_port
from mlflow_compare import log
from mlflow_compare.clients import Capped, Codecdash, MLflow
from mlflow_compare.data import MIN_BR, codecdash_item, expected_answers, make_experiments
from mlflow_compare.mlflow_db import bulk_load, keep_only, statistics_rows, with_statistics
from mlflow_compare.pages import page_load
from mlflow_compare.servers import (
    Server,
    codecdash_page_present,
    codecdash_server,
    mlflow_server,
    running,
)
from mlflow_compare.timing import settle, timed, turns

MLFLOW, MLFLOW_STATS, CODECDASH = "mlflow", "mlflow_stats", "codecdash"
SYSTEMS = (MLFLOW, MLFLOW_STATS, CODECDASH)  # the query phase
MEASURES = ("top_psnr", "top_br80", "count")


@dataclass
class Result:
    n: int
    api_runs: int
    cap_s: float
    ingest: dict[str, list[float]] = field(default_factory=lambda: {MLFLOW: [], CODECDASH: []})
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # inf: capped
    first: dict[str, dict[str, float]] = field(default_factory=dict)
    capped: set[tuple[str, str]] = field(default_factory=set)  # (measure, system)
    agree: dict[str, bool | None] = field(default_factory=dict)  # None: capped, unchecked
    counts: dict[str, int] = field(default_factory=dict)
    bulk_loaded: int = 0
    bulk_s: float = 0.0
    analyze_s: float = 0.0
    statistics: dict[str, int | None] = field(default_factory=dict)  # sqlite_stat1 rows
    restarts: dict[str, int] = field(default_factory=dict)
    startup_s: dict[str, float] = field(default_factory=dict)
    pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_note: str | None = None
    load: list[float] = field(default_factory=list)


Client = MLflow | Codecdash


def ask(client: Client, measure: str, experiment_id: str) -> Any:
    """One measure's call on either system: a list of ids, or the count."""
    min_br = MIN_BR if measure == "top_br80" else None
    if isinstance(client, Codecdash):
        return client.count() if measure == "count" else client.top(min_br)
    if measure == "count":
        return client.count(experiment_id)
    return client.top(experiment_id, min_br)


class Fleet:
    """The query phase's three servers and a client for each; restarts one that was left
    working on a capped call."""

    def __init__(self, servers: dict[str, Server], res: Result, experiment_id: str) -> None:
        self.servers, self.res, self.experiment_id = servers, res, experiment_id
        self.clients: dict[str, Client] = {s: self._client(s) for s in servers}

    def _client(self, system: str) -> Client:
        port = int(self.servers[system].url.rsplit(":", 1)[1])
        return Codecdash(port) if system == CODECDASH else MLflow(port)

    def restart(self, system: str, timeout: float) -> None:
        """Stop the server (its abandoned query with it), start it again on the same file
        and warm it with one small, untimed call."""
        self.clients[system].close()
        self.servers[system].stop(kill=True)
        self.servers[system].start(timeout)
        self.clients[system] = client = self._client(system)
        if isinstance(client, MLflow):
            client.search(self.experiment_id, None, limit=1, order=False)
        else:
            client.count()
        self.res.restarts[system] = self.res.restarts.get(system, 0) + 1

    def call(self, measure: str, system: str, cap_s: float, timeout: float) -> tuple[float, Any]:
        """Settle, then time one call; ``(inf, None)`` when it ran past ``cap_s``."""
        settle()
        client = self.clients[system]
        client.capped(cap_s)
        try:
            return timed(lambda: ask(client, measure, self.experiment_id))
        except Capped:
            self.res.capped.add((measure, system))
            log(
                f"N={self.res.n}: {measure} on {system} still unanswered after {cap_s:g} s: "
                "capped; restarting that server"
            )
            self.restart(system, timeout)
            return math.inf, None
        finally:
            client.capped(None)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def run_n(
    args: argparse.Namespace, n: int, venv: Path, rundir: Path, lh_binary: Path | None
) -> Result:
    exps = make_experiments(n, args.seed)
    api_runs = min(n, args.mlflow_api_runs)
    res = Result(n=n, api_runs=api_runs, cap_s=args.cap_s)
    res.load.append(os.getloadavg()[0])
    nd = rundir / f"n{n}"
    nd.mkdir(parents=True, exist_ok=True)
    shipped, stats_db = nd / "mlflow.db", nd / "mlflow-stats.db"

    experiment_id, codecdash_db = ingest(args, exps, res, venv, nd, shipped)
    res.statistics["api"] = statistics_rows(shipped)

    # MLflow as shipped: the last repeat's experiment, plus a plain SQL copy past api_runs
    keep_only(shipped, experiment_id)
    if api_runs < n:
        res.bulk_s = bulk_load(shipped, experiment_id, exps[api_runs:])
        res.bulk_loaded = n - api_runs
        log(f"N={n}: bulk-loaded {res.bulk_loaded} runs into MLflow with SQL in {res.bulk_s:.1f} s")
    res.statistics["bulk"] = statistics_rows(shipped)
    # MLflow with statistics: the same pages, then ANALYZE
    res.analyze_s = with_statistics(shipped, stats_db)
    res.statistics["stats"] = statistics_rows(stats_db)
    if res.statistics["api"] is not None or res.statistics["bulk"] is not None:
        raise RuntimeError(f"MLflow's database as shipped has planner statistics: {res.statistics}")
    if not res.statistics["stats"]:
        raise RuntimeError("ANALYZE left no statistics in the copy")
    log(
        f"N={n}: copied MLflow's database and ran ANALYZE on the copy in {res.analyze_s:.1f} s "
        f"(sqlite_stat1: as shipped none, copy {res.statistics['stats']} rows)"
    )

    servers = {
        MLFLOW: mlflow_server(venv, shipped, free_port(), nd, args.mlflow_workers, "mlflow"),
        MLFLOW_STATS: mlflow_server(
            venv, stats_db, free_port(), nd, args.mlflow_workers, "mlflow-stats"
        ),
        CODECDASH: codecdash_server(codecdash_db, free_port(), nd),
    }
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(running(server, args.start_timeout))
        fleet = Fleet(servers, res, experiment_id)
        stack.callback(fleet.close)
        queries(args, fleet, res, expected_answers(exps))
        if lh_binary is not None and (not args.lighthouse_n or n in args.lighthouse_n):
            pages(args, res, lh_binary, nd, servers, experiment_id)
    res.statistics["after"] = statistics_rows(shipped)
    res.load.append(os.getloadavg()[0])
    return res


def ingest(
    args: argparse.Namespace,
    exps: list[Any],
    res: Result,
    venv: Path,
    nd: Path,
    mdb: Path,
) -> tuple[str, Path]:
    """The ingest repeats; MLflow's experiment id of the last one and codecdash's last
    database."""
    n, api_runs = res.n, res.api_runs
    items = [codecdash_item(e) for e in exps]
    experiment_id = ""
    ml_server = mlflow_server(venv, mdb, free_port(), nd, args.mlflow_workers)
    with running(ml_server, args.start_timeout) as ml_start:
        res.startup_s[MLFLOW] = ml_start
        ml = MLflow(int(ml_server.url.rsplit(":", 1)[1]))
        for r in range(args.repeats):
            for system in turns(r, (MLFLOW, CODECDASH)):
                if system == MLFLOW:
                    experiment_id = ml.create_experiment(f"codec-bench-n{n}-r{r}")
                    t = ml.ingest(experiment_id, exps[:api_runs])
                    res.ingest[MLFLOW].append(api_runs / t)
                    log(
                        f"N={n} repeat {r + 1}: MLflow ingested {api_runs} runs via its API "
                        f"in {t:.1f} s ({api_runs / t:.1f}/s)"
                    )
                    continue
                cdb = nd / f"codecdash-r{r}.db"
                token = create_token(cdb, env=clean_env())
                port = free_port()
                with running(codecdash_server(cdb, port, nd), args.start_timeout) as s:
                    res.startup_s[CODECDASH] = s
                    cd = Codecdash(port, token)
                    t = cd.ingest(items)
                    cd.close()
                res.ingest[CODECDASH].append(n / t)
                log(
                    f"N={n} repeat {r + 1}: codecdash ingested {n} experiments via its "
                    f"batch API in {t:.2f} s ({n / t:.0f}/s)"
                )
                if r != args.repeats - 1:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{cdb}{suffix}").unlink(missing_ok=True)
        ml.close()
    return experiment_id, nd / f"codecdash-r{args.repeats - 1}.db"


def queries(args: argparse.Namespace, fleet: Fleet, res: Result, expected: dict[str, Any]) -> None:
    """The first call of each measure on each system (kept apart), then the repeats."""

    def call(m: str, system: str) -> tuple[float, Any]:
        return fleet.call(m, system, args.cap_s, args.start_timeout)

    for m in MEASURES:
        res.samples[m] = {s: [] for s in SYSTEMS}
        res.first[m] = {}
        for system in SYSTEMS:
            t, value = call(m, system)
            res.first[m][system] = t
            res.agree[f"{m}:{system}"] = None if value is None else value == expected[m]
            if m == "count" and value is not None:
                res.counts[system] = int(value)
    for r in range(args.repeats):
        for m in MEASURES:
            for system in turns(r, SYSTEMS):
                done = res.samples[m][system]
                if (m, system) in res.capped:
                    continue  # a call ran past --cap-s: not again
                if res.first[m][system] > args.slow_call_s and len(done) >= args.slow_repeats:
                    continue  # a call slower than --slow-call-s: fewer repeats
                done.append(call(m, system)[0])
        log(f"N={res.n} repeat {r + 1}: " + "; ".join(progress(res, m) for m in MEASURES))


def progress(res: Result, m: str) -> str:
    parts = []
    for system in SYSTEMS:
        done = res.samples[m][system]
        last = f"{done[-1] * 1000:.1f} ms" if done else "-"
        parts.append(f"{system} {last} ({len(done)})")
    return f"{m} " + ", ".join(parts)


def pages(
    args: argparse.Namespace,
    res: Result,
    binary: Path,
    nd: Path,
    servers: dict[str, Server],
    experiment_id: str,
) -> None:
    """MLflow's runs page of the experiment (on the database as shipped: what its users load)
    and codecdash's dashboard, alternating."""
    if not codecdash_page_present():
        res.page_note = "n/a (page missing)"
    urls = {
        MLFLOW: f"{servers[MLFLOW].url}/#/experiments/{experiment_id}/runs",
        CODECDASH: f"{servers[CODECDASH].url}/",
    }
    res.pages = {MLFLOW: [], CODECDASH: []}
    for r in range(args.lighthouse_repeats):
        for system in turns(r, (MLFLOW, CODECDASH)):
            if system == CODECDASH and res.page_note:
                continue
            page = page_load(binary, urls[system], nd / f"lh-{system}-{r}.json", args.chrome)
            res.pages[system].append(page)
            shown = {k: page.get(k) for k in ("performance", "transfer_bytes", "error")}
            log(f"N={res.n} Lighthouse {system} {r + 1}: {json.dumps(shown)}")
