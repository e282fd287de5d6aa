"""Pixel metrics of the paper (mean per-class accuracy, macro precision) and friends, via torchmetrics.

Importing torchmetrics takes seconds (it loads torchvision and torch's compiler), so it is imported
where a metric collection is built; scoring a finished set of predictions (``flakeseg evaluate``, the
test stage) takes the same values from a confusion matrix (:func:`confmat_metrics`) without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from flakeseg.data.classes import IGNORE_INDEX

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

#: The headline keys, as they appear in logs (``val/...``) and in ``metrics.json`` (``cv/...``).
HEADLINE = ("mean_class_acc", "macro_precision", "mean_iou")


def segmentation_metrics(num_classes: int, ignore_index: int = IGNORE_INDEX) -> MetricCollection:
    """Pixel metrics accumulated over every labelled pixel of a set of images.

    - ``mean_class_acc``: mean over classes of the share of the class's pixels predicted right
      (macro recall; the paper's "mean per-class accuracy").
    - ``macro_precision``: mean over classes of the precision.
    - ``mean_iou``: mean over classes of intersection over union.
    - ``class_acc``, ``class_precision``, ``class_iou``: the per-class values.
    - ``confmat``: confusion matrix, rows = true class, columns = predicted class.

    A class with no true and no predicted pixels is left out of the macro averages; a class that is
    never predicted has precision 0.
    """
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (
        MulticlassConfusionMatrix,
        MulticlassJaccardIndex,
        MulticlassPrecision,
        MulticlassRecall,
    )

    common = {"num_classes": num_classes, "ignore_index": ignore_index, "validate_args": False}
    return MetricCollection(
        {
            "mean_class_acc": MulticlassRecall(average="macro", **common),
            "macro_precision": MulticlassPrecision(average="macro", **common),
            "mean_iou": MulticlassJaccardIndex(average="macro", **common),
            "class_acc": MulticlassRecall(average="none", **common),
            "class_precision": MulticlassPrecision(average="none", **common),
            "class_iou": MulticlassJaccardIndex(average="none", **common),
            "confmat": MulticlassConfusionMatrix(**common),
        }
    )


def confmat_metrics(confmat: np.ndarray) -> dict[str, torch.Tensor]:
    """What :func:`segmentation_metrics` computes, from the confusion matrix of the same pixels (rows:
    true class; ignored pixels left out, as :func:`confusion_matrix` counts them), bit for bit: the
    same float32 operations as torchmetrics' ``Multiclass{Recall,Precision,JaccardIndex}`` (their
    ``_precision_recall_reduce`` and ``_jaccard_index_reduce``, zero division 0), without importing
    torchmetrics. Exact while every count is below 2**24 (float32's integers), as theirs is."""
    counts = torch.as_tensor(np.asarray(confmat, dtype=np.int64))
    tp = torch.diag(counts)
    fp, fn = counts.sum(0) - tp, counts.sum(1) - tp

    def safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        num, den = num.float(), den.float()
        return torch.where(den != 0, num / den, torch.zeros((), dtype=num.dtype))

    def macro(score: torch.Tensor) -> torch.Tensor:  # a class with no true and no predicted pixel is out
        weights = torch.ones_like(score)
        weights[tp + fp + fn == 0] = 0.0
        return safe_divide(weights * score, weights.sum(-1, keepdim=True)).sum(-1)

    recall, precision = safe_divide(tp, tp + fn), safe_divide(tp, tp + fp)
    floats = counts.float()
    intersection = torch.diag(floats)
    iou = safe_divide(intersection, floats.sum(0) + floats.sum(1) - intersection)
    iou_weights = torch.ones_like(iou)
    iou_weights[floats.sum(1) + floats.sum(0) == 0] = 0.0
    return {
        "mean_class_acc": macro(recall),
        "macro_precision": macro(precision),
        "mean_iou": ((iou_weights * iou) / iou_weights.sum()).sum(),
        "class_acc": recall,
        "class_precision": precision,
        "class_iou": iou,
        "confmat": counts,
    }


def flatten_metrics(
    values: dict[str, torch.Tensor], class_names: Sequence[str], prefix: str
) -> dict[str, float]:
    """Turn a computed collection into flat scalar entries, e.g. ``val/acc_monolayer``.

    The confusion matrix is left out; read it from ``values["confmat"]``.
    """
    flat: dict[str, float] = {}
    for key in HEADLINE:
        flat[f"{prefix}/{key}"] = float(values[key])
    for key, short in (("class_acc", "acc"), ("class_precision", "precision"), ("class_iou", "iou")):
        for name, value in zip(class_names, values[key].tolist(), strict=True):
            flat[f"{prefix}/{short}_{name}"] = float(value)
    return flat


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes x num_classes`` pixel counts (rows: true class) over the labelled pixels of one
    image (``target`` values ``IGNORE_INDEX`` are left out), as ``confmat`` counts them."""
    keep = target != IGNORE_INDEX
    flat = target[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_scores(confmat: np.ndarray, class_names: Sequence[str], prefix: str) -> dict[str, float]:
    """The headline and per-class scores of :func:`segmentation_metrics` from a confusion matrix (for
    matrices summed over folds or repeats); the same rules: a class with no true and no predicted
    pixel is left out of the macro means, a class never predicted has precision 0."""
    counts = np.asarray(confmat, dtype=np.float64)
    tp = np.diag(counts)
    true, predicted = counts.sum(axis=1), counts.sum(axis=0)
    seen = (true + predicted) > 0

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    per_class = {
        "acc": ratio(tp, true),
        "precision": ratio(tp, predicted),
        "iou": ratio(tp, true + predicted - tp),
    }
    flat = {
        f"{prefix}/{key}": float(per_class[short][seen].mean()) if seen.any() else float("nan")
        for key, short in zip(HEADLINE, ("acc", "precision", "iou"), strict=True)
    }
    for short, values in per_class.items():
        flat.update(
            {f"{prefix}/{short}_{name}": float(v) for name, v in zip(class_names, values, strict=True)}
        )
    return flat


def present_class_accuracy(confmat: np.ndarray) -> float:
    """Mean per-class accuracy of one image over the classes its labels hold: a class absent from
    the truth has no accuracy to average (counting it as 0 would punish a few stray pixels of it as
    if a whole class were missed); ``nan`` for an image without labelled pixels."""
    counts = np.asarray(confmat, dtype=np.float64)
    true = counts.sum(axis=1)
    present = true > 0
    if not present.any():
        return float("nan")
    return float((np.diag(counts)[present] / true[present]).mean())
