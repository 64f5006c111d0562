"""The alert rules, one by one (pure: facts in, findings out), the state machine, and the
settings that configure them (TOML tables, nested environment variables, bad values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alert_fixtures import snapshot
from codecdash.alerts.engine import step
from codecdash.alerts.facts import Facts
from codecdash.alerts.model import Alert, Finding
from codecdash.alerts.rules import BY_NAME, RULES, Rule, build_rules
from codecdash.config import ConfigError, load_settings

NOW = 1_741_953_600.0  # 2025-03-14T12:00:00Z


class StoreFacts:
    """The store's answers, as a test sets them."""

    def __init__(self, **answers: Any) -> None:
        self.workers_ = answers.get("workers", [])
        self.counts = answers.get("counts", (0, 0))
        self.failures = answers.get("failures", [])
        self.finished = answers.get("finished", {})
        self.training_ = answers.get("training", [])
        self.asked: list[float] = []

    def workers(self) -> list[dict[str, Any]]:
        return self.workers_

    def finished_counts(self, since: float) -> tuple[int, int]:
        self.asked.append(since)
        return self.counts

    def failures_since(self, since: float, limit: int) -> list[dict[str, Any]]:
        return self.failures[:limit]

    def finished_at(self, experiment_id: str) -> float | None:
        return self.finished.get(experiment_id)

    def training(self) -> list[dict[str, Any]]:
        return self.training_


def rule(name: str, **settings: Any) -> Rule:
    return BY_NAME[name].model_validate(settings)


def labels(findings: list[Finding]) -> list[dict[str, str]]:
    return [dict(f.labels) for f in findings]


# -- each rule --------------------------------------------------------------------------------
def test_budget_thresholds_as_aws_budgets() -> None:
    r = rule("budget")
    under = Facts(snapshot(summary={"month_to_date_usd": 2400.0, "forecast_month_usd": 4900.0}))
    assert r.evaluate(under, NOW) == []
    facts = Facts(snapshot(summary={"month_to_date_usd": 4100.0, "forecast_month_usd": 5600.0}))
    found = r.evaluate(facts, NOW)
    assert labels(found) == [
        {"kind": "actual", "threshold_pct": "50"},
        {"kind": "actual", "threshold_pct": "80"},
        {"kind": "forecast", "threshold_pct": "100"},
    ]
    assert [f.severity for f in found] == ["warning", "warning", "critical"]
    assert "$4,100.00 passed 80 % of the $5,000.00 monthly budget" in found[1].summary
    full = Facts(snapshot(summary={"month_to_date_usd": 5000.0}))
    assert {"kind": "actual", "threshold_pct": "100"} in labels(r.evaluate(full, NOW))
    # no budget, no verdict
    assert r.evaluate(Facts(snapshot(targets={"monthly_budget_usd": 0.0})), NOW) == []


def test_orchestrator_down() -> None:
    r = rule("orchestrator_down")
    assert r.evaluate(Facts(snapshot()), NOW) == []
    down = Facts(snapshot(infrastructure={"orchestrator": {"status": "down"}}))
    assert labels(r.evaluate(down, NOW)) == [{}]
    assert r.pending_seconds == 60 and r.severity == "critical"
    degraded = Facts(snapshot(infrastructure={"orchestrator": {"status": "degraded"}}))
    assert r.evaluate(degraded, NOW) == []
    found = rule("orchestrator_down", include_degraded=True).evaluate(degraded, NOW)
    assert found[0].severity == "warning"
    unknown = Facts(snapshot(infrastructure={"orchestrator": {"status": "unknown"}}))
    assert r.evaluate(unknown, NOW) == []


def test_worker_stale_per_worker() -> None:
    workers = [
        {
            "worker_id": "ok",
            "role": "training",
            "status": "ok",
            "last_seen": NOW - 10,
            "clean_shutdown": False,
        },
        {
            "worker_id": "hung",
            "role": "training",
            "status": "ok",
            "last_seen": NOW - 600,
            "clean_shutdown": False,
        },
        {
            "worker_id": "bye",
            "role": "inference",
            "status": "ok",
            "last_seen": NOW - 600,
            "clean_shutdown": True,
        },
        {
            "worker_id": "retired",
            "role": "training",
            "status": "ok",
            "last_seen": NOW - 3 * 86400,
            "clean_shutdown": False,
        },
        {
            "worker_id": "orch",
            "role": "orchestrator",
            "status": "ok",
            "last_seen": NOW - 600,
            "clean_shutdown": False,
        },
    ]
    facts = Facts(snapshot(), active_window_s=90, store=StoreFacts(workers=workers))
    found = rule("worker_stale").evaluate(facts, NOW)
    assert labels(found) == [{"worker": "hung", "role": "training"}]
    assert "has sent no heartbeat for 10 min" in found[0].summary
    # its own threshold; and nothing to say without the store (AWS source)
    assert rule("worker_stale", stale_after_seconds=900).evaluate(facts, NOW) == []
    assert rule("worker_stale").evaluate(Facts(snapshot()), NOW) == []


