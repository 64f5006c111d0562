"""Alerts in the store: their state, history, the notification outbox and the sender's lease.

Every operation is one transaction. Changes of state bump the data version (the page and
other replicas hear of them through the usual change feed).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.alerts.model import Alert, Change
from codecdash.experiments.query import BadCursor
from codecdash.store import schema
from codecdash.store.counters import bump_data_version
from codecdash.store.store import Store

A = schema.alerts
H = schema.alert_history
O = schema.alert_outbox  # noqa: E741
L = schema.alert_lease
ACTIVE = ("pending", "firing")


class NotFound(LookupError):
    """No alert with that id."""


class NotActive(ValueError):
    """The alert is not pending or firing (only those can be acknowledged)."""


def _alert(row: Any) -> Alert:
    return Alert(
        id=int(row["id"]),
        rule=str(row["rule"]),
        labels=orjson.loads(row["labels"]),
        severity=str(row["severity"]),
        state=str(row["state"]),
        since=float(row["since"]),
        summary=str(row["summary"]),
        value=row["value"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        notified=bool(row["notified"]),
        last_notified_at=row["last_notified_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
    )


def _row(alert: Alert, now: float) -> dict[str, Any]:
    values = dataclasses.asdict(alert)
    values.pop("id")
    values["labels"] = orjson.dumps(alert.labels).decode()
    values["labels_key"] = alert.key
    values["updated_at"] = now
    return values


class AlertStore:
    """The alerts' share of a :class:`Store` (same database, same change feed)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    # -- state --------------------------------------------------------------------------
    def states(self) -> dict[str, dict[str, Alert]]:
        """Every kept alert, by rule and labels key."""
        out: dict[str, dict[str, Alert]] = {}
        with self.db.read() as conn:
            for row in conn.execute(select(A)).mappings():
                alert = _alert(row)
                out.setdefault(alert.rule, {})[alert.key] = alert
        return out

    def apply(self, changes: Sequence[Change], now: float) -> list[Change]:
        """Store the engine's changes (with a history row per change of state); returns
        them with their alerts' ids."""
        if not changes:
            return []
        stored: list[Change] = []
        with self.db.write() as conn:
            for change in changes:
                alert = change.alert
                values = _row(alert, now)
                if alert.id is None:
                    made = conn.execute(insert(A).values(**values)).inserted_primary_key
                    assert made is not None
                    alert_id = int(made[0])
                    alert = dataclasses.replace(alert, id=alert_id)
                else:
                    conn.execute(update(A).where(A.c.id == alert.id).values(**values))
                if change.previous != alert.state and alert.state != "inactive":
                    _history(conn, alert, alert.state, now, notified=change.notify)
                stored.append(dataclasses.replace(change, alert=alert))
            moved = any(c.previous != c.alert.state for c in changes)
            if moved:  # a new summary alone ("silent for 6 min") wakes no page
                bump_data_version(conn)
        if moved:
            self.store.changed()
        return stored

    def acknowledge(self, alert_id: int, by: str, now: float | None = None) -> Alert:
        now = time.time() if now is None else now
        with self.db.write() as conn:
            row = conn.execute(select(A).where(A.c.id == alert_id)).mappings().first()
            if row is None:
                raise NotFound(f"no alert {alert_id}")
            alert = _alert(row)
            if alert.state not in ACTIVE:
                raise NotActive(
                    f"alert {alert_id} is {alert.state}; only a pending or firing alert can "
                    "be acknowledged"
                )
            if alert.acknowledged_at is None:
                alert = dataclasses.replace(alert, acknowledged_at=now, acknowledged_by=by)
                conn.execute(
                    update(A)
                    .where(A.c.id == alert_id)
                    .values(acknowledged_at=now, acknowledged_by=by, updated_at=now)
                )
                _history(conn, alert, "acknowledged", now, actor=by)
                bump_data_version(conn)
        self.store.changed()
        return alert

    # -- reads for the API, the CLI and /metrics ------------------------------------------
    def current(self, states: Iterable[str], resolved_since: float | None = None) -> list[Alert]:
        """Alerts in ``states``; resolved ones only since ``resolved_since`` when given.
        Firing first, then pending, then resolved; the most severe, then the newest, first
        within each."""
        states = list(states)
        condition: ColumnElement[bool] = A.c.state.in_([s for s in states if s != "resolved"])
        if "resolved" in states:
            recent: ColumnElement[bool] = A.c.state == "resolved"
            if resolved_since is not None:
                recent = and_(recent, A.c.since >= resolved_since)
            condition = or_(condition, recent)
        with self.db.read() as conn:
            rows = conn.execute(select(A).where(condition)).mappings().all()
        order = {"firing": 0, "pending": 1, "resolved": 2}
        rank = {"critical": 0, "warning": 1, "info": 2}
        alerts = [_alert(r) for r in rows]
        return sorted(
            alerts,
            key=lambda a: (order.get(a.state, 3), rank.get(a.severity, 3), -a.since, a.id or 0),
        )

    def get(self, alert_id: int) -> Alert | None:
        with self.db.read() as conn:
            row = conn.execute(select(A).where(A.c.id == alert_id)).mappings().first()
        return _alert(row) if row is not None else None

    def history(
        self, limit: int, cursor: str | None = None, rule: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """History rows, newest first; the cursor is the last row's sequence number."""
        query = select(H).order_by(H.c.seq.desc()).limit(limit + 1)
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise BadCursor("cursor is not one this server made")
            query = query.where(H.c.seq < int(cursor))
        if rule is not None:
            query = query.where(H.c.rule == rule)
        with self.db.read() as conn:
            rows = [_plain(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        for row in rows:
            row["labels"] = orjson.loads(row["labels"])
        return rows, (str(rows[-1]["seq"]) if more and rows else None)

    def counts(self) -> dict[tuple[str, str, str], int]:
        """(rule, severity, state) → alerts, of the pending and firing ones."""
        query = (
            select(A.c.rule, A.c.severity, A.c.state, func.count())
            .where(A.c.state.in_(ACTIVE))
            .group_by(A.c.rule, A.c.severity, A.c.state)
        )
        with self.db.read() as conn:
            return {(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in conn.execute(query)}

    # -- the outbox -----------------------------------------------------------------------
    def enqueue(self, channels: Iterable[str], alerts: list[dict[str, Any]], now: float) -> int:
        """Queue ``alerts`` for each channel. A message not yet tried takes them in (one
        message per channel while it waits: grouped; an alert's newest state replaces an
        older one of the same alert: deduplicated). Returns the new messages."""
        made = 0
        with self.db.write() as conn:
            for channel in channels:
                waiting = conn.execute(
                    select(O.c.id, O.c.payload)
                    .where(O.c.channel == channel, O.c.state == "pending", O.c.attempts == 0)
                    .order_by(O.c.id)
                    .limit(1)
                ).first()
                if waiting is None:
                    payload = {"alerts": alerts}
                    conn.execute(
                        insert(O).values(
                            channel=channel,
                            payload=orjson.dumps(payload).decode(),
                            state="pending",
                            created_at=now,
                            attempts=0,
                            next_try_at=now,
                        )
                    )
                    made += 1
                    continue
                merged = _merge(orjson.loads(waiting[1])["alerts"], alerts)
                conn.execute(
                    update(O)
                    .where(O.c.id == waiting[0])
                    .values(payload=orjson.dumps({"alerts": merged}).decode())
                )
        return made

    def due(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        query = (
            select(O)
            .where(O.c.state == "pending", O.c.next_try_at <= now)
            .order_by(O.c.id)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [_plain(r) for r in conn.execute(query).mappings()]

    def claim(self, message_id: int, now: float, until: float) -> dict[str, Any] | None:
        """Take a due message for one attempt (no other sender takes it before ``until``);
        None when another sender took it first."""
        with self.db.write() as conn:
            taken = conn.execute(
                update(O)
                .where(O.c.id == message_id, O.c.state == "pending", O.c.next_try_at <= now)
                .values(attempts=O.c.attempts + 1, last_try_at=now, next_try_at=until)
            ).rowcount
            if not taken:
                return None
            row = conn.execute(select(O).where(O.c.id == message_id)).mappings().first()
        return _plain(row) if row is not None else None

    def sent(self, message_id: int, now: float) -> None:
        with self.db.write() as conn:
            conn.execute(update(O).where(O.c.id == message_id).values(state="sent", sent_at=now))
            bump_data_version(conn)
        self.store.changed()

    def failed(self, message_id: int, error: str, retry_at: float | None) -> None:
        """An attempt failed: retry at ``retry_at``, or give up (None)."""
        values: dict[str, Any] = {"last_error": error}
        if retry_at is None:
            values["state"] = "failed"
        else:
            values["next_try_at"] = retry_at
        with self.db.write() as conn:
            conn.execute(update(O).where(O.c.id == message_id).values(**values))
            bump_data_version(conn)
        self.store.changed()

    def postpone(self, message_id: int, until: float) -> None:
        """Not an attempt: the channel's hourly limit is reached."""
        with self.db.write() as conn:
            conn.execute(update(O).where(O.c.id == message_id).values(next_try_at=until))

    def sent_since(self, channel: str, since: float) -> list[float]:
        query = select(O.c.sent_at).where(
            O.c.channel == channel, O.c.state == "sent", O.c.sent_at > since
        )
        with self.db.read() as conn:
            return sorted(float(row[0]) for row in conn.execute(query))

    def deliveries(self, states: Iterable[str], limit: int) -> list[dict[str, Any]]:
        query = (
            select(
                O.c.id,
                O.c.channel,
                O.c.state,
                O.c.created_at,
                O.c.attempts,
                O.c.next_try_at,
                O.c.last_try_at,
                O.c.last_error,
                O.c.sent_at,
                O.c.payload,
            )
            .where(O.c.state.in_(list(states)))
            .order_by(O.c.id.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = [_plain(r) for r in conn.execute(query).mappings()]
        for row in rows:
            row["alerts"] = len(orjson.loads(row.pop("payload"))["alerts"])
        return rows

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        query = select(O.c.channel, O.c.state, func.count()).group_by(O.c.channel, O.c.state)
        with self.db.read() as conn:
            return {(str(r[0]), str(r[1])): int(r[2]) for r in conn.execute(query)}

    # -- housekeeping and the lease --------------------------------------------------------
    def prune(self, before: float) -> int:
        """Drop resolved alerts, history and finished messages older than ``before``."""
        with self.db.write() as conn:
            n = conn.execute(
                delete(A).where(A.c.state.in_(("inactive", "resolved")), A.c.updated_at < before)
            ).rowcount
            n += conn.execute(delete(H).where(H.c.at < before)).rowcount
            n += conn.execute(
                delete(O).where(O.c.state.in_(("sent", "failed")), O.c.created_at < before)
            ).rowcount
        return int(n or 0)

    def take_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Hold (or renew) the named lease until ``now + ttl``; False while another holder's
        lease runs. One row per lease: works across processes on SQLite and PostgreSQL."""
        with self.db.write() as conn:
            add = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(L)
            conn.execute(
                add.values(name=name, holder="", expires_at=0.0).on_conflict_do_nothing(
                    index_elements=[L.c.name]
                )
            )
            taken = conn.execute(
                update(L)
                .where(L.c.name == name, or_(L.c.holder == holder, L.c.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
            ).rowcount
        return bool(taken)

    def release_lease(self, name: str, holder: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(L).where(L.c.name == name, L.c.holder == holder).values(expires_at=0.0)
            )


def _history(
    conn: Connection,
    alert: Alert,
    state: str,
    now: float,
    *,
    notified: bool = False,
    actor: str | None = None,
) -> None:
    assert alert.id is not None
    conn.execute(
        insert(H).values(
            alert_id=alert.id,
            rule=alert.rule,
            labels=orjson.dumps(alert.labels).decode(),
            severity=alert.severity,
            state=state,
            at=now,
            summary=alert.summary,
            notified=notified,
            actor=actor,
        )
    )


def _plain(row: Any) -> dict[str, Any]:
    """A row as a dict with plain str keys (orjson refuses SQLAlchemy's str subclass)."""
    return {str(key): value for key, value in row.items()}


def _merge(older: list[dict[str, Any]], newer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per alert, its newest, in the order alerts first appeared."""
    merged: dict[Any, dict[str, Any]] = {}
    for item in [*older, *newer]:
        merged[item.get("id")] = item
    return list(merged.values())
