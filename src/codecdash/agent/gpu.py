"""GPU figures through NVML (nvidia-ml-py), or nothing where there is no GPU or driver."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, NotRequired, TypedDict

from codecdash.agent import Field

log = logging.getLogger(__name__)

NVML_TEMPERATURE_GPU = 0  # nvmlTemperatureSensors_t: the GPU die


class GpuInfo(TypedDict):
    """One GPU's figures; a figure the GPU does not support is left out."""

    index: int
    name: NotRequired[str]
    util_pct: NotRequired[float]
    mem_used_bytes: NotRequired[int]
    mem_total_bytes: NotRequired[int]
    temperature_c: NotRequired[float]
    power_w: NotRequired[float]


def _load_pynvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class GpuCollector:
    """Per-GPU utilisation, memory, temperature and power, and their averages.

    ``nvml`` is the NVML binding (the ``pynvml`` module by default); tests pass a
    fake. Where ``nvmlInit`` fails (no driver, no library) :meth:`update` returns
    an empty dict, quietly, and tries again after ``retry_init_s`` seconds, so an
    agent started before the driver loads picks the GPUs up later.
    """

    fields: ClassVar[tuple[Field, ...]] = (
        Field("gpu_util_pct", "GPU utilisation averaged over the GPUs", "%"),
        Field("gpu_mem_pct", "GPU memory in use averaged over the GPUs", "%"),
        Field("gpu_count", "GPUs NVML reports", "count"),
        Field("gpus", "one row per GPU with the gpus[] figures below", "list"),
        Field("gpus[].index", "NVML device index", "index"),
        Field("gpus[].name", "product name, e.g. NVIDIA A10G", "text"),
        Field("gpus[].util_pct", "time a kernel was running over NVML's sample period", "%"),
        Field("gpus[].mem_used_bytes", "device memory in use", "bytes"),
        Field("gpus[].mem_total_bytes", "device memory", "bytes"),
        Field("gpus[].temperature_c", "GPU die temperature", "°C"),
        Field("gpus[].power_w", "board power draw", "W"),
    )

    def __init__(
        self,
        nvml: Any | None = None,
        *,
        retry_init_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml: Any = nvml if nvml is not None else _load_pynvml()
        self._retry_init_s = retry_init_s
        self._clock = clock
        self._initialised = False
        self._next_init = float("-inf")

    @property
    def available(self) -> bool:
        """Whether NVML is initialised (after at least one :meth:`update`)."""
        return self._initialised

    def update(self) -> dict[str, Any]:
        """``{"gpu_util_pct", "gpu_mem_pct", "gpu_count", "gpus": [GpuInfo]}`` or ``{}``."""
        if not self._ensure_init():
            return {}
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:  # the driver went away (e.g. GPU fell off the bus)
            log.debug("NVML device count failed: %s", exc)
            self.close()
            return {}
        gpus = [gpu for index in range(count) if (gpu := self._read(index)) is not None]
        if not gpus:
            return {}
        data: dict[str, Any] = {"gpu_count": len(gpus), "gpus": gpus}
        utils = [gpu["util_pct"] for gpu in gpus if "util_pct" in gpu]
        if utils:
            data["gpu_util_pct"] = round(sum(utils) / len(utils), 1)
        mems = [
            100.0 * gpu["mem_used_bytes"] / gpu["mem_total_bytes"]
            for gpu in gpus
            if gpu.get("mem_total_bytes") and "mem_used_bytes" in gpu
        ]
        if mems:
            data["gpu_mem_pct"] = round(sum(mems) / len(mems), 1)
        return data

    def close(self) -> None:
        """Shut NVML down (harmless when it was never initialised)."""
        if self._initialised:
            self._initialised = False
            self._next_init = self._clock() + self._retry_init_s
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown failed: %s", exc)

    # -- internals ----------------------------------------------------------------
    def _ensure_init(self) -> bool:
        if self._initialised:
            return True
        if self._nvml is None or self._clock() < self._next_init:
            return False
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            log.debug("no NVML (%s); no GPU figures", exc)
            self._next_init = self._clock() + self._retry_init_s
            return False
        self._initialised = True
        return True

    def _read(self, index: int) -> GpuInfo | None:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            log.debug("GPU %d: no handle (%s)", index, exc)
            return None
        gpu: GpuInfo = {"index": index}
        name = _query(nvml.nvmlDeviceGetName, handle)
        if name is not None:
            gpu["name"] = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        rates = _query(nvml.nvmlDeviceGetUtilizationRates, handle)
        if rates is not None:
            gpu["util_pct"] = float(rates.gpu)
        memory = _memory(nvml, handle)
        if memory is not None:
            gpu["mem_used_bytes"] = int(memory.used)
            gpu["mem_total_bytes"] = int(memory.total)
        sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)
        temperature = _query(nvml.nvmlDeviceGetTemperature, handle, sensor)
        if temperature is not None:
            gpu["temperature_c"] = float(temperature)
        milliwatts = _query(nvml.nvmlDeviceGetPowerUsage, handle)
        if milliwatts is not None:
            gpu["power_w"] = round(float(milliwatts) / 1000.0, 1)
        return gpu


def _memory(nvml: Any, handle: Any) -> Any | None:
    """Memory in use as nvidia-smi counts it.

    NVML's version-2 query leaves the driver's reserved memory out of ``used`` (about
    480 MiB on an H100), as nvidia-smi does; drivers older than R510 only answer the
    version-1 query, whose ``used`` includes it.
    """
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        memory = _query(nvml.nvmlDeviceGetMemoryInfo, handle, version)
        if memory is not None:
            return memory
    return _query(nvml.nvmlDeviceGetMemoryInfo, handle)


def _query(fn: Callable[..., Any], *args: Any) -> Any | None:
    """One NVML query; None where the GPU does not support it (e.g. power on some boards)."""
    try:
        return fn(*args)
    except Exception as exc:
        log.debug("%s failed: %s", getattr(fn, "__name__", fn), exc)
        return None
