"""The EC2 instance metadata service (IMDSv2): instance type, id, spot or on-demand,
and a spot instance's interruption notice."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from codecdash.agent import Field

log = logging.getLogger(__name__)

DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600
_FAILURES = (httpx.HTTPError, httpx.InvalidURL, OSError)  # timeouts, refusals, 4xx/5xx


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    instance_type: str
    lifecycle: str  # "spot", "on-demand" (or "scheduled", "capacity-block")
    region: str | None = None

    fields: ClassVar[tuple[Field, ...]] = (
        Field("instance_id", "EC2 instance id", "id"),
        Field("instance_type", "EC2 instance type, e.g. g5.xlarge", "text"),
        Field("lifecycle", "EC2 instance-life-cycle: spot or on-demand", "text"),
        Field("region", "AWS region of the instance", "text"),
    )

    @property
    def spot(self) -> bool:
        return self.lifecycle == "spot"


class _Imds:
    """An IMDSv2 session: a token PUT first, then reads that carry it."""

    def __init__(self, base_url: str, timeout: float) -> None:
        # trust_env=False: the link-local IMDS address must never go through a proxy.
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, trust_env=False)
        self.headers: dict[str, str] = {}

    def __enter__(self) -> _Imds:
        try:
            response = self.http.put(
                "/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
            )
            response.raise_for_status()
        except BaseException:
            self.http.close()
            raise
        self.headers = {"X-aws-ec2-metadata-token": response.text.strip()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def get(self, path: str) -> str:
        answer = self.http.get(f"/latest/meta-data/{path}", headers=self.headers)
        answer.raise_for_status()
        return answer.text.strip()


def fetch_instance_info(
    base_url: str = DEFAULT_IMDS_URL, timeout: float = 1.0
) -> InstanceInfo | None:
    """Ask IMDSv2 about this instance; None off EC2 or on any failure, without a fuss.

    A token is PUT first (``X-aws-ec2-metadata-token-ttl-seconds``), then each
    metadata path is read with ``X-aws-ec2-metadata-token``. Each request has
    ``timeout`` seconds; the first failure ends the attempt, so off EC2 it costs
    at most about ``timeout``. The region is optional: its absence is not a failure.
    """
    try:
        with _Imds(base_url, timeout) as imds:
            instance_id = imds.get("instance-id")
            instance_type = imds.get("instance-type")
            lifecycle = imds.get("instance-life-cycle")
            try:
                region: str | None = imds.get("placement/region") or None
            except _FAILURES:
                region = None
    except _FAILURES as exc:
        log.debug("no EC2 instance metadata (%s: %s)", type(exc).__name__, exc)
        return None
    if not (instance_id and instance_type and lifecycle):
        return None
    return InstanceInfo(instance_id, instance_type, lifecycle, region)


class SpotNotice:
    """A spot instance's interruption notice (``spot/instance-action``), when AWS gave one.

    AWS posts it two minutes before it stops or terminates the instance; with it in
    the heartbeats, a reclaimed spot worker is told apart from one that just vanished.
    """

    fields: ClassVar[tuple[Field, ...]] = (
        Field("spot_interruption", "AWS's notice: {action, time} of the coming stop", "object"),
    )

    def __init__(self, base_url: str = DEFAULT_IMDS_URL, timeout: float = 0.5) -> None:
        self.base_url = base_url
        self.timeout = timeout

    def update(self) -> dict[str, Any]:
        try:
            with _Imds(self.base_url, self.timeout) as imds:
                text = imds.get("spot/instance-action")  # 404 while there is no notice
            notice = json.loads(text)
        except (*_FAILURES, ValueError):
            return {}
        if not isinstance(notice, dict):
            return {}
        return {"spot_interruption": {k: str(notice[k]) for k in ("action", "time") if k in notice}}
