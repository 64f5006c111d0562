"""The experiments read model over any backend (codecdash/experiments/readmodel.py).

A backend answers plain questions (counts, best rows, newest rows, creations since, best
per bucket, a list page, one experiment); the read model shapes the facts once. Here the
backend is a list in memory, so what is checked is the shaping itself: the metric switches,
the BD-rate sign, best so far, the experiment as the API shows it; and that the API reads
through whatever backend it is given, refusals included. The SQL store and the DynamoDB
aggregate answer alike: tests/test_aws_sources.py compares them section for section.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api_helpers import assert_error
from codecdash.config import Settings
from codecdash.experiments.query import Best, ListQuery, QueryNotSupported, RowPage
from codecdash.experiments.readmodel import ExperimentsReadModel, experiment
from codecdash.experiments.vocabulary import RANKED, STATUSES
from codecdash.models import Experiment

HOUR = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def record(experiment_id: str, created: float, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(Experiment.model_fields)
    out.update(id=experiment_id, status="completed", created_at=created)
    out.update(fields)
    return out


class MemoryRows:
    """readmodel.ExperimentRows over records in a list (only the newest-first list)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def status_counts(self) -> dict[str, int]:
        return {s: sum(r["status"] == s for r in self.records) for s in STATUSES}

    def best(self, metric: str) -> Best | None:
        done = [r for r in self.records if r["status"] == "completed" and r[metric] is not None]
        best: dict[str, Any] | None = None
        for r in done:
            if best is None or RANKED[metric].better(r[metric], best[metric]):
                best = r
        return None if best is None else Best(best["id"], best[metric], best["bd_rate_anchor"])

    def newest(self, limit: int, not_after: float) -> list[dict[str, Any]]:
        kept = [r for r in self.records if r["created_at"] <= not_after]
        ordered = sorted(kept, key=lambda r: (r["created_at"], r["id"]), reverse=True)
        return [dict(r) for r in ordered[:limit]]

    def created_since(self, since: float) -> int:
        return sum(r["created_at"] >= since for r in self.records)

    def _done(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "completed" and r["finished_at"]]

    def hour_span(self) -> tuple[int, int] | None:
        hours = [int(r["finished_at"] // HOUR) for r in self._done()]
        return (min(hours), max(hours)) if hours else None

    def best_per_bucket(
        self, metrics: Sequence[str], bucket_hours: int
    ) -> dict[str, list[tuple[float, float]]]:
        width = bucket_hours * HOUR
        found: dict[str, list[tuple[float, float]]] = {}
        for metric in metrics:
            buckets: dict[float, float] = {}
            for r in self._done():
                start, value = r["finished_at"] // width * width, r[metric]
                if value is not None and (
                    start not in buckets or RANKED[metric].better(value, buckets[start])
                ):
                    buckets[start] = value
            found[metric] = sorted(buckets.items())
        return found

    def list(self, query: ListQuery) -> RowPage:
        if query.sort != "-created_at":
            raise QueryNotSupported(f"this backend lists newest first only, not {query.sort}")
        kept = [r for r in self.records if not query.status or r["status"] in query.status]
        return RowPage(self.newest(query.limit, float("inf")), None, len(kept))

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        found = next((r for r in self.records if r["id"] == experiment_id), None)
        return None if found is None else dict(found)


class MemoryBackend:
    """readmodel.ExperimentsBackend over a list of records."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    @contextlib.contextmanager
    def rows(self) -> Iterator[MemoryRows]:
        yield MemoryRows(self.records)


RECORDS = [
    # a: better BD-rate, worse reported saving; b: the other way round
    record("a", T0, finished_at=T0 + HOUR, bd_rate_pct=-30.0, bd_rate_anchor="x264",
           bitrate_reduction_pct=20.0, psnr_db=35.0, ms_ssim=0.95),
    record("b", T0 + 60, finished_at=T0 + 2 * HOUR, bd_rate_pct=-10.0, bd_rate_anchor="x264",
           bitrate_reduction_pct=40.0, psnr_db=33.0, ms_ssim=0.97),
    record("c", T0 + 120, finished_at=T0 + 3 * HOUR, bd_rate_pct=-50.0, bd_rate_anchor="x264",
           psnr_db=34.0),
    record("f", T0 + 180, status="failed", finished_at=T0 + 3 * HOUR, psnr_db=99.0),
    record("r", T0 + 240, status="running", started_at=T0 + 240),
]  # fmt: skip


def facts(records: list[dict[str, Any]], now: float = T0 + 4 * HOUR, **switches: Any) -> Any:
    settings = Settings(database_url="unused.db", **switches)
    return ExperimentsReadModel(MemoryBackend(records), settings).facts(now)


def test_the_summary_follows_the_metric_switches_and_the_bd_rate_sign() -> None:
    summary = facts(RECORDS)["summary"]
    assert summary["total_experiments"] == 5
    assert (summary["completed"], summary["failed"], summary["running"]) == (3, 1, 1)
    assert summary["success_rate"] == 0.75
    assert summary["experiments_24h"] == 5
    assert summary["best_compression"] == {
        "value_pct": 40.0,
        "experiment_id": "b",
        "metric": "reported",
        "per": "experiment",
    }
    assert summary["best_quality"] == {"psnr_db": 35.0, "experiment_id": "a", "metric": "psnr"}
    summary = facts(RECORDS, compression_metric="bd_rate", quality_metric="ms_ssim")["summary"]
    # BD-rate -50 % (fewer bits) is a saving of 50 %
    assert summary["best_compression"] == {
        "value_pct": 50.0,
        "experiment_id": "c",
        "metric": "bd_rate",
        "anchor": "x264",
        "per": "experiment",
    }
    assert summary["best_quality"] == {
        "ms_ssim": 0.97,
        "psnr_db": None,
        "experiment_id": "b",
        "metric": "ms_ssim",
    }
    empty = facts([])["summary"]
    assert empty["best_compression"] is None and empty["success_rate"] is None


def test_progress_is_the_best_so_far_per_hour_then_per_day() -> None:
    progress = facts(RECORDS, compression_metric="bd_rate")["progress"]
    assert progress["bucket"] == "hour"
    assert [p["best_pct"] for p in progress["compression"]] == [30.0, 30.0, 50.0]
    assert [p["best_psnr_db"] for p in progress["quality"]] == [35.0, 35.0, 35.0]
    assert progress["quality"][0]["t"] == "2026-01-01T01:00:00.000Z"
    later = record("z", T0, finished_at=T0 + 80 * HOUR, psnr_db=36.0)
    progress = facts([*RECORDS, later], now=T0 + 81 * HOUR)["progress"]
    assert progress["bucket"] == "day"
    assert progress["quality"] == [
        {"t": "2026-01-01T00:00:00.000Z", "best_psnr_db": 35.0},
        {"t": "2026-01-04T00:00:00.000Z", "best_psnr_db": 36.0},
    ]


def test_recent_experiments_are_shaped_as_the_api_shows_them() -> None:
    ahead = record("ghost", T0 + 10 * 86400)  # stored before such times were refused
    recent = facts([*RECORDS, ahead], now=T0 + 300)["recent_experiments"]
    assert [e["id"] for e in recent] == ["r", "f", "c", "b", "a"]
    assert recent[0]["started_at"] == "2026-01-01T00:04:00.000Z"
    assert recent[0]["duration_s"] == 60.0  # running: so far
    assert recent[1]["created_at"] == "2026-01-01T00:03:00.000Z"
    shaped = experiment({"status": "completed", "started_at": 10.0, "finished_at": 25.0})
    assert shaped["duration_s"] == 15.0  # a backend that stores no duration


def test_the_recomputing_flag_is_said_only_while_it_lasts() -> None:
    flag = [True]
    settings = Settings(database_url="unused.db")
    model = ExperimentsReadModel(MemoryBackend(RECORDS), settings, recomputing=lambda: flag[0])
    assert model.facts(T0)["summary"]["bd_rate_recomputing"] is True
    flag[0] = False
    assert "bd_rate_recomputing" not in model.facts(T0)["summary"]


@pytest.mark.anyio
async def test_the_api_reads_experiments_through_the_backend_it_is_given(
    make_app: Callable[..., Any],
) -> None:
    app: FastAPI = await make_app(experiments_backend=MemoryBackend(RECORDS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        page = (await client.get("/api/v1/experiments?status=completed&limit=2")).json()
        assert [e["id"] for e in page["items"]] == ["r", "f"]
        assert page["total"] == 3 and page["next_cursor"] is None
        one = (await client.get("/api/v1/experiments/a")).json()
        assert one["finished_at"] == "2026-01-01T01:00:00.000Z" and one["bd_rate_pct"] == -30.0
        assert_error(await client.get("/api/v1/experiments/nope"), 404)
        refused = assert_error(await client.get("/api/v1/experiments?sort=-psnr_db"), 400)
        assert "newest first only" in refused["message"]


def test_the_store_and_the_codec_maths_import_nothing_above_them() -> None:
    """The store takes plain data (no request models) and never calls up into the
    experiments service, the sources or the API; the codec maths load no store."""
    code = (
        "import sys\n"
        "import codecdash.store, codecdash.store.reads\n"
        "up = [m for m in sys.modules if m == 'codecdash.models' or m.startswith(\n"
        "    ('codecdash.api', 'codecdash.sources', 'codecdash.experiments.service',\n"
        "     'codecdash.experiments.anchors', 'codecdash.experiments.rederive'))]\n"
        "import codecdash.codec_metrics, codecdash.results\n"
        "print(','.join(sorted(up)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    pure = (
        "import sys, codecdash.codec_metrics, codecdash.results; print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", pure], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
