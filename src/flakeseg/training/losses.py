"""Losses: cross entropy, median-frequency weighted cross entropy, and cross entropy + soft Dice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError
from flakeseg.utils.registry import Registry


def class_pixel_counts(masks: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Labelled pixels per class over ``masks`` (``IGNORE_INDEX`` pixels are not counted)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        counts += np.bincount(mask.ravel(), minlength=256)[:num_classes]
    return counts


def median_frequency_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Median-frequency balancing: ``weight_c = median(freq) / freq_c``.

    ``freq_c`` is class ``c``'s share of all labelled pixels. A class with no pixels gets weight 0 (it
    cannot contribute to the loss anyway) and is left out of the median.

    >>> median_frequency_weights([90, 6, 4]).round(3).tolist()
    [0.067, 1.0, 1.5]
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.sum() <= 0:
        raise ValueError(f"need a 1-D vector of pixel counts with a positive total, got {counts.tolist()}")
    freq = counts / counts.sum()
    present = freq > 0
    median = np.median(freq[present])
    weights = np.zeros_like(freq)
    weights[present] = median / freq[present]
    return weights


class CrossEntropyDiceLoss(nn.Module):
    """Cross entropy plus ``dice_weight`` x soft Dice loss, nnU-Net's default segmentation loss.

    The Dice term is segmentation_models_pytorch's multiclass ``DiceLoss`` on the softmax: per class,
    ``1 - 2 |P * Y| / (|P| + |Y|)`` over all pixels of the batch, averaged over all classes, where a
    class absent from the batch's labels adds 0; ignored pixels count in neither term. Dice looks at
    each class's overlap as a whole, so rare classes (monolayer, bilayer) weigh as much as the
    substrate without hand-set weights.
    """

    def __init__(self, dice_weight: float = 1.0, smooth: float = 0.0):
        super().__init__()
        from segmentation_models_pytorch.losses import DiceLoss

        if dice_weight < 0:
            raise ConfigError(f"loss.dice_weight: must be >= 0, got {dice_weight}")
        self.dice_weight = float(dice_weight)
        self.cross_entropy = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.dice = DiceLoss(mode="multiclass", from_logits=True, smooth=smooth, ignore_index=IGNORE_INDEX)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(logits, target) + self.dice_weight * self.dice(logits, target)


#: ``loss.name`` -> builder ``(loss_cfg, class_weights) -> nn.Module``; ``uses_class_weights``: the
#: builder takes the fold's median-frequency weights
LOSSES = Registry("loss", "loss")


@LOSSES.register("ce")
def cross_entropy(loss_cfg: Mapping[str, Any], class_weights: Sequence[float] | None) -> nn.Module:
    """Plain cross entropy (Table 1 "U-Net")."""
    return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)


@LOSSES.register("weighted_ce", uses_class_weights=True)
def weighted_cross_entropy(loss_cfg: Mapping[str, Any], class_weights: Sequence[float] | None) -> nn.Module:
    """Cross entropy weighted by median-frequency balancing (Table 1 "U-Net with weighted loss")."""
    if class_weights is None:
        raise ConfigError("loss.name: weighted_ce needs class weights from the training masks")
    weight = torch.tensor(list(class_weights), dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)


@LOSSES.register("ce_dice")
def cross_entropy_dice(loss_cfg: Mapping[str, Any], class_weights: Sequence[float] | None) -> nn.Module:
    """Cross entropy + soft Dice (nnU-Net's default)."""
    return CrossEntropyDiceLoss(
        dice_weight=float(loss_cfg.get("dice_weight", 1.0)), smooth=float(loss_cfg.get("smooth", 0.0))
    )


def uses_class_weights(loss_cfg: Mapping[str, Any]) -> bool:
    """Whether the loss ``loss.name`` names is weighted by the fold's median-frequency class weights."""
    return bool(LOSSES.trait(loss_cfg.get("name"), "uses_class_weights", False))


def build_loss(loss_cfg: Mapping[str, Any], class_weights: Sequence[float] | None) -> nn.Module:
    """The loss that ``loss.name`` names (``class_weights`` reach only losses that use them)."""
    builder = LOSSES.get(loss_cfg.get("name"))
    return builder(loss_cfg, class_weights if uses_class_weights(loss_cfg) else None)
