"""The texts with which the demo's experiments fail, as a training job would write them: out of
memory, a NaN loss, a spot interruption, a hung worker stopped by the orchestrator's watchdog."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from codecdash.demo.fleet import Worker
from codecdash.demo.runs import SEQUENCES, Run

WATCHDOG_S: Final = 45 * 60.0
"""How long the orchestrator waits for a silent worker's heartbeat before terminating it."""

LostWorker = Callable[[Run, Worker, str, float, random.Random], str]
"""The text of an experiment lost with its worker: (run, worker, retry id, now, rng) → text."""


def progress(run: Run, now: float, rng: random.Random) -> tuple[int, int, int]:
    """(epoch, epochs, step) a run had reached when it stopped at `now`."""
    epochs = int(run.params["epochs"])
    share = rng.uniform(0.05, 0.95)
    if run.started_at is not None and run.train_end is not None and run.train_end > run.started_at:
        planned = (run.train_end - run.started_at) / (run.nan_at or 1.0)
        share = min(1.0, (now - run.started_at) / planned)
    epoch = max(1, min(epochs, int(epochs * share) + 1))
    steps = SEQUENCES // int(run.params["batch_size"])
    return epoch, epochs, (epoch - 1) * steps + rng.randrange(steps)


def oom_error(run: Run, worker: Worker, rng: random.Random) -> str:
    cap = worker.spec.gpu_mem_gib
    in_use = cap - rng.uniform(0.3, 0.9)
    allocated = in_use - rng.uniform(0.4, 1.2)
    return (
        f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
        f"{run.mem_gib - allocated:.2f} GiB. GPU 0 has a total capacity of {cap:.2f} GiB of which "
        f"{(cap - in_use) * 1024:.2f} MiB is free. Including non-PyTorch memory, this process has "
        f"{in_use:.2f} GiB memory in use. Of the allocated memory {allocated:.2f} GiB is allocated "
        f"by PyTorch, and {rng.uniform(20, 400):.2f} MiB is reserved by PyTorch but unallocated. "
        "If reserved but unallocated memory is large try setting "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation. "
        f"(batch_size={run.params['batch_size']}, crop={run.params['crop']}, "
        f"{worker.instance_type} {worker.spec.gpu})"
    )


def nan_error(run: Run, now: float, rng: random.Random) -> str:
    epoch, epochs, step = progress(run, now, rng)
    last_good = max(0, (epoch - 1) // 5 * 5)
    return (
        f"FloatingPointError: loss is nan at epoch {epoch}/{epochs}, step {step} "
        f"(bpp_loss=nan, mse_loss={rng.uniform(0.0008, 0.004):.5f}, "
        f"aux_loss={rng.uniform(20, 900):.1f}, lr={run.params['lr']:.0e}); training stopped, "
        f"last good checkpoint: epoch {last_good}"
    )


def spot_error(run: Run, worker: Worker, retry_id: str, now: float, rng: random.Random) -> str:
    epoch, epochs, _ = progress(run, now, rng)
    return (
        f"SpotInterruption: EC2 reclaimed {worker.instance_id} ({worker.instance_type} spot, "
        f"{worker.zone}) after a 2-minute interruption notice, at epoch {epoch}/{epochs}; "
        f"worker {worker.worker_id} was lost without a clean shutdown. "
        f"Re-queued as {retry_id}."
    )


def hang_error(run: Run, worker: Worker, retry_id: str, now: float, rng: random.Random) -> str:
    epoch, epochs, step = progress(
        run, now if worker.silent_since is None else worker.silent_since, rng
    )
    return (
        f"WorkerLost: no heartbeat from {worker.worker_id} for {WATCHDOG_S / 60:.0f} min "
        f"(last log line: 'epoch {epoch}/{epochs} step {step}'; NCCL/DataLoader hang "
        f"suspected); the orchestrator's watchdog terminated {worker.instance_id}. "
        f"Re-queued as {retry_id}."
    )
