"""Check the agent's NVML figures on a real NVIDIA GPU against nvidia-smi, end to end.

    PYTHONPATH=src python3 scripts/gpu_check.py --out docs/gpu-check.json

Starts ``codecdash serve`` on a temporary SQLite file, puts load on GPU 0 with PyTorch
(when it is installed), sends one heartbeat with ``codecdash agent --once`` and reads it
back from ``/api/v1/dashboard``. It prints the agent's per-GPU figures next to what
``nvidia-smi`` reports in the same second, and exits 1 when they disagree beyond NVML's own
sampling (utilisation ±15 points, memory in use ±256 MiB, total memory and name exact).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

SMI_FIELDS = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "codecdash", *args]


def gpu_load(seconds: float, ready: threading.Event) -> None:
    """Keep GPU 0 busy with bf16 matrix products and hold 8 GiB of memory."""
    try:
        import torch
    except ImportError:
        ready.set()
        return
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ballast = torch.empty(8 * 2**30, dtype=torch.uint8, device="cuda")
    end = time.monotonic() + seconds
    warm = time.monotonic() + 3.0
    while time.monotonic() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
        if time.monotonic() > warm:
            ready.set()
    del ballast
    ready.set()


def smi() -> list[dict[str, str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keys = SMI_FIELDS.split(",")
    return [
        dict(zip(keys, (v.strip() for v in line.split(",")), strict=True))
        for line in out.splitlines()
    ]


def compare(
    agent: list[dict[str, Any]], reference: list[dict[str, str]], loaded: bool
) -> list[str]:
    problems: list[str] = []
    if len(agent) != len(reference):
        problems.append(f"agent saw {len(agent)} GPUs, nvidia-smi {len(reference)}")
    for gpu, ref in zip(agent, reference, strict=False):
        if gpu.get("name") != ref["name"]:
            problems.append(f"GPU {ref['index']}: name {gpu.get('name')!r} vs {ref['name']!r}")
        used_mib = gpu.get("mem_used_bytes", -1) / 2**20
        if abs(used_mib - float(ref["memory.used"])) > 256:
            problems.append(
                f"GPU {ref['index']}: memory {used_mib:.0f} vs {ref['memory.used']} MiB"
            )
        total_mib = gpu.get("mem_total_bytes", -1) / 2**20
        if abs(total_mib - float(ref["memory.total"])) > 1:
            problems.append(
                f"GPU {ref['index']}: total {total_mib:.0f} vs {ref['memory.total']} MiB"
            )
        if abs(gpu.get("util_pct", -100) - float(ref["utilization.gpu"])) > 15:
            problems.append(
                f"GPU {ref['index']}: util {gpu.get('util_pct')} vs {ref['utilization.gpu']} %"
            )
    if loaded and agent and agent[0].get("util_pct", 0) < 50:
        problems.append(f"GPU 0 under load reported only {agent[0].get('util_pct')} % busy")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--load-seconds", type=float, default=25.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    db = str(tmp / "gpu-check.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = (
        subprocess.run(
            cli("token", "create", "gpu-check", "--db", db),
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = subprocess.Popen(cli("serve", "--db", db, "--port", str(port)), env=os.environ)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        idle_agent = run_agent(url, token, "gpu-idle")
        idle_smi = smi()
        ready = threading.Event()
        loader = threading.Thread(target=gpu_load, args=(args.load_seconds, ready), daemon=True)
        loader.start()
        ready.wait(60)
        time.sleep(2.0)  # NVML's utilisation is averaged over its last sample period
        busy_agent = run_agent(url, token, "gpu-busy")
        busy_smi = smi()
        loader.join()
        dash = httpx.get(f"{url}/api/v1/dashboard", timeout=10).json()
    finally:
        server.terminate()
        server.wait(10)

    import importlib.util

    loaded = importlib.util.find_spec("torch") is not None
    problems = compare(idle_agent["extra"].get("gpus", []), idle_smi, False)
    problems += compare(busy_agent["extra"].get("gpus", []), busy_smi, loaded)
    report = {
        "idle": {"agent": idle_agent, "nvidia_smi": idle_smi},
        "busy": {"agent": busy_agent, "nvidia_smi": busy_smi},
        "dashboard_training_workers": dash["infrastructure"]["training_workers"],
        "problems": problems,
    }
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if problems else 0


def run_agent(url: str, token: str, worker: str) -> dict[str, Any]:
    out = subprocess.run(
        cli(
            "agent",
            "--url",
            url,
            "--token",
            token,
            "--role",
            "training",
            "--worker-id",
            worker,
            "--once",
            "--print",
            "--no-imds",
            "--instance-type",
            "p5.48xlarge",
            "--spot",
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


if __name__ == "__main__":
    sys.exit(main())
