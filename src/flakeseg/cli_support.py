"""Glue between Hydra entry points and library code: user errors become one line, not a traceback."""

from __future__ import annotations

import logging

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from flakeseg.cv import run_cross_validation
from flakeseg.errors import FlakesegError

log = logging.getLogger("flakeseg")


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not under Hydra (tests calling directly)
        return False


def run_task(cfg: DictConfig) -> float:
    """Run the stage ``cfg.stage`` asks for and return its mean per-class accuracy (what sweepers optimise).

    ``stage=cv`` returns the CV mean over folds; ``stage=test`` the test-split value.

    A :class:`FlakesegError` (bad data, bad config value) is printed as its message only. In a single
    run the process then exits with status 1; in a multirun the error is raised again so Hydra records
    the failed job and goes on with the others.
    """
    try:
        if cfg.get("stage", "cv") == "test":
            from flakeseg.holdout import run_test_stage

            return float(run_test_stage(cfg)["test/mean_class_acc"])
        return float(run_cross_validation(cfg)["cv/mean_class_acc"])
    except FlakesegError as exc:
        log.error("error: %s", exc)
        if not _is_multirun():
            raise SystemExit(1) from None
        raise
