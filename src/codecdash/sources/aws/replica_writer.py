"""The read replica's one writer: the DynamoDB stream function (``aws_lambda.stream_handler``).

The DynamoDB table stays the source of truth, written by the workers and by the CLI
(``codecdash import-results --aws``); the replica (``sources/aws/replica.py``) follows it.
For each stream batch the writer

1. makes sure its copy in /tmp is the published version (one conditional GET: 304 when it
   is, which is the rule with a single writer);
2. applies the batch's records through the same code as a local store: experiments
   through :class:`ExperimentService` (so BD-rates are derived against the anchor in force,
   exactly as ``codecdash serve`` does), anchors through ``save_anchor``/``remove_anchor``
   (every stored BD-rate derived again when the anchor in force changes), a removed item
   with ``Store.remove_experiment``;
3. publishes the copy with a conditional write (``If-Match`` the version it started from).
   When another writer published first (the function should never run twice at once:
   the template gives it a reserved concurrency of 1 and a parallelization factor of 1),
   it drops its copy, reads the new version and applies the batch again.

Applying a record twice gives the same replica (a retried batch after a failed publish is
harmless). Items that are not valid experiments are skipped and counted, never allowed to
block the stream.

Anchors live in the same table, as items whose id is ``__codecdash_anchor__/NAME``
(:func:`anchor_item`), so they reach the replica by the same single path.
:func:`rebuild` makes the replica anew from one scan of the table (after the first deploy,
or on demand: ``codecdash deploy --rebuild-read-model``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from pydantic import ValidationError

from codecdash.config import Settings
from codecdash.experiments.anchors import remove_anchor, save_anchor
from codecdash.experiments.service import ExperimentService
from codecdash.models import ExperimentIn
from codecdash.sources.aws.dynamodb import LEGACY_IDS, deserialize, plain, scan, to_epoch
from codecdash.sources.aws.replica import ReplicaConflict, ReplicaCopy, publish
from codecdash.store import Store
from codecdash.store.counters import DATA_VERSION, RESULTS_VERSION, bump_counters

log = logging.getLogger("codecdash.aws.replica")

ANCHOR_PREFIX = "__codecdash_anchor__/"
TIME_FIELDS = ("created_at", "started_at", "finished_at")
BATCH = 500
ATTEMPTS = 4
_serializer = TypeSerializer()


# -- items ----------------------------------------------------------------------------------
def to_dynamo(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON-ready values as a DynamoDB item (numbers as N, None left out)."""

    def convert(v: Any) -> Any:
        if isinstance(v, float):
            return Decimal(repr(v))
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items() if x is not None}
        if isinstance(v, list | tuple):
            return [convert(x) for x in v]
        return v

    return {k: _serializer.serialize(convert(v)) for k, v in values.items() if v is not None}


def experiment_item(item: ExperimentIn, experiment_id: str) -> dict[str, Any]:
    """An experiment as the table's item (times as ISO 8601 text)."""
    values = item.model_dump(mode="json", exclude_none=True)
    values["id"] = experiment_id
    for name in ("duration_s", "bd_rate_pct", "bd_rate_anchor", "updated_at", "training"):
        values.pop(name, None)  # derived by the replica's writer
    return to_dynamo(values)


def anchor_item(
    name: str,
    description: str | None,
    points: Sequence[Mapping[str, Any]],
    dataset: str | None = None,
) -> dict[str, Any]:
    """An anchor as the table's item: the replica's writer stores it as an anchor. Its id is
    ``__codecdash_anchor__/NAME``, or ``__codecdash_anchor__/DATASET/NAME`` for an anchor
    of a test set (names have no slash)."""
    return to_dynamo(
        {
            "id": ANCHOR_PREFIX + (name if dataset is None else f"{dataset}/{name}"),
            "kind": "anchor",
            "name": name,
            "dataset": dataset,
            "description": description,
            "rd_points": json.dumps(list(points), separators=(",", ":")),
            "updated_at": time.time(),
        }
    )


