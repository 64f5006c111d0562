"""The experiments section on AWS, from the read replica (``sources/aws/replica.py``).

The same source as over a local store (``sources/local.py``), reading the replica's copy:
the snapshot's experiment facts and the experiments routes come from one read model. The
replica is the only way experiments are read on AWS: with a table but no replica bucket
configured, the experiments section and routes say what to set (:data:`NO_REPLICA_BUCKET`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from codecdash.config import Settings
from codecdash.experiments.query import Unavailable
from codecdash.experiments.readmodel import ExperimentRows
from codecdash.sources.aws.replica import ReplicaCopy
from codecdash.sources.base import Facts, SourceError
from codecdash.sources.local import ExperimentsSource

NO_REPLICA = (
    "no read replica published yet: deploy the stack (its stream function publishes one) "
    "or run `codecdash deploy --rebuild-read-model`"
)
NO_REPLICA_BUCKET = (
    "experiments on AWS are read from the read replica, and none is configured: set "
    "CODECDASH_AWS_READ_MODEL_BUCKET (aws_read_model_bucket) to the dashboard stack's "
    "output ReadModelBucketName, which `codecdash deploy` prints"
)


class ReplicaExperimentsSource(ExperimentsSource):
    """`refresh`: check for a new version before each reading (the snapshot function);
    the API function refreshes between requests instead."""

    name = "aws.experiments"

    def __init__(self, copy: ReplicaCopy, settings: Settings, *, refresh: bool = False) -> None:
        super().__init__(copy.store, settings)
        self.copy = copy
        self.refresh = refresh

    def _collect_sync(self, now: float) -> Facts:
        if self.refresh:
            self.copy.refresh()
        if not self.copy.exists:
            raise SourceError(self.copy.error or NO_REPLICA)
        return super()._collect_sync(now)

    def version(self, conn: Connection) -> str:
        """The replica's own: S3's ETag of the published copy, new with every publication
        (its `results_version` is the replica's counter, which the stream function's writes
        move and a rebuild starts past any earlier value)."""
        return "r" + (self.copy.etag or "").strip('"')


class NoReplicaSource:
    """The experiments section when a table but no replica bucket is configured: its
    error says what to set."""

    name = "aws.experiments"
    sections: tuple[str, ...] = ("experiments",)
    fields = ExperimentsSource.fields

    async def collect(self, now: float) -> Facts:
        raise SourceError(NO_REPLICA_BUCKET)


class NoReplica:
    """The experiments routes' backend (readmodel.ExperimentsBackend) in the same case:
    503 with the same message."""

    @contextlib.contextmanager
    def rows(self) -> Iterator[ExperimentRows]:
        raise Unavailable(NO_REPLICA_BUCKET)
        yield  # pragma: no cover


def private_replica(settings: Settings, s3: Any) -> ReplicaCopy:
    """A copy of the replica in a directory of its own (`codecdash serve --source aws`),
    removed with the copy (at the latest when the process ends)."""
    folder = Path(tempfile.mkdtemp(prefix="codecdash-replica-"))
    copy = ReplicaCopy.from_settings(settings, s3, folder / "replica.db")
    weakref.finalize(copy, shutil.rmtree, folder, ignore_errors=True)
    return copy
