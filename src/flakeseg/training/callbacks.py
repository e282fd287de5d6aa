"""Lightning callbacks of the training runs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from flakeseg.errors import NonFiniteError


class ValidateAtEpochs(pl.Callback):
    """Run Lightning's validation loop after the listed epochs only (1-based), not after every epoch.

    This is what evaluates several epoch budgets from one run: with a constant learning rate, training
    for 10 epochs is a prefix of training for 500, so validating after epochs 10, 30, 50, 100 and 500
    of one run scores all five budgets. Lightning decides per epoch from
    ``trainer.check_val_every_n_epoch``; this callback sets it before each epoch.
    """

    def __init__(self, epochs: Iterable[int]):
        self.epochs = sorted({int(e) for e in epochs})
        if not self.epochs or self.epochs[0] < 1:
            raise ValueError(f"epochs must be positive integers, got {self.epochs}")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = trainer.current_epoch + 1 in self.epochs
        # A period longer than the run means "not this epoch".
        trainer.check_val_every_n_epoch = 1 if due else int(trainer.max_epochs or 0) + 1


class StopOnNonFinite(pl.Callback):
    """Stop at once when the loss is NaN or infinite, naming fold, epoch and step.

    Gradient clipping would otherwise carry NaN weights silently to the end. The module refuses to
    write a checkpoint whose weights are not finite (see ``FlakeSegModule.on_save_checkpoint``).
    """

    def __init__(self, label: str):
        self.label = label

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteError(
                f"{self.label}: loss is {float(loss)} at epoch {trainer.current_epoch + 1}, step "
                f"{trainer.global_step} (batch {batch_idx} of the epoch); training stopped, "
                "no checkpoint written"
            )


class CheckpointOnSigterm(pl.Callback):
    """On SIGTERM (how clusters stop jobs), write ``interrupted.ckpt`` before Lightning stops.

    Lightning notices SIGTERM at the end of a batch or an epoch and raises ``SIGTERMException``;
    this callback saves the state in ``on_exception`` (called before the trainer tears down, at
    whichever point the loop stopped: a batch-end hook misses a signal that lands in a later hook
    or in validation's last batch), and :func:`flakeseg.training.trainer.fit` turns the stop into
    :class:`Interrupted` (exit code 143 from ``train.py``). ``last.ckpt`` stays the end of the last
    complete epoch, from which a rerun resumes exactly.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
