"""Generated experiment ids: UUIDv7 layout, unique, in creation order."""

from __future__ import annotations

import time
import uuid

from codecdash.ids import new_id
from codecdash.models import ExperimentIn
from codecdash.store.rows import FIELDS


def test_ids_are_uuid7_hex_that_sort_by_time() -> None:
    first = new_id()
    time.sleep(0.002)
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(hex=first)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert len(first) == 32 and first == parsed.hex
    assert all(first < i for i in ids)  # a later millisecond sorts after
    ms = int(first[:12], 16)
    assert abs(ms / 1000 - time.time()) < 5


def test_every_input_field_is_a_column() -> None:
    # to_row copies the validated fields straight into the row (the ingest hot path).
    # `training` is derived from the training curves (another table): accepted so that a
    # fetched Experiment can be sent back, always None once validated, never stored.
    assert set(ExperimentIn.model_fields) - {"training"} <= set(FIELDS)
    sent_back = ExperimentIn.model_validate({"training": {"step": 3, "alert": "loss_rising"}})
    assert sent_back.training is None
