"""`GET /api/v1/experiments[/{id}]` on AWS: read from the DynamoDB table, never scanned.

One experiment is one ``GetItem``. The list holds what the running aggregate knows
without a scan (``codecdash.sources.aws.dynamodb``): the 25 newest experiments (one
``BatchGetItem``), optionally of some statuses, with the table's total from the
aggregate's counts. Other sorts, text and range filters, and further pages would need a
scan of the table per request (costly at scale, and open to anyone who can load the
page), so they answer 400 saying where to run them: ``codecdash serve`` over the store.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.sources.aws.dynamodb import (
    RECENT_KEPT,
    SPECIAL_IDS,
    _batch_get,
    deserialize,
    experiment_from_item,
    read_aggregate,
)
from codecdash.store import ListQuery, StoreUnavailable

UNSUPPORTED = (
    "on AWS the experiment list holds the {n} newest experiments (sort=-created_at, "
    "optionally filtered by status) without scanning the DynamoDB table; {what} needs "
    "`codecdash serve` over the local store or PostgreSQL"
)


class UnsupportedQuery(ValueError):
    """A listing the DynamoDB reader cannot answer without a table scan."""


class DynamoExperiments:
    """The experiments API's reader on AWS (see the module's docstring)."""

    def __init__(self, settings: Settings, clients: ClientFactory) -> None:
        self.table = settings.aws_experiments_table
        self.clients = clients

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        if not self.table or experiment_id in SPECIAL_IDS:
            return None
        with _unavailable(self.table):
            answer = self.clients("dynamodb").get_item(
                TableName=self.table, Key={"id": {"S": experiment_id}}
            )
        item = answer.get("Item")
        return experiment_from_item(deserialize(item), time.time()) if item else None

    def list(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None, int]:
        what = _unsupported(query)
        if what:
            raise UnsupportedQuery(UNSUPPORTED.format(n=RECENT_KEPT, what=what))
        if not self.table:
            return [], None, 0
        client = self.clients("dynamodb")
        with _unavailable(self.table):
            agg, exists = read_aggregate(client, self.table)
            if not exists:
                return [], None, 0
            ids = [str(r[1]) for r in agg.recent]
            keys = [{"id": {"S": i}} for i in ids]
            found = _batch_get(client, self.table, keys) if ids else {}
        now = time.time()
        items = [experiment_from_item(found[i], now) for i in ids if i in found]
        if query.status:
            items = [e for e in items if e.get("status") in query.status]
        counts = agg.counts
        wanted = query.status or list(counts)
        total = sum(max(0, counts.get(s, 0)) for s in wanted)
        return items[: query.limit], None, total


@contextlib.contextmanager
def _unavailable(table: str) -> Iterator[None]:
    """DynamoDB's refusals and outages answer 503 with the reason, like a store's."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StoreUnavailable(
            f"DynamoDB table {table}: {error.get('Code', '?')}: {error.get('Message', '')}"
        ) from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"DynamoDB table {table}: {exc}") from None


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
    ):
        if getattr(query, name) is not None:
            return f"the {name} filter"
    return None
