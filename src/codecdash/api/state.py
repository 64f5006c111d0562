"""What the routes share: settings, store, snapshot cache, change feed, write limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request

from codecdash.api.ratelimit import WriteLimits
from codecdash.config import Settings
from codecdash.events import ChangeFeed
from codecdash.snapshot import SnapshotBuilder
from codecdash.store import ListQuery, Store

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
    extras: dict[str, Any] = field(default_factory=dict)
    # Where GET /api/v1/experiments reads when not the store (on AWS: DynamoDB); it
    # answers Experiments as the API shows them (see sources/aws/experiments_api.py).
    experiments: ExperimentReader | None = None


class ExperimentReader(Protocol):
    def get(self, experiment_id: str) -> dict[str, Any] | None: ...

    def list(self, query: ListQuery) -> tuple[list[dict[str, Any]], str | None, int]: ...


def state(request: Request) -> AppState:
    st: AppState = request.app.state.codecdash
    return st
