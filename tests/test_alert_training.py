"""The training-curve rules over a real store (SQLite and PostgreSQL): only running
experiments that logged steps alert; a run that finishes resolves its alerts, notified
once; a run that goes on logging NaN is not rewritten at every evaluation."""

from __future__ import annotations

import math
import time

import pytest
from pydantic import SecretStr

from alert_fixtures import *  # noqa: F403
from alert_fixtures import Receiver, age_steps, log_losses, snapshot
from codecdash.alerts.service import AlertService
from codecdash.config import Settings
from codecdash.models import ExperimentIn, ExperimentPatch
from codecdash.store import Store

TRAINING_RULES = ("non_finite_loss", "loss_rising", "stalled_run")
DAY = 86400.0


def training_only(settings: Settings, store_url: str, receiver: Receiver | None = None) -> Settings:
    """Only the training rules, all on, firing at once; the webhook to `receiver`."""
    from codecdash.alerts.rules import RULES

    rules = {r.name: {"enabled": r.name in TRAINING_RULES} for r in RULES}
    rules["loss_rising"]["pending_seconds"] = 0
    update: dict[str, object] = {"database_url": store_url, "alert_rules": rules}
    if receiver is not None:
        update["alert_webhook_url"] = SecretStr(receiver.url + "/hook")
    return settings.model_copy(update=update)


def firing(svc: AlertService) -> set[tuple[str, str]]:
    return {(a.rule, a.labels["experiment"]) for a in svc.alerts.current(["firing"])}


def test_runs_that_never_logged_steps_never_alert(settings: Settings, store_url: str) -> None:
    store = Store(store_url)
    svc = AlertService(training_only(settings, store_url), store)
    # running for a day without a step (many runs report only a final result), and a
    # finished run whose last step is a day old and NaN
    store.create_experiment(ExperimentIn(id="final-only", status="running"))
    log_losses(store, "done", [1.0, math.nan])
    store.patch_experiment("done", ExperimentPatch(status="failed"))
    age_steps(store, "done", DAY / 2)
    now = time.time()
    assert svc.evaluate(snapshot(), now) == []
    assert svc.evaluate(snapshot(), now + DAY / 4) == []
    assert svc.alerts.current(["pending", "firing"]) == []
    store.close()


@pytest.mark.parametrize("outcome", ["failed", "completed"])
def test_a_run_that_finishes_resolves_its_alerts_notified_once(
    settings: Settings, store_url: str, receiver: Receiver, outcome: str
) -> None:
    store = Store(store_url)
    svc = AlertService(training_only(settings, store_url, receiver), store)
    log_losses(store, "diverged", [1.0] * 4 + [math.inf, math.nan])
    log_losses(store, "healthy", [1.0] * 6)
    age_steps(store, "diverged", 1800)  # it also stopped logging half an hour ago
    now = time.time()
    svc.evaluate(snapshot(), now)
    assert firing(svc) == {("non_finite_loss", "diverged"), ("stalled_run", "diverged")}
    (nan,) = [a for a in svc.alerts.current(["firing"]) if a.rule == "non_finite_loss"]
    assert nan.severity == "critical"
    assert nan.summary == "Experiment diverged: loss is NaN (first non-finite at step 4)"
    assert svc.deliver(now) == 1
    # more NaN steps (as old as the others): the loss alert stays as it is (no write), and
    # the stalled one names the new last step, quietly
    log_losses(store, "diverged", [math.nan] * 3, first=6)
    age_steps(store, "diverged", 1800)
    (moved,) = svc.evaluate(snapshot(), now + 10)
    assert (moved.alert.rule, moved.alert.state, moved.notify) == ("stalled_run", "firing", False)
    assert moved.alert.summary.endswith("(last: step 8)")
    assert svc.deliver(now + 10) == 0

    store.patch_experiment("diverged", ExperimentPatch(status=outcome))
    changes = svc.evaluate(snapshot(), now + 20)
    assert sorted((c.alert.rule, c.alert.state, c.notify) for c in changes) == [
        ("non_finite_loss", "resolved", True),
        ("stalled_run", "resolved", True),
    ]
    assert svc.deliver(now + 20) == 1  # both resolutions in one message
    assert svc.evaluate(snapshot(), now + 30) == [] and svc.deliver(now + 30) == 0
    fired, resolved = (r.json() for r in receiver.at("/hook"))
    assert {a["rule"] for a in fired["alerts"]} == {"non_finite_loss", "stalled_run"}
    assert (fired["status"], resolved["status"]) == ("firing", "resolved")
    assert {a["labels"]["experiment"] for a in resolved["alerts"]} == {"diverged"}
    store.close()
