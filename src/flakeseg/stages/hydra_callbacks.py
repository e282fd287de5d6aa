"""Hydra callbacks of ``train.py`` (``hydra.callbacks`` in ``conf/hydra/default.yaml``)."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from flakeseg.stages.config_checks import path_name_problems

log = logging.getLogger("flakeseg")


class RefusePathEscapes(Callback):
    """Refuse, before Hydra creates any folder, names that would put a path outside the run folder.

    ``task_name`` and the ``name`` of each config group become parts of output paths; a value with
    ``/`` or ``..`` would make a run write elsewhere. The process stops with one line naming the key.
    """

    def _check(self, config: DictConfig) -> None:
        problems = path_name_problems(config)
        if problems:
            log.error("error: %s", problems[0])
            raise SystemExit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)
