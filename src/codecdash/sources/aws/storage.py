"""Storage from AWS: S3 buckets, an EFS file system, and the experiments table's item count.

Per refresh, at most (each part only when its settings are given):

- ``aws.storage.s3``: ``GetMetricData`` ×1 per 45 buckets (S3's daily storage metrics,
  ``NumberOfObjects`` and ``BucketSizeBytes`` per storage class); for a bucket without
  metrics (new, or in another region) a listing of at most 10 pages of 1,000 keys;
  reused for 6 hours (the metrics are daily: asking hourly paid for 24 answers a day
  where 1 is new);
- ``aws.storage.efs``: ``DescribeFileSystems`` ×1, reused for 5 minutes;
- ``aws.storage.dynamodb``: ``DescribeTable`` ×1 (``ItemCount``, which AWS updates about
  every 6 hours), reused for an hour.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.sources.aws._common import (
    Part,
    PartedSource,
    gather_values,
)
from codecdash.sources.aws.checks import Checkup
from codecdash.sources.aws.cloudwatch import metric_query, newest_points
from codecdash.sources.base import Facts, FieldInfo
from codecdash.sources.checks import Finding

# BucketSizeBytes is reported per storage class; these are the ones that hold data.
STORAGE_CLASSES = (
    "StandardStorage",
    "IntelligentTieringFAStorage",
    "IntelligentTieringIAStorage",
    "IntelligentTieringAIAStorage",
    "StandardIAStorage",
    "OneZoneIAStorage",
    "ReducedRedundancyStorage",
    "GlacierInstantRetrievalStorage",
    "GlacierStorage",
    "DeepArchiveStorage",
)
QUERIES_PER_CALL = 500
MAX_LIST_PAGES = 10
DAY = 86400
S3_TTL_S = 6 * 3600  # S3 storage metrics are daily


class StorageSource(PartedSource):
    name = "aws.storage"
    sections: tuple[str, ...] = ("storage",)
    timeout_s = 8.0
    fields = {  # noqa: RUF012
        "objects": FieldInfo(
            "objects in the S3 buckets (daily metric, else a bounded listing)", "objects"
        ),
        "bytes": FieldInfo("bytes in the S3 buckets plus the EFS file system", "bytes"),
        "db_items": FieldInfo("items in the experiments table (DescribeTable)", "items"),
    }

    def __init__(self, settings: Settings, clients: ClientFactory) -> None:
        self.settings = settings
        self.clients = clients
        self.buckets = list(dict.fromkeys(settings.aws_buckets))
        self.parts: list[Part] = []
        if self.buckets:
            self.parts.append(Part("aws.storage.s3", self._s3, ttl_s=S3_TTL_S, timeout_s=7.0))
        if settings.aws_efs_id:
            self.parts.append(Part("aws.storage.efs", self._efs, ttl_s=300))
        if settings.aws_experiments_table:
            self.parts.append(Part("aws.storage.dynamodb", self._table, ttl_s=3600))

    async def collect(self, now: float) -> Facts:
        values = await gather_values(self.parts, now)
        s3 = values.get("aws.storage.s3")
        efs = values.get("aws.storage.efs")
        items = values.get("aws.storage.dynamodb")
        s3_objects = sum(b["objects"] for b in s3) if s3 else None
        s3_bytes = sum(b["bytes"] for b in s3) if s3 else None
        known = [b for b in (s3_bytes, efs) if b is not None]
        return {
            "storage": {
                "objects": s3_objects,
                "bytes": sum(known) if known else None,
                "db_items": items,
                "s3_bytes": s3_bytes,
                "efs_bytes": efs,
                "buckets": s3 or [],
            }
        }

    # -- the parts (blocking) -------------------------------------------------------------
    def _s3(self, now: float) -> list[dict[str, Any]]:
        measured = self._s3_metrics(now)
        out = []
        for bucket in self.buckets:
            found = measured.get(bucket)
            if found is None:
                out.append(self._s3_listing(bucket))
            else:
                out.append(
                    {
                        "name": bucket,
                        "objects": found[0],
                        "bytes": found[1],
                        "basis": "cloudwatch",
                        "partial": False,
                    }
                )
        return out

    def _s3_metrics(self, now: float) -> dict[str, tuple[int, int]]:
        queries: list[dict[str, Any]] = []
        for i, bucket in enumerate(self.buckets):
            for j, (metric, storage) in enumerate(
                [("NumberOfObjects", "AllStorageTypes")]
                + [("BucketSizeBytes", c) for c in STORAGE_CLASSES]
            ):
                dims = [
                    {"Name": "BucketName", "Value": bucket},
                    {"Name": "StorageType", "Value": storage},
                ]
                queries.append(metric_query(f"b{i}m{j}", "AWS/S3", metric, dims, DAY, "Average"))
        cloudwatch = self.clients("cloudwatch")
        newest: dict[str, tuple[float, float]] = {}
        end = (int(now) // 3600 + 1) * 3600
        for start in range(0, len(queries), QUERIES_PER_CALL):
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries[start : start + QUERIES_PER_CALL],
                "StartTime": end - 3 * DAY,
                "EndTime": end,
                "ScanBy": "TimestampDescending",
            }
            while True:
                answer = cloudwatch.get_metric_data(**kwargs)
                newest_points(answer.get("MetricDataResults", []), into=newest)
                if not answer.get("NextToken"):
                    break
                kwargs["NextToken"] = answer["NextToken"]
        measured: dict[str, tuple[int, int]] = {}
        for i, bucket in enumerate(self.buckets):
            if f"b{i}m0" not in newest:
                continue
            objects = newest[f"b{i}m0"][1]
            size = sum(
                newest[f"b{i}m{j}"][1]
                for j in range(1, len(STORAGE_CLASSES) + 1)
                if f"b{i}m{j}" in newest
            )
            measured[bucket] = (int(objects), int(size))
        return measured

    def _s3_listing(self, bucket: str, max_pages: int = MAX_LIST_PAGES) -> dict[str, Any]:
        s3 = self.clients("s3")
        objects = size = 0
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
        cut = False
        for page_number in range(max_pages):
            page = s3.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                objects += 1
                size += int(item.get("Size", 0))
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
            cut = page_number == max_pages - 1
        return {
            "name": bucket,
            "objects": objects,
            "bytes": size,
            "basis": "listing",
            "partial": cut,
        }

    def _efs(self, now: float) -> int:
        answer = self.clients("efs").describe_file_systems(FileSystemId=self.settings.aws_efs_id)
        return int(answer["FileSystems"][0]["SizeInBytes"]["Value"])

    def _table(self, now: float) -> int:
        answer = self.clients("dynamodb").describe_table(
            TableName=self.settings.aws_experiments_table
        )
        return int(answer["Table"].get("ItemCount", 0))

    # -- the check (`codecdash doctor`) ------------------------------------------------------
    def check(self) -> list[Finding]:
        """Each bucket readable (a page of its listing) and the EFS file system's size."""
        checkup = Checkup()
        for bucket in self.buckets:
            checkup.call(
                f"bucket {bucket}",
                partial(self._s3_listing, bucket, max_pages=1),
                "check CODECDASH_AWS_BUCKETS",
                missing=("NoSuchBucket",),
                ok=lambda _: "readable",
            )
        efs = self.settings.aws_efs_id
        if efs:
            checkup.call(
                f"EFS {efs}",
                partial(self._efs, time.time()),
                "check CODECDASH_AWS_EFS_ID and the region",
                missing=("FileSystemNotFound",),
                ok=lambda size: f"{size} bytes",
            )
        return checkup.findings
