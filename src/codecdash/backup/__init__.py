"""Backups of a SQLite store: online copies, verification, restore, and the schedule
that ``codecdash serve`` can run (docs/backups.md).

The SQLite side (how a consistent copy is taken, what a sound store looks like) lives in
``codecdash.store.backup`` and ``codecdash.store.integrity``; this package deals with
files, locks, the schedule and the command line.
"""
