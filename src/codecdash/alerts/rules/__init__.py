"""The alert rules: the registry, and the settings that configure them.

A rule is a :class:`~codecdash.alerts.rules.base.Rule` subclass in one of the modules
here, listed in :data:`RULES`. Its settings are its fields; ``[alert_rules.NAME]`` in the
TOML file (or ``CODECDASH_ALERT_RULES__NAME__SETTING``) overrides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from codecdash.alerts.rules.base import Rule
from codecdash.alerts.rules.cost import BudgetRule
from codecdash.alerts.rules.experiments import (
    ExperimentFailedRule,
    FailureRateRule,
    NewBestRule,
    TargetReachedRule,
)
from codecdash.alerts.rules.fleet import OrchestratorDownRule, PoolIdleRule, WorkerStaleRule
from codecdash.alerts.rules.training import LossRisingRule, NonFiniteLossRule, StalledRunRule

RULES: tuple[type[Rule], ...] = (
    BudgetRule,
    OrchestratorDownRule,
    WorkerStaleRule,
    PoolIdleRule,
    FailureRateRule,
    ExperimentFailedRule,
    TargetReachedRule,
    NewBestRule,
    NonFiniteLossRule,
    LossRisingRule,
    StalledRunRule,
)
BY_NAME: dict[str, type[Rule]] = {rule.name: rule for rule in RULES}

__all__ = ["BY_NAME", "RULES", "Rule", "build_rules", "check_overrides"]


def build_rules(overrides: Mapping[str, Mapping[str, Any]]) -> list[Rule]:
    """Every rule, with its overrides applied (disabled ones too: their alerts resolve)."""
    check_overrides(overrides)
    return [rule.model_validate(dict(overrides.get(rule.name, {}))) for rule in RULES]


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """ValueError naming the rule and setting at fault (the settings' validator calls this)."""
    for name, values in overrides.items():
        rule = BY_NAME.get(name)
        if rule is None:
            raise ValueError(f"unknown alert rule {name!r}; the rules are {', '.join(BY_NAME)}")
        if not isinstance(values, Mapping):
            raise ValueError(f"alert_rules.{name} must be a table of settings")
        try:
            rule.model_validate(dict(values))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"alert_rules.{name}.{where}: {first['msg']}") from None
