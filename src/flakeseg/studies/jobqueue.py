"""Run jobs as separate processes over a queue of free devices: one job per GPU at a time.

A job takes a device from the queue when it starts and puts it back when it ends, so a GPU is never
shared by two jobs and a slow job never holds up the others (unlike assigning ``job_num % n_gpus``).
Each job sees only its device through ``CUDA_VISIBLE_DEVICES``. A failing or crashing job is
reported and the others go on.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: the device name of a CPU slot (no ``CUDA_VISIBLE_DEVICES`` restriction beyond hiding GPUs)
CPU = "cpu"


@dataclass(frozen=True)
class Job:
    """One process to run: ``argv``, with its output going to ``log_path``."""

    name: str
    argv: Sequence[str]
    log_path: Path


@dataclass(frozen=True)
class JobResult:
    job: Job
    device: str
    returncode: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def resolve_devices(spec: str | int | Sequence[str | int]) -> list[str]:
    """The device slots of ``spec``.

    - ``"auto"``: every visible GPU, or one CPU slot when there is none;
    - an int ``n``: ``n`` CPU slots (jobs side by side on the CPU);
    - a list such as ``[0, 2]`` or ``"0,2"``: those GPUs.
    """
    if spec == "auto":
        return visible_gpus() or [CPU]
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"devices: need at least one slot, got {spec}")
        return [CPU] * spec
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    devices = [str(d).strip() for d in items if str(d).strip()]
    if not devices:
        raise ValueError(f"devices: no device in {spec!r}")
    return devices


def run_jobs(
    jobs: Sequence[Job],
    devices: Sequence[str],
    on_done: Callable[[JobResult], None] | None = None,
    progress: bool = True,
) -> list[JobResult]:
    """Run ``jobs`` with at most one job per entry of ``devices`` at a time; results in job order."""
    free: queue.Queue[str] = queue.Queue()
    for device in devices:
        free.put(device)
    lock = threading.Lock()

    def run(job: Job) -> JobResult:
        device = free.get()
        try:
            env = dict(os.environ)
            # a CPU slot hides the GPUs; a GPU slot shows exactly one
            env["CUDA_VISIBLE_DEVICES"] = "" if device == CPU else device
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with open(job.log_path, "ab") as log:
                code = subprocess.run(
                    list(job.argv), stdout=log, stderr=subprocess.STDOUT, env=env
                ).returncode
            result = JobResult(job, device, code, time.perf_counter() - start)
        finally:
            free.put(device)
        if on_done is not None:
            with lock:
                on_done(result)
        return result

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar, ThreadPoolExecutor(len(devices)) as pool:
        task = bar.add_task(f"jobs on {len(devices)} device slot(s)", total=len(jobs))
        futures = [pool.submit(run, job) for job in jobs]
        for _ in as_completed(futures):
            bar.advance(task)
    return [future.result() for future in futures]
