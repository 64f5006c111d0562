"""The AWS sources: experiments from the read replica, the fleet, storage and costs (boto3).

`aws_sources(settings)` gives the sources for the configured resources only; a source whose
settings are all empty is left out. Besides the four sources that fill sections
(`aws.experiments`, `aws.fleet`, `aws.storage`, `aws.costs`), each service behind the fleet
and storage has its own row in the snapshot's `sources` list (`aws.fleet.sqs`, …), so the
page says which service is failing while the others keep their figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codecdash.aws_clients import ClientFactory, default_factory
from codecdash.config import Settings
from codecdash.sources.aws.costs import CostExplorerRow, CostsSource, CostState
from codecdash.sources.aws.fleet import FleetSource
from codecdash.sources.aws.storage import StorageSource
from codecdash.sources.base import Source

if TYPE_CHECKING:
    from codecdash.sources.aws.replica import ReplicaCopy

__all__ = [
    "ClientFactory",
    "CostState",
    "CostsSource",
    "FleetSource",
    "StorageSource",
    "aws_sources",
]


def aws_sources(
    settings: Settings,
    *,
    clients: ClientFactory | None = None,
    cost_explorer: bool = True,
    cost_state: CostState | None = None,
    replica: ReplicaCopy | None = None,
    refresh_replica: bool = False,
) -> list[Source]:
    """The sources for the configured AWS resources.

    `cost_explorer=False` reads Cost Explorer figures only from the shared S3 cache (the
    API function); `clients` replaces the process-wide client factory (tests). The
    experiments come from the read replica (``aws_read_model_bucket``): from `replica`,
    checked for a new version before each reading when `refresh_replica`, or without one
    from a private copy checked before each reading (`codecdash serve --source aws`). With
    a table but no replica bucket, the experiments source fails saying what to set.
    """
    clients = clients or default_factory(settings.aws_region)
    sources: list[Source] = []
    if replica is not None or settings.aws_read_model_bucket:
        # the SQL store only then (a function's cold start)
        from codecdash.sources.aws import read_model

        if replica is None:
            replica = read_model.private_replica(settings, clients("s3"))
            refresh_replica = True
        sources.append(
            read_model.ReplicaExperimentsSource(replica, settings, refresh=refresh_replica)
        )
    elif settings.aws_experiments_table:
        from codecdash.sources.aws.read_model import NoReplicaSource

        sources.append(NoReplicaSource())
    fleet = FleetSource(settings, clients)
    if fleet.parts:
        sources += [fleet, *fleet.rows()]
    storage = StorageSource(settings, clients)
    if storage.parts:
        sources += [storage, *storage.rows()]
    costs = CostsSource(settings, clients, may_call=cost_explorer, state=cost_state)
    sources += [costs, CostExplorerRow(costs)]
    return sources
