"""The fleet from AWS: CloudFormation, Auto Scaling (+ EC2), SQS and CloudWatch.

Per refresh, at most (each part only when its settings are given):

- ``aws.fleet.cloudformation``: ``DescribeStacks`` ×1, reused for 60 s;
- ``aws.fleet.autoscaling``: ``DescribeAutoScalingGroups`` ×1 (both groups), plus
  ``DescribeInstances`` ×1 for groups without a mixed-instances policy; reused for 30 s;
- ``aws.fleet.sqs``: ``GetQueueAttributes`` ×1 per queue, reused for 30 s;
- ``aws.fleet.cloudwatch``: ``GetMetricData`` ×1 (up to 3 metrics), reused for 5 minutes
  (the period of EC2's basic monitoring: asking more often finds nothing new).

Each part keeps its last good answer, so one failing service leaves its own figures as
they were and says so in its own row of ``sources``; the sections fail only when no part
has ever answered.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any, NamedTuple

from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.sources.aws._common import (
    Part,
    PartedSource,
    gather_values,
    iso,
)
from codecdash.sources.aws.checks import Checkup
from codecdash.sources.aws.cloudwatch import metric_query, newest_points
from codecdash.sources.base import Facts, FieldInfo
from codecdash.sources.checks import FAIL, OK, WARN, Finding

METRICS_TTL_S = 300  # EC2 basic monitoring's period; each metric asked costs $0.00001
METRICS_WINDOW_S = 900  # the orchestrator is down when its CPU metric is older than this
OK_STACK = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE")
DEGRADED_STACK = ("UPDATE_ROLLBACK_COMPLETE",)


def stack_health(status: str | None) -> str:
    """ "ok" (created or updated), "degraded" (in progress, or rolled back to its previous
    state), "down" (failed, or gone), "unknown" (no status)."""
    if status is None:
        return "unknown"
    if status in OK_STACK:
        return "ok"
    if status in DEGRADED_STACK or status.endswith("_IN_PROGRESS"):
        return "degraded"
    return "down"


def spot_from_policy(group: dict[str, Any], in_service: int) -> int | None:
    """Spot instances implied by a mixed-instances policy (On-Demand base, then a share)."""
    policy = group.get("MixedInstancesPolicy")
    if not policy:
        return None
    dist = policy.get("InstancesDistribution", {})
    base = int(dist.get("OnDemandBaseCapacity", 0) or 0)
    pct = float(dist.get("OnDemandPercentageAboveBaseCapacity", 100))
    on_demand = min(in_service, base) + math.ceil(max(0, in_service - base) * pct / 100.0)
    return max(0, in_service - on_demand)


class FleetSource(PartedSource):
    name = "aws.fleet"
    sections: tuple[str, ...] = ("orchestrator", "training_workers", "inference_workers")
    timeout_s = 6.0
    fields = {  # noqa: RUF012
        "active": FieldInfo("InService instances of the pool's Auto Scaling group"),
        "queue_depth": FieldInfo("SQS ApproximateNumberOfMessages of the pool's queue", "jobs"),
        "spot_pct": FieldInfo("share of InService instances on spot", "%"),
        "fps": FieldInfo("InferenceFPS (custom namespace), per-minute Sum", "fps"),
        "cpu_pct": FieldInfo("orchestrator AWS/EC2 CPUUtilization", "%"),
        "mem_pct": FieldInfo("orchestrator CWAgent mem_used_percent", "%"),
    }

    def __init__(self, settings: Settings, clients: ClientFactory) -> None:
        self.settings = settings
        self.clients = clients
        s = settings
        self.groups = {
            role: name
            for role, name in (("training", s.aws_training_asg), ("inference", s.aws_inference_asg))
            if name
        }
        self.queues = {
            role: url
            for role, url in (
                ("training", s.aws_training_queue_url),
                ("inference", s.aws_inference_queue_url),
            )
            if url
        }
        self.parts: list[Part] = []
        if s.aws_stack_name:
            self.parts.append(Part("aws.fleet.cloudformation", self._stack, ttl_s=60))
        if self.groups:
            self.parts.append(Part("aws.fleet.autoscaling", self._groups, ttl_s=30))
        if self.queues:
            self.parts.append(Part("aws.fleet.sqs", self._queues, ttl_s=30))
        if s.aws_orchestrator_instance_id or s.aws_inference_asg:
            self.parts.append(Part("aws.fleet.cloudwatch", self._metrics, ttl_s=METRICS_TTL_S))

    async def collect(self, now: float) -> Facts:
        values = await gather_values(self.parts, now)
        stack = values.get("aws.fleet.cloudformation")
        groups = values.get("aws.fleet.autoscaling") or {}
        queues = values.get("aws.fleet.sqs") or {}
        metrics = values.get("aws.fleet.cloudwatch") or {}
        facts: Facts = {"orchestrator": self._orchestrator(stack, metrics, now)}
        for role in ("training", "inference"):
            group = groups.get(role) or {}
            active = group.get("in_service")
            spot = group.get("spot")
            pool: dict[str, Any] = {
                "active": active,
                "queue_depth": queues.get(role),
                "spot_pct": (100.0 * spot / active if active else None)
                if spot is not None
                else None,
                "stale": None,
                "spot_interruptions": None,
                "gpu_util_pct": None,
                "desired": group.get("desired"),
                "max": group.get("max"),
                "spot_basis": group.get("spot_basis"),
            }
            if role == "inference":
                pool["fps"] = metrics.get("fps")
            facts[f"{role}_workers"] = pool
        return facts

    def _orchestrator(
        self, stack: dict[str, Any] | None, metrics: dict[str, Any], now: float
    ) -> dict[str, Any]:
        stack_status = stack.get("status") if stack else None
        status = stack_health(stack_status)
        seen = metrics.get("cpu_at")
        if self.settings.aws_orchestrator_instance_id and "cpu_at" in metrics:
            fresh = seen is not None and now - seen < METRICS_WINDOW_S
            if not fresh:
                status = "down"
            elif status == "unknown":
                status = "ok"
        return {
            "status": status,
            "cpu_pct": metrics.get("cpu_pct"),
            "mem_pct": metrics.get("mem_pct"),
            "last_seen": iso(seen),
            "stack_status": stack_status,
            "worker_id": self.settings.aws_orchestrator_instance_id,
        }

    # -- the parts (blocking; run in worker threads) ----------------------------------------
    def _stack(self, now: float) -> dict[str, Any]:
        answer = self.clients("cloudformation").describe_stacks(
            StackName=self.settings.aws_stack_name
        )
        stack = answer["Stacks"][0]
        return {"status": stack["StackStatus"], "reason": stack.get("StackStatusReason")}

    def _describe_groups(self) -> dict[str, dict[str, Any]]:
        """The configured Auto Scaling groups that exist, by name."""
        answer = self.clients("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=sorted(set(self.groups.values()))
        )
        return {g["AutoScalingGroupName"]: g for g in answer["AutoScalingGroups"]}

    def _groups(self, now: float) -> dict[str, dict[str, Any]]:
        by_name = self._describe_groups()
        missing = sorted(set(self.groups.values()) - set(by_name))
        if missing:
            raise LookupError(f"Auto Scaling group not found: {', '.join(missing)}")
        out: dict[str, dict[str, Any]] = {}
        lookup: dict[str, list[str]] = {}
        for role, name in self.groups.items():
            group = by_name[name]
            ids = _in_service(group)
            spot = spot_from_policy(group, len(ids))
            out[role] = {
                "in_service": len(ids),
                "desired": group.get("DesiredCapacity"),
                "max": group.get("MaxSize"),
                "spot": spot,
                "spot_basis": "mixed_instances_policy" if spot is not None else None,
            }
            if spot is None and ids:
                lookup[role] = ids
            elif spot is None:
                out[role].update(spot=0, spot_basis="no_instances")
        if lookup:
            lifecycle = self._lifecycles([i for ids in lookup.values() for i in ids])
            for role, ids in lookup.items():
                out[role]["spot"] = sum(1 for i in ids if lifecycle.get(i) == "spot")
                out[role]["spot_basis"] = "instance_lifecycle"
        return out

    def _lifecycles(self, ids: list[str]) -> dict[str, str]:
        ec2 = self.clients("ec2")
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            answer = ec2.describe_instances(InstanceIds=ids[start : start + 500])
            for reservation in answer.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    found[instance["InstanceId"]] = instance.get("InstanceLifecycle", "on-demand")
        return found

    def _queues(self, now: float) -> dict[str, int]:
        return {role: self._queue_depth(url) for role, url in self.queues.items()}

    def _queue_depth(self, url: str) -> int:
        answer = self.clients("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(answer["Attributes"]["ApproximateNumberOfMessages"])

    def _metrics(self, now: float) -> dict[str, Any]:
        s = self.settings
        newest = self._newest_metrics(now, METRICS_WINDOW_S)
        out: dict[str, Any] = {}
        if s.aws_orchestrator_instance_id:
            out["cpu_pct"] = round(newest["cpu"][1], 2) if "cpu" in newest else None
            out["cpu_at"] = newest["cpu"][0] if "cpu" in newest else None
            out["mem_pct"] = round(newest["mem"][1], 2) if "mem" in newest else None
        if s.aws_inference_asg:
            out["fps"] = round(newest["fps"][1], 2) if "fps" in newest else None
        return out

    def _newest_metrics(self, now: float, window_s: float) -> dict[str, tuple[float, float]]:
        """The newest point of each metric within `window_s`, by its id in :meth:`_metric_specs`."""
        queries = [
            metric_query(m.qid, m.namespace, m.metric, m.dims, 60, m.stat)
            for m in self._metric_specs()
        ]
        end = math.ceil(now / 60) * 60
        answer = self.clients("cloudwatch").get_metric_data(
            MetricDataQueries=queries,
            StartTime=end - window_s,
            EndTime=end,
            ScanBy="TimestampDescending",
        )
        return newest_points(answer.get("MetricDataResults", []))

    def _metric_specs(self) -> list[_Metric]:
        s = self.settings
        specs: list[_Metric] = []
        if s.aws_orchestrator_instance_id:
            dims = [{"Name": "InstanceId", "Value": s.aws_orchestrator_instance_id}]
            specs += [
                _Metric(
                    "cpu",
                    "AWS/EC2",
                    "CPUUtilization",
                    dims,
                    "Average",
                    "is the instance running? check CODECDASH_AWS_ORCHESTRATOR_INSTANCE_ID",
                ),
                _Metric(
                    "mem",
                    "CWAgent",
                    "mem_used_percent",
                    dims,
                    "Average",
                    "install the CloudWatch agent on the orchestrator with mem_used_percent "
                    "and the InstanceId dimension",
                ),
            ]
        if s.aws_inference_asg:
            namespace = s.aws_metrics_namespace or "AIVideoCodec"
            specs.append(
                _Metric(
                    "fps",
                    namespace,
                    "InferenceFPS",
                    [],
                    "Sum",
                    f"publish InferenceFPS (no dimensions) to namespace {namespace} "
                    "from the inference workers",
                )
            )
        return specs

    # -- the check (`codecdash doctor`) ------------------------------------------------------
    def check(self) -> list[Finding]:
        """The stack, the groups, the queues and the metrics, as this source reads them."""
        checkup = Checkup()
        stack_name = self.settings.aws_stack_name
        if stack_name:
            stack = checkup.call(
                f"stack {stack_name}",
                partial(self._stack, time.time()),
                "check CODECDASH_AWS_STACK_NAME and the region",
            )
            if stack is not None:
                checkup.add(
                    OK if stack_health(stack["status"]) == "ok" else WARN,
                    f"stack {stack_name}",
                    stack["status"],
                    "see the stack's events in the CloudFormation console",
                )
        if self.groups:
            found = checkup.call("Auto Scaling groups", self._describe_groups, "")
            for group in dict.fromkeys(self.groups.values()) if found is not None else ():
                if group in found:
                    in_service = len(_in_service(found[group]))
                    checkup.add(OK, f"Auto Scaling group {group}", f"{in_service} InService")
                else:
                    checkup.add(
                        FAIL,
                        f"Auto Scaling group {group}",
                        "not found",
                        "check CODECDASH_AWS_TRAINING_ASG / _INFERENCE_ASG and the region",
                    )
        for role, url in self.queues.items():
            checkup.call(
                f"{role} queue",
                partial(self._queue_depth, url),
                f"check CODECDASH_AWS_{role.upper()}_QUEUE_URL",
                missing=("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"),
                ok=lambda depth: f"{depth} messages waiting",
            )
        specs = self._metric_specs()
        if specs:
            newest = checkup.call(
                "CloudWatch metrics", partial(self._newest_metrics, time.time(), 3600), ""
            )
            for spec in specs if newest is not None else ():
                what = f"metric {spec.namespace}/{spec.metric}"
                if spec.qid in newest:
                    checkup.add(OK, what, "has data in the last hour")
                else:
                    checkup.add(WARN, what, "no data in the last hour", spec.fix)
        return checkup.findings


class _Metric(NamedTuple):
    qid: str
    namespace: str
    metric: str
    dims: list[dict[str, str]]
    stat: str
    fix: str  # what to do when it has no data


def _in_service(group: dict[str, Any]) -> list[str]:
    """The ids of a group's InService instances."""
    return [
        i["InstanceId"]
        for i in group.get("Instances", [])
        if i.get("LifecycleState") == "InService"
    ]
