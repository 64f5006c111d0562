"""Writes into the AWS deployment with the caller's own AWS credentials (never the public
API): ``codecdash import-results --aws``.

Experiments and anchors go into the DynamoDB table (``aws_experiments_table``), the source
of truth; the stream function carries them into the read replica within seconds, through
the same code as a local store (``replica_writer.py``). To check the files and report the
BD-rates before writing, the importer works on a private copy of the replica
(:attr:`TableWriter.store`), which it then throws away: the replica has a single writer.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from codecdash.aws_clients import ClientFactory
from codecdash.config import Settings
from codecdash.experiments.anchors import check_anchor_name
from codecdash.models import ExperimentIn
from codecdash.sources.aws.replica import ReplicaCopy, code_of
from codecdash.sources.aws.replica_writer import anchor_item, experiment_item
from codecdash.store import Store, StoreUnavailable


class TableUnavailable(StoreUnavailable):
    """The table or the replica could not be used (the reason, with AWS's error code)."""


class TableWriter:
    def __init__(self, settings: Settings, clients: ClientFactory) -> None:
        if not settings.aws_experiments_table or not settings.aws_read_model_bucket:
            raise TableUnavailable(
                "--aws needs aws_experiments_table and aws_read_model_bucket "
                "(CODECDASH_AWS_EXPERIMENTS_TABLE, CODECDASH_AWS_READ_MODEL_BUCKET: the "
                "stack's outputs ExperimentsTableName and ReadModelBucketName)"
            )
        self.table = settings.aws_experiments_table
        self.dynamodb = clients("dynamodb")
        self._dir = Path(tempfile.mkdtemp(prefix="codecdash-import-"))
        self.copy = ReplicaCopy.from_settings(settings, clients("s3"), self._dir / "replica.db")
        self.copy.refresh(force=True)
        if self.copy.error:
            self.close()
            raise TableUnavailable(self.copy.error)
        self.written = 0

    @property
    def store(self) -> Store:
        """A private copy of the replica (the anchors, the experiments as published)."""
        return self.copy.store

    def put_experiment(self, experiment_id: str, item: ExperimentIn) -> None:
        self._put(experiment_item(item, experiment_id))

    def put_anchor(
        self, name: str, description: str | None, points: Sequence[Mapping[str, Any]]
    ) -> None:
        self._put(anchor_item(check_anchor_name(name), description, points))

    def _put(self, item: dict[str, Any]) -> None:
        try:
            self.dynamodb.put_item(TableName=self.table, Item=item)
        except ClientError as exc:
            raise TableUnavailable(
                f"DynamoDB table {self.table} refused the write: {code_of(exc)}"
            ) from None
        except BotoCoreError as exc:
            raise TableUnavailable(f"DynamoDB unreachable: {type(exc).__name__}") from None
        self.written += 1

    def close(self) -> None:
        self.copy.close()
        shutil.rmtree(self._dir, ignore_errors=True)
