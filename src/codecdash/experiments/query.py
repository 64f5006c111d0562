"""What a read of the experiments asks, how its pages go on, and what it may answer instead.

Shared by the backends of the read model (the SQL store, locally and as the AWS read
replica) and the API that parses requests into a :class:`ListQuery`. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

SORTABLE: Final = (
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "duration_s",
    "bitrate_reduction_pct",
    "psnr_db",
    "ms_ssim",
    "bpp",
    "bitrate_kbps",
    "cost_usd",
    "bd_rate_pct",
    "name",
    "status",
    "id",
)
TEXT_SORTS: Final = frozenset({"name", "status", "id"})
NOT_NULL: Final = frozenset({"id", "status", "created_at", "updated_at"})
"""The fields every stored experiment has."""


@dataclass
class Filters:
    """The list's filters that a bulk deletion takes too (curation.Filter), AND-ed."""

    status: Sequence[str] = ()
    q: str | None = None
    worker_id: str | None = None
    tag: str | None = None
    created_after: float | None = None
    created_before: float | None = None


@dataclass
class ListQuery(Filters):
    """A page of the experiment list: filters, order (a field of SORTABLE, ``-`` first for
    descending) and where the previous page ended (``cursor``)."""

    min_psnr_db: float | None = None
    min_bitrate_reduction_pct: float | None = None
    max_bd_rate_pct: float | None = None
    dataset: str | None = None
    """The test set (exact name)."""
    method: str | None = None
    """The method (the experiments' `method` field, exact)."""
    sort: str = "-created_at"
    limit: int = 50
    cursor: str | None = None

    @property
    def field(self) -> str:
        """The field the list is sorted by."""
        return self.sort.lstrip("-+")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


class Best(NamedTuple):
    """The best completed experiment by one ranked metric."""

    experiment_id: str
    value: float
    anchor: str | None = None
    """Its `bd_rate_anchor` (the anchor a BD-rate was derived against)."""
    dataset: str | None = None
    """Its test set, where the backend knows it."""
    method: str | None = None
    """Its `method`, where the backend knows it."""


class RowPage(NamedTuple):
    """A page of the list as a backend reads it: records (times in seconds), the cursor of
    the next page (None on the last) and the total of the query's matches."""

    records: list[dict[str, Any]]
    next_cursor: str | None
    total: int


# -- what a read answers instead ------------------------------------------------------------
class BadCursor(ValueError):
    """A pagination cursor that this server did not make (400 bad_cursor)."""


class QueryNotSupported(ValueError):
    """A listing this backend cannot answer (400): the message says where it can be run."""


class Unavailable(Exception):
    """Where the experiments are kept cannot answer now (503, with the reason)."""


# -- cursors ----------------------------------------------------------------------------------
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]*$"
"""What encode_cursor makes: unpadded base64url."""
_INT64 = 2**63


def encode_cursor(value: Any, experiment_id: str) -> str:
    """The cursor of a page that ended at this experiment (its sort value and id)."""
    return base64.urlsafe_b64encode(orjson.dumps([value, experiment_id])).decode().rstrip("=")


def decode_cursor(cursor: str, field: str | None = None) -> tuple[Any, str]:
    """(value, id) of the last row of the previous page; BadCursor unless it is one this
    server could have made for sorting by `field`: a value of the field's type (text, or a
    finite number within 64 bits; null only where the field may be null) and an id."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # json, not orjson: integers of any size stay integers (and are refused below)
        value, experiment_id = json.loads(raw, parse_constant=_no_constant)
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise BadCursor("cursor is not one this server made") from None
    if not _storable_text(experiment_id, 128) or not _cursor_value_fits(value, field):
        raise BadCursor("cursor is not one this server made")
    return value, experiment_id


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable_text(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and len(value) <= max_length and "\x00" not in value


def _cursor_value_fits(value: Any, field: str | None) -> bool:
    if value is None:
        return field is None or field not in NOT_NULL
    text = field is None or field in TEXT_SORTS
    if type(value) is int:  # not bool
        return (field is None or not text) and -_INT64 <= value < _INT64
    if type(value) is float:
        return (field is None or not text) and math.isfinite(value)
    return text and _storable_text(value, 10_000)