def experiment_of(item: Mapping[str, Any], fallback_created: float | None) -> ExperimentIn:
    """A table item (deserialized) as the experiment a client would have sent.

    Times may be N (seconds or milliseconds) or S (ISO 8601); attributes that are no
    Experiment field are ignored."""
    fields = ExperimentIn.model_fields
    values: dict[str, Any] = {}
    for name, value in item.items():
        if name not in fields or value is None:
            continue
        values[name] = plain(value)
    if isinstance(values.get("tags"), str):
        values["tags"] = [values["tags"]]
    for name in TIME_FIELDS:
        seconds = to_epoch(item.get(name))
        if name == "created_at" and seconds is None:
            seconds = fallback_created
        values[name] = None if seconds is None else datetime.fromtimestamp(seconds, UTC)
    values["id"] = str(item.get("id"))
    return ExperimentIn.model_validate(values)


# -- applying changes -----------------------------------------------------------------------
class Changes:
    """What one batch did to the replica."""

    def __init__(self) -> None:
        self.written = 0
        self.removed = 0
        self.anchors = 0
        self.skipped: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.written + self.removed + self.anchors,
            "experiments_written": self.written,
            "experiments_removed": self.removed,
            "anchors_changed": self.anchors,
            "skipped": len(self.skipped),
        }


def apply_records(
    store: Store, settings: Settings, records: Iterable[Mapping[str, Any]]
) -> Changes:
    """Applies DynamoDB Streams records (NEW_AND_OLD_IMAGES or NEW_IMAGE) to `store`, in
    order; consecutive experiment writes go in one transaction."""
    service = ExperimentService(store, settings)
    changes = Changes()
    pending: list[ExperimentIn] = []

    def flush() -> None:
        if pending:
            service.batch(pending)
            changes.written += len(pending)
            pending.clear()

    for record in records:
        data = record.get("dynamodb", {})
        key = str(deserialize(data.get("Keys", {})).get("id", ""))
        if not key or key in LEGACY_IDS:
            continue  # an older release's aggregate items
        new = deserialize(data["NewImage"]) if data.get("NewImage") else None
        if record.get("eventName") == "REMOVE" or new is None:
            flush()
            old = deserialize(data["OldImage"]) if data.get("OldImage") else {}
            _remove(store, settings, key, old, changes)
            continue
        if key.startswith(ANCHOR_PREFIX):
            flush()
            _put_anchor(store, settings, key, new, changes)
            continue
        stamp = to_epoch(data.get("ApproximateCreationDateTime"))  # seconds in a real event
        try:
            pending.append(experiment_of(new, stamp))
        except (ValidationError, ValueError, TypeError) as exc:
            log.warning("skipped item %r: not a valid experiment: %s", key, _short(exc))
            changes.skipped.append(key)
    flush()
    return changes


def _anchor_of(key: str, item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The anchor's name, and its test set as keyword arguments (none when unspecified)."""
    name = str(item.get("name") or key[len(ANCHOR_PREFIX) :].rpartition("/")[2])
    dataset = item.get("dataset")
    return name, ({"dataset": str(dataset)} if dataset else {})


def _remove(
    store: Store, settings: Settings, key: str, old: Mapping[str, Any], changes: Changes
) -> None:
    if key.startswith(ANCHOR_PREFIX):
        name, test_set = _anchor_of(key, old)
        if remove_anchor(store, settings, name, **test_set) is not None:
            changes.anchors += 1
    elif store.remove_experiment(key):
        changes.removed += 1


def _put_anchor(
    store: Store, settings: Settings, key: str, item: Mapping[str, Any], changes: Changes
) -> None:
    name, test_set = _anchor_of(key, item)
    try:
        points = json.loads(str(item.get("rd_points") or "[]"))
        described = item.get("description")
        description = None if described is None else str(described)
        save_anchor(store, settings, name, description, points, **test_set)
    except (ValueError, TypeError) as exc:
        log.warning("skipped anchor %r: %s", name, _short(exc))
        changes.skipped.append(key)
        return
    changes.anchors += 1


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]


