"""The NVML path with a fake NVML module, and the real pynvml on a machine without GPUs."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from codecdash.agent.gpu import GpuCollector


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


@dataclass
class FakeGpu:
    name: Any
    util: int
    used: int
    total: int
    temperature: int
    milliwatts: int | None  # None: power not supported by this board
    reserved: int = 512 * 2**20  # the driver's own share, which nvidia-smi leaves out


@dataclass
class FakeNvml:
    """Implements the slice of pynvml the collector uses."""

    gpus: list[FakeGpu] = field(default_factory=list)
    driver: bool = True
    fail_count: bool = False
    calls: list[str] = field(default_factory=list)
    memory_v2: bool = True  # False: a driver older than R510
    NVML_TEMPERATURE_GPU: int = 0
    nvmlMemory_v2: int = 0x02000028
    NVMLError: type[Exception] = NVMLError

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if not self.driver:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        if self.fail_count:
            raise NVMLError("GPU is lost")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> Any:
        return handle.name

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(gpu=handle.util, memory=handle.util // 2)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: int | None = None) -> Any:
        """v1 counts the driver's reserved memory as used; v2 (R510+) does not."""
        reserved = handle.reserved
        if version is None:
            return SimpleNamespace(used=handle.used + reserved, total=handle.total)
        if not self.memory_v2:
            raise NVMLError("Function Not Found")
        assert version == self.nvmlMemory_v2
        return SimpleNamespace(used=handle.used, reserved=reserved, total=handle.total)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return handle.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        if handle.milliwatts is None:
            raise NVMLError_NotSupported("Not Supported")
        return handle.milliwatts


GiB = 2**30


def two_gpus() -> FakeNvml:
    return FakeNvml(
        gpus=[
            FakeGpu(b"NVIDIA A10G", 90, 18 * GiB, 24 * GiB, 71, 212_345),
            FakeGpu("NVIDIA A10G", 30, 6 * GiB, 24 * GiB, 55, 80_000),
        ]
    )


def test_per_gpu_figures_and_their_averages() -> None:
    data = GpuCollector(two_gpus()).update()
    assert data["gpu_count"] == 2
    assert data["gpu_util_pct"] == 60.0
    assert data["gpu_mem_pct"] == 50.0  # (75 % + 25 %) / 2
    assert data["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA A10G",
            "util_pct": 90.0,
            "mem_used_bytes": 18 * GiB,
            "mem_total_bytes": 24 * GiB,
            "temperature_c": 71.0,
            "power_w": 212.3,
        },
        {
            "index": 1,
            "name": "NVIDIA A10G",
            "util_pct": 30.0,
            "mem_used_bytes": 6 * GiB,
            "mem_total_bytes": 24 * GiB,
            "temperature_c": 55.0,
            "power_w": 80.0,
        },
    ]


def test_old_driver_falls_back_to_version_1_memory_figures() -> None:
    nvml = two_gpus()
    nvml.memory_v2 = False
    gpus = GpuCollector(nvml).update()["gpus"]
    assert gpus[0]["mem_used_bytes"] == 18 * GiB + 512 * 2**20  # v1 counts reserved as used
    assert gpus[0]["mem_total_bytes"] == 24 * GiB


def test_unsupported_figure_is_left_out_for_that_gpu_only() -> None:
    nvml = two_gpus()
    nvml.gpus[1].milliwatts = None
    gpus = GpuCollector(nvml).update()["gpus"]
    assert gpus[0]["power_w"] == 212.3
    assert "power_w" not in gpus[1]
    assert gpus[1]["util_pct"] == 30.0


def test_no_driver_gives_no_gpu_figures_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    collector = GpuCollector(FakeNvml(driver=False))
    assert collector.update() == {}
    assert not collector.available
    assert not [r for r in caplog.records if r.levelname != "DEBUG"]
    collector.close()  # harmless


def test_init_is_retried_later_so_a_late_driver_is_picked_up() -> None:
    now = [0.0]
    nvml = two_gpus()
    nvml.driver = False
    collector = GpuCollector(nvml, retry_init_s=300, clock=lambda: now[0])
    assert collector.update() == {}
    nvml.driver = True
    now[0] = 100.0
    assert collector.update() == {}  # not retried yet
    assert nvml.calls.count("init") == 1
    now[0] = 301.0
    assert collector.update()["gpu_count"] == 2
    assert nvml.calls.count("init") == 2
    assert collector.update()["gpu_count"] == 2
    assert nvml.calls.count("init") == 2  # initialised once, then reused


def test_lost_gpu_shuts_nvml_down_and_reports_nothing() -> None:
    nvml = two_gpus()
    collector = GpuCollector(nvml)
    assert collector.update()
    nvml.fail_count = True
    assert collector.update() == {}
    assert nvml.calls == ["init", "shutdown"]


def test_driver_without_gpus_gives_nothing() -> None:
    assert GpuCollector(FakeNvml()).update() == {}


def test_close_shuts_nvml_down_once() -> None:
    nvml = two_gpus()
    collector = GpuCollector(nvml)
    collector.update()
    collector.close()
    collector.close()
    assert nvml.calls == ["init", "shutdown"]


def test_real_pynvml_here() -> None:
    """On a machine without an NVIDIA driver the real binding must yield nothing, no error."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert GpuCollector().update() == {}
    else:  # a GPU machine: the figures must be there
        pynvml.nvmlShutdown()
        collector = GpuCollector()
        data = collector.update()
        collector.close()
        assert data["gpu_count"] >= 1
        assert 0 <= data["gpu_util_pct"] <= 100


def test_every_figure_is_declared() -> None:
    declared = {f.name for f in GpuCollector.fields}
    data = GpuCollector(two_gpus()).update()
    assert set(data) <= declared
    assert {f"gpus[].{key}" for key in data["gpus"][0]} <= declared
