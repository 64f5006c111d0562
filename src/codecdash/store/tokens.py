"""API tokens: random, shown once, stored as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Literal

from sqlalchemy import Connection, select

from codecdash.store import schema

T = schema.tokens
Scope = Literal["write", "read"]
TOKEN_PREFIX = "cdt_"  # noqa: S105 - a prefix, not a secret


class TokenExists(ValueError):
    pass


class BadTokenName(ValueError):
    pass


MAX_NAME = 100  # the column's width (PostgreSQL enforces it)


def check_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise BadTokenName(
            f"a token name is 1 to {MAX_NAME} printable characters (got {len(name)} characters)"
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """256 random bits, URL-safe, with a prefix that secret scanners can recognise."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create(conn: Connection, name: str, scope: Scope) -> str:
    check_name(name)
    existing = conn.execute(select(T.c.revoked_at).where(T.c.name == name)).first()
    if existing is not None and existing[0] is None:
        raise TokenExists(f"a token named {name!r} already exists; revoke it first")
    if existing is not None:
        conn.execute(T.delete().where(T.c.name == name))
    token = new_token()
    conn.execute(
        T.insert(),
        {"name": name, "scope": scope, "token_hash": hash_token(token), "created_at": time.time()},
    )
    return token


def revoke(conn: Connection, name: str) -> bool:
    result = conn.execute(
        T.update().where(T.c.name == name, T.c.revoked_at.is_(None)).values(revoked_at=time.time())
    )
    return bool(result.rowcount)


def list_all(conn: Connection) -> list[dict[str, Any]]:
    stmt = select(T.c.name, T.c.scope, T.c.created_at, T.c.revoked_at).order_by(T.c.name)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def active_hashes(conn: Connection) -> dict[str, tuple[str, str]]:
    """hash -> (name, scope) of every token not revoked."""
    stmt = select(T.c.token_hash, T.c.name, T.c.scope).where(T.c.revoked_at.is_(None))
    return {str(h): (str(name), str(scope)) for h, name, scope in conn.execute(stmt)}


def matches(candidate_hash: str, stored_hash: str) -> bool:
    return hmac.compare_digest(candidate_hash, stored_hash)
