"""Post-processing of predicted class maps: drop flake regions too small to be a flake.

A network's prediction has specks: a few pixels of bilayer on the substrate, a fringe of monolayer at a
thick flake's edge. No lab picks up a flake of ten pixels, and each speck costs precision. The area
below which a region is dropped is a hyperparameter chosen on the cross-validation folds
(:func:`choose_min_area`), never on the test images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["DEFAULT_MIN_AREAS", "choose_min_area", "drop_small_regions"]

#: candidate thresholds in pixels at the model's working scale (0: keep everything)
DEFAULT_MIN_AREAS: tuple[int, ...] = (0, 10, 25, 50, 100, 200, 400)


def drop_small_regions(
    pred: np.ndarray, min_area: int, flake_classes: Sequence[int], background: int = 0
) -> np.ndarray:
    """A copy of the ``H x W`` class map ``pred`` whose flake regions under ``min_area`` pixels are
    relabelled ``background``.

    A region is a 4-connected set of pixels of one class in ``flake_classes``; other classes are kept.
    """
    out = pred.copy()
    if min_area <= 1:
        return out
    for cls in flake_classes:
        labels, count = ndimage.label(pred == cls)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        small = areas < min_area
        small[0] = False  # label 0 is everything outside the class
        out[small[labels]] = background
    return out


def choose_min_area(
    score: Callable[[int], float], candidates: Sequence[int] = DEFAULT_MIN_AREAS
) -> tuple[int, dict[int, float]]:
    """The candidate area with the highest ``score(area)`` (ties: the smallest area), and every score.

    ``score`` evaluates the cross-validation predictions post-processed with one area, e.g. the mean
    over folds of (mean per-class accuracy + macro precision) / 2.
    """
    if not candidates:
        raise ValueError("choose_min_area: no candidate areas")
    scores = {int(area): float(score(int(area))) for area in sorted(set(candidates))}
    best = max(scores, key=lambda area: (scores[area], -area))
    return best, scores
