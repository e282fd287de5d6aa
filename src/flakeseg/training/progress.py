"""Console output during training: a compact rich progress bar and quieter Lightning start-up."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from pytorch_lightning.callbacks import RichProgressBar

# Shown in the bar, under short names; everything else stays in the logs.
_BAR_METRICS = {"train/loss_step": "loss", "val/mean_class_acc": "val acc"}


class CompactProgressBar(RichProgressBar):
    """Rich progress bar showing the fold, the step loss and the last validation accuracy.

    Args:
        fold: shown as ``fold <fold>``, e.g. ``"2/3"``.
    """

    def __init__(self, fold: str = ""):
        super().__init__(leave=False)
        self.fold = fold

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        shown = {short: metrics[key] for key, short in _BAR_METRICS.items() if key in metrics}
        if self.fold:
            shown = {"fold": self.fold, **shown}
        return shown


class _DropNoise(logging.Filter):
    NOISE = ("litlogger", "TPU available", "GPU available", "HPU available", "LOCAL_RANK")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(token in message for token in self.NOISE)


def quiet_lightning() -> None:
    """Drop Lightning's advertising and hardware banners and a deprecation warning from its internals."""
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
