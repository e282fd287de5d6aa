"""Scores of predicted class maps: pooled pixel metrics, and the paper's region accuracy.

The paper scores test images two ways: per pixel (mean per-class accuracy, macro precision) and per
region, where each connected region of a ground-truth flake class counts as predicted right when most
of its pixels get that class (its Table 2: 0.733; non-expert humans 0.67 +- 0.11).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from flakeseg.evaluation.metrics import confmat_metrics, confusion_matrix, flatten_metrics

__all__ = ["counted_regions", "flake_regions", "pixel_scores", "region_accuracy", "region_min_area_px"]


def pixel_scores(
    preds: Sequence[np.ndarray], masks: Sequence[np.ndarray], class_names: Sequence[str], prefix: str = "test"
) -> dict[str, Any]:
    """The pixel metrics of :func:`~flakeseg.evaluation.metrics.segmentation_metrics` over all images:
    the same values, from their summed confusion matrix
    (:func:`~flakeseg.evaluation.metrics.confmat_metrics`), so scoring does not import torchmetrics."""
    num_classes = len(class_names)
    confmat = np.zeros((num_classes, num_classes), np.int64)
    for pred, mask in zip(preds, masks, strict=True):
        confmat += confusion_matrix(pred, mask, num_classes)
    values = confmat_metrics(confmat)
    return {
        **flatten_metrics(values, class_names, prefix),
        f"{prefix}/confmat": values["confmat"].tolist(),
    }


def flake_regions(
    pred: np.ndarray,
    mask: np.ndarray,
    region_classes: Sequence[int],
    class_names: Sequence[str],
    image_id: str = "",
) -> list[dict[str, Any]]:
    """One row per connected region (4-connectivity) of each class in ``region_classes`` in ``mask``.

    A region's predicted class is the class most of its pixels receive in ``pred`` (ties: the lower
    class index). Rows: image, region, true and predicted class, area in pixels, the share of the
    region's pixels predicted as its true class, centroid and whether the region is right.
    """
    rows = []
    num_classes = len(class_names)
    for cls in region_classes:
        labels, _ = ndimage.label(mask == cls)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            inside = labels[box] == index
            votes = np.bincount(pred[box][inside].ravel(), minlength=num_classes)[:num_classes]
            area = int(inside.sum())
            predicted = int(votes.argmax())
            ys, xs = np.nonzero(inside)
            rows.append(
                {
                    "image": image_id,
                    "region": len(rows) + 1,
                    "true_class": class_names[cls],
                    "predicted_class": class_names[predicted],
                    "correct": predicted == cls,
                    "area_px": area,
                    "share_true_class": round(float(votes[cls]) / area, 4),
                    "centroid_y": round(float(ys.mean()) + box[0].start, 1),
                    "centroid_x": round(float(xs.mean()) + box[1].start, 1),
                }
            )
    return rows


def region_accuracy(rows: Sequence[dict[str, Any]]) -> float:
    """Share of regions predicted right (``nan`` when there are no regions)."""
    return float(np.mean([bool(r["correct"]) for r in rows])) if rows else float("nan")


def region_min_area_px(region_min_area: float | None, scale: float) -> int:
    """``data.region_min_area`` (pixels of the original images) in pixels at the model's ``data.scale``:
    label specks under it are not counted as flakes."""
    return max(1, round(float(region_min_area or 0) * float(scale) ** 2))


def counted_regions(
    scored: Sequence[tuple[str, np.ndarray, np.ndarray]],
    region_classes: Sequence[int],
    names: Sequence[str],
    min_area: int,
) -> tuple[list[dict[str, Any]], int]:
    """The ground-truth regions of at least ``min_area`` pixels over ``(image id, prediction, mask)``
    triples, numbered from 1, and how many smaller ones were left out."""
    every = [
        row
        for image_id, pred, mask in scored
        for row in flake_regions(pred, mask, region_classes, names, image_id)
    ]
    kept = [row for row in every if row["area_px"] >= min_area]
    for number, row in enumerate(kept, start=1):
        row["region"] = number
    return kept, len(every) - len(kept)
