"""The experiments section on AWS, from the read replica (``sources/aws/replica.py``).

The same source as over a local store (``sources/local.py``), reading the replica's copy:
the snapshot's experiment facts and the experiments routes come from one read model.
"""

from __future__ import annotations

from codecdash.config import Settings
from codecdash.sources.aws.replica import ReplicaCopy
from codecdash.sources.base import Facts, SourceError
from codecdash.sources.local import ExperimentsSource

NO_REPLICA = (
    "no read replica published yet: deploy the stack (its stream function publishes one) "
    "or run `codecdash deploy --rebuild-read-model`"
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
