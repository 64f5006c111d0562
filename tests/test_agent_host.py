"""Host figures, checked against /proc and os.statvfs on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codecdash.agent.host import HostCollector

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")


def proc_stat() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, counted as psutil counts them."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal  # guest is in user
    return total - idle - iowait, total


def proc_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return 100.0 * busy / total


def meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        values[key] = int(rest.split()[0]) * 1024
    return values


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """One core spinning, so the CPU figure is far from 0 and worth comparing."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def test_first_cpu_figure_is_a_real_sample_matching_proc_stat(
    tmp_path: Path, busy_cpu: None
) -> None:
    collector = HostCollector(tmp_path, cpu_sample_s=1.0)
    before = proc_stat()
    data = collector.update()
    after = proc_stat()
    expected = proc_pct(before, after)
    assert expected > 100 / (os.cpu_count() or 1) / 2  # the spinner shows
    assert data["cpu_pct"] == pytest.approx(expected, abs=10)


def test_later_cpu_figure_covers_the_time_since_the_previous_update(tmp_path: Path) -> None:
    collector = HostCollector(tmp_path, cpu_sample_s=0.1)
    collector.update()
    before = proc_stat()
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1: pass"]
    )
    spinner.wait()
    data = collector.update()
    after = proc_stat()
    assert data["cpu_pct"] == pytest.approx(proc_pct(before, after), abs=10)
    assert float(data["cpu_pct"]) > 100 / (os.cpu_count() or 1) / 2  # the spinner shows


def test_memory_matches_proc_meminfo(tmp_path: Path) -> None:
    data = HostCollector(tmp_path).update()
    info = meminfo()
    expected = 100.0 * (info["MemTotal"] - info["MemAvailable"]) / info["MemTotal"]
    assert data["mem_total_bytes"] == info["MemTotal"]
    assert data["mem_pct"] == pytest.approx(expected, abs=2)
    used = info["MemTotal"] - info["MemAvailable"]
    assert data["mem_used_bytes"] == pytest.approx(used, abs=256 * 2**20)


def test_load_matches_proc_loadavg(tmp_path: Path) -> None:
    data = HostCollector(tmp_path).update()
    one, five, fifteen = (float(v) for v in Path("/proc/loadavg").read_text().split()[:3])
    assert data["load_1m"] == pytest.approx(one, abs=0.5)
    assert data["load_5m"] == pytest.approx(five, abs=0.3)
    assert data["load_15m"] == pytest.approx(fifteen, abs=0.2)
    assert data["cpu_count"] == os.cpu_count()


def test_disk_matches_statvfs_of_the_working_directory(tmp_path: Path) -> None:
    data = HostCollector(tmp_path).update()
    st = os.statvfs(tmp_path)
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    assert data["disk_path"] == str(tmp_path.resolve())
    assert data["disk_total_bytes"] == total
    assert data["disk_used_bytes"] == pytest.approx(used, abs=256 * 2**20)
    assert data["disk_used_pct"] == pytest.approx(100.0 * used / (used + avail), abs=0.5)


def test_vanished_workdir_loses_only_the_disk_figures(tmp_path: Path) -> None:
    data = HostCollector(tmp_path / "gone", cpu_sample_s=0.05).update()
    assert "disk_used_pct" not in data
    assert {"cpu_pct", "mem_pct", "load_1m"} <= set(data)


def test_every_figure_is_declared_with_a_description_and_unit(tmp_path: Path) -> None:
    declared = {field.name: field for field in HostCollector.fields}
    data = HostCollector(tmp_path, cpu_sample_s=0.05).update()
    assert set(data) == set(declared)
    assert all(field.description and field.unit for field in declared.values())
