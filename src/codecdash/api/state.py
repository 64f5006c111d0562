"""What the routes share: settings, store, the experiments' read model and writes, snapshot
cache, change feed, write limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from codecdash.api.ratelimit import WriteLimits
from codecdash.config import Settings
from codecdash.events import ChangeFeed
from codecdash.experiments.readmodel import ExperimentsReadModel
from codecdash.experiments.service import ExperimentService
from codecdash.snapshot import SnapshotBuilder
from codecdash.store import Store

if TYPE_CHECKING:
    from codecdash.api.cache import SnapshotCache


@dataclass
class AppState:
    settings: Settings
    store: Store
    builder: SnapshotBuilder
    feed: ChangeFeed
    limits: WriteLimits
    cache: SnapshotCache
    # What GET /api/v1/experiments[/{id}] reads: the store, or on AWS the DynamoDB table.
    experiments: ExperimentsReadModel
    writes: ExperimentService
    extras: dict[str, Any] = field(default_factory=dict)


def state(request: Request) -> AppState:
    st: AppState = request.app.state.codecdash
    return st
