"""Experiments: what they are called, how their facts are read, and how they are written.

- `vocabulary`: statuses, ranked metrics, rate units, the BD-rate sign, the metric switches
  (pure; anything may import it).
- `query`: what a read asks (`ListQuery`, cursors) and the errors of a read (pure).
- `readmodel`: the facts the dashboard shows (summary, recent experiments, progress) and
  the experiment list, shaped once over any backend (the SQL store, locally or as the AWS
  read replica).
- `service`: the writes: request models in, plain rows to the store, BD-rates derived on
  the way.
- `anchors`: the anchor in force, BD-rates against it, and their re-derivation.
- `curation`: delete to the trash, restore, purge, the audit log; `command`: the
  `codecdash experiments …` commands over it.

This module imports nothing, so the store can import `vocabulary` and `query` without
loading the layers above it.
"""
