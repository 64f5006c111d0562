"""CloudWatch ``GetMetricData`` as the AWS sources ask it: one query per metric, and the newest
point of each answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def metric_query(
    qid: str, namespace: str, metric: str, dims: list[dict[str, str]], period: int, stat: str
) -> dict[str, Any]:
    """One of ``GetMetricData``'s ``MetricDataQueries``."""
    return {
        "Id": qid,
        "ReturnData": True,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
            "Period": period,
            "Stat": stat,
        },
    }


def newest_points(
    results: Iterable[Mapping[str, Any]], into: dict[str, tuple[float, float]] | None = None
) -> dict[str, tuple[float, float]]:
    """The newest (epoch seconds, value) of each query's results, by query id.

    `into` collects over the pages of one request: a query already there (met on an earlier,
    newer page) keeps its point."""
    newest = {} if into is None else into
    for result in results:
        points = sorted(
            zip(result.get("Timestamps", []), result.get("Values", []), strict=False),
            key=lambda p: p[0],
            reverse=True,
        )
        if points and result["Id"] not in newest:
            newest[result["Id"]] = (points[0][0].timestamp(), float(points[0][1]))
    return newest
