"""The training summary: each experiment's newest step and the state of its loss.

Kept current by every metrics write (store/curves.py), so the experiments table can mark
a diverging run, and alert rules can find one, without reading any history:

- the *loss* is the first of ``loss``, ``train/loss``, ``train_loss`` that the run logs;
- ``non_finite_loss``: its newest value is NaN or infinite;
- ``loss_rising``: its exponential moving average (α = 0.1, from the 10th point on) is
  more than ``rise`` (a fraction, the ``training_loss_rise_pct`` setting) above the lowest
  the average has been; a noisy loss moves the average little, a diverging one a lot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from codecdash.curve_rules import encode_value
from codecdash.store import chunks, schema
from codecdash.timefmt import iso

T = schema.training_summary
E = schema.experiments
LOSS_NAMES = ("loss", "train/loss", "train_loss")
EMA_ALPHA = 0.1
WARMUP = 10


@dataclass(frozen=True)
class Update:
    step: int  # the experiment's newest step after the write
    alert_changed: bool


def update(
    conn: Connection,
    experiment_id: str,
    cols: Mapping[str, chunks.Records],
    latest: Mapping[str, float],
    names: Iterable[str],
    now: float,
    seq: int,
    rise: float,
) -> Update:
    """Fold one write's points (`cols`, raw records by metric) into the summary row;
    `latest` holds the metrics whose newest value this write changed, `names` every
    metric the experiment has."""
    row = conn.execute(select(T).where(T.c.experiment_id == experiment_id)).mappings().first()
    state: dict[str, Any] = dict(row) if row is not None else _blank(experiment_id)
    before = state["alert"]
    for records in cols.values():
        step = int(records["step"][-1])
        if step >= state["step"]:
            state["step"], state["at"] = step, float(records["at"][-1])
    values = orjson.loads(state["latest"])
    values.update((name, encode_value(value)) for name, value in latest.items())
    state["latest"] = orjson.dumps(values).decode()
    state["received_at"], state["seq"] = now, seq
    if state["loss_metric"] is None:
        present = set(names)
        state["loss_metric"] = next((n for n in LOSS_NAMES if n in present), None)
    loss = cols.get(state["loss_metric"] or "")
    if loss is not None:
        _fold_loss(state, loss)
    state["alert"] = _alert(state, rise)
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(T)
    conn.execute(
        insert.values(**state).on_conflict_do_update(
            index_elements=[T.c.experiment_id],
            set_={k: v for k, v in state.items() if k != "experiment_id"},
        )
    )
    return Update(int(state["step"]), before != state["alert"])


def _blank(experiment_id: str) -> dict[str, Any]:
    return {
        "experiment_id": experiment_id,
        "step": -1,
        "at": 0.0,
        "received_at": 0.0,
        "seq": 0,
        "loss_metric": None,
        "loss_step": None,
        "loss": None,
        "loss_state": None,
        "loss_ema": None,
        "loss_best": None,
        "loss_n": 0,
        "non_finite_step": None,
        "alert": None,
        "latest": "{}",
    }


def _fold_loss(state: dict[str, Any], records: chunks.Records) -> None:
    """Advance the loss's moving average over the steps newer than the last folded."""
    steps, values = records["step"], records["value"]
    after = state["loss_step"]
    if after is not None:
        newer = steps > after
        steps, values = steps[newer], values[newer]
    if not len(steps):
        return
    ema, best, n = state["loss_ema"], state["loss_best"], int(state["loss_n"])
    for step, value in zip(steps.tolist(), values.tolist(), strict=True):
        if not math.isfinite(value):
            if state["non_finite_step"] is None:
                state["non_finite_step"] = step
            continue
        n += 1
        ema = value if ema is None else ema + EMA_ALPHA * (value - ema)
        if n >= WARMUP:
            best = ema if best is None else min(best, ema)
    last = float(values[-1])
    state["loss_step"] = int(steps[-1])
    state["loss"] = last if math.isfinite(last) else None
    state["loss_state"] = None if math.isfinite(last) else encode_value(last)
    state["loss_ema"], state["loss_best"], state["loss_n"] = ema, best, n


def _alert(state: Mapping[str, Any], rise: float) -> str | None:
    if state["loss_state"] is not None:
        return "non_finite_loss"
    ema, best = state["loss_ema"], state["loss_best"]
    if best is not None and ema is not None and ema > best + rise * abs(best):
        return "loss_rising"
    return None


# -- reads ------------------------------------------------------------------------------
def public(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A summary row as the Experiment's `training` field."""
    return {
        "step": int(row["step"]),
        "at": iso(float(row["at"])),
        "loss_metric": row["loss_metric"],
        "loss": row["loss_state"] if row["loss_state"] is not None else row["loss"],
        "non_finite_step": row["non_finite_step"],
        "alert": row["alert"],
    }


# One statement for any number of ids (an expanding parameter): compiled once, not once per
# page of the experiment list with its 100 ids as 100 literals to coerce.
_BY_IDS = select(T).where(T.c.experiment_id.in_(bindparam("ids", expanding=True)))


def by_id(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The `training` field of each of these experiments that logged metrics."""
    if not ids:
        return {}
    rows = conn.execute(_BY_IDS, {"ids": list(ids)}).mappings()
    return {str(r["experiment_id"]): public(r) for r in rows}


def attach(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Sets each experiment row's `training` (None for those that logged no metrics)."""
    found = by_id(conn, [r["id"] for r in rows])
    for row in rows:
        row["training"] = found.get(row["id"])


def latest(
    conn: Connection, *, running_only: bool = False, alert_only: bool = False
) -> list[dict[str, Any]]:
    """Every summary (for alert rules): the experiment's id, name and status, its newest step,
    that step's time (`at`, the client's clock) and when it arrived (`received_at`, the
    server's), the loss and alert as in `training`, and the newest value of each metric
    (`latest`; NaN and infinities as their strings). Times as epoch seconds."""
    stmt = select(T, E.c.status, E.c.name).join(E, E.c.id == T.c.experiment_id)
    if running_only:
        stmt = stmt.where(E.c.status == "running")
    if alert_only:
        stmt = stmt.where(T.c.alert.is_not(None))
    out = []
    for row in conn.execute(stmt.order_by(T.c.experiment_id)).mappings():
        item = public(row)
        item.update(
            experiment_id=row["experiment_id"],
            name=row["name"],
            status=row["status"],
            at=float(row["at"]),
            received_at=float(row["received_at"]),
            latest=orjson.loads(row["latest"]),
        )
        out.append(item)
    return out


def changed_since(conn: Connection, seq: int, limit: int = 1000) -> list[tuple[str, int, int]]:
    """(experiment id, newest step, seq) of the summaries written after `seq`, oldest first."""
    stmt = (
        select(T.c.experiment_id, T.c.step, T.c.seq)
        .where(T.c.seq > seq)
        .order_by(T.c.seq)
        .limit(limit)
    )
    return [(str(r[0]), int(r[1]), int(r[2])) for r in conn.execute(stmt)]
