"""docs/prometheus-rules.yml: promtool accepts it, its expressions match the series
codecdash exports (promtool's rule unit tests over sample series), and every metric it
names is one /metrics serves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from codecdash.api import metrics

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docs" / "prometheus-rules.yml"

UNIT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'codecdash_cost_month_to_date_dollars{{instance="d",component="training"}}'
        values: '3000x20'
      - series: 'codecdash_cost_month_to_date_dollars{{instance="d",component="storage"}}'
        values: '1100x20'
      - series: 'codecdash_budget_month_dollars{{instance="d"}}'
        values: '5000x20'
      - series: 'codecdash_queue_depth{{instance="d",pool="training"}}'
        values: '4x20'
      - series: 'codecdash_workers_active{{instance="d",pool="training"}}'
        values: '0x20'
      - series: 'codecdash_queue_depth{{instance="d",pool="inference"}}'
        values: '4x20'
      - series: 'codecdash_workers_active{{instance="d",pool="inference"}}'
        values: '2x20'
      - series: 'codecdash_alerts{{instance="d",rule="worker_stale",state="firing"}}'
        values: '0 0 2x18'
    alert_rule_test:
      - eval_time: 5m
        alertname: CodecdashBudgetActual80
        exp_alerts:
          - exp_labels: {{severity: warning, threshold: "80", instance: d}}
            exp_annotations:
              summary: "Month-to-date cost passed 80 % of the monthly budget"
      - eval_time: 5m
        alertname: CodecdashBudgetActual100
        exp_alerts: []
      - eval_time: 5m
        alertname: CodecdashQueuedWorkWithoutWorkers
        exp_alerts: []
      - eval_time: 11m
        alertname: CodecdashQueuedWorkWithoutWorkers
        exp_alerts:
          - exp_labels: {{severity: warning, instance: d, pool: training}}
            exp_annotations:
              summary: "Jobs are queued for the training pool and no worker is active"
      - eval_time: 3m
        alertname: CodecdashAlertFiring
        exp_alerts:
          - exp_labels: {{severity: warning, instance: d, rule: worker_stale,
                          state: firing}}
            exp_annotations:
              summary: "codecdash rule worker_stale is firing (2 alerts)"
"""


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (scripts/bootstrap installs it)")
        pytest.skip("promtool is not installed (scripts/bootstrap installs it)")
    return found


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout


def test_the_rules_fire_on_codecdash_series(tmp_path: Path) -> None:
    tests = tmp_path / "rules_test.yml"
    tests.write_text(UNIT_TESTS.format(rules=RULES))
    done = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_in_the_rules_is_exported() -> None:
    exported = set(re.findall(r'"(codecdash_[a-z_]+)"', Path(metrics.__file__).read_text()))
    used = set(re.findall(r"\b(codecdash_[a-z_]+)", RULES.read_text()))
    assert used and used <= exported, used - exported
