"""Experiments on AWS: the DynamoDB table as a backend of the experiments read model.

Every read is answered from the running aggregate (``codecdash.sources.aws.dynamodb``) and a
few items by key, never a scan: counts, best results, creations in the last day and the
progress series from the aggregate; the newest experiments with one ``BatchGetItem``; one
experiment with one ``GetItem``. The experiment list holds what the aggregate knows without
a scan: the 25 newest experiments, optionally of some statuses, with the table's total from
the aggregate's counts. Other sorts, text and range filters, and further pages would need a
scan of the table per request (costly at scale, and open to anyone who can load the page),
so they raise QueryNotSupported (400) saying where to run them: ``codecdash serve`` over the
store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.experiments.query import Best, ListQuery, QueryNotSupported, RowPage, Unavailable
from codecdash.experiments.readmodel import RECENT, SUMMARY_FIELDS, ExperimentsReadModel
from codecdash.experiments.vocabulary import STATUSES
from codecdash.models import Experiment
from codecdash.sources.aws._common import Part
from codecdash.sources.aws.dynamodb import (
    RECENT_KEPT,
    SPECIAL_IDS,
    TIME_FIELDS,
    Aggregate,
    batch_get,
    deserialize,
    plain,
    read_aggregate,
    to_epoch,
)
from codecdash.sources.base import Facts, FieldInfo, SourceError

EXPERIMENT_FIELDS = tuple(Experiment.model_fields)
UNSUPPORTED = (
    "on AWS the experiment list holds the {n} newest experiments (sort=-created_at, "
    "optionally filtered by status) without scanning the DynamoDB table; {what} needs "
    "`codecdash serve` over the local store or PostgreSQL"
)


def record_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """A deserialized item as a record of the read model (plain values, times in seconds)."""
    out: dict[str, Any] = dict.fromkeys(EXPERIMENT_FIELDS)
    out.update({str(k): plain(v) for k, v in item.items()})
    for name in TIME_FIELDS:
        out[name] = to_epoch(item.get(name))
    if isinstance(out.get("tags"), str):
        out["tags"] = [out["tags"]]
    return out


class DynamoRows:
    """One reading of the table (readmodel.ExperimentRows): the aggregate is read once, on
    first use, unless given; `recent`, when given, are the newest items already fetched."""

    def __init__(
        self,
        client: Any,
        table: str,
        agg: Aggregate | None = None,
        recent: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.client = client
        self.table = table
        self._agg = agg
        self._exists = agg is not None
        self._recent = recent

    def aggregate(self) -> Aggregate:
        if self._agg is None:
            self._agg, self._exists = read_aggregate(self.client, self.table)
        return self._agg

    def status_counts(self) -> dict[str, int]:
        counts = self.aggregate().counts
        return {s: max(0, counts.get(s, 0)) for s in STATUSES}

    def best(self, metric: str) -> Best | None:
        found = self.aggregate().best[metric]
        if found is None:
            return None
        return Best(found[0], found[1], found[2] if len(found) > 2 else None)

    def newest(self, limit: int, not_after: float) -> list[dict[str, Any]]:
        """The aggregate's newest (by creation time; `not_after` is not applied: the
        aggregate keeps only the newest few)."""
        if self._recent is None:
            ids = [str(r[1]) for r in self.aggregate().recent[:limit]]
            found = batch_get(self.client, self.table, _keys(ids)) if ids else {}
            self._recent = [found[i] for i in ids if i in found]
        return [record_of(item) for item in self._recent[:limit]]

    def created_since(self, since: float) -> int:
        return self.aggregate().created_since(since)

    def hour_span(self) -> tuple[int, int] | None:
        return self.aggregate().hour_span()

    def best_per_bucket(
        self, metrics: Sequence[str], bucket_hours: int
    ) -> dict[str, list[tuple[float, float]]]:
        agg = self.aggregate()
        return {metric: agg.best_per_bucket(metric, bucket_hours) for metric in metrics}

    def list(self, query: ListQuery) -> RowPage:
        what = _unsupported(query)
        if what:
            raise QueryNotSupported(UNSUPPORTED.format(n=RECENT_KEPT, what=what))
        if not self.table:
            return RowPage([], None, 0)
        agg = self.aggregate()
        if not self._exists:
            return RowPage([], None, 0)
        ids = [str(r[1]) for r in agg.recent]
        found = batch_get(self.client, self.table, _keys(ids)) if ids else {}
        records = [record_of(found[i]) for i in ids if i in found]
        if query.status:
            records = [r for r in records if r.get("status") in query.status]
        wanted = query.status or list(agg.counts)
        total = sum(max(0, agg.counts.get(s, 0)) for s in wanted)
        return RowPage(records[: query.limit], None, total)

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        if not self.table or experiment_id in SPECIAL_IDS:
            return None
        answer = self.client.get_item(TableName=self.table, Key={"id": {"S": experiment_id}})
        item = answer.get("Item")
        return record_of(deserialize(item)) if item else None


def _keys(ids: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": {"S": i}} for i in ids]


def _unsupported(query: ListQuery) -> str | None:
    if query.sort != "-created_at":
        return f"sort={query.sort}"
    if query.cursor:
        return "a further page (cursor)"
    for name in (
        "q",
        "worker_id",
        "tag",
        "created_after",
        "created_before",
        "min_psnr_db",
        "min_bitrate_reduction_pct",
        "max_bd_rate_pct",
        "dataset",
        "method",
    ):
        if getattr(query, name) is not None:
            return f"the {name} filter"
    return None


class DynamoExperiments:
    """The experiments table (readmodel.ExperimentsBackend): what the experiments routes
    read on AWS."""

    def __init__(self, settings: Settings, clients: ClientFactory) -> None:
        self.table = settings.aws_experiments_table or ""
        self.clients = clients

    @contextlib.contextmanager
    def rows(self) -> Iterator[DynamoRows]:
        """DynamoDB's refusals and outages are Unavailable (503) with the reason."""
        try:
            yield DynamoRows(self.clients("dynamodb"), self.table)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise Unavailable(
                f"DynamoDB table {self.table}: {error.get('Code', '?')}: {error.get('Message', '')}"
            ) from None
        except BotoCoreError as exc:
            raise Unavailable(f"DynamoDB table {self.table}: {exc}") from None


