"""The experiments' read replica on AWS: the SQLite store file, kept in S3.

The page asks the same questions on AWS as over ``codecdash serve`` (every sort, filter,
search, page and total; the R-D curves; the anchors and BD-rates), so on AWS it is answered
by the same read code over the same store: a SQLite file (``aws_read_model_bucket`` /
``aws_read_model_key``) that the DynamoDB stream function keeps current
(``sources/aws/replica_writer.py``) and that each function reads from a local copy in /tmp.

- :class:`ReplicaCopy` keeps that copy current: at most every
  ``aws_read_model_refresh_seconds`` it sends one ``GetObject`` with ``If-None-Match`` (the
  copy's ETag). S3 answers 304 with no body while nothing changed; a new version is
  downloaded beside the copy and moved over it, between requests, and the :class:`Store`
  over it is told (``Store.reopened``), so the routes and the snapshot read the new data.
- :func:`publish` uploads a consistent copy of a store (SQLite's backup API) with a
  conditional write: ``If-Match`` the version it was made from (``If-None-Match: *`` for
  the first), so two writers can never overwrite each other's changes unseen.

A request then costs one conditional GET at most (none within the refresh interval),
whatever the table's size; the download of a new copy is paid once per change and
container. ``docs/aws.md`` ("The read replica") has the prices.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from codecdash.config import Settings
from codecdash.store import Store
from codecdash.store.backup import copy_online

log = logging.getLogger("codecdash.aws.replica")

NOT_MODIFIED = ("304", "NotModified")
MISSING = ("404", "NoSuchKey", "NoSuchBucket")
PRECONDITION = ("412", "PreconditionFailed", "ConditionalRequestConflict")


class ReplicaUnavailable(Exception):
    """S3 refused or could not be reached; the message says which and why (no account
    ids, no ARNs)."""


class ReplicaTooNew(Exception):
    """The published replica's schema is newer than this code (a release half deployed):
    the copy in hand stays in service."""


def migrate(path: Path) -> None:
    """Brings a downloaded copy to this code's schema before it is served (or refuses one
    newer than this code understands: ReplicaTooNew)."""
    try:
        staged = Store(str(path))
    except RuntimeError as exc:
        raise ReplicaTooNew(f"the read replica was not installed: {exc}") from None
    staged.close()  # the last connection folds the WAL in
    _drop_sidecars(path)


class ReplicaConflict(Exception):
    """Another writer published a new version first: read it again and reapply."""


def code_of(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return str(error.get("Code") or status)


def described(exc: Exception) -> str:
    """A short reason fit for the public snapshot: the error code, never AWS's text (nor
    the bucket's name)."""
    if isinstance(exc, ClientError):
        return f"the read replica cannot be read: S3 answered {code_of(exc)}"
    return f"the read replica cannot be read: S3 unreachable ({type(exc).__name__})"


def _drop_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


class ReplicaCopy:
    """A local copy of the replica and the store over it (see the module's docstring).

    Not for concurrent requests: a Lambda container serves one request at a time, and
    `refresh` runs between them. `clock` is monotonic seconds (tests move it)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        path: Path,
        *,
        every_s: float = 10.0,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.path = path
        self.every_s = every_s
        self.settings = settings
        self.clock = clock
        self.etag: str | None = None
        self.checked_at: float | None = None
        self.error: str | None = None
        """Why the last check failed (None: it worked); the copy in hand is still served."""
        self.downloads = 0
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_sidecars(self.path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a copy of unknown version: fetched again
        self.store = Store(str(self.path))
        if settings is not None:
            self.store.db.busy_timeout_ms = settings.sqlite_busy_timeout_ms

    @classmethod
    def from_settings(cls, settings: Settings, s3: Any, path: Path, **kwargs: Any) -> ReplicaCopy:
        assert settings.aws_read_model_bucket
        return cls(
            s3,
            settings.aws_read_model_bucket,
            settings.aws_read_model_key,
            path,
            every_s=settings.aws_read_model_refresh_seconds,
            settings=settings,
            **kwargs,
        )

    @property
    def exists(self) -> bool:
        """Whether a published replica was found (else the store is empty)."""
        return self.etag is not None

    def refresh(self, *, force: bool = False) -> bool:
        """Check for a new version if the interval passed (or `force`); True when one was
        installed. S3's troubles are kept in `error` and the copy in hand is served."""
        with self._lock:
            now = self.clock()
            if not force and self.checked_at is not None and now - self.checked_at < self.every_s:
                return False
            self.checked_at = now
            try:
                installed = self._fetch()
            except (ClientError, BotoCoreError) as exc:
                self.error = described(exc)
                log.warning("s3://%s/%s: %s", self.bucket, self.key, exc)
                return False
            except ReplicaTooNew as exc:
                self.error = str(exc)
                log.error("%s", exc)
                return False
            self.error = None
            return installed

    def _fetch(self) -> bool:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.etag is not None:
            kwargs["IfNoneMatch"] = self.etag
        try:
            answer = self.s3.get_object(**kwargs)
        except ClientError as exc:
            code = code_of(exc)
            if code in NOT_MODIFIED:
                return False
            if code in MISSING[:2] and self.etag is None:
                return False  # nothing published yet: the empty store answers
            raise
        fd, name = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                body = answer["Body"]
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    out.write(chunk)
            migrate(Path(name))
            self.install(Path(name))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        self.etag = str(answer["ETag"])
        self.downloads += 1
        return True

    def install(self, new_file: Path) -> None:
        """Put `new_file` in the copy's place (no request may be reading)."""
        self.store.db.engine.dispose()
        _drop_sidecars(self.path)
        os.replace(new_file, self.path)
        self.store.reopened()
        if self.settings is not None:
            from codecdash.experiments.service import bd_rates_for

            bd_rates_for(self.store, self.settings).reload()  # the anchors may differ

    def close(self) -> None:
        self.store.close()


def publish(store: Store, s3: Any, bucket: str, key: str, etag: str | None) -> str:
    """Upload a consistent copy of `store` over version `etag` (None: there is none yet);
    returns the new version's ETag. ReplicaConflict when another writer published first."""
    source = Path(store.db.engine.url.database or "")
    with tempfile.TemporaryDirectory(prefix="codecdash-publish-") as tmp:
        copy = Path(tmp) / "replica.db"
        copy_online(source, copy)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            with copy.open("rb") as body:
                answer = s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/vnd.sqlite3",
                    CacheControl="no-store",
                    **condition,
                )
        except ClientError as exc:
            if code_of(exc) in PRECONDITION:
                raise ReplicaConflict(
                    f"s3://{bucket}/{key} changed since version {etag or '(none)'}"
                ) from None
            raise
    return str(answer["ETag"])
