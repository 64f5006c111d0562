"""The store: SQL schema, migrations and queries (SQLAlchemy Core; SQLite and PostgreSQL)."""

from codecdash.experiments.query import BadCursor, ListQuery
from codecdash.store.db import InvalidData, StoreUnavailable
from codecdash.store.store import Conflict, Store
from codecdash.store.tokens import TokenExists

__all__ = [
    "BadCursor",
    "Conflict",
    "InvalidData",
    "ListQuery",
    "Store",
    "StoreUnavailable",
    "TokenExists",
]
