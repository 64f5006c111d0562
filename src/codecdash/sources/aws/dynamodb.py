"""The experiments table on DynamoDB: its running aggregate, kept without a table scan.

The table (``CODECDASH_AWS_EXPERIMENTS_TABLE``) has partition key ``id`` and attributes named
as the Experiment fields: numbers as N, ``params`` a map, ``tags`` a list; times as N (Unix
seconds) or S (ISO 8601).

**Design: running aggregates kept from DynamoDB Streams.** Two extra items live in the
table:

- ``__codecdash_aggregate__``: counts per status, the best completed result per metric,
  the ids of the 25 newest experiments, and creations per 10 minutes over the last day;
- ``__codecdash_progress__``: the best results per hour (the last 96 hours) and per day,
  for the progress charts.

``codecdash.aws_lambda.stream_handler`` receives the table's stream (NEW_AND_OLD_IMAGES)
and turns each batch of changes into deltas on those items, written with an optimistic
version check (and in one transaction when both change). The rare change an aggregate
cannot absorb (a best result made worse or deleted, one of the newest experiments deleted)
triggers a rebuild: one paginated scan, projected on the aggregated attributes. The same
rebuild runs once after deployment and on demand (``codecdash doctor --rebuild-aggregate``).

A refresh then costs two requests, whatever the table's size: one ``BatchGetItem`` for the
two aggregate items, and one ``BatchGetItem`` for the 20 newest experiments (skipped when
the aggregate has not changed since the last refresh). ``docs/aws.md`` has the prices.
The read model's backend over the table, and the experiments source, are
``codecdash.sources.aws.experiments``.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from codecdash.experiments.readmodel import RECENT
from codecdash.experiments.vocabulary import LARGER_IS_BETTER, STATUSES
from codecdash.sources.base import SourceError

log = logging.getLogger("codecdash.aws.dynamodb")

AGGREGATE_ID = "__codecdash_aggregate__"
PROGRESS_ID = "__codecdash_progress__"
SPECIAL_IDS = frozenset({AGGREGATE_ID, PROGRESS_ID})
RECENT_KEPT = 25  # a few spare, so deleting one of the newest rarely needs a rebuild
CREATED_BUCKET_S = 600
HOURLY_KEPT = 96
APPLIED_KEPT = 32
TIME_FIELDS = ("created_at", "started_at", "finished_at", "updated_at")
# metric -> True when larger is better; the order of the values in the progress lists.
METRICS = LARGER_IS_BETTER
PROJECTION = ("id", "status", *TIME_FIELDS, *METRICS, "bd_rate_anchor")

_deserializer = TypeDeserializer()


class AggregateMissing(SourceError):
    pass


# -- items ---------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """DynamoDB's Decimals, sets and nested maps as plain JSON-ready values."""
    if isinstance(value, Decimal):
        return (
            int(value)
            if value == value.to_integral_value() and abs(value) < 2**53
            else float(value)
        )
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return None
    return value


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def to_epoch(value: Any) -> float | None:
    """A time attribute: N (Unix seconds, or milliseconds) or S (ISO 8601)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        return seconds / 1000.0 if seconds > 1e11 else seconds
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_epoch(Decimal(text))
        except ArithmeticError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return float(calendar.timegm(parsed.timetuple())) + parsed.microsecond / 1e6
        return parsed.timestamp()
    return None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _facts_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """What the aggregates need of an item (a plain dict, times in seconds)."""
    status = item.get("status")
    return {
        "id": str(item.get("id")),
        "status": status if status in STATUSES else "queued",
        **{name: to_epoch(item.get(name)) for name in TIME_FIELDS},
        **{name: _number(item.get(name)) for name in METRICS},
        "bd_rate_anchor": item.get("bd_rate_anchor"),
    }


def _better(metric: str, new: float, old: float) -> bool:
    return new > old if METRICS[metric] else new < old


# -- the aggregate ---------------------------------------------------------------------------
class Aggregate:
    """The running aggregates, as plain data that round-trips through JSON."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
        version: int = 0,
    ) -> None:
        data = data or {}
        progress = progress or {}
        self.version = version
        self.counts: dict[str, int] = {s: int(data.get("counts", {}).get(s, 0)) for s in STATUSES}
        self.best: dict[str, list[Any] | None] = {m: data.get("best", {}).get(m) for m in METRICS}
        self.recent: list[list[Any]] = [list(r) for r in data.get("recent", [])]
        self.created: dict[str, int] = dict(data.get("created", {}))
        self.applied: list[str] = list(data.get("applied", []))
        self.rebuilt_at: float | None = data.get("rebuilt_at")
        self.hourly: dict[str, list[float | None]] = dict(progress.get("hourly", {}))
        self.daily: dict[str, list[float | None]] = dict(progress.get("daily", {}))
        self.first_hour: int | None = progress.get("first_hour")
        self.last_hour: int | None = progress.get("last_hour")
        self.progress_changed = False
        self.needs_rebuild: str | None = None

    # -- serialization
    def data(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "best": self.best,
            "recent": self.recent,
            "created": self.created,
            "applied": self.applied,
            "rebuilt_at": self.rebuilt_at,
        }

    def progress(self) -> dict[str, Any]:
        return {
            "hourly": self.hourly,
            "daily": self.daily,
            "first_hour": self.first_hour,
            "last_hour": self.last_hour,
        }

    @classmethod
    def from_items(
        cls, agg: Mapping[str, Any] | None, progress: Mapping[str, Any] | None
    ) -> Aggregate:
        data = json.loads(agg["data"]) if agg and agg.get("data") else None
        prog = json.loads(progress["data"]) if progress and progress.get("data") else None
        version = int(agg.get("version", 0)) if agg else 0
        return cls(data, prog, version)

    @property
    def total(self) -> int:
        return sum(max(0, n) for n in self.counts.values())

    # -- changes
    def apply(
        self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, now: float
    ) -> None:
        """One item changed from `old` to `new` (deserialized images; None: absent)."""
        o = _facts_of(old) if old else None
        n = _facts_of(new) if new else None
        if o is not None:
            self.counts[o["status"]] -= 1
        if n is not None:
            self.counts[n["status"]] += 1
        self._created(o, n, now)
        self._recent(o, n)
        if o is not None and o["status"] == "completed" and self._downgraded(o, n):
            self.needs_rebuild = f"a completed result of {o['id']!r} was changed or removed"
        if n is not None and n["status"] == "completed":
            self._add_completed(n)

    def _created(self, o: dict[str, Any] | None, n: dict[str, Any] | None, now: float) -> None:
        before = o["created_at"] if o else None
        after = n["created_at"] if n else None
        if o is not None and n is not None and before == after:
            return
        if before is not None and o is not None:
            key = str(int(before // CREATED_BUCKET_S))
            if key in self.created:
                self.created[key] -= 1
                if self.created[key] <= 0:
                    del self.created[key]
        if after is not None:
            key = str(int(after // CREATED_BUCKET_S))
            self.created[key] = self.created.get(key, 0) + 1
        oldest = int((now - 90000) // CREATED_BUCKET_S)
        self.created = {k: v for k, v in self.created.items() if int(k) >= oldest}

    def _recent(self, o: dict[str, Any] | None, n: dict[str, Any] | None) -> None:
        key = (n or o or {}).get("id")
        had = any(r[1] == key for r in self.recent)
        self.recent = [r for r in self.recent if r[1] != key]
        if n is not None:
            self.recent.append([n["created_at"] or 0.0, n["id"]])
            self.recent.sort(key=lambda r: (r[0], r[1]), reverse=True)
            del self.recent[RECENT_KEPT:]
        elif had and len(self.recent) < RECENT and self.total > len(self.recent):
            self.needs_rebuild = f"{key!r}, one of the newest experiments, was deleted"

    def _downgraded(self, o: dict[str, Any], n: dict[str, Any] | None) -> bool:
        if n is None or n["status"] != "completed":
            return True
        if _hour(o) != _hour(n):
            return True
        for metric in METRICS:
            before, after = o[metric], n[metric]
            if before is not None and (after is None or _better(metric, before, after)):
                return True
        return False

    def _add_completed(self, n: dict[str, Any]) -> None:
        for metric in METRICS:
            value = n[metric]
            if value is None:
                continue
            best = self.best[metric]
            if (
                best is None
                or _better(metric, value, best[1])
                or (value == best[1] and n["id"] > best[0])
            ):
                entry: list[Any] = [n["id"], value]
                if metric == "bd_rate_pct":
                    entry.append(n.get("bd_rate_anchor"))
                self.best[metric] = entry
        hour = _hour(n)
        values = [n[m] for m in METRICS]
        if hour is None or all(v is None for v in values):
            return
        if self.first_hour is None or hour < self.first_hour:
            self.first_hour, self.progress_changed = hour, True
        if self.last_hour is None or hour > self.last_hour:
            self.last_hour, self.progress_changed = hour, True
        for table, key in ((self.hourly, str(hour)), (self.daily, str(hour // 24))):
            merged = _merge(table.get(key), values)
            if merged != table.get(key):
                table[key] = merged
                self.progress_changed = True
        newest = self.last_hour
        self.hourly = {h: v for h, v in self.hourly.items() if int(h) > newest - HOURLY_KEPT}

    # -- reads
    def created_since(self, since: float) -> int:
        """Experiments created since `since` (to the 10 minutes; the last day or so)."""
        first = since // CREATED_BUCKET_S
        return sum(n for k, n in self.created.items() if int(k) >= first)

    def hour_span(self) -> tuple[int, int] | None:
        if self.first_hour is None or self.last_hour is None:
            return None
        return self.first_hour, self.last_hour

    def best_per_bucket(self, metric: str, bucket_hours: int) -> list[tuple[float, float]]:
        """(bucket start, best value), oldest first: per hour (the last HOURLY_KEPT hours)
        or per day."""
        index = list(METRICS).index(metric)
        table = self.hourly if bucket_hours == 1 else self.daily
        width = 3600.0 * (1 if bucket_hours == 1 else 24)
        found = [(int(key) * width, table[key][index]) for key in sorted(table, key=int)]
        return [(t, value) for t, value in found if value is not None]


def _hour(facts: Mapping[str, Any]) -> int | None:
    at = facts["finished_at"] or facts["updated_at"] or facts["created_at"]
    return None if at is None else int(at // 3600)


def _merge(current: list[float | None] | None, values: list[float | None]) -> list[float | None]:
    if current is None:
        return list(values)
    merged: list[float | None] = []
    for metric, old, new in zip(METRICS, current, values, strict=True):
        if old is None:
            merged.append(new)
        elif new is None:
            merged.append(old)
        else:
            merged.append(new if _better(metric, new, old) else old)
    return merged


def build_aggregate(items: Iterable[Mapping[str, Any]], now: float) -> Aggregate:
    """The aggregates from scratch, from every item (a rebuild)."""
    agg = Aggregate()
    for item in items:
        if item.get("id") in SPECIAL_IDS:
            continue
        agg.apply(None, item, now)
    agg.needs_rebuild = None
    agg.rebuilt_at = now
    agg.progress_changed = True
    return agg


# -- reading and writing the aggregate items -----------------------------------------------
def read_aggregate(client: Any, table: str) -> tuple[Aggregate, bool]:
    """The aggregate (and whether it exists) with one BatchGetItem."""
    keys = [{"id": {"S": AGGREGATE_ID}}, {"id": {"S": PROGRESS_ID}}]
    found = batch_get(client, table, keys)
    agg = found.get(AGGREGATE_ID)
    return Aggregate.from_items(agg, found.get(PROGRESS_ID)), agg is not None


def batch_get(client: Any, table: str, keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    request: dict[str, Any] = {table: {"Keys": keys}}
    for _attempt in range(3):
        answer = client.batch_get_item(RequestItems=request)
        for raw in answer.get("Responses", {}).get(table, []):
            item = deserialize(raw)
            found[str(item["id"])] = item
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            break
    return found


def write_aggregate(client: Any, table: str, agg: Aggregate, now: float) -> None:
    """Writes both items (progress only when it changed), if nobody wrote in between."""
    expected = agg.version
    agg_item = {
        "id": {"S": AGGREGATE_ID},
        "version": {"N": str(expected + 1)},
        "updated_at": {"N": f"{now:.3f}"},
        "data": {"S": json.dumps(agg.data(), separators=(",", ":"))},
    }
    condition = {
        "ConditionExpression": "attribute_not_exists(id) OR version = :v",
        "ExpressionAttributeValues": {":v": {"N": str(expected)}},
    }
    if agg.progress_changed:
        progress_item = {
            "id": {"S": PROGRESS_ID},
            "updated_at": {"N": f"{now:.3f}"},
            "data": {"S": json.dumps(agg.progress(), separators=(",", ":"))},
        }
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": agg_item, **condition}},
                {"Put": {"TableName": table, "Item": progress_item}},
            ]
        )
    else:
        client.put_item(TableName=table, Item=agg_item, **condition)
    agg.version = expected + 1


def scan_items(client: Any, table: str) -> Iterable[dict[str, Any]]:
    names = {f"#a{i}": name for i, name in enumerate(PROJECTION)}
    return scan(
        client,
        TableName=table,
        ProjectionExpression=", ".join(names),
        ExpressionAttributeNames=names,
    )


def scan(client: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
    """Every item a scan with these arguments finds, deserialized, page after page."""
    while True:
        page = client.scan(**kwargs)
        for raw in page.get("Items", []):
            yield deserialize(raw)
        if not page.get("LastEvaluatedKey"):
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def rebuild(
    client: Any, table: str, now: float | None = None, fingerprint: str | None = None
) -> Aggregate:
    """One full, projected scan; the only scan codecdash ever makes. Returns the aggregate."""
    now = time.time() if now is None else now
    for _attempt in range(5):
        current, _exists = read_aggregate(client, table)
        agg = build_aggregate(scan_items(client, table), now)
        agg.version = current.version
        agg.applied = [*current.applied, *([fingerprint] if fingerprint else [])][-APPLIED_KEPT:]
        try:
            write_aggregate(client, table, agg, now)
        except client.exceptions.ConditionalCheckFailedException:
            continue
        except client.exceptions.TransactionCanceledException:
            continue
        log.info("rebuilt the experiments aggregate of %s: %d experiments", table, agg.total)
        return agg
    raise SourceError("the aggregate kept changing during the rebuild; try again")


def apply_stream_records(
    client: Any, table: str, records: list[Mapping[str, Any]], now: float | None = None
) -> dict[str, Any]:
    """Applies one batch of DynamoDB Streams records (NEW_AND_OLD_IMAGES) to the aggregate."""
    now = time.time() if now is None else now
    changes: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    for record in records:
        data = record.get("dynamodb", {})
        key = deserialize(data.get("Keys", {})).get("id")
        if key in SPECIAL_IDS:
            continue  # our own writes come back through the stream
        old = deserialize(data["OldImage"]) if data.get("OldImage") else None
        new = deserialize(data["NewImage"]) if data.get("NewImage") else None
        if record.get("eventName") in ("MODIFY", "REMOVE") and old is None:
            raise SourceError(
                "the stream has no old images: set StreamViewType to NEW_AND_OLD_IMAGES"
            )
        if new is not None and new.get("created_at") is None:
            stamp = data.get("ApproximateCreationDateTime")
            new["created_at"] = (old or {}).get("created_at") or stamp or now
        changes.append((old, new))
    if not changes:
        return {"applied": 0, "rebuilt": False, "skipped": False}
    fingerprint = hashlib.sha256(
        "|".join(str(r.get("eventID", "")) for r in records).encode()
    ).hexdigest()[:20]
    for _attempt in range(8):
        agg, _exists = read_aggregate(client, table)
        if fingerprint in agg.applied:
            return {"applied": 0, "rebuilt": False, "skipped": True}  # a retried batch
        for old, new in changes:
            agg.apply(old, new, now)
        if agg.needs_rebuild:
            log.info("rebuilding the aggregate: %s", agg.needs_rebuild)
            rebuilt = rebuild(client, table, now, fingerprint)
            return {
                "applied": len(changes),
                "rebuilt": True,
                "skipped": False,
                "total": rebuilt.total,
            }
        agg.applied = [*agg.applied, fingerprint][-APPLIED_KEPT:]
        try:
            write_aggregate(client, table, agg, now)
        except (
            client.exceptions.ConditionalCheckFailedException,
            client.exceptions.TransactionCanceledException,
        ):
            continue  # another shard's batch wrote first: read again and reapply
        return {"applied": len(changes), "rebuilt": False, "skipped": False, "total": agg.total}
    raise SourceError("the aggregate kept changing; the batch will be retried")
