"""Figures of test predictions: the confusion matrix and the paper's Fig. 2 example rows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flakeseg.utils.colors import colorize
from flakeseg.utils.plotting import pyplot, save_figure_atomic

__all__ = ["plot_confusion_matrix", "plot_examples", "plot_label_panels"]


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


def plot_label_panels(
    panels: Sequence[Sequence[tuple[str, np.ndarray]]],
    class_names: Sequence[str],
    colors: Sequence[str],
    path: Path,
    title: str,
    panel_size: tuple[float, float] = (3.4, 2.8),
) -> None:
    """A grid of titled pictures, one list per row (an RGB image, or a class map drawn in ``colors``),
    with a legend of the classes."""
    from matplotlib.patches import Patch

    plt = pyplot()
    rows, columns = len(panels), max(len(row) for row in panels)
    size = (panel_size[0] * columns, panel_size[1] * rows + 0.6)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for row, row_axes in zip(panels, axes, strict=True):
        for ax in row_axes:
            ax.axis("off")
        for ax, (label, picture) in zip(row_axes, row, strict=False):
            ax.imshow(picture if picture.ndim == 3 else colorize(picture, colors), interpolation="nearest")
            ax.set_title(label, fontsize=9)
    handles = [Patch(color=c, label=n) for n, c in zip(class_names, colors, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=len(class_names), fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.2 / (rows + 0.2), 1, 1))
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
    panels = [
        [(f"{image_id}: image", image), ("ground truth", mask), ("prediction", pred)]
        for image, mask, pred, image_id in zip(images, masks, preds, ids, strict=True)
    ]
    plot_label_panels(panels, class_names, colors, path, title, panel_size=(10 / 3, 2.7))