def test_pool_idle_with_queued_work() -> None:
    r = rule("pool_idle")
    assert r.pending_seconds == 600
    idle = Facts(snapshot(infrastructure={"training_workers": {"active": 0, "queue_depth": 7}}))
    found = r.evaluate(idle, NOW)
    assert labels(found) == [{"pool": "training"}]
    assert found[0].summary == "7 jobs queued for the training pool and no active worker"
    empty = Facts(snapshot(infrastructure={"training_workers": {"active": 0, "queue_depth": 0}}))
    assert r.evaluate(empty, NOW) == []
    assert rule("pool_idle", pools=["inference"]).evaluate(idle, NOW) == []


def test_failure_rate_over_a_window() -> None:
    r = rule("failure_rate", window_seconds=1800, max_ratio=0.2, min_finished=5)
    store = StoreFacts(counts=(6, 3))
    found = r.evaluate(Facts(snapshot(), store=store), NOW)
    assert store.asked == [NOW - 1800]
    assert found[0].value == pytest.approx(1 / 3)
    assert "3 of 9 experiments finished in the last 30 min failed (33 %" in found[0].summary
    assert r.evaluate(Facts(snapshot(), store=StoreFacts(counts=(8, 2))), NOW) == []
    assert r.evaluate(Facts(snapshot(), store=StoreFacts(counts=(0, 4))), NOW) == []  # < 5


def test_each_failed_experiment_is_opt_in() -> None:
    failures = [
        {
            "id": "e1",
            "name": "ssf λ=0.013",
            "error": "loss is nan\n  at epoch 23",
            "finished_at": NOW - 60,
            "worker_id": "w",
        }
    ]
    facts = Facts(snapshot(), store=StoreFacts(failures=failures))
    assert rule("experiment_failed").enabled is False
    found = rule("experiment_failed", enabled=True).evaluate(facts, NOW)
    assert labels(found) == [{"experiment": "e1"}]
    assert found[0].summary == "Experiment ssf λ=0.013 failed: loss is nan at epoch 23"
    assert BY_NAME["experiment_failed"].notify_resolved is False


def test_target_reached() -> None:
    r = rule("target_reached")
    best = {
        "best_compression": {"value_pct": 91.5, "experiment_id": "e7"},
        "best_quality": {"psnr_db": 34.2, "experiment_id": "e8"},
    }
    found = r.evaluate(Facts(snapshot(summary=best)), NOW)
    assert labels(found) == [{"target": "compression"}]
    assert found[0].summary == (
        "Compression target reached: 91.5 % bitrate saved by e7 (target 90.0 % bitrate saved)"
    )
    ssim = snapshot(
        summary={"best_quality": {"psnr_db": None, "ms_ssim": 0.96, "experiment_id": "e9"}},
        targets={"quality_metric": "ms_ssim"},
    )
    assert labels(r.evaluate(Facts(ssim), NOW)) == [{"target": "quality"}]


def test_new_best_only_when_recent() -> None:
    best = {"best_compression": {"value_pct": 60.0, "experiment_id": "e1"}}
    r = rule("new_best", metrics=["compression"])
    fresh = Facts(snapshot(summary=best), store=StoreFacts(finished={"e1": NOW - 120}))
    found = r.evaluate(fresh, NOW)
    assert labels(found) == [{"metric": "compression", "experiment": "e1"}]
    old = Facts(snapshot(summary=best), store=StoreFacts(finished={"e1": NOW - 7200}))
    assert r.evaluate(old, NOW) == []
    # without the store, the snapshot's recent experiments say when it finished
    recent = snapshot(
        summary=best, recent_experiments=[{"id": "e1", "finished_at": "2025-03-14T11:58:00Z"}]
    )
    assert labels(r.evaluate(Facts(recent), NOW)) == [{"metric": "compression", "experiment": "e1"}]


def summary(experiment_id: str, **values: Any) -> dict[str, Any]:
    """A running experiment's training summary, as the store answers (a healthy run)."""
    row: dict[str, Any] = {
        "experiment_id": experiment_id,
        "name": None,
        "status": "running",
        "step": 4000,
        "at": NOW - 30,
        "received_at": NOW - 20,
        "loss_metric": "loss",
        "loss": 0.42,
        "non_finite_step": None,
        "alert": None,
        "latest": {"loss": 0.42},
    }
    row.update(values)
    return row


