"""Releases: every deployment is one, and `codecdash deploy --rollback` returns to any of them.

A release is what one deployment put in place:

- the functions' versions: the stack publishes a new version of each function per release
  (``AWS::Lambda::Version``, kept when replaced) and points the alias ``live`` at it; API
  Gateway, the schedule and the stream mapping call ``live``;
- the site's files, as uploaded, copied under ``_codecdash/releases/<id>/site/`` in the site
  bucket (CloudFront never serves ``_codecdash/``);
- a record, ``_codecdash/releases/<id>/release.json``: the id, the time, the package's key,
  the version of each function, the files; ``_codecdash/releases/current`` names the live one.

Rolling back points each alias at the release's versions, copies its files back to the
bucket's root (index.html last), records it as current and invalidates CloudFront: site and
functions together, in one command, without a stack update or a rebuild. The next deployment
makes a new release as usual.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from codecdash.deploy.package import DeployError, Echo

PREFIX = "_codecdash/releases/"
CURRENT = PREFIX + "current"
ALIAS = "live"
# The stack's outputs that name a function with a `live` alias, and its short name.
FUNCTION_OUTPUTS = {
    "ApiFunctionName": "api",
    "SnapshotFunctionName": "snapshot",
    "StreamFunctionName": "stream",
}
Step = Callable[[str, Callable[[], Any]], Any]


@dataclass
class Release:
    id: str
    created_at: str
    code_key: str
    versions: dict[str, str]  # function name → version number behind `live`
    files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        versions = ", ".join(f"{name} v{v}" for name, v in sorted(self.versions.items()))
        return (
            f"{self.id}  {self.created_at}  {versions or 'no functions'}  {len(self.files)} files"
        )


def new_release_id(now: float, code_key: str, files: Sequence[tuple[str, bytes]]) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex>``: sortable by time, the hash of the package and the site."""
    digest = hashlib.sha256(code_key.encode())
    for name, body in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{digest.hexdigest()[:8]}"


def _site_key(release: str, name: str) -> str:
    return f"{PREFIX}{release}/site/{name}"


class Releases:
    """The releases of one deployed stack, kept in its site bucket."""

    def __init__(
        self,
        *,
        s3: Any,
        lambda_: Any,
        bucket: str,
        account: str,
        step: Step,
        echo: Echo,
    ) -> None:
        self.s3 = s3
        self.lambda_ = lambda_
        self.bucket = bucket
        self.owner = {"ExpectedBucketOwner": account}
        self.step = step
        self.echo = echo

    # -- recording a deployment
    def live_versions(self, outputs: dict[str, str]) -> dict[str, str]:
        """The version each function's alias `live` points at now."""
        versions: dict[str, str] = {}
        for output in FUNCTION_OUTPUTS:
            function = outputs.get(output)
            if not function:
                continue
            alias = self.step(
                f"reading the alias {ALIAS} of {function}",
                partial(self.lambda_.get_alias, FunctionName=function, Name=ALIAS),
            )
            versions[function] = str(alias["FunctionVersion"])
        return versions

    def keep_files(self, release: str, files: Sequence[Any]) -> None:
        """Copies of the site's files (SiteFile) under the release's prefix, before they go live."""
        for item in files:
            self.step(
                f"keeping {item.name} in release {release}",
                partial(
                    self.s3.put_object,
                    Bucket=self.bucket,
                    Key=_site_key(release, item.name),
                    Body=item.body,
                    ContentType=item.content_type,
                    CacheControl=item.cache_control,
                    **self.owner,
                ),
            )

    def record(self, release: Release) -> None:
        body = json.dumps(asdict(release), indent=1).encode()
        self.step(
            f"recording release {release.id}",
            lambda: self.s3.put_object(
                Bucket=self.bucket,
                Key=f"{PREFIX}{release.id}/release.json",
                Body=body,
                ContentType="application/json",
                **self.owner,
            ),
        )
        self._set_current(release.id)

    def _set_current(self, release: str) -> None:
        self.step(
            "recording the current release",
            lambda: self.s3.put_object(
                Bucket=self.bucket, Key=CURRENT, Body=release.encode(), **self.owner
            ),
        )

    # -- reading them
    def current(self) -> str | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=CURRENT, **self.owner)
        except ClientError:
            return None
        return str(answer["Body"].read().decode().strip()) or None

    def all(self) -> list[Release]:
        """Every recorded release, newest first."""
        ids: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = self.step(
            "listing the releases",
            lambda: list(
                paginator.paginate(Bucket=self.bucket, Prefix=PREFIX, Delimiter="/", **self.owner)
            ),
        )
        for page in pages:
            for prefix in page.get("CommonPrefixes", []):
                ids.append(prefix["Prefix"][len(PREFIX) :].rstrip("/"))
        return [self.get(i) for i in sorted(ids, reverse=True)]

    def get(self, release: str) -> Release:
        from botocore.exceptions import ClientError

        try:
            answer = self.s3.get_object(
                Bucket=self.bucket, Key=f"{PREFIX}{release}/release.json", **self.owner
            )
        except ClientError:
            raise DeployError(
                f"no release {release} in s3://{self.bucket}; "
                "`codecdash deploy --stack NAME --releases` lists them"
            ) from None
        data = json.loads(answer["Body"].read())
        return Release(**{k: data[k] for k in Release.__dataclass_fields__ if k in data})

    # -- rolling back
    def target(self, wanted: str | None) -> Release:
        """The release `wanted`, or (None) the one before the current one."""
        if wanted:
            return self.get(wanted)
        releases = self.all()
        current = self.current()
        ids = [r.id for r in releases]
        older = releases[ids.index(current) + 1 :] if current in ids else releases[1:]
        if not older:
            raise DeployError(
                "no earlier release to roll back to"
                + (f" (the current one, {current}, is the oldest)" if current else "")
            )
        return older[0]

    def rollback(self, release: Release) -> None:
        """Points every alias at the release's versions and puts its site files back."""
        for function, version in sorted(release.versions.items()):
            self.step(
                f"pointing {function}:{ALIAS} at version {version}",
                partial(
                    self.lambda_.update_alias,
                    FunctionName=function,
                    Name=ALIAS,
                    FunctionVersion=version,
                ),
            )
            self.echo(f"{function}: {ALIAS} → version {version}")
        names = sorted(release.files, key=lambda n: n == "index.html")  # the page last
        for name in names:
            self.step(
                f"restoring {name}",
                partial(
                    self.s3.copy_object,
                    Bucket=self.bucket,
                    Key=name,
                    CopySource={"Bucket": self.bucket, "Key": _site_key(release.id, name)},
                    MetadataDirective="COPY",
                    ExpectedSourceBucketOwner=self.owner["ExpectedBucketOwner"],
                    **self.owner,
                ),
            )
        self.echo(f"Restored {len(names)} site files of release {release.id}")
        self._set_current(release.id)
