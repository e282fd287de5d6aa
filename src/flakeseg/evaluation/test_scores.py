"""The scores of a model on a test split, from its probabilities: what ``test_metrics.json`` holds
(the test stage) and ``flakeseg evaluate`` prints, computed once for both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flakeseg.evaluation.curves import PAPER_PRECISION, one_vs_rest_curves
from flakeseg.evaluation.regions import counted_regions, pixel_scores, region_accuracy, region_min_area_px

__all__ = ["SplitScores", "score_test_split"]


@dataclass
class SplitScores:
    """``metrics``: the ``test/...`` keys; ``regions`` (a row per counted ground-truth region),
    ``curves`` (ROC/PR per flake class) and ``preds`` (class maps) for the stage's files and plots."""

    metrics: dict[str, Any]
    regions: list[dict[str, Any]]
    curves: dict[str, dict[str, Any]]
    preds: list[np.ndarray]


def score_test_split(
    probs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    ids: Sequence[str],
    names: Sequence[str],
    regions_of: Sequence[int],
    data_cfg: Mapping[str, Any],
) -> SplitScores:
    """Pixel scores, region accuracy (ground-truth regions of at least ``data.region_min_area`` pixels
    at full scale: label specks are not flakes) and ROC/PR curves of ``C x H x W`` probabilities."""
    names = list(names)
    preds = [p.argmax(axis=0).astype(np.uint8) for p in probs]
    scores = pixel_scores(preds, masks, names)
    min_area = region_min_area_px(data_cfg.get("region_min_area"), data_cfg["scale"])
    scored = list(zip(ids, preds, masks, strict=True))
    regions, below_min_area = counted_regions(scored, regions_of, names, min_area)
    curves = {names[c]: one_vs_rest_curves(probs, masks, c) for c in regions_of}
    per_class_regions = {
        names[c]: region_accuracy([r for r in regions if r["true_class"] == names[c]]) for c in regions_of
    }
    metrics = {
        **{k: v for k, v in scores.items() if k != "test/confmat"},
        "test/region_accuracy": region_accuracy(regions),
        "test/regions": len(regions),
        "test/region_min_area_px": min_area,
        "test/regions_below_min_area": below_min_area,
        "test/region_accuracy_per_class": per_class_regions,
        "test/curves": {
            name: {
                "auc": c["auc"],
                "average_precision": c["average_precision"],
                f"recall_at_precision_{PAPER_PRECISION}": c["recall_at_precision"],
                f"threshold_at_precision_{PAPER_PRECISION}": c["threshold_at_precision"],
                "positive_pixels": c["positives"],
            }
            for name, c in curves.items()
        },
        "test/confmat": scores["test/confmat"],
    }
    return SplitScores(metrics, regions, curves, preds)
