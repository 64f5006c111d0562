"""Hourly prices of EC2 instance types, on-demand and spot, in US dollars.

On-demand figures are AWS's us-east-1 list prices for Linux (as of mid-2025; P4d and
P5 after AWS's June 2025 price cut). Spot prices move by the hour and by zone, so the
spot column is an *estimate*: on-demand times a typical observed spot ratio for the
family (``SPOT_RATIO``). Override either with a ``pricing`` table in the config file,
``{instance_type: {on_demand: x, spot: y}}``, or give ``--hourly-cost``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ON_DEMAND_USD: dict[str, float] = {
    # GPU: training and inference workers
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.12xlarge": 3.912,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.12xlarge": 5.672,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.12xlarge": 4.6016,
    "p3.2xlarge": 3.06,
    "p3.8xlarge": 12.24,
    "p3.16xlarge": 24.48,
    "p4d.24xlarge": 21.96,  # 32.7726 before June 2025
    "p5.48xlarge": 55.04,  # 98.32 before June 2025
    # CPU: orchestrators
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c6i.4xlarge": 0.68,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m6i.4xlarge": 0.768,
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
}

# Typical spot price as a fraction of on-demand, per family (an estimate, not a quote).
SPOT_RATIO: dict[str, float] = {
    "g4dn": 0.35,
    "g5": 0.40,
    "g6": 0.45,
    "p3": 0.35,
    "p4d": 0.45,
    "p5": 0.55,
    "c6i": 0.45,
    "m6i": 0.45,
    "t3": 0.35,
}


@dataclass(frozen=True)
class Price:
    on_demand: float | None
    spot: float | None


def default_prices() -> dict[str, Price]:
    """The built-in table: list on-demand prices and estimated spot prices."""
    return {
        name: Price(usd, round(usd * SPOT_RATIO[name.split(".")[0]], 4))
        for name, usd in ON_DEMAND_USD.items()
    }


class PriceTable:
    """The default table with overrides laid over it, entry by entry."""

    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.prices = default_prices()
        for name, entry in (overrides or {}).items():
            base = self.prices.get(name, Price(None, None))
            self.prices[name] = Price(
                _price(entry, "on_demand", name, base.on_demand),
                _price(entry, "spot", name, base.spot),
            )

    def hourly(self, instance_type: str | None, spot: bool | None) -> float | None:
        """The hourly USD price; on-demand when ``spot`` is unknown; None when not listed."""
        price = self.prices.get(instance_type or "")
        if price is None:
            return None
        return price.spot if spot else price.on_demand


def _price(entry: Mapping[str, Any], key: str, name: str, default: float | None) -> float | None:
    value = entry.get(key, entry.get(key.replace("_", "-"), default))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"pricing.{name}.{key} must be a number of US dollars an hour")
    if value < 0:
        raise ValueError(f"pricing.{name}.{key} must not be negative")
    return float(value)


def load_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``pricing`` table of a TOML file, top-level or under ``[codecdash]``; {} if none.

    Raises ValueError with a readable message when the file or the table is malformed.
    """
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read pricing from {path}: {exc}") from None
    section = data.get("codecdash", {})
    table = data.get("pricing", section.get("pricing", {}) if isinstance(section, dict) else {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(
            f"{path}: pricing must be a table of {{instance_type: {{on_demand, spot}}}}"
        )
    PriceTable(table)  # validate now, so a bad file fails at start-up
    return table
