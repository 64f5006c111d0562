"""Counts the artifacts directory (checkpoints, bitstreams, logs) in the background.

Never inside a request: a daemon thread rescans incrementally. A directory whose mtime
has not changed since the last pass keeps its cached file count and bytes (files added
or removed change their directory's mtime); every `full_every` passes all files are
stat'ed again, so files that grew in place are caught too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("codecdash.artifacts")


@dataclass
class _DirEntry:
    mtime_ns: int
    files: int
    bytes: int
    subdirs: list[str]


class ArtifactsScanner:
    def __init__(self, root: str | Path, interval_s: float = 60.0, full_every: int = 10) -> None:
        self.root = Path(root)
        self.interval_s = interval_s
        self.full_every = full_every
        self._cache: dict[str, _DirEntry] = {}
        self._result: tuple[int, int] | None = None
        self._passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def totals(self) -> tuple[int, int] | None:
        """(objects, bytes) of the last completed pass, or None before the first."""
        return self._result

    def scan_once(self) -> tuple[int, int]:
        full = self._passes % self.full_every == 0
        self._passes += 1
        seen: dict[str, _DirEntry] = {}
        files = size = 0
        stack = [str(self.root)]
        while stack:
            path = stack.pop()
            entry = self._scan_dir(path, full)
            if entry is None:
                continue
            seen[path] = entry
            files += entry.files
            size += entry.bytes
            stack.extend(entry.subdirs)
        self._cache = seen
        self._result = (files, size)
        return self._result

    def _scan_dir(self, path: str, full: bool) -> _DirEntry | None:
        try:
            mtime = os.stat(path).st_mtime_ns
            cached = self._cache.get(path)
            if cached is not None and not full and cached.mtime_ns == mtime:
                return cached
            files = size = 0
            subdirs: list[str] = []
            with os.scandir(path) as it:
                for item in it:
                    if item.is_dir(follow_symlinks=False):
                        subdirs.append(item.path)
                    elif item.is_file(follow_symlinks=False):
                        files += 1
                        size += item.stat(follow_symlinks=False).st_size
            return _DirEntry(mtime, files, size, subdirs)
        except OSError as exc:  # vanished or unreadable: skip it, say so once
            self.last_error = f"{path}: {exc.strerror or exc}"
            return None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, daemon=True, name="codecdash-artifacts")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.scan_once()
            except Exception as exc:  # keep scanning; the storage card shows the last totals
                log.warning("artifacts scan of %s failed: %s", self.root, exc)
            spent = time.monotonic() - started
            self._stop.wait(max(self.interval_s, 2 * spent))
