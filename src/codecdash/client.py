"""The Python SDK: what training workers use to report to a codecdash server.

from codecdash import Client
client = Client("http://127.0.0.1:8050", token)
with client.experiment(name="ssf λ=0.013", params={"lambda": 0.013}) as exp:
    for step in range(steps):
        loss, bpp = train_step()
        exp.log_step(step, loss=loss, bpp=bpp)   # buffered, sent in the background
    exp.log(psnr_db=evaluate(), bitrate_reduction_pct=41.0)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from codecdash.ids import new_id
from codecdash.step_sender import StepSender

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


class ClientError(Exception):
    """The server refused a request, or could not be reached."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status or 'no answer'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _non_finite(value: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinity in the body, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where or "body"
    if isinstance(value, dict):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


class Client:
    """A small, retrying client of the ingest API. Thread-safe as httpx.Client is."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        metrics_interval: float = 1.0,
        metrics_buffer: int = 100_000,
    ) -> None:
        """`metrics_interval`: seconds between sends of logged steps (`log_step`);
        `metrics_buffer`: steps kept while the server cannot be reached (then the oldest
        are dropped)."""
        headers = {"User-Agent": "codecdash-client", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.retries = retries
        self.backoff = backoff
        self._steps = StepSender(
            self._http, interval=metrics_interval, max_buffered=metrics_buffer, backoff=backoff
        )

    # -- plumbing ---------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, *, idempotent: bool = True) -> Any:
        bad = _non_finite(body)
        if bad is not None:  # orjson would quietly send null: refuse it as the server would
            raise ClientError(422, "invalid", f"{bad}: numbers must be finite (not sent)")
        content = None if body is None else orjson.dumps(body, default=_default)
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, content=content)
            except httpx.TransportError as exc:
                if attempt + 1 >= attempts:
                    raise ClientError(None, "unreachable", str(exc) or type(exc).__name__) from exc
            else:
                if response.status_code < 400:
                    return orjson.loads(response.content) if response.content else None
                if response.status_code not in RETRY_STATUSES or attempt + 1 >= attempts:
                    raise _error_from(response)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    time.sleep(min(float(retry_after), 30.0))
                    continue
            time.sleep(random.uniform(0, self.backoff * 2**attempt))  # noqa: S311 - jitter
        raise AssertionError("unreachable")  # pragma: no cover

    # -- experiments ------------------------------------------------------------------
    def create_experiment(self, **fields: Any) -> dict[str, Any]:
        """POST a new experiment. Retries are safe: an id is chosen here when absent."""
        fields.setdefault("id", new_id())
        return dict(self._request("PUT", f"/api/v1/experiments/{fields['id']}", fields))

    def put_experiment(self, experiment_id: str, **fields: Any) -> dict[str, Any]:
        """Create or replace an experiment (idempotent)."""
        return dict(self._request("PUT", f"/api/v1/experiments/{experiment_id}", fields))

    def update_experiment(self, experiment_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH the given fields; the same patch applied twice gives the same result."""
        return dict(self._request("PATCH", f"/api/v1/experiments/{experiment_id}", fields))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/api/v1/experiments/{experiment_id}"))

    def list_experiments(self, **query: Any) -> dict[str, Any]:
        params = {k: v for k, v in query.items() if v is not None}
        path = "/api/v1/experiments"
        if params:
            path += "?" + str(httpx.QueryParams(params))
        return dict(self._request("GET", path))

    def batch(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Upsert up to 1,000 experiments in one all-or-nothing transaction."""
        result = self._request("POST", "/api/v1/experiments/batch", {"items": list(items)})
        return int(result["accepted"])

    def log_step(self, experiment_id: str, step: int, **values: float) -> None:
        """Record one training step's metrics (`loss=0.02, lr=1e-4, …`; NaN and infinities
        allowed) for an experiment that exists. Buffered: sent in the background in
        batches, in a few microseconds; never raises for network trouble."""
        self._steps.add(experiment_id, step, values)

    def log_steps(self, experiment_id: str, points: Iterable[Mapping[str, Any]]) -> None:
        """Record steps logged earlier (a history being imported), each ``{"step": int,
        "values": {name: float}, "at": datetime or seconds since 1970 (optional)}``;
        buffered and sent as :meth:`log_step`'s are."""
        for point in points:
            at = point.get("at")
            if isinstance(at, datetime):
                at = at.timestamp()
            self._steps.add(experiment_id, point["step"], point["values"], at)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until the logged steps are sent; False if `timeout` passed first."""
        return self._steps.flush(timeout)

    @property
    def dropped_steps(self) -> int:
        """Logged steps never stored: dropped from a full buffer, or refused by the server."""
        return self._steps.dropped

    def experiment(self, name: str | None = None, **fields: Any) -> ExperimentRun:
        """A context manager: running on enter, completed (or failed) on exit.

        Any Experiment field may be given, e.g. ``client.experiment("ssf λ=0.0130",
        dataset="UVG-1080p", method="ssf-ours", params={"lambda": 0.013})``: the test set
        it is evaluated on and the method whose curve its points join."""
        return ExperimentRun(self, name=name, **fields)

    # -- anchors and BD-rate ----------------------------------------------------------
    def put_anchor(
        self,
        name: str,
        description: str | None,
        rd_points: Iterable[Mapping[str, Any]],
        dataset: str | None = None,
    ) -> dict[str, Any]:
        """Create or replace an anchor of a test set (None: unspecified), idempotent; the
        answer names the anchor in force on that set."""
        body: dict[str, Any] = {"description": description, "rd_points": list(rd_points)}
        if dataset is not None:
            body["dataset"] = dataset
        return dict(self._request("PUT", f"/api/v1/anchors/{quote(name, safe='')}", body))

    def anchors(self) -> dict[str, Any]:
        """`{"items": [anchor…], "default": name of the anchor in force or None, …}`."""
        return dict(self._request("GET", "/api/v1/anchors"))

    def bd_report(self, experiment_id: str, anchor: str | None = None) -> dict[str, Any]:
        """BD-rate, BD-PSNR and overlap against `anchor` (default: the one in force)."""
        path = f"/api/v1/experiments/{experiment_id}/bd-rate"
        if anchor is not None:
            path += "?" + str(httpx.QueryParams({"anchor": anchor}))
        return dict(self._request("GET", path))

    def bd_rates(self, **query: Any) -> dict[str, Any]:
        """The BD-rate table (``GET /api/v1/bd-rates``): methods × test sets against each
        set's anchor. `query`: its parameters, e.g. ``dataset="UVG-1080p"``,
        ``anchor=["UVG-1080p:x265-medium"]``, ``quality="ms_ssim"``."""
        params = httpx.QueryParams({k: v for k, v in query.items() if v is not None})
        return dict(self._request("GET", f"/api/v1/bd-rates?{params}"))

    # -- fleet and costs --------------------------------------------------------------
    def heartbeat(self, **fields: Any) -> None:
        """Report a worker's heartbeat (worker_id, role, and any figures)."""
        self._request("POST", "/api/v1/heartbeats", fields)

    def cost(self, component: str, amount_usd: float, **fields: Any) -> None:
        """Record a cost. Not retried: a retry could count the same cost twice."""
        body = {"component": component, "amount_usd": amount_usd, **fields}
        self._request("POST", "/api/v1/costs", body, idempotent=False)

    def costs(self, items: Iterable[Mapping[str, Any]]) -> None:
        self._request("POST", "/api/v1/costs", {"items": list(items)}, idempotent=False)

    def dashboard(self) -> dict[str, Any]:
        return dict(self._request("GET", "/api/v1/dashboard"))

    # -- lifecycle --------------------------------------------------------------------
    def close(self, timeout: float | None = 30.0) -> None:
        """Send the logged steps (waiting up to `timeout` seconds), then close."""
        self._steps.close(timeout)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_from(response: httpx.Response) -> ClientError:
    try:
        err = orjson.loads(response.content)["error"]
        return ClientError(response.status_code, str(err["code"]), str(err["message"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ClientError(response.status_code, "http_error", response.text[:200])


class ExperimentRun:
    """`with client.experiment(...) as exp:` — see :meth:`Client.experiment`."""

    def __init__(self, client: Client, name: str | None = None, **fields: Any) -> None:
        self.client = client
        self.id: str = fields.pop("id", None) or new_id()
        self.fields = {"name": name, **fields}
        self.metrics: dict[str, Any] = {}
        self.rd_points: list[dict[str, Any]] = list(fields.get("rd_points") or [])

    def log(self, **metrics: Any) -> None:
        """Remember metrics and send them at once (the run stays `running`)."""
        self.metrics.update(metrics)
        self.client.update_experiment(self.id, **metrics)

    def log_rd_point(
        self,
        *,
        bitrate_kbps: float | None = None,
        bpp: float | None = None,
        psnr_db: float | None = None,
        ms_ssim: float | None = None,
        sequence: str | None = None,
    ) -> None:
        """Add one rate-distortion point to the run's curve and send the curve at once:
        `exp.log_rd_point(bpp=0.12, psnr_db=31.4)` after evaluating a λ run. A point with
        `sequence` is a per-sequence result beside the set's average (the points without
        it, which BD-rates use). The run's `dataset` and `method` (given to
        :meth:`Client.experiment`) say which test set and method the point belongs to."""
        point = {
            key: value
            for key, value in (
                ("bitrate_kbps", bitrate_kbps),
                ("bpp", bpp),
                ("psnr_db", psnr_db),
                ("ms_ssim", ms_ssim),
                ("sequence", sequence),
            )
            if value is not None
        }
        self.rd_points.append(point)
        self.metrics["rd_points"] = list(self.rd_points)
        self.client.update_experiment(self.id, rd_points=self.rd_points)

    def log_step(self, step: int, **values: float) -> None:
        """One training step's metrics, for its curves: `exp.log_step(1200, loss=0.0213,
        bpp=0.41, psnr_db=33.2, lr=1e-4)`. Buffered and sent in the background (see
        :meth:`Client.log_step`); the `with` block's end sends what is left."""
        self.client._steps.add(self.id, step, values)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Send this process' logged steps now; False if `timeout` passed first."""
        return self.client.flush(timeout)

    def __enter__(self) -> ExperimentRun:
        now = datetime.now(UTC)
        self.client.put_experiment(
            self.id, status="running", created_at=now, started_at=now, **self.fields
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()  # the curves are complete before the run is marked finished
        finished = datetime.now(UTC)
        if exc is None:
            self.client.update_experiment(
                self.id, status="completed", finished_at=finished, **self.metrics
            )
        else:
            message = f"{type(exc).__name__}: {exc}"[:10_000]
            self.client.update_experiment(
                self.id, status="failed", finished_at=finished, error=message
            )
