"""Post-processing of predictions: which predicted regions a lab is shown as flakes.

A network's prediction has specks: a few pixels of bilayer on the substrate, a fringe of monolayer at a
thick flake's edge, small regions the network is unsure of. No lab picks up a flake of ten pixels, and
each speck is a false alarm. ``flakeseg predict`` keeps a region from ``min_area`` pixels (at the
image's own resolution) with a mean class probability from ``min_confidence``; both are chosen on the
cross-validation folds by the pooled out-of-fold flake F1 (:func:`choose_postprocess`), never on the
test images, and kept in the model card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flakeseg.evaluation.flakes import find_flakes

__all__ = [
    "DEFAULT_MIN_AREAS",
    "DEFAULT_MIN_CONFIDENCES",
    "PREDICT_DEFAULTS",
    "Postprocess",
    "choose_postprocess",
    "postprocessed_map",
]

#: candidate ``min_area`` values, pixels at the images' stored resolution (the unit of ``--min-area``)
DEFAULT_MIN_AREAS: tuple[int, ...] = (100, 200, 400, 800)
#: candidate ``min_confidence`` values (mean class probability of a flake)
DEFAULT_MIN_CONFIDENCES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)


@dataclass(frozen=True)
class Postprocess:
    """What ``predict`` keeps as a flake: regions from ``min_area`` pixels (at the image's own
    resolution) with a mean class probability from ``min_confidence`` (``predict``'s defaults; a model
    card may hold values chosen on CV)."""

    min_area: int = 100
    min_confidence: float = 0.5

    @classmethod
    def from_card(cls, card_postprocess: Mapping[str, Any] | None) -> Postprocess:
        known = {k: v for k, v in (card_postprocess or {}).items() if k in ("min_area", "min_confidence")}
        return cls(**known)


#: ``flakeseg predict``'s defaults, for a model whose card holds no choice
PREDICT_DEFAULTS = Postprocess()


def postprocessed_map(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    flake_classes: Sequence[int],
    min_area: int,
    min_confidence: float,
    background: int = 0,
) -> np.ndarray:
    """The ``H x W`` uint8 class map a screening run shows: the arg-max of ``C x H x W``
    probabilities, with flake regions that ``predict`` would not list (under ``min_area`` pixels or
    ``min_confidence``) relabelled ``background``."""
    labels = probabilities.argmax(axis=0).astype(np.uint8)
    ids, _ = find_flakes(probabilities, class_names, flake_classes, min_area, min_confidence)
    dropped = (ids == 0) & np.isin(labels, list(flake_classes))
    labels[dropped] = background
    return labels


def choose_postprocess(
    score: Callable[[int, float], float],
    areas: Sequence[int] = DEFAULT_MIN_AREAS,
    confidences: Sequence[float] = DEFAULT_MIN_CONFIDENCES,
) -> tuple[tuple[int, float], dict[tuple[int, float], float]]:
    """The ``(min_area, min_confidence)`` with the highest ``score`` (ties: the smallest area, then
    the lowest confidence: the least that is dropped), and every score.

    ``score`` evaluates the cross-validation predictions post-processed with one setting, e.g. the
    mean over flake classes of the pooled out-of-fold flake F1.
    """
    if not areas or not confidences:
        raise ValueError("choose_postprocess: no candidate areas or confidences")
    grid = [(int(a), float(c)) for a in sorted(set(areas)) for c in sorted(set(confidences))]
    scores = {setting: float(score(*setting)) for setting in grid}
    finite = {k: v for k, v in scores.items() if not np.isnan(v)} or scores
    best = max(finite, key=lambda s: (finite[s], -s[0], -s[1]))
    return best, scores