class ExperimentsSource:
    """The experiments section on AWS: the aggregate and the newest items, fetched at most
    once per `ttl_s` (and the items only when the aggregate changed), through the read
    model."""

    name = "aws.experiments"
    sections: tuple[str, ...] = ("experiments",)
    timeout_s = 6.0
    fields = {  # noqa: RUF012
        "total_experiments": FieldInfo("experiments in the table (running aggregate)"),
        "experiments_24h": FieldInfo("experiments created in the last 24 hours (10-min buckets)"),
        **{name: FieldInfo(*info) for name, info in SUMMARY_FIELDS.items()},
    }

    def __init__(self, settings: Settings, clients: ClientFactory, ttl_s: float = 10.0) -> None:
        assert settings.aws_experiments_table
        self.settings = settings
        self.table = settings.aws_experiments_table
        self.clients = clients
        self.model = ExperimentsReadModel(DynamoExperiments(settings, clients), settings)
        self.part = Part(self.name, self._fetch, ttl_s=ttl_s, timeout_s=5.0)
        self._recent: tuple[int, list[str], list[dict[str, Any]]] | None = None

    async def collect(self, now: float) -> Facts:
        outcome = await self.part.get(now)
        if outcome.error:
            raise SourceError(outcome.error)
        agg, recent = outcome.value
        rows = DynamoRows(None, self.table, agg, recent)
        return {"experiments": self.model.facts_from(rows, now)}

    def _fetch(self, now: float) -> tuple[Aggregate, list[dict[str, Any]]]:
        client = self.clients("dynamodb")
        agg, exists = read_aggregate(client, self.table)
        if not exists:
            raise SourceError(
                f"table {self.table} has no aggregate item yet: deploy the stack (its stream "
                "handler keeps it) or run `codecdash doctor --rebuild-aggregate`"
            )
        ids = [str(r[1]) for r in agg.recent[:RECENT]]
        cached = self._recent
        if cached is not None and cached[0] == agg.version and cached[1] == ids:
            return agg, cached[2]
        found = batch_get(client, self.table, _keys(ids)) if ids else {}
        items = [found[i] for i in ids if i in found]
        self._recent = (agg.version, ids, items)
        return agg, items
