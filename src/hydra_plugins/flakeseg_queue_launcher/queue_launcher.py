"""``hydra/launcher=queue``: every multirun job in its own process, one free device each.

Hydra's basic launcher runs jobs one after another in the sweep's process; submitit's local launcher
gives every job all GPUs. This launcher runs each job as ``python <script> <overrides>
hydra.run.dir=<job dir>`` on the next free device of a queue (``CUDA_VISIBLE_DEVICES`` set to it), so
N GPUs run N jobs at once and a GPU is never shared. A job that crashes, exits or is killed is reported
with its log and the others go on; the sweep then exits non-zero. Jobs whose results are already
complete for the same config are not started again (resume).

    python train.py -m hydra/launcher=queue optim.lr=1.0e-5,1.0e-4,1.0e-3
    python train.py -m hydra/launcher=queue hydra.launcher.devices=[0,1] ...
"""

# No `from __future__ import annotations`: Hydra executes plugin modules without registering them in
# sys.modules, where dataclasses would look string annotations up.
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

#: results files a job may leave, in the order they are looked for
RESULT_FILES = ("metrics.json", "test_metrics.json")
#: parent hydra overrides that must not reach the jobs (they would make each job a sweep again)
_NOT_FOR_JOBS = (
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra.mode",
    "hydra.run",
)


@dataclass
class QueueLauncherConf:
    _target_: str = "hydra_plugins.flakeseg_queue_launcher.queue_launcher.QueueLauncher"
    #: "auto" (every visible GPU, else one CPU slot), an int n (n CPU slots) or a list of GPU ids
    devices: Any = "auto"


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.flakeseg_queue_launcher.queue_launcher.LocalLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="queue", node=QueueLauncherConf, provider="flakeseg"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="local", node=LocalLauncherConf, provider="flakeseg"
)


