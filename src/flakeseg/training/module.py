"""The LightningModule: one segmentation network, its loss, optimiser and pixel metrics.

Validation predicts each whole validation image through :class:`flakeseg.inference.predictor.Predictor`,
the same object ``flakeseg predict`` uses, so the CV score is the score of what a user would get.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError, NonFiniteError
from flakeseg.evaluation.metrics import confusion_matrix, flatten_metrics, segmentation_metrics
from flakeseg.inference.checkpoint import ModelCard, card_from_hparams
from flakeseg.inference.predictor import Predictor
from flakeseg.models import build_model, is_classical
from flakeseg.training.fast import apply_fast_paths
from flakeseg.training.losses import build_loss
from flakeseg.training.optimizers import build_optimizer
from flakeseg.training.schedules import lr_factor


class FlakeSegModule(pl.LightningModule):
    """Trains a registered segmentation network with a registered loss and optimiser.

    All constructor arguments are plain containers, so checkpoints load with ``weights_only=True``.

    Args:
        model: the ``model`` config node as a dict (``name`` plus the builder's options).
        class_names: class names in index order.
        loss: the ``loss`` config node as a dict.
        optim: the ``optim`` config node as a dict (``name``, ``lr``, ``weight_decay``).
        class_weights: per-class loss weights (median-frequency balancing), or ``None``.
        class_colors: display colours per class, kept for prediction.
        normalization: ``{"mean": [...], "std": [...]}`` of the inputs, kept for prediction.
        data_scale: the resampling factor the model was trained at, kept for prediction.
        inference: what ``flakeseg predict`` needs beyond the above, kept in the checkpoint:
            ``crop_size`` (training crop side, the default tile), ``pixel_size_um`` (um per pixel of
            the training images before ``data_scale``, or ``None``), ``flake_classes`` (class names
            reported as flakes), ``data`` (data set name) and ``substrate_normalize`` (inputs
            white-balanced against their substrate, :mod:`flakeseg.optics.substrate`).
        fast: fast paths for the network, a subset of ``("channels_last", "compile")`` (see
            :mod:`flakeseg.training.fast`; bf16 is Lightning's ``trainer.precision=bf16-mixed``).
        apart_weights: ``[class index, weight]`` per subclass kept apart in the training masks (at
            indices from ``len(class_names)``; ``data.classes.apart``): scored as its class, each of
            its pixels counting ``weight`` times in the cross entropy.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        class_names: Sequence[str],
        loss: Mapping[str, Any],
        optim: Mapping[str, Any],
        class_weights: Sequence[float] | None = None,
        class_colors: Sequence[str] | None = None,
        normalization: Mapping[str, Sequence[float]] | None = None,
        data_scale: float = 1.0,
        fast: Sequence[str] = (),
        inference: Mapping[str, Any] | None = None,
        apart_weights: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names)
        if is_classical(model):  # fitted by flakeseg.training.classical, not trained by Lightning
            raise ConfigError(f"model.name: {model['name']} is a classical model, not a network")
        self.net = build_model(dict(model), num_classes=len(self.class_names))
        if "bf16" in fast:
            raise ConfigError("fast.bf16: use trainer.precision=bf16-mixed for bf16 training")
        self.net, _ = apply_fast_paths(self.net, fast, device_type="cpu")
        self.criterion = build_loss(loss, class_weights)
        # training masks hold subclasses kept apart at indices from num_classes: to_class maps them to
        # their class (IGNORE_INDEX to itself), extra_weight gives their pixels weight - 1 more CE
        to_class, extra_weight = torch.arange(256), torch.zeros(256)
        for k, (into, weight) in enumerate(apart_weights or []):
            to_class[len(self.class_names) + k] = int(into)
            extra_weight[len(self.class_names) + k] = float(weight) - 1.0
        self.has_apart = bool(apart_weights)
        self.register_buffer("to_class", to_class, persistent=False)
        self.register_buffer("extra_weight", extra_weight, persistent=False)
        self.val_metrics = segmentation_metrics(len(self.class_names))
        self.last_val: dict[str, Any] = {}
        #: the training epochs done when ``last_val`` was computed by a validation of ``fit`` on every
        #: validation image (``None``: it was not, e.g. Lightning's sanity check of a few batches)
        self.last_val_epochs: int | None = None
        #: scalar validation metrics after each validated training epoch (learning curves, and the
        #: epoch budgets of ``cv.eval_epochs``)
        self.val_history: list[dict[str, float]] = []

    @property
    def input_multiple(self) -> int:
        return int(getattr(self.net, "input_multiple", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        logits = self(images)
        if self.has_apart:
            target = self.to_class[masks]
            pixel_ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
            labelled = (masks != IGNORE_INDEX).sum().clamp_min(1)
            loss = self.criterion(logits, target) + (pixel_ce * self.extra_weight[masks]).sum() / labelled
        else:
            loss = self.criterion(logits, masks)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=images.shape[0])
        return loss

    @property
    def card(self) -> ModelCard:
        """The model card a checkpoint of this module carries (what prediction needs)."""
        return card_from_hparams(dict(self.hparams), self.net, source="")

    def predictor(self) -> Predictor:
        """The predictor over this module's network, on its device (eval mode while it is used)."""
        return Predictor.for_network(self.net, self.card)

    def on_validation_epoch_start(self) -> None:
        self._val_predictor = self.predictor()
        self._image_confmats: list[list[list[int]]] = []  # per validation image, in loader order

    def validation_step(self, batch: tuple[list[np.ndarray], list[np.ndarray]], batch_idx: int) -> None:
        """Whole prepared validation images (``H x W x 3`` uint8) and their masks, through the predictor."""
        losses = []
        for image, mask in zip(*batch, strict=True):
            probs_np = self._val_predictor.probabilities_at_model_scale(image)
            matrix = confusion_matrix(probs_np.argmax(axis=0), mask, len(self.class_names))
            self._image_confmats.append(matrix.tolist())
            probs = torch.from_numpy(probs_np).to(self.device)
            target = torch.from_numpy(mask.astype(np.int64)).to(self.device)[None]
            # the loss of log-probabilities is that of the logits they came from (softmax(log p) = p)
            losses.append(self.criterion(torch.log(probs.clamp_min(1e-7))[None], target))
            self.val_metrics.update(probs.argmax(dim=0)[None], target)
        self.log("val/loss", torch.stack(losses).mean(), on_epoch=True, batch_size=len(losses))

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        flat = flatten_metrics(values, self.class_names, "val")
        headline = "val/mean_class_acc"
        self.log(headline, flat[headline], prog_bar=True)
        self.log_dict({k: v for k, v in flat.items() if k != headline})
        self.val_metrics.reset()
        self.last_val = {
            **flat,
            "val/confmat": values["confmat"].tolist(),
            "val/image_confmats": self._image_confmats,
        }
        self.last_val_epochs = None
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.last_val_epochs = self.current_epoch + 1
            scalars = {k: v for k, v in self.last_val.items() if isinstance(v, float)}
            self.val_history.append({"epoch": self.current_epoch + 1, **scalars})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = [
            k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not v.isfinite().all()
        ]
        if bad:  # raising here stops Lightning before the file is written
            raise NonFiniteError(f"weights {bad[:3]} are not finite; refusing to write a checkpoint")
        checkpoint["val_history"] = list(self.val_history)  # learning curves survive a resume

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))

    def configure_optimizers(self) -> Any:
        optim = self.hparams.optim
        optimizer = build_optimizer(self.parameters(), optim)
        schedule = str(optim.get("schedule") or "none")
        lr_factor(schedule, 0, 1)  # checks the name before training starts
        if schedule == "none":
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        exponent = float(optim.get("poly_exponent", 0.9))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(schedule, step, total, exponent)
        )
        # per step, so the decay is the same whatever the epoch length; its state is in every checkpoint
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
