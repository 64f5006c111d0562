"""What the routes share: settings, store, snapshot cache, change feed, limiter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from codecdash.config import Settings
from codecdash.events import ChangeFeed
from codecdash.snapshot import SnapshotBuilder
from codecdash.store import Store

if TYPE_CHECKING:
    from codecdash.api.auth import RateLimiter
    from codecdash.api.cache import SnapshotCache


@dataclass
class AppState:
    settings: Settings
    store: Store
    builder: SnapshotBuilder
    feed: ChangeFeed
    limiter: RateLimiter
    cache: SnapshotCache
    extras: dict[str, Any] = field(default_factory=dict)


def state(request: Request) -> AppState:
    st: AppState = request.app.state.codecdash
    return st
