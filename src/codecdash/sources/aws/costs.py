"""Costs from Cost Explorer, which charges $0.01 per request: cached, budgeted, shared.

A refresh of the figures costs one request, ``GetCostAndUsage`` (month to date, daily,
grouped by the cost-allocation tag ``CODECDASH_AWS_COST_TAG``); the forecast is codecdash's
own burn rate (month to date + the last 7 complete days' rate to the month's end), unless
``CODECDASH_AWS_COST_FORECAST=cost_explorer`` asks ``GetCostForecast`` too (a second
request; when it fails, as it does early in a month or without enough history, the burn
rate is used). The figures are then reused for
``CODECDASH_AWS_COST_CACHE_SECONDS`` (a day by default), never fetched per page view:

- in memory, for the life of the process (a warm Lambda keeps it between invocations);
- in an S3 object, ``_codecdash/cost-explorer.json`` in ``CODECDASH_AWS_SITE_BUCKET`` when
  set, so cold starts, other functions and other processes read it instead of asking;
- with a hard budget: at most ``DAILY_LIMIT`` requests per UTC day, counted in that same
  object. A refresh first claims its two requests with a conditional write (If-Match), so
  two processes that find the figures stale at the same moment cannot both ask.

In the deployed stack only the scheduled snapshot function asks Cost Explorer; the API
function reads the S3 object (``may_call=False``) and has no ``ce:`` permission at all.
With the defaults that is 1 refresh × 1 request = 1 request a day, whatever the traffic.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from codecdash.aws_clients import SINGLE_ATTEMPT, ClientFactory, describe_error
from codecdash.config import Settings
from codecdash.redact import public_text
from codecdash.sources.aws._common import iso
from codecdash.sources.aws.checks import Checkup
from codecdash.sources.base import Facts, FieldInfo, SourceError
from codecdash.sources.checks import FAIL, OK, Finding

log = logging.getLogger("codecdash.aws.costs")

CACHE_KEY = "_codecdash/cost-explorer.json"
DAILY_LIMIT = 9  # requests per UTC day, per deployment
# Logged when the budget refuses a refresh; the stack's alarm matches this text.
BUDGET_USED_UP = "Cost Explorer daily budget used up"
REQUESTS_PER_REFRESH = {"burn_rate": 1, "cost_explorer": 2}  # by aws_cost_forecast
RETRY_AFTER_FAILURE_S = 3600.0
S3_RECHECK_S = 300.0  # how often a reader looks for newer figures in the S3 object
DAY = 86400


@dataclass
class CostState:
    """What one process knows about Cost Explorer; shared by its sources (module level)."""

    calls: int = 0  # requests this process made to Cost Explorer
    entry: dict[str, Any] | None = None
    etag: str | None = None
    s3_checked_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: dict[tuple[str, str | None], CostState] = {}


def shared_state(tag: str, bucket: str | None) -> CostState:
    state = _STATES.get((tag, bucket))
    if state is None:
        state = _STATES[(tag, bucket)] = CostState()
    return state


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _month_bounds(now: float) -> tuple[float, float]:
    t = time.gmtime(now)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(start), float(calendar.timegm((year, month, 1, 0, 0, 0)))


def component_of(key: str) -> str:
    """``Component$training`` → ``training``; untagged (``Component$``) → ``other``."""
    value = key.split("$", 1)[1] if "$" in key else key
    value = value.strip().lower()
    return value or "other"


def burn_rate_forecast(mtd: float, daily: dict[str, float], now: float) -> float:
    """Month to date + the last 7 complete days' rate (or today's, on the 1st) to month end."""
    month_start, month_end = _month_bounds(now)
    today = _day(now)
    complete = sorted(d for d in daily if d < today)[-7:]
    if complete:
        rate = sum(daily[d] for d in complete) / (len(complete) * DAY)
    else:
        rate = daily.get(today, mtd) / max(now - month_start, 3600.0)
    return mtd + rate * max(0.0, month_end - now)


class CostsSource:
    name = "aws.costs"
    sections: tuple[str, ...] = ("costs",)
    timeout_s = 12.0
    fields = {  # noqa: RUF012
        "month_to_date_usd": FieldInfo("Cost Explorer UnblendedCost, month to date", "USD"),
        "forecast_month_usd": FieldInfo(
            "month to date + 7-day burn rate to month end (or GetCostForecast)", "USD"
        ),
        "as_of": FieldInfo("when Cost Explorer answered (figures are cached)", "time"),
    }

    def __init__(
        self,
        settings: Settings,
        clients: ClientFactory,
        *,
        may_call: bool = True,
        state: CostState | None = None,
        daily_limit: int = DAILY_LIMIT,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.may_call = may_call
        self.tag = settings.aws_cost_tag or "Component"
        self.bucket = settings.aws_site_bucket or None
        self.state = state if state is not None else shared_state(self.tag, self.bucket)
        self.cache_s = settings.aws_cost_cache_seconds
        self.daily_limit = daily_limit
        self.forecast = settings.aws_cost_forecast
        self.requests_per_refresh = REQUESTS_PER_REFRESH[self.forecast]
        self._pending: tuple[float, asyncio.Future[dict[str, Any] | None]] | None = None

    @property
    def calls(self) -> int:
        return self.state.calls

    async def collect(self, now: float) -> Facts:
        entry = self.state.entry
        if not self._fresh(entry, now):
            future = asyncio.ensure_future(asyncio.to_thread(self.refresh, now))
            self._pending = (now, future)
            entry = await asyncio.shield(future)
        if entry is None or entry.get("month_to_date_usd") is None:
            reason = (entry or {}).get("error") or (
                "no Cost Explorer figures yet"
                + ("" if self.may_call else ": the scheduled function fetches them")
            )
            raise SourceError(reason)
        return {"costs": self._facts(entry, now)}

    def _fresh(self, entry: dict[str, Any] | None, now: float) -> bool:
        if not entry or entry.get("fetched_at") is None:
            return False
        month = time.strftime("%Y-%m", time.gmtime(now))
        return entry.get("month") == month and 0 <= now - entry["fetched_at"] < self.cache_s

    def _facts(self, entry: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "month_to_date_usd": entry["month_to_date_usd"],
            "forecast_month_usd": entry["forecast_month_usd"],
            "cost_breakdown": entry["cost_breakdown"],
            "as_of": iso(entry["fetched_at"]),
            "forecast_method": entry.get("forecast_method"),
            "stale": not self._fresh(entry, now),
            "error": public_text(entry.get("error")),
            "source": "cost_explorer",
        }

    # -- the refresh (blocking) -------------------------------------------------------------
    def refresh(self, now: float) -> dict[str, Any] | None:
        """The newest figures: from memory, the S3 object, or (within budget) Cost Explorer."""
        st = self.state
        if not st.lock.acquire(blocking=False):
            return st.entry  # another thread is refreshing; use what we have
        try:
            if self.bucket and (
                self.may_call or st.s3_checked_at is None or now - st.s3_checked_at >= S3_RECHECK_S
            ):
                self._read_s3(now)
            if self._fresh(st.entry, now) or not self.may_call:
                return st.entry
            return self._ask(now)
        finally:
            st.lock.release()

    def _read_s3(self, now: float) -> None:
        st = self.state
        st.s3_checked_at = now
        try:
            answer = self.clients("s3").get_object(Bucket=self.bucket, Key=CACHE_KEY)
            stored = json.loads(answer["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                st.etag = None
                return
            log.warning("cost cache unreadable: %s", describe_error(exc))
            return
        st.etag = answer.get("ETag")
        mine = st.entry or {}
        if (stored.get("fetched_at") or 0) >= (mine.get("fetched_at") or 0) or (
            stored.get("attempted_at") or 0
        ) > (mine.get("attempted_at") or 0):
            st.entry = stored

    def _write_s3(self, entry: dict[str, Any], claim: bool) -> bool:
        """Stores `entry`; with `claim`, only if nobody wrote since we read (If-Match)."""
        st = self.state
        if not self.bucket:
            return True
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": CACHE_KEY,
            "Body": json.dumps(entry).encode(),
            "ContentType": "application/json",
            "CacheControl": "no-store",
        }
        if claim:
            if st.etag:
                kwargs["IfMatch"] = st.etag
            else:
                kwargs["IfNoneMatch"] = "*"
        try:
            answer = self.clients("s3").put_object(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if claim and code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return False
            raise
        st.etag = answer.get("ETag")
        return True

    def _ask(self, now: float) -> dict[str, Any] | None:
        st = self.state
        previous = dict(st.entry or {})
        today = _day(now)
        used = previous.get("calls_today", 0) if previous.get("day") == today else 0
        if used + self.requests_per_refresh > self.daily_limit:
            log.warning("%s (%d requests today)", BUDGET_USED_UP, used)
            return st.entry
        attempted = previous.get("attempted_at")
        if (
            previous.get("error")
            and attempted is not None
            and 0 <= now - attempted < min(RETRY_AFTER_FAILURE_S, self.cache_s)
        ):
            return st.entry
        claim = {
            **previous,
            "day": today,
            "calls_today": used + self.requests_per_refresh,
            "attempted_at": now,
        }
        try:
            if not self._write_s3(claim, claim=True):
                self._read_s3(now)  # someone else is refreshing: use theirs when it lands
                return st.entry
        except Exception as exc:
            claim["error"] = f"cost cache in s3://{self.bucket}: {describe_error(exc)}"
            st.entry = claim
            return claim
        st.entry = claim
        try:
            figures = self._fetch(now)
        except Exception as exc:
            claim["error"] = describe_error(exc)
            log.warning("Cost Explorer failed: %s", claim["error"])
            st.entry = claim
            self._store(claim)
            return claim
        entry = {**claim, **figures, "error": None}
        st.entry = entry
        self._store(entry)
        return entry

    def _store(self, entry: dict[str, Any]) -> None:
        try:
            self._write_s3(entry, claim=False)
        except Exception as exc:
            log.warning("could not store the cost cache: %s", describe_error(exc))

    def _fetch(self, now: float) -> dict[str, Any]:
        ce = self.clients("ce", region="us-east-1", config=SINGLE_ATTEMPT)
        month_start, month_end = _month_bounds(now)
        today = _day(now)
        self.state.calls += 1
        usage = ce.get_cost_and_usage(
            TimePeriod={"Start": _day(month_start), "End": _day(now + DAY)},
            Granularity="DAILY",
            Metrics=["UnblendedCost"],
            GroupBy=[{"Type": "TAG", "Key": self.tag}],
        )
        by_component: dict[str, float] = {}
        daily: dict[str, float] = {}
        for period in usage.get("ResultsByTime", []):
            day = period["TimePeriod"]["Start"]
            groups = period.get("Groups") or []
            if not groups and period.get("Total"):
                amount = float(period["Total"].get("UnblendedCost", {}).get("Amount", 0))
                groups = [
                    {"Keys": [f"{self.tag}$"], "Metrics": {"UnblendedCost": {"Amount": amount}}}
                ]
            for group in groups:
                amount = float(group["Metrics"]["UnblendedCost"]["Amount"])
                component = component_of(group["Keys"][0])
                by_component[component] = by_component.get(component, 0.0) + amount
                daily[day] = daily.get(day, 0.0) + amount
        mtd = sum(by_component.values())
        before_today = sum(v for d, v in daily.items() if d < today)
        method = "burn_rate"
        forecast_error = None
        forecast = burn_rate_forecast(mtd, daily, now)
        if self.forecast == "cost_explorer":
            self.state.calls += 1
            try:
                answer = ce.get_cost_forecast(
                    TimePeriod={"Start": today, "End": _day(month_end)},
                    Metric="UNBLENDED_COST",
                    Granularity="MONTHLY",
                )
                forecast = before_today + float(answer["Total"]["Amount"])
                method = "cost_explorer"
            except Exception as exc:  # no forecast (too little history, unsupported): ours
                forecast_error = describe_error(exc)
        return {
            "fetched_at": now,
            "month": time.strftime("%Y-%m", time.gmtime(now)),
            "month_to_date_usd": round(mtd, 2),
            "forecast_month_usd": round(max(forecast, mtd), 2),
            "forecast_method": method,
            "forecast_error": forecast_error,
            "cost_breakdown": [
                {"component": c, "usd": round(v, 2)}
                for c, v in sorted(by_component.items(), key=lambda kv: -kv[1])
                if v > 0
            ],
        }

    # -- the check (`codecdash doctor`) ------------------------------------------------------
    def check(self, *, bucket: bool = True, tag: bool = True) -> list[Finding]:
        """The site bucket (the figures' shared cache) answers; the cost-allocation tag is
        active (`tag`: one Cost Explorer request, $0.01)."""
        checkup = Checkup()
        if bucket and self.bucket:
            site = self.bucket
            checkup.call(
                f"site bucket {site}",
                lambda: self.clients("s3").head_bucket(Bucket=site),
                "check CODECDASH_AWS_SITE_BUCKET (the stack's SiteBucketName)",
                missing=("404", "NoSuchBucket"),
                ok=lambda _: "reachable",
            )
        if tag:
            self._check_tag(checkup)
        return checkup.findings

    def _check_tag(self, checkup: Checkup) -> None:
        ce = self.clients("ce", region="us-east-1", config=SINGLE_ATTEMPT)
        what = f"Cost Explorer tag {self.tag}"
        answer = checkup.call(
            what,
            lambda: ce.list_cost_allocation_tags(TagKeys=[self.tag], Type="UserDefined"),
            "enable Cost Explorer for the account (Billing console) and allow "
            "ce:ListCostAllocationTags, ce:GetCostAndUsage, ce:GetCostForecast",
        )
        if answer is None:
            return
        tags = {t["TagKey"]: t.get("Status") for t in answer.get("CostAllocationTags", [])}
        if tags.get(self.tag) == "Active":
            checkup.add(OK, what, "active")
        else:
            checkup.add(
                FAIL,
                what,
                "not activated as a cost-allocation tag"
                if self.tag in tags
                else "unknown to Billing (no resource carries it yet?)",
                f"tag the resources with {self.tag}=training|inference|storage|orchestrator, "
                "then activate it: aws ce update-cost-allocation-tags-status "
                f"--cost-allocation-tags-status TagKey={self.tag},Status=Active "
                "(figures appear within 24 hours)",
            )


class CostExplorerRow:
    """The row in `sources` for Cost Explorer itself: fails while its last request failed."""

    name = "aws.costs.cost_explorer"
    sections: tuple[str, ...] = ()
    fields: dict[str, FieldInfo] = {}  # noqa: RUF012

    def __init__(self, costs: CostsSource) -> None:
        self.costs = costs
        self.timeout_s = costs.timeout_s

    async def collect(self, now: float) -> Facts:
        pending = self.costs._pending
        if pending is not None and pending[0] == now:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending[1])  # the refresh the costs source started
        entry = self.costs.state.entry or {}
        if entry.get("error"):
            raise SourceError(str(entry["error"]))
        return {}