def test_non_finite_loss_per_running_experiment() -> None:
    bad = {"alert": "non_finite_loss"}
    rows = [
        summary("ok"),
        summary("nan", name="ssf λ=0.013", loss="NaN", non_finite_step=3100, **bad),
        summary("inf", loss_metric="train/loss", loss="Infinity", non_finite_step=7, **bad),
        summary("up", alert="loss_rising"),
    ]
    r = rule("non_finite_loss")
    assert (r.enabled, r.severity, r.pending_seconds) == (True, "critical", 0)
    found = r.evaluate(Facts(snapshot(), store=StoreFacts(training=rows)), NOW)
    assert labels(found) == [{"experiment": "nan"}, {"experiment": "inf"}]
    assert found[0].summary == "Experiment ssf λ=0.013: loss is NaN (first non-finite at step 3100)"
    assert found[1].summary == "Experiment inf: train/loss is Infinity (first non-finite at step 7)"
    assert r.evaluate(Facts(snapshot()), NOW) == []  # no store (AWS source): nothing to say


def test_loss_rising_is_opt_in() -> None:
    rows = [summary("ok"), summary("up", loss=3.5, alert="loss_rising")]
    facts = Facts(snapshot(), store=StoreFacts(training=rows))
    assert rule("loss_rising").enabled is False and rule("loss_rising").pending_seconds == 600
    found = rule("loss_rising", enabled=True).evaluate(facts, NOW)
    assert labels(found) == [{"experiment": "up"}] and found[0].value == 3.5
    assert found[0].summary == (
        "Experiment up: loss is rising (its moving average is well above its lowest)"
    )


def test_stalled_run_by_the_servers_clock() -> None:
    rows = [
        summary("fresh", received_at=NOW - 60),
        # its client's clock is far behind: only when the server received it counts
        summary("skewed", at=NOW - 7200, received_at=NOW - 60),
        summary("stalled", name="dcvc-b", step=1200, received_at=NOW - 1200),
        summary("abandoned", received_at=NOW - 2 * 86400),
    ]
    facts = Facts(snapshot(), store=StoreFacts(training=rows))
    r = rule("stalled_run")
    assert (r.enabled, r.stalled_after_seconds) == (True, 900)  # type: ignore[attr-defined]
    found = r.evaluate(facts, NOW)
    assert labels(found) == [{"experiment": "stalled"}]
    assert found[0].summary == "Experiment dcvc-b has logged no step for 20 min (last: step 1200)"
    assert found[0].value == 1200
    assert rule("stalled_run", stalled_after_seconds=1800).evaluate(facts, NOW) == []
    forgetful = rule("stalled_run", stalled_after_seconds=30, forget_after_seconds=600)
    assert labels(forgetful.evaluate(facts, NOW)) == [
        {"experiment": "fresh"},
        {"experiment": "skewed"},
    ]
    assert r.evaluate(Facts(snapshot()), NOW) == []


# -- the state machine ------------------------------------------------------------------------
def run(r: Rule, findings: list[Finding] | None, alerts: dict[str, Alert], now: float) -> list[Any]:
    changes = step(r, findings, alerts, now)
    for change in changes:
        alerts[change.alert.key] = change.alert
    return [(c.previous, c.alert.state, c.notify) for c in changes]


def test_pending_period_then_firing_then_resolved() -> None:
    r = rule("pool_idle", pending_seconds=600)
    found = [Finding({"pool": "training"}, "3 queued")]
    alerts: dict[str, Alert] = {}
    assert run(r, found, alerts, NOW) == [("inactive", "pending", False)]
    assert run(r, found, alerts, NOW + 300) == []  # unchanged: nothing to store
    assert run(r, found, alerts, NOW + 600) == [("pending", "firing", True)]
    assert run(r, found, alerts, NOW + 700) == []
    assert run(r, [], alerts, NOW + 800) == [("firing", "resolved", True)]
    assert run(r, [], alerts, NOW + 900) == []


def test_a_blip_shorter_than_the_pending_period_never_fires() -> None:
    r = rule("orchestrator_down")
    found = [Finding({}, "down")]
    alerts: dict[str, Alert] = {}
    assert run(r, found, alerts, NOW) == [("inactive", "pending", False)]
    assert run(r, [], alerts, NOW + 30) == [("pending", "inactive", False)]
    assert run(r, found, alerts, NOW + 40) == [("inactive", "pending", False)]
    assert run(r, found, alerts, NOW + 99) == []
    assert run(r, found, alerts, NOW + 100) == [("pending", "firing", True)]


def test_cooldown_quiets_a_flapping_alert() -> None:
    r = rule("worker_stale", cooldown_seconds=900)
    found = [Finding({"worker": "w"}, "silent")]
    alerts: dict[str, Alert] = {}
    assert run(r, found, alerts, NOW) == [("inactive", "firing", True)]
    assert run(r, [], alerts, NOW + 60) == [("firing", "resolved", True)]
    # back within the cool-down: it fires, quietly, and resolves quietly
    assert run(r, found, alerts, NOW + 120) == [("resolved", "firing", False)]
    assert run(r, [], alerts, NOW + 180) == [("firing", "resolved", False)]
    # past it: heard again
    assert run(r, found, alerts, NOW + 60 + 901) == [("resolved", "firing", True)]


