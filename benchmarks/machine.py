"""The machine a benchmark ran on, for its table (shared by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import torch


def machine() -> dict[str, str]:
    """Python, torch (and Lightning, if loaded) versions, threads, cores, CPU model and GPU."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "cores": str(os.cpu_count()),
    }
    if "pytorch_lightning" in sys.modules:
        info["lightning"] = sys.modules["pytorch_lightning"].__version__
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        info["cpu"] = platform.processor() or platform.machine()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
