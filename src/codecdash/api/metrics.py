"""Prometheus text exposition of the snapshot's headline figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from codecdash import __version__
from codecdash.experiments.vocabulary import STATUSES

Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, value: float | int | None, labels: Labels | None = None) -> str | None:
    if value is None:
        return None
    label_text = ""
    if labels:
        label_text = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"
    return f"{name}{label_text} {float(value):.17g}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(
        self,
        name: str,
        help_text: str,
        samples: Iterable[tuple[Labels | None, float | int | None]],
    ) -> None:
        rendered = [s for s in (_sample(name, v, labels) for labels, v in samples) if s]
        if not rendered:
            return
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *rendered]


def _ratio(pct: float | None) -> float | None:
    return None if pct is None else pct / 100.0


AlertCounts = Mapping[tuple[str, str, str], int]  # (rule, severity, state) → alerts
DeliveryCounts = Mapping[tuple[str, str], int]  # (channel, state) → messages


def render_metrics(
    snapshot: Mapping[str, Any],
    event_clients: int,
    alerts: tuple[Iterable[str], AlertCounts, DeliveryCounts] | None = None,
) -> str:
    s = snapshot["summary"]
    infra = snapshot["infrastructure"]
    w = _Writer()
    w.gauge("codecdash_build_info", "codecdash version.", [({"version": __version__}, 1)])
    w.gauge(
        "codecdash_experiments",
        "Experiments by status (the five sum to the total).",
        [({"status": k}, s.get(k)) for k in STATUSES],
    )
    w.gauge(
        "codecdash_experiments_last_day",
        "Experiments created in the last 24 hours.",
        [(None, s.get("experiments_24h"))],
    )
    w.gauge(
        "codecdash_success_ratio",
        "Completed / (completed + failed).",
        [(None, s.get("success_rate"))],
    )
    best_c = s.get("best_compression") or {}
    w.gauge(
        "codecdash_best_compression_ratio",
        "Best bitrate saving of a completed experiment.",
        [(None, _ratio(best_c.get("value_pct")))],
    )
    best_q = s.get("best_quality") or {}
    w.gauge(
        "codecdash_best_psnr_decibels",
        "Best PSNR of a completed experiment.",
        [(None, best_q.get("psnr_db"))],
    )
    w.gauge(
        "codecdash_cost_month_to_date_dollars",
        "Cost this month, by component.",
        [({"component": c["component"]}, c["usd"]) for c in snapshot["cost_breakdown"]],
    )
    w.gauge(
        "codecdash_cost_forecast_month_dollars",
        "Forecast cost at the month's end.",
        [(None, s.get("forecast_month_usd"))],
    )
    w.gauge(
        "codecdash_budget_month_dollars",
        "Monthly budget.",
        [(None, snapshot["targets"]["monthly_budget_usd"])],
    )
    pools = {"training": infra["training_workers"], "inference": infra["inference_workers"]}
    w.gauge(
        "codecdash_workers_active",
        "Workers with a recent heartbeat.",
        [({"pool": p}, v.get("active")) for p, v in pools.items()],
    )
    w.gauge(
        "codecdash_queue_depth",
        "Newest reported queue depth.",
        [({"pool": p}, v.get("queue_depth")) for p, v in pools.items()],
    )
    w.gauge(
        "codecdash_workers_spot_ratio",
        "Share of active workers on spot instances.",
        [({"pool": p}, _ratio(v.get("spot_pct"))) for p, v in pools.items()],
    )
    w.gauge(
        "codecdash_inference_frames_per_second",
        "Frames per second, all inference workers.",
        [(None, pools["inference"].get("fps"))],
    )
    orch = infra["orchestrator"]["status"]
    w.gauge(
        "codecdash_orchestrator_up",
        "1 when the orchestrator's heartbeat is ok.",
        [(None, 1 if orch == "ok" else 0)],
    )
    w.gauge(
        "codecdash_storage_objects",
        "Objects in storage.",
        [(None, infra["storage"].get("objects"))],
    )
    w.gauge("codecdash_storage_bytes", "Bytes in storage.", [(None, infra["storage"].get("bytes"))])
    w.gauge(
        "codecdash_source_up",
        "1 when the source answered its last collection.",
        [({"source": r["name"]}, 1 if r["ok"] else 0) for r in snapshot["sources"]],
    )
    w.gauge(
        "codecdash_event_stream_clients", "Connected event-stream clients.", [(None, event_clients)]
    )
    if alerts is not None:
        _alert_metrics(w, *alerts)
    return "\n".join(w.lines) + "\n"


def _alert_metrics(
    w: _Writer, rules: Iterable[str], counts: AlertCounts, deliveries: DeliveryCounts
) -> None:
    by_rule: dict[tuple[str, str], int] = {}
    for (rule, _severity, state), n in counts.items():
        by_rule[(rule, state)] = by_rule.get((rule, state), 0) + n
    w.gauge(
        "codecdash_alerts",
        "Alerts pending or firing, by rule (0 when none).",
        [
            ({"rule": rule, "state": state}, by_rule.get((rule, state), 0))
            for rule in rules
            for state in ("pending", "firing")
        ],
    )
    w.gauge(
        "codecdash_alert_notifications",
        "Notification messages kept (30 days), by channel and delivery state.",
        [
            ({"channel": channel, "state": state}, n)
            for (channel, state), n in sorted(deliveries.items())
        ],
    )
