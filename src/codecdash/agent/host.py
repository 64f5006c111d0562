"""Host figures through psutil: CPU, memory, load and the disk of a working directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import psutil

from codecdash.agent import Field


class HostCollector:
    """CPU %, memory %, load averages and disk use of ``workdir``.

    CPU % is the average since the previous :meth:`update` (over one tick of the
    agent); the first call samples for ``cpu_sample_s`` seconds instead, so that
    ``--once`` reports a real figure rather than psutil's meaningless first 0.0.
    """

    fields: ClassVar[tuple[Field, ...]] = (
        Field("cpu_pct", "CPU busy time, all cores, since the previous tick", "%"),
        Field("mem_pct", "memory in use: (total - available) / total", "%"),
        Field("mem_used_bytes", "memory in use: total - available", "bytes"),
        Field("mem_total_bytes", "physical memory", "bytes"),
        Field("load_1m", "load average over 1 minute", "runnable tasks"),
        Field("load_5m", "load average over 5 minutes", "runnable tasks"),
        Field("load_15m", "load average over 15 minutes", "runnable tasks"),
        Field("cpu_count", "logical CPUs", "count"),
        Field("disk_path", "the working directory whose file system is measured", "path"),
        Field("disk_used_pct", "file system use as `df` shows it: used / (used + avail)", "%"),
        Field("disk_used_bytes", "file system space in use", "bytes"),
        Field("disk_total_bytes", "file system size", "bytes"),
    )

    def __init__(self, workdir: str | os.PathLike[str] = ".", cpu_sample_s: float = 0.5) -> None:
        self.workdir = Path(workdir)
        self.cpu_sample_s = cpu_sample_s
        self._primed = False

    def update(self) -> dict[str, float | int | str]:
        """Return the figures; a figure that cannot be read is left out."""
        if self._primed:
            cpu = psutil.cpu_percent(interval=None)
        else:
            cpu = psutil.cpu_percent(interval=self.cpu_sample_s)
            self._primed = True
        mem = psutil.virtual_memory()
        load_1m, load_5m, load_15m = os.getloadavg()
        data: dict[str, float | int | str] = {
            "cpu_pct": round(cpu, 1),
            "mem_pct": round(mem.percent, 1),
            "mem_used_bytes": int(mem.total - mem.available),
            "mem_total_bytes": int(mem.total),
            "load_1m": round(load_1m, 2),
            "load_5m": round(load_5m, 2),
            "load_15m": round(load_15m, 2),
            "cpu_count": psutil.cpu_count() or 0,
        }
        try:
            disk = psutil.disk_usage(str(self.workdir))
        except OSError:
            return data  # the directory vanished or its mount is gone: no disk figures
        data.update(
            disk_path=str(self.workdir.resolve()),
            disk_used_pct=round(disk.percent, 1),
            disk_used_bytes=int(disk.used),
            disk_total_bytes=int(disk.total),
        )
        return data
