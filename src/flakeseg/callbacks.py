"""Lightning callbacks of the training runs."""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl


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
