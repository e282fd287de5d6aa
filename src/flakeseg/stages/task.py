"""The ``train.py`` task: run the stage a config asks for; user errors become one line, not a traceback.

Every job also leaves ``status.json`` in its run folder: ``running`` while it trains, then ``done``
(with its score), ``failed`` (with the error line) or ``interrupted`` (SIGTERM), so a sweep's outcome
can be read job by job.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from flakeseg.data.catalog import resolve_root
from flakeseg.errors import FlakesegError, Interrupted
from flakeseg.stages.resume import METRICS_FILE, TEST_METRICS_FILE, start_run
from flakeseg.utils.files import write_json_atomic

log = logging.getLogger("flakeseg")

STATUS_FILE = "status.json"
#: the exit code of a process stopped by SIGTERM (128 + 15), what schedulers expect
EXIT_INTERRUPTED = 143


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not under Hydra (tests calling directly)
        return False


def write_status(cfg: DictConfig, state: str, **details: Any) -> None:
    """Record the job's state in ``<paths.output_dir>/status.json`` (best effort: never masks an error)."""
    try:
        path = Path(cfg.paths.output_dir) / STATUS_FILE
        write_json_atomic(path, {"state": state, "time": time.strftime("%Y-%m-%d %H:%M:%S"), **details})
    except Exception as exc:  # the job's own outcome matters more than its status file
        log.warning("could not write %s: %s", STATUS_FILE, exc)


def evaluate_fold_models(cfg: DictConfig, metrics: dict[str, Any]) -> dict[str, Any] | None:
    """With any ``evaluate.*`` step on, score the fold models with it into ``evaluation.json``."""
    from flakeseg.stages.evaluation_options import EvalOptions

    options = EvalOptions.from_config(cfg.get("evaluate"))
    if not options.any:
        return None
    # imported only now: it pulls in torch (5 s), which a rerun of complete results without
    # evaluation steps never needs
    from flakeseg.stages.fold_evaluation import evaluate_cv_run

    skip = None
    if cfg.cv.get("fold") is not None:
        skip = f"cv.fold={cfg.cv.fold} trains one fold (the evaluation needs every fold)"
    elif cfg.cv.get("pool", "train") != "train":
        skip = f"cv.pool={cfg.cv.pool} holds no test split out of the CV"
    if skip:
        log.info("evaluate.*: skipped, %s", skip)
        return None
    result = evaluate_cv_run(metrics, options)
    write_json_atomic(Path(cfg.paths.output_dir) / "evaluation.json", result)
    names = [c for c in ("monolayer", "bilayer") if f"cv/flake_f1_{c}_device" in result]
    flakes = ", ".join(f"{c} {result[f'cv/flake_f1_{c}_device']:.3f}" for c in names)
    log.info(
        "evaluation (%s): CV flake F1 (>= 600 px) %s; CV mean class acc %.3f, macro precision %.3f, "
        "ECE %.3f; test region accuracy %.3f",
        ", ".join(
            k for k in ("tta", "ensemble", "postprocess", "temperature", "unknown") if getattr(options, k)
        ),
        flakes or "n/a",
        result["cv/mean_class_acc"],
        result["cv/macro_precision"],
        result["cv/ece"],
        result["test/region_accuracy"],
    )
    return result


def run_task(cfg: DictConfig) -> float:
    """Run the stage ``cfg.stage`` asks for and return its mean per-class accuracy (what sweepers optimise).

    ``stage=cv`` returns the CV mean over folds; ``stage=test`` the test-split value.

    A :class:`FlakesegError` (bad data, bad config value, non-finite loss) is its message only: in a
    single run one ``error: ...`` line on stderr and exit status 1; in a multirun a log line, and the
    error is raised again so Hydra records the failed job and goes on with the others. SIGTERM exits
    with 143.
    """
    write_status(cfg, "running")
    try:
        # Checked before the seconds of importing Lightning: a wrong value, a missing data root, or
        # complete results of this config (a rerun only reads them).
        stage = cfg.get("stage", "cv")
        started = start_run(cfg, TEST_METRICS_FILE if stage == "test" else METRICS_FILE)
        done = started.previous if started.previous is not None and started.previous.get("complete") else None
        if done is None:
            resolve_root(cfg.data.get("root"))
        if stage == "test":
            if done is None:
                from flakeseg.stages.test_split import run_test_stage

                done = run_test_stage(cfg, started)
            score = float(done["test/mean_class_acc"])
        else:
            if done is None:
                from flakeseg.stages.cv import run_cross_validation

                done = run_cross_validation(cfg, started)
            score = float(done["cv/mean_class_acc"])
            evaluate_fold_models(cfg, done)
    except Interrupted as exc:
        log.error("interrupted: %s", exc)
        write_status(cfg, "interrupted", error=str(exc))
        raise SystemExit(EXIT_INTERRUPTED) from None
    except FlakesegError as exc:
        write_status(cfg, "failed", error=str(exc).splitlines()[0])
        if not _is_multirun():  # one line on stderr, without the log prefix Hydra's console handler adds
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        log.error("error: %s", exc)  # a multirun goes on with the other jobs; the sweep's log keeps it
        raise
    except Exception as exc:
        write_status(
            cfg, "failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
        raise
    write_status(cfg, "done", score=score)
    return score