def test_events_resolve_without_a_notice_and_disabled_rules_resolve_quietly() -> None:
    event = rule("new_best")
    alerts: dict[str, Alert] = {}
    found = [Finding({"metric": "compression", "experiment": "e1"}, "new best")]
    assert run(event, found, alerts, NOW) == [("inactive", "firing", True)]
    assert run(event, [], alerts, NOW + 10) == [("firing", "resolved", False)]
    state = rule("orchestrator_down", pending_seconds=0)
    alerts = {}
    assert run(state, [Finding({}, "down")], alerts, NOW) == [("inactive", "firing", True)]
    assert run(state, None, alerts, NOW + 10) == [("firing", "resolved", False)]


def test_an_acknowledgement_lasts_until_the_alert_fires_anew() -> None:
    r = rule("worker_stale", cooldown_seconds=0)
    found = [Finding({"worker": "w"}, "silent")]
    alerts: dict[str, Alert] = {}
    run(r, found, alerts, NOW)
    (key,) = alerts
    alerts[key].acknowledged_at, alerts[key].acknowledged_by = NOW + 5, "alice"
    assert run(r, [Finding({"worker": "w"}, "silent, still")], alerts, NOW + 10)
    assert alerts[key].acknowledged_by == "alice"
    run(r, [], alerts, NOW + 20)
    run(r, found, alerts, NOW + 30)
    assert alerts[key].state == "firing" and alerts[key].acknowledged_at is None


# -- settings ---------------------------------------------------------------------------------
def test_rule_settings_from_toml_and_nested_environment(tmp_path: Path) -> None:
    config = tmp_path / "codecdash.toml"
    config.write_text(
        '[alert_rules.budget]\nthresholds_pct = [75, 100]\nseverity = "info"\n'
        "[alert_rules.pool_idle]\npending_seconds = 300\n"
    )
    env = {
        "CODECDASH_ALERT_RULES__BUDGET__SEVERITY": "critical",
        "CODECDASH_ALERT_RULES__EXPERIMENT_FAILED__ENABLED": "true",
        "CODECDASH_ALERT_RULES__WORKER_STALE__ROLES": "training",
        "CODECDASH_ALERT_RULES__STALLED_RUN__STALLED_AFTER_SECONDS": "1800",
    }
    settings = load_settings(config, env=env)
    rules = {r.name: r for r in build_rules(settings.alert_rules)}
    assert rules["budget"].thresholds_pct == [75.0, 100.0]  # type: ignore[attr-defined]
    assert rules["budget"].severity == "critical"  # the environment wins, key by key
    assert rules["pool_idle"].pending_seconds == 300
    assert rules["experiment_failed"].enabled is True
    assert rules["worker_stale"].roles == ["training"]  # type: ignore[attr-defined]
    assert rules["stalled_run"].stalled_after_seconds == 1800  # type: ignore[attr-defined]
    assert [r.name for r in build_rules({})] == [r.name for r in RULES]


def test_rules_as_json_in_the_environment() -> None:
    env = {"CODECDASH_ALERT_RULES": '{"failure_rate": {"max_ratio": 0.5}}'}
    rules = {r.name: r for r in build_rules(load_settings(env=env).alert_rules)}
    assert rules["failure_rate"].max_ratio == 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CODECDASH_ALERT_RULES__BUDGTE__ENABLED": "no"}, "unknown alert rule 'budgte'"),
        ({"CODECDASH_ALERT_RULES__BUDGET__THRESHOLD": "5"}, "alert_rules.budget.threshold:"),
        ({"CODECDASH_ALERT_RULES__BUDGET__SEVERITY": "loud"}, "alert_rules.budget.severity:"),
        (
            {"CODECDASH_ALERT_RULES__FAILURE_RATE__MAX_RATIO": "2"},
            "alert_rules.failure_rate.max_ratio:",
        ),
        (
            {"CODECDASH_ALERT_RULES__BUDGET": "x"},
            "alert_rules.budget: Input should be a valid dict",
        ),
        ({"CODECDASH_MONTHLY_BUDGET_USD__X": "1"}, "needs a table setting"),
    ],
)
def test_bad_rule_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(env=env)


def test_every_rule_is_documented_with_its_settings() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text()
    for r in RULES:
        assert f"`{r.name}`" in text, f"rule {r.name} is missing from docs/alerts.md"
        for name in r.model_fields:
            assert f"`{name}`" in text, f"{r.name}.{name} is missing from docs/alerts.md"
