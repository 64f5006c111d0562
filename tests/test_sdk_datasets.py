"""The SDK's test sets, methods and R-D points (`client.experiment(..., dataset=…,
method=…)`, `exp.log_rd_point`, per-set anchors, the BD-rate table) against a real server;
the `method_from` setting groups experiments without `method`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from codecdash import Client
from codecdash.config import Settings
from codecdash.experiments.table import TableQuery, method_of, table_for
from codecdash.models import ExperimentIn
from codecdash.store import Store
from conftest import LiveServer, writes

ANCHOR = [{"bitrate_kbps": 1000.0 * 2**j, "psnr_db": 30.0 + 2.5 * j} for j in range(5)]


@pytest.fixture
def sdk(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.url, live_server.token, backoff=0.01) as client:
        yield client


def test_a_lambda_sweep_from_the_sdk(sdk: Client) -> None:
    answer = sdk.put_anchor("x265", "anchor", ANCHOR, dataset="UVG-1080p")
    assert answer["dataset"] == "UVG-1080p" and answer["default"] == "x265"
    for j in range(4):
        with sdk.experiment(
            f"ours λ{j}", dataset="UVG-1080p", method="ours", params={"lambda": j}
        ) as exp:
            exp.log_rd_point(bitrate_kbps=900.0 * 2**j, psnr_db=30.2 + 2.5 * j)
            exp.log_rd_point(bitrate_kbps=800.0 * 2**j, psnr_db=29.0 + 2.5 * j, sequence="Beauty")
        stored = sdk.get_experiment(exp.id)
        assert stored["status"] == "completed" and stored["dataset"] == "UVG-1080p"
        assert stored["method"] == "ours" and len(stored["rd_points"]) == 2
        assert stored["rd_points"][1]["sequence"] == "Beauty"
    table = sdk.bd_rates(dataset="UVG-1080p")
    [row] = table["rows"]
    assert row["method"] == "ours" and row["experiments"] == 4
    cell = row["cells"]["UVG-1080p"]
    assert cell["points"] == 4 and cell["bd_rate_pct"] < 0 and cell["best"] is True
    listed = sdk.list_experiments(method="ours", dataset="UVG-1080p")
    assert listed["total"] == 4


def test_method_from_a_param_or_a_tag(tmp_path: Any) -> None:
    assert method_of('{"model": "ssf", "lambda": 1}', None, "param:model") == "ssf"
    assert method_of('{"model": 3}', None, "param:model") == "3"
    assert method_of('{"other": 1}', None, "param:model") is None
    assert method_of(None, '["uvg", "method=hyperprior"]', "tag:method=") == "hyperprior"
    assert method_of(None, '["method="]', "tag:method=") is None
    url = str(tmp_path / "m.db")
    settings = Settings(database_url=url, method_from="param:model")
    store = Store(url)
    try:
        store.put_anchor("a", None, ANCHOR)
        items = [
            ExperimentIn.model_validate(
                {
                    "id": f"r{j}",
                    "status": "completed",
                    "params": {"model": "ssf"},
                    "rd_points": [{"bitrate_kbps": 950.0 * 2**j, "psnr_db": 30.1 + 2.5 * j}],
                }
            )
            for j in range(4)
        ]
        items.append(
            ExperimentIn.model_validate(
                {"id": "lone", "name": "lone run", "status": "completed", "rd_points": ANCHOR}
            )
        )
        writes(store, settings).batch(items)
        table = table_for(store, settings).answer(TableQuery())
        rows = {r["method"]: r for r in table["rows"]}
        assert set(rows) == {"ssf", "lone run"}
        assert rows["ssf"]["experiments"] == 4 and "experiment_id" not in rows["ssf"]
        assert rows["lone run"]["experiment_id"] == "lone"
        assert rows["lone run"]["cells"][""]["bd_rate_pct"] == pytest.approx(0.0, abs=1e-9)
        assert table["datasets"] == [{"name": None, "key": "", "anchor": "a", "rate_unit": "kbps"}]
        # an explicit method wins over the setting
        writes(store, settings).batch(
            [
                ExperimentIn.model_validate(
                    {**items[0].model_dump(exclude_none=True), "method": "other"}
                )
            ]
        )
        rows = {r["method"]: r for r in table_for(store, settings).answer(TableQuery())["rows"]}
        assert rows["ssf"]["experiments"] == 3 and rows["other"]["experiments"] == 1
    finally:
        store.close()
