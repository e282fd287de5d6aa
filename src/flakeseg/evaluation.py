"""Test-set evaluation: per-pixel probabilities, pixel metrics, region accuracy, ROC/PR curves, plots.

The paper scores test images two ways: per pixel (mean per-class accuracy, macro precision) and per
region, where each connected region of a ground-truth flake class counts as predicted right when most
of its pixels get that class (its Table 2: 0.733; non-expert humans 0.67 +- 0.11).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_recall_at_fixed_precision,
    binary_roc,
)

from flakeseg.colors import colorize
from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.data.transforms import pad_to_multiple, to_tensors
from flakeseg.metrics import flatten_metrics, segmentation_metrics
from flakeseg.report import pyplot, save_figure_atomic

#: The precision at which the paper reads off recall (monolayer 0.76, bilayer 0.94).
PAPER_PRECISION = 0.9


@torch.no_grad()
def predict_probabilities(
    net: torch.nn.Module,
    images: Sequence[np.ndarray],
    mean: Sequence[float],
    std: Sequence[float],
    multiple: int = 1,
) -> list[np.ndarray]:
    """Softmax probabilities (``C x H x W`` float32) of each whole ``H x W x 3`` uint8 image.

    Images are padded to a multiple of the network's stride and the padding is cut off again.
    """
    net.eval()
    device = next(net.parameters()).device
    out = []
    for image in images:
        height, width = image.shape[:2]
        padded, _ = pad_to_multiple(image, np.zeros((height, width), np.uint8), multiple)
        x, _ = to_tensors(padded, np.zeros(padded.shape[:2], np.uint8), mean, std)
        logits = net(x.unsqueeze(0).to(device)).float()
        out.append(torch.softmax(logits, dim=1)[0, :, :height, :width].cpu().numpy())
    return out


def pixel_scores(
    preds: Sequence[np.ndarray], masks: Sequence[np.ndarray], class_names: Sequence[str], prefix: str = "test"
) -> dict[str, Any]:
    """The pixel metrics of :func:`flakeseg.metrics.segmentation_metrics` over all images, flattened."""
    metrics = segmentation_metrics(len(class_names))
    for pred, mask in zip(preds, masks, strict=True):
        metrics.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(mask.astype(np.int64)))
    values = metrics.compute()
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


def one_vs_rest_curves(
    probs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    cls: int,
    num_thresholds: int = 201,
    min_precision: float = PAPER_PRECISION,
) -> dict[str, Any]:
    """ROC and precision-recall of class ``cls`` against the rest over every labelled pixel.

    AUC, average precision and the recall at ``min_precision`` are exact (all pixels' scores); the
    curves for plots and CSV are sampled at ``num_thresholds`` evenly spaced thresholds.
    """
    scores, target = [], []
    for prob, mask in zip(probs, masks, strict=True):
        valid = mask != IGNORE_INDEX
        scores.append(torch.from_numpy(prob[cls][valid]))
        target.append(torch.from_numpy((mask[valid] == cls).astype(np.int64)))
    score, truth = torch.cat(scores), torch.cat(target)
    if truth.sum() == 0 or truth.sum() == truth.numel():
        nan = float("nan")
        return {
            "auc": nan,
            "average_precision": nan,
            "recall_at_precision": nan,
            "threshold_at_precision": nan,
            "positives": int(truth.sum()),
            "pixels": int(truth.numel()),
            "roc": None,
            "pr": None,
        }
    fpr, tpr, roc_thr = binary_roc(score, truth, thresholds=num_thresholds)
    precision, recall, pr_thr = binary_precision_recall_curve(score, truth, thresholds=num_thresholds)
    recall_at, threshold_at = binary_recall_at_fixed_precision(score, truth, min_precision, thresholds=None)
    return {
        "auc": float(binary_auroc(score, truth, thresholds=None)),
        "average_precision": float(binary_average_precision(score, truth, thresholds=None)),
        "recall_at_precision": float(recall_at),
        # torchmetrics reports threshold 1e6 when no threshold reaches the precision
        "threshold_at_precision": float(threshold_at) if float(threshold_at) <= 1 else float("nan"),
        "positives": int(truth.sum()),
        "pixels": int(truth.numel()),
        "roc": {"threshold": roc_thr.tolist(), "fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "pr": {
            "threshold": pr_thr.tolist(),
            "precision": precision[:-1].tolist(),
            "recall": recall[:-1].tolist(),
        },
    }


def curve_rows(curves: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Long-format CSV rows of the curves: class, curve (roc or pr), threshold, x, y."""
    rows = []
    for name, curve in curves.items():
        if curve.get("roc") is None:
            continue
        roc, pr = curve["roc"], curve["pr"]
        for t, x, y in zip(roc["threshold"], roc["fpr"], roc["tpr"], strict=True):
            rows.append(
                {"class": name, "curve": "roc", "threshold": round(t, 4), "x": round(x, 6), "y": round(y, 6)}
            )
        for t, x, y in zip(pr["threshold"], pr["recall"], pr["precision"], strict=True):
            rows.append(
                {"class": name, "curve": "pr", "threshold": round(t, 4), "x": round(x, 6), "y": round(y, 6)}
            )
    return rows


def plot_curves(curves: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """ROC (left) and precision-recall (right) curves, one line per one-vs-rest class."""
    plt = pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, curve in curves.items():
        if curve.get("roc") is None:
            continue
        roc_ax.plot(
            curve["roc"]["fpr"], curve["roc"]["tpr"], label=f"{name} vs rest (AUC {curve['auc']:.3f})"
        )
        line = pr_ax.plot(
            curve["pr"]["recall"],
            curve["pr"]["precision"],
            label=f"{name} vs rest (AP {curve['average_precision']:.3f})",
        )[0]
        if np.isfinite(curve["recall_at_precision"]) and curve["recall_at_precision"] > 0:
            pr_ax.plot(curve["recall_at_precision"], PAPER_PRECISION, "o", color=line.get_color())
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01)
    )
    pr_ax.axhline(PAPER_PRECISION, ls=":", color="grey", label=f"precision {PAPER_PRECISION}")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def plot_confusion_matrix(
    confmat: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str
) -> None:
    """Row-normalised confusion matrix (true class per row) with pixel counts in each cell."""
    plt = pyplot()
    counts = np.asarray(confmat, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 1.1 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(
                j,
                i,
                f"{shares[i, j]:.2f}\n{int(counts[i, j]):,}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class's pixels")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def plot_examples(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    ids: Sequence[str],
    class_names: Sequence[str],
    colors: Sequence[str],
    path: Path,
    title: str,
) -> None:
    """The paper's Fig. 2 layout: one row per image with the image, its ground truth and the prediction."""
    plt = pyplot()
    from matplotlib.patches import Patch

    rows = len(images)
    fig, axes = plt.subplots(rows, 3, figsize=(10, 2.7 * rows + 0.6), squeeze=False)
    for row, (image, mask, pred, image_id) in enumerate(zip(images, masks, preds, ids, strict=True)):
        for col, (picture, label) in enumerate(
            (
                (image, f"{image_id}: image"),
                (colorize(mask, colors), "ground truth"),
                (colorize(pred, colors), "prediction"),
            )
        ):
            axes[row, col].imshow(picture, interpolation="nearest")
            axes[row, col].set_title(label, fontsize=9)
            axes[row, col].axis("off")
    handles = [Patch(color=c, label=n) for n, c in zip(class_names, colors, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=len(class_names), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_figure_atomic(fig, path)
