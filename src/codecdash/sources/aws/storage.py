"""Storage from AWS: S3 buckets, an EFS file system, and the experiments table's item count.

Per refresh, at most (each part only when its settings are given):

- ``aws.storage.s3``: ``GetMetricData`` ×1 per 45 buckets (S3's daily storage metrics,
  ``NumberOfObjects`` and ``BucketSizeBytes`` per storage class); for a bucket without
  metrics (new, or in another region) a listing of at most 10 pages of 1,000 keys;
  reused for an hour;
- ``aws.storage.efs``: ``DescribeFileSystems`` ×1, reused for 5 minutes;
- ``aws.storage.dynamodb``: ``DescribeTable`` ×1 (``ItemCount``, which AWS updates about
  every 6 hours), reused for an hour.
"""

from __future__ import annotations

from typing import Any

from codecdash.config import Settings
from codecdash.sources.aws._common import (
    ClientFactory,
    Part,
    ServiceRow,
    gather_values,
)
from codecdash.sources.aws.dynamodb import SPECIAL_IDS
from codecdash.sources.base import Facts, FieldInfo, Source

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


class StorageSource:
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
            self.parts.append(Part("aws.storage.s3", self._s3, ttl_s=3600, timeout_s=7.0))
        if settings.aws_efs_id:
            self.parts.append(Part("aws.storage.efs", self._efs, ttl_s=300))
        if settings.aws_experiments_table:
            self.parts.append(Part("aws.storage.dynamodb", self._table, ttl_s=3600))

    def rows(self) -> list[Source]:
        return [ServiceRow(p, self.timeout_s) for p in self.parts]

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
                queries.append(
                    {
                        "Id": f"b{i}m{j}",
                        "ReturnData": True,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/S3",
                                "MetricName": metric,
                                "Dimensions": [
                                    {"Name": "BucketName", "Value": bucket},
                                    {"Name": "StorageType", "Value": storage},
                                ],
                            },
                            "Period": DAY,
                            "Stat": "Average",
                        },
                    }
                )
        cloudwatch = self.clients("cloudwatch")
        newest: dict[str, float] = {}
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
                for result in answer.get("MetricDataResults", []):
                    points = sorted(
                        zip(result.get("Timestamps", []), result.get("Values", []), strict=False),
                        key=lambda p: p[0],
                        reverse=True,
                    )
                    if points and result["Id"] not in newest:
                        newest[result["Id"]] = float(points[0][1])
                if not answer.get("NextToken"):
                    break
                kwargs["NextToken"] = answer["NextToken"]
        measured: dict[str, tuple[int, int]] = {}
        for i, bucket in enumerate(self.buckets):
            objects = newest.get(f"b{i}m0")
            if objects is None:
                continue
            size = sum(newest.get(f"b{i}m{j}", 0.0) for j in range(1, len(STORAGE_CLASSES) + 1))
            measured[bucket] = (int(objects), int(size))
        return measured

    def _s3_listing(self, bucket: str) -> dict[str, Any]:
        s3 = self.clients("s3")
        objects = size = 0
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
        partial = False
        for page_number in range(MAX_LIST_PAGES):
            page = s3.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                objects += 1
                size += int(item.get("Size", 0))
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
            partial = page_number == MAX_LIST_PAGES - 1
        return {
            "name": bucket,
            "objects": objects,
            "bytes": size,
            "basis": "listing",
            "partial": partial,
        }

    def _efs(self, now: float) -> int:
        answer = self.clients("efs").describe_file_systems(FileSystemId=self.settings.aws_efs_id)
        return int(answer["FileSystems"][0]["SizeInBytes"]["Value"])

    def _table(self, now: float) -> int:
        answer = self.clients("dynamodb").describe_table(
            TableName=self.settings.aws_experiments_table
        )
        count = int(answer["Table"].get("ItemCount", 0))
        return max(0, count - len(SPECIAL_IDS)) if count >= len(SPECIAL_IDS) else count
