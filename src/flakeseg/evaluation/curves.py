"""One-vs-rest ROC and precision-recall curves of pixel probabilities (the paper's Fig. 3).

The values are torchmetrics' (``binary_roc``, ``binary_precision_recall_curve``, ``binary_auroc``,
``binary_average_precision``, ``binary_recall_at_fixed_precision``), bit for bit, computed here with a
sort per class instead: importing torchmetrics takes longer than scoring a test split, and its exact
curves sort the pixels once per score. The tests check them against torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.utils.plotting import pyplot, save_figure_atomic

__all__ = ["PAPER_PRECISION", "curve_rows", "one_vs_rest_curves", "plot_curves"]

#: The precision at which the paper reads off recall (monolayer 0.76, bilayer 0.94).
PAPER_PRECISION = 0.9


def _at_or_above(ascending: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of the sorted ``ascending`` scores are ``>=`` each threshold."""
    return ascending.size - np.searchsorted(ascending, thresholds, side="left")


def _exact_scores(
    positive: np.ndarray, negative: np.ndarray, min_precision: float
) -> tuple[float, float, float, float]:
    """AUC, average precision, and the highest recall at precision >= ``min_precision`` with its
    threshold, over every distinct score as a threshold (torchmetrics' ``thresholds=None``), from the
    sorted scores of the positive and the negative pixels (both non-empty).

    Counts are integers, then float32 as torchmetrics holds them (exact below 2**24 pixels); the two
    sums (trapezoid, average precision) are torch's own, so their rounding is too."""
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]  # highest first
    tps = _at_or_above(positive, thresholds).astype(np.float32)
    fps = _at_or_above(negative, thresholds).astype(np.float32)
    zero = np.zeros(1, np.float32)
    fpr = np.concatenate([zero, fps]) / fps[-1]
    tpr = np.concatenate([zero, tps]) / tps[-1]
    auc = float(torch.trapz(torch.from_numpy(tpr), torch.from_numpy(fpr)))
    # the precision-recall curve from the lowest threshold up, closed at (recall 0, precision 1)
    precision = np.concatenate([(tps / (tps + fps))[::-1], np.ones(1, np.float32)])
    recall = np.concatenate([(tps / tps[-1])[::-1], zero])
    terms = (recall[1:] - recall[:-1]) * precision[:-1]
    average_precision = float(-torch.sum(torch.from_numpy(terms)))
    # the operating point: highest recall, then precision, then threshold (torchmetrics' _lexargmax),
    # compared in the type torch stacks them in
    common = np.result_type(np.float32, thresholds.dtype)
    rows = len(thresholds)
    r, p = recall[:rows].astype(common), precision[:rows].astype(common)
    t = thresholds[::-1].astype(common)
    keep = p >= common.type(min_precision)
    best_recall, best_threshold = 0.0, float("nan")
    if keep.any():
        r, p, t = r[keep], p[keep], t[keep]
        top = r == r.max()
        top &= p == p[top].max()
        best_recall = float(r.max())
        if best_recall != 0.0:
            best_threshold = float(t[top].max())
    return auc, average_precision, best_recall, best_threshold


def _binned_curves(positive: np.ndarray, negative: np.ndarray, num_thresholds: int) -> dict[str, Any]:
    """ROC and precision-recall at ``num_thresholds`` evenly spaced thresholds from 0 to 1 (torchmetrics'
    ``thresholds=int``: ``torch.linspace``'s float32 values, a pixel counted at ``score >= threshold``);
    ROC from the highest threshold down, precision-recall from the lowest up; precision ``nan`` where
    nothing reaches the threshold."""
    grid = torch.linspace(0, 1, num_thresholds).numpy()
    tp = _at_or_above(positive, grid).astype(np.float32)
    fp = _at_or_above(negative, grid).astype(np.float32)
    tpr = tp / np.float32(positive.size)
    fpr = fp / np.float32(negative.size)
    with np.errstate(invalid="ignore"):
        precision = tp / (tp + fp)
    return {
        "roc": {"threshold": grid[::-1].tolist(), "fpr": fpr[::-1].tolist(), "tpr": tpr[::-1].tolist()},
        "pr": {"threshold": grid.tolist(), "precision": precision.tolist(), "recall": tpr.tolist()},
    }


def one_vs_rest_curves(
    probs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    cls: int,
    num_thresholds: int = 201,
    min_precision: float = PAPER_PRECISION,
) -> dict[str, Any]:
    """ROC and precision-recall of class ``cls`` against the rest over every labelled pixel.

    AUC, average precision and the recall at ``min_precision`` are exact (all pixels' scores); the
    curves for plots and CSV are sampled at ``num_thresholds`` evenly spaced thresholds. ``probs`` are
    probabilities (torchmetrics would take scores outside [0, 1] for logits; these are used as they are).
    """
    positive, negative = [], []
    for prob, mask in zip(probs, masks, strict=True):
        valid = mask != IGNORE_INDEX
        score, truth = prob[cls][valid], mask[valid] == cls
        positive.append(score[truth])
        negative.append(score[~truth])
    pos, neg = np.sort(np.concatenate(positive)), np.sort(np.concatenate(negative))
    if pos.size == 0 or neg.size == 0:
        nan = float("nan")
        return {
            "auc": nan,
            "average_precision": nan,
            "recall_at_precision": nan,
            "threshold_at_precision": nan,
            "positives": int(pos.size),
            "pixels": int(pos.size + neg.size),
            "roc": None,
            "pr": None,
        }
    auc, average_precision, recall_at, threshold_at = _exact_scores(pos, neg, min_precision)
    return {
        "auc": auc,
        "average_precision": average_precision,
        "recall_at_precision": recall_at,
        "threshold_at_precision": threshold_at,
        "positives": int(pos.size),
        "pixels": int(pos.size + neg.size),
        **_binned_curves(pos, neg, num_thresholds),
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
