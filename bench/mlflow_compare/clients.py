"""Each server's HTTP API, called as a logging script would: httpx, one keep-alive
connection, bodies serialised with orjson.

A query may be given a cap (``cap_s``): a call still unanswered after that many seconds
raises :class:`Capped`, and the caller restarts that server, which would otherwise go on
working on the abandoned request."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from mlflow_compare.data import MLFLOW_STATUS, TOP, Exp, metric_ts, mlflow_metrics, mlflow_params

JSON_HEADERS = {"Content-Type": "application/json"}
BATCH = 1000  # codecdash's batch limit
MLFLOW_PAGE = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD
NO_CAP_S = 600.0  # ingest and loading: generous, never reported as a cap


class Capped(Exception):
    """The call was still unanswered after the cap."""


class _Client:
    def __init__(self, base: str, headers: dict[str, str]) -> None:
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=NO_CAP_S, headers=headers)
        self.deadline: float | None = None

    def capped(self, cap_s: float | None) -> None:
        """Calls from now on must finish within ``cap_s`` seconds of this moment."""
        self.deadline = None if cap_s is None else time.monotonic() + cap_s

    def timeout(self) -> float:
        if self.deadline is None:
            return NO_CAP_S
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Capped
        return left

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, timeout=self.timeout(), **kwargs)
        except httpx.TimeoutException:
            raise Capped from None

    def close(self) -> None:
        self.client.close()


class MLflow(_Client):
    """MLflow's REST API, straight over httpx."""

    def __init__(self, port: int) -> None:
        super().__init__(f"http://127.0.0.1:{port}/api/2.0/mlflow/", JSON_HEADERS)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.send("POST", path, content=orjson.dumps(body))
        if r.status_code != 200:
            raise RuntimeError(f"MLflow {path}: {r.status_code} {r.text[:500]}")
        return orjson.loads(r.content)

    def create_experiment(self, name: str) -> str:
        answer = self.post(
            "experiments/create",
            {
                "name": name,
                "tags": [{"key": "mlflow.experimentKind", "value": "custom_model_development"}],
            },
        )
        return str(answer["experiment_id"])

    def ingest(self, experiment_id: str, exps: Sequence[Exp]) -> float:
        """One create, one log-batch and (for finished runs) one update per run."""
        t0 = time.perf_counter()
        for e in exps:
            run = self.post(
                "runs/create",
                {"experiment_id": experiment_id, "run_name": e.id, "start_time": e.start_ms},
            )
            run_id = run["run"]["info"]["run_id"]
            ts = metric_ts(e)
            self.post(
                "runs/log-batch",
                {
                    "run_id": run_id,
                    "params": mlflow_params(e),
                    "metrics": [
                        {"key": k, "value": v, "timestamp": ts, "step": 0}
                        for k, v in mlflow_metrics(e)
                    ],
                },
            )
            if e.status != "running":
                update: dict[str, Any] = {"run_id": run_id, "status": MLFLOW_STATUS[e.status]}
                if e.end_ms is not None:
                    update["end_time"] = e.end_ms
                self.post("runs/update", update)
        return time.perf_counter() - t0

    def search(
        self,
        experiment_id: str,
        filter_: str | None,
        limit: int = TOP,
        page_token: str | None = None,
        order: bool = True,
    ) -> Any:
        body: dict[str, Any] = {"experiment_ids": [experiment_id], "max_results": limit}
        if order:
            body["order_by"] = ["metrics.psnr DESC"]
        if filter_:
            body["filter"] = filter_
        if page_token:
            body["page_token"] = page_token
        return self.post("runs/search", body)

    def top(self, experiment_id: str, min_br: float | None) -> list[str]:
        filter_ = None if min_br is None else f"metrics.bitrate_reduction > {min_br:g}"
        runs = self.search(experiment_id, filter_).get("runs", [])
        return [r["info"]["run_name"] for r in runs]

    def count(self, experiment_id: str) -> int:
        """MLflow has no count: page through runs/search at its largest page size."""
        total, token = 0, None
        while True:
            answer = self.search(experiment_id, None, MLFLOW_PAGE, token, order=False)
            total += len(answer.get("runs", []))
            token = answer.get("next_page_token")
            if not token:
                return total


class Codecdash(_Client):
    def __init__(self, port: int, token: str | None = None) -> None:
        headers = dict(JSON_HEADERS)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        super().__init__(f"http://127.0.0.1:{port}", headers)

    def ingest(self, items: Sequence[dict[str, Any]]) -> float:
        t0 = time.perf_counter()
        for start in range(0, len(items), BATCH):
            body = orjson.dumps({"items": items[start : start + BATCH]})
            r = self.send("POST", "/api/v1/experiments/batch", content=body)
            if r.status_code != 200:
                raise RuntimeError(f"codecdash batch: {r.status_code} {r.text[:500]}")
        return time.perf_counter() - t0

    def list_page(self, params: dict[str, Any]) -> Any:
        r = self.send("GET", "/api/v1/experiments", params=params)
        if r.status_code != 200:
            raise RuntimeError(f"codecdash list: {r.status_code} {r.text[:500]}")
        return orjson.loads(r.content)

    def top(self, min_br: float | None) -> list[str]:
        params: dict[str, Any] = {"sort": "-psnr_db", "limit": TOP}
        if min_br is not None:
            params["min_bitrate_reduction_pct"] = min_br
        return [item["id"] for item in self.list_page(params)["items"]]

    def count(self) -> int:
        return int(self.list_page({"limit": 1})["total"])
