"""Retried writes are harmless: the times the server fills in are not moved by a retry."""

from __future__ import annotations

import time

from codecdash.models import ExperimentIn
from codecdash.store import Store
from conftest import writes


def _times(store: Store, experiment_id: str) -> tuple[object, object, object]:
    row = store.get_experiment(experiment_id)
    assert row is not None
    return row["started_at"], row["finished_at"], row["duration_s"]


def test_a_retried_batch_keeps_server_filled_times(store: Store) -> None:
    items = [ExperimentIn(id="run-a", status="running"), ExperimentIn(id="done-b", status="failed")]
    writes(store).batch(items)
    first = {i.id: _times(store, str(i.id)) for i in items}
    time.sleep(0.02)
    writes(store).batch(items)  # the same request again, as the SDK's retry sends it
    assert {i.id: _times(store, str(i.id)) for i in items} == first
    assert first["run-a"][0] is not None and first["done-b"][1] is not None


def test_a_new_status_still_gets_its_own_time(store: Store) -> None:
    writes(store).batch([ExperimentIn(id="c", status="running")])
    started = _times(store, "c")[0]
    time.sleep(0.02)
    writes(store).batch([ExperimentIn(id="c", status="completed")])
    started_after, finished, duration = _times(store, "c")
    assert finished is not None and finished > started  # type: ignore[operator]
    # A whole replace without started_at clears it (PUT semantics), so no duration.
    assert started_after is None and duration is None