# -- the writer -----------------------------------------------------------------------------
class ReplicaWriter:
    """The stream function's replica: a copy in `path`, published after each batch."""

    def __init__(self, settings: Settings, s3: Any, path: Path) -> None:
        assert settings.aws_read_model_bucket
        self.settings = settings
        self.s3 = s3
        self.path = path
        self.copy = self._fresh_copy()

    def _fresh_copy(self) -> ReplicaCopy:
        return ReplicaCopy.from_settings(self.settings, self.s3, self.path)

    def _discard(self) -> None:
        """Forget the local copy (changed but not published): the next batch fetches."""
        self.copy.close()
        self.copy = self._fresh_copy()

    def apply(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """One batch in, one version out (or nothing to publish)."""
        for _attempt in range(ATTEMPTS):
            self.copy.refresh(force=True)
            if self.copy.error:
                raise RuntimeError(self.copy.error)  # the batch is retried
            changes = apply_records(self.copy.store, self.settings, records)
            if not changes.as_dict()["applied"]:
                return {**changes.as_dict(), "published": False}
            try:
                self.copy.etag = publish(
                    self.copy.store,
                    self.s3,
                    self.copy.bucket,
                    self.copy.key,
                    self.copy.etag,
                )
            except ReplicaConflict as exc:
                log.warning("%s; applying the batch again to the new version", exc)
                self._discard()
                continue
            except Exception:
                self._discard()
                raise
            return {**changes.as_dict(), "published": True}
        raise ReplicaConflict("the replica kept changing under this batch; it will be retried")

    def rebuild(self, client: Any, table: str) -> dict[str, Any]:
        """The replica anew from one scan of the table; published over whatever is there."""
        self.copy.refresh(force=True)
        previous = self.copy.etag
        self.copy.close()
        self.copy = self._fresh_copy()  # an empty store
        # Its versions go on past any an earlier replica reached: they start at the time of
        # the rebuild in ms, so a page never sees a version it saw before for other data.
        start = int(time.time() * 1000)
        with self.copy.store.db.write() as conn:
            bump_counters(conn, {DATA_VERSION: start, RESULTS_VERSION: start})
        total = load_table(self.copy.store, self.settings, scan_all(client, table))
        self.copy.etag = None
        try:
            self.copy.etag = publish_over(self.copy.store, self.s3, self.copy, previous)
        except Exception:
            self._discard()
            raise
        return {"rebuilt": True, "total": total, "table": table}


def publish_over(store: Store, s3: Any, copy: ReplicaCopy, previous: str | None) -> str:
    """Publish over `previous` (the version the rebuild started from), once retried from
    the version found when another write came first (a rebuild wins: it read the table)."""
    try:
        return publish(store, s3, copy.bucket, copy.key, previous)
    except ReplicaConflict:
        head = s3.head_object(Bucket=copy.bucket, Key=copy.key)
        return publish(store, s3, copy.bucket, copy.key, str(head["ETag"]))


def scan_all(client: Any, table: str) -> Iterable[dict[str, Any]]:
    """Every item of the table, deserialized (paginated; the only scan, for a rebuild)."""
    return scan(client, TableName=table)


def load_table(store: Store, settings: Settings, items: Iterable[Mapping[str, Any]]) -> int:
    """Anchors first (so the BD-rates are derived once), then the experiments in batches;
    returns how many experiments the store holds."""
    anchors: list[Mapping[str, Any]] = []
    experiments: list[ExperimentIn] = []
    now = time.time()
    for item in items:
        key = str(item.get("id", ""))
        if key in LEGACY_IDS:
            continue
        if key.startswith(ANCHOR_PREFIX):
            anchors.append(item)
            continue
        try:
            experiments.append(experiment_of(item, now))
        except (ValidationError, ValueError, TypeError) as exc:
            log.warning("skipped item %r: not a valid experiment: %s", key, _short(exc))
    changes = Changes()
    for item in anchors:
        _put_anchor(store, settings, str(item["id"]), item, changes)
    service = ExperimentService(store, settings)
    for start in range(0, len(experiments), BATCH):
        service.batch(experiments[start : start + BATCH])
    return len({e.id for e in experiments})