def _status(job_dir: Path) -> dict:
    try:
        return json.loads((job_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _job_dir(ret: JobReturn) -> Optional[Path]:
    """The job's output folder (jobs do not chdir, so ``working_dir`` may be the launch directory)."""
    try:
        return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    except Exception:  # a JobReturn without its Hydra config
        return Path(str(ret.working_dir)) if ret.working_dir else None


def summarize_sweep(sweep_dir: Path, returns: Sequence[JobReturn], first_idx: int) -> list:
    """Write ``<sweep dir>/sweep_summary.json`` (every job's state) and log every job that did not finish;
    each such job's return value becomes one ``SystemExit`` line pointing at the summary (what Hydra's
    sweeper raises on its way out instead of the first failed job's traceback).

    Returns:
        one line per such job: ``#N overrides: state: error``.
    """
    from flakeseg.utils.files import write_json_atomic

    jobs, problems = [], []
    for offset, ret in enumerate(returns):
        job_dir = _job_dir(ret)
        status = _status(job_dir) if job_dir else {}
        completed = ret.status == JobStatus.COMPLETED
        state = status.get("state") or ("done" if completed else "failed")
        if not completed and state in ("running", "done"):
            state = "failed"  # the process died before it could say so
        error = status.get("error") or ("" if completed else str(ret._return_value))
        overrides = " ".join(filter_overrides(list(ret.overrides or [])))
        jobs.append(
            {
                "job": first_idx + offset,
                "overrides": overrides,
                "dir": str(job_dir),
                "state": state,
                "error": error.splitlines()[0] if error else "",
            }
        )
        if state != "done":
            problems.append(f"#{first_idx + offset} {overrides}: {state}: {jobs[-1]['error']}")
    summary_path = sweep_dir / "sweep_summary.json"
    write_json_atomic(summary_path, {"jobs": jobs, "failed": len(problems)})
    if problems:
        log.error(
            "%d of %d jobs did not finish (%s):\n  %s",
            len(problems),
            len(returns),
            summary_path,
            "\n  ".join(problems),
        )
        # a SystemExit passes Hydra's error report by: one line, exit status 1
        ending = SystemExit(
            f"error: {len(problems)} of {len(returns)} jobs did not finish; see {summary_path}"
        )
        for ret in returns:
            if ret.status != JobStatus.COMPLETED:
                ret.status, ret.return_value = JobStatus.FAILED, ending
    return problems


def _job_result(job_dir: Path) -> Optional[dict]:
    for name in RESULT_FILES:
        try:
            payload = json.loads((job_dir / name).read_text())
        except (OSError, ValueError):
            continue
        if payload.get("complete"):
            return payload
    return None


def _score(payload: dict) -> Optional[float]:
    for key in ("cv/mean_class_acc", "test/mean_class_acc"):
        if key in payload:
            return float(payload[key])
    return None


def _last_error(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or [ln for ln in lines if ln.strip()] or ["no output"])[-1].strip()[:300]


class QueueLauncher(Launcher):
    def __init__(self, devices: Any = "auto") -> None:
        super().__init__()
        self.devices = devices
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job_argv(self, overrides: list[str], job_dir: Path, idx: int) -> list[str]:
        assert self.config is not None
        script = os.path.abspath(sys.argv[0])
        hydra_overrides = [
            o for o in self.config.hydra.overrides.hydra if not str(o).lstrip("+~").startswith(_NOT_FOR_JOBS)
        ]
        return [
            sys.executable,
            script,
            f"--config-name={self.config.hydra.job.config_name}",
            *overrides,
            *hydra_overrides,
            f"hydra.run.dir={job_dir}",
            f"hydra.job.num={idx}",
        ]

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        from flakeseg.stages.resume import load_previous
        from flakeseg.studies.jobqueue import Job, resolve_devices, run_jobs

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        devices = resolve_devices(
            OmegaConf.to_container(self.devices) if OmegaConf.is_config(self.devices) else self.devices
        )
        log.info(
            "Launching %d jobs on a queue of %d device slot(s): %s", len(job_overrides), len(devices), devices
        )

        returns: list[JobReturn] = []
        jobs: list[tuple[int, Job]] = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            HydraConfig.instance().set_config(sweep_config)
            job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
            with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
                sweep_config.hydra.runtime.output_dir = str(job_dir.resolve())
            HydraConfig.instance().set_config(sweep_config)  # again, for ${hydra:runtime.output_dir}
            task_cfg = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
            ret = JobReturn(
                overrides=list(overrides),
                cfg=task_cfg,
                hydra_cfg=sweep_config,
                working_dir=str(job_dir),
                task_name=str(sweep_config.hydra.job.name),
            )
            returns.append(ret)
            done = _job_result(job_dir)
            if done is not None and sweep_config.get("resume", True):
                try:
                    load_previous(
                        job_dir / "metrics.json" if "folds" in done else job_dir / "test_metrics.json",
                        OmegaConf.to_container(task_cfg, resolve=True),
                    )
                except Exception as exc:  # a different config: let the job itself refuse with this message
                    log.warning("#%d %s", idx, exc)
                else:
                    ret.status, ret.return_value = JobStatus.COMPLETED, _score(done)
                    log.info("\t#%d : complete, skipped (%s)", idx, job_dir)
                    continue
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(list(overrides))))
            argv = self._job_argv(list(overrides), job_dir, idx)
            jobs.append((len(returns) - 1, Job(name=f"#{idx}", argv=argv, log_path=job_dir / "queue.log")))

        def report(result) -> None:
            state = "done" if result.ok else f"FAILED (exit {result.returncode})"
            log.info("%s %s on %s in %.0f s", result.job.name, state, result.device, result.seconds)

        results = run_jobs([job for _, job in jobs], devices, on_done=report)
        for (position, job), result in zip(jobs, results, strict=True):
            ret = returns[position]
            payload = _job_result(Path(str(ret.working_dir))) if result.ok else None
            if payload is not None:
                ret.status, ret.return_value = JobStatus.COMPLETED, _score(payload)
            else:
                line = _last_error(job.log_path)
                ret.status = JobStatus.FAILED
                ret.return_value = RuntimeError(
                    f"job {job.name} exit {result.returncode}: {line} (log {job.log_path})"
                )
        summarize_sweep(sweep_dir, returns, initial_job_idx)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns


class LocalLauncher(BasicLauncher):
    """Hydra's basic launcher (jobs in turn, in this process) that also writes ``sweep_summary.json``
    and lists every failed job, not only the first."""

    def launch(self, job_overrides, initial_job_idx: int) -> Sequence[JobReturn]:
        returns = super().launch(job_overrides, initial_job_idx)
        assert self.config is not None
        summarize_sweep(Path(str(self.config.hydra.sweep.dir)), returns, initial_job_idx)
        return returns
