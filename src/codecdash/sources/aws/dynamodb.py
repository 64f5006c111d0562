"""Items of the experiments table on DynamoDB, as plain values.

The table (``CODECDASH_AWS_EXPERIMENTS_TABLE``) has partition key ``id`` and attributes named
as the Experiment fields: numbers as N, ``params`` a map, ``tags`` a list; times as N (Unix
seconds) or S (ISO 8601). The stream function carries it into the read replica
(``replica_writer.py``), which every read of the experiments on AWS goes through.

:data:`LEGACY_IDS` are the two items an older release kept in the table for its running
aggregate (replaced by the read replica); a table may still hold them, and they are no
experiments. They can be deleted.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

LEGACY_IDS = frozenset({"__codecdash_aggregate__", "__codecdash_progress__"})

_deserializer = TypeDeserializer()


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


def scan(client: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
    """Every item a scan with these arguments finds, deserialized, page after page."""
    while True:
        page = client.scan(**kwargs)
        for raw in page.get("Items", []):
            yield deserialize(raw)
        if not page.get("LastEvaluatedKey"):
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
