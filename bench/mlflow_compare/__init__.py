"""The parts of ``bench/compare_mlflow.py``, one concern a module:

- ``data``: the seeded experiments and how each system receives them;
- ``install``: MLflow in a virtual environment of its own, never codecdash's;
- ``servers``: starting and stopping ``mlflow server`` and ``codecdash serve``;
- ``clients``: each server's HTTP API as the benchmark calls it;
- ``mlflow_db``: SQL into MLflow's schema (the bulk copy) and the two prepared databases;
- ``timing``: settling the CPUs, timing one call, the order the systems take turns in;
- ``pages``: the first page load in Lighthouse (the runner of ``bench/lighthouse.py``);
- ``measure``: one N from ingest to pages;
- ``report`` and ``headline``: the Markdown.

``bench/compare_mlflow.py`` is the command; these modules are imported from it (``bench/`` is
first on ``sys.path`` when it runs).
"""

from __future__ import annotations

import sys
from datetime import datetime


def log(message: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
