"""One-vs-rest ROC and precision-recall curves of pixel probabilities (the paper's Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_recall_at_fixed_precision,
    binary_roc,
)

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.utils.plotting import pyplot, save_figure_atomic

__all__ = ["PAPER_PRECISION", "curve_rows", "one_vs_rest_curves", "plot_curves"]

#: The precision at which the paper reads off recall (monolayer 0.76, bilayer 0.94).
PAPER_PRECISION = 0.9


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
