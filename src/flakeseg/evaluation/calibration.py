"""Calibrated confidence: expected calibration error, temperature scaling, reliability diagrams.

A network trained with (weighted) cross entropy is often over-confident. Temperature scaling (Guo et
al., 2017) divides the logits by one scalar ``T`` fitted on held-out pixels by minimising the negative
log-likelihood; it changes no prediction (the arg-max is kept) but makes a probability of 0.9 mean
right nine times in ten.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from flakeseg.data.classes import IGNORE_INDEX

__all__ = ["expected_calibration_error", "fit_temperature", "plot_reliability", "reliability_bins"]


def _flat(logits_or_probs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``N x C [x H x W]`` and ``N [x H x W]`` -> ``P x C`` and ``P`` without ignored pixels."""
    if logits_or_probs.dim() == 4:
        logits_or_probs = logits_or_probs.permute(0, 2, 3, 1).reshape(-1, logits_or_probs.shape[1])
        target = target.reshape(-1)
    keep = target != IGNORE_INDEX
    return logits_or_probs[keep], target[keep]


def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> float:
    """Top-label ECE (torchmetrics, L1): sum over confidence bins of the bin's share of pixels times
    ``|accuracy - mean confidence|`` in it.

    Args:
        probs: ``N x C`` or ``N x C x H x W`` class probabilities.
        target: ``N`` or ``N x H x W`` class indices; ``IGNORE_INDEX`` pixels are left out.
    """
    flat_probs, flat_target = _flat(probs, target)
    return float(
        multiclass_calibration_error(flat_probs.float(), flat_target.long(), probs.shape[1], n_bins=n_bins)
    )


def fit_temperature(
    logits: torch.Tensor, target: torch.Tensor, max_pixels: int = 500_000, seed: int = 0
) -> float:
    """The temperature ``T > 0`` that minimises the NLL of ``softmax(logits / T)`` on ``target``.

    Fitted over ``log T`` (so ``T`` stays positive) with L-BFGS, on at most ``max_pixels`` labelled
    pixels drawn at random.
    """
    flat_logits, flat_target = _flat(logits.float(), target.long())
    if flat_target.numel() > max_pixels:
        pick = torch.randperm(flat_target.numel(), generator=torch.Generator().manual_seed(seed))[:max_pixels]
        flat_logits, flat_target = flat_logits[pick], flat_target[pick]
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(flat_logits / log_t.exp(), flat_target)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.exp().item())


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: its range, count, mean confidence and accuracy (for a reliability diagram).

    Works for pixels (top-label probability, arg-max right) as for flakes (flake confidence, flake
    right).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        in_bin = which == b
        count = int(in_bin.sum())
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[in_bin].mean()) if count else float("nan"),
                "accuracy": float(correct[in_bin].mean()) if count else float("nan"),
            }
        )
    return rows


def plot_reliability(curves: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """Reliability diagram: accuracy against confidence per bin, one line per named curve."""
    from flakeseg.utils.plotting import pyplot, save_figure_atomic

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, rows in curves.items():
        used = [r for r in rows if r["count"] > 0]
        ax.plot([r["confidence"] for r in used], [r["accuracy"] for r in used], marker="o", label=name)
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)
