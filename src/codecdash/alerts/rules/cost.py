"""Budget thresholds, as AWS Budgets does them: actual and forecast cost against the budget."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from codecdash.alerts.facts import Facts
from codecdash.alerts.model import Finding, Severity
from codecdash.alerts.rules.base import Rule, split_list

Percents = Annotated[list[Annotated[float, Field(gt=0, le=10_000)]], BeforeValidator(split_list)]


class BudgetRule(Rule):
    name = "budget"
    description = (
        "Month-to-date cost passes a share of the monthly budget (50, 80, 100 %), or the "
        "month's forecast passes it (100 %): one alert per threshold."
    )

    cooldown_seconds: float = Field(3600.0, ge=0, description="No new notification within, s.")
    thresholds_pct: Percents = Field(
        default_factory=lambda: [50.0, 80.0, 100.0],
        description="Shares of the budget that month-to-date cost is checked against, %.",
    )
    forecast_thresholds_pct: Percents = Field(
        default_factory=lambda: [100.0],
        description="Shares of the budget that the month's forecast is checked against, %.",
    )
    critical_from_pct: float = Field(
        100.0,
        gt=0,
        description="Thresholds at or above this are critical, the others use `severity`.",
    )

    def evaluate(self, facts: Facts, now: float) -> list[Finding]:
        budget = facts.section("targets").get("monthly_budget_usd")
        summary = facts.section("summary")
        if not isinstance(budget, int | float) or budget <= 0:
            return []
        found: list[Finding] = []
        checks = (
            ("actual", summary.get("month_to_date_usd"), self.thresholds_pct, "Month-to-date"),
            (
                "forecast",
                summary.get("forecast_month_usd"),
                self.forecast_thresholds_pct,
                "The month's forecast",
            ),
        )
        for kind, value, thresholds, what in checks:
            if not isinstance(value, int | float):
                continue
            for pct in sorted(set(thresholds)):
                if value >= budget * pct / 100:
                    found.append(
                        Finding(
                            {"kind": kind, "threshold_pct": f"{pct:g}"},
                            f"{what} cost ${value:,.2f} passed {pct:g} % of the "
                            f"${budget:,.2f} monthly budget ({100 * value / budget:.0f} %)",
                            value=float(value),
                            severity=self._severity(pct),
                        )
                    )
        return found

    def _severity(self, pct: float) -> Severity:
        return "critical" if pct >= self.critical_from_pct else self.severity
