"""The scores of a model on a test split, from its probabilities: what ``test_metrics.json`` holds
(the test stage) and ``flakeseg evaluate`` prints, computed once for both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.classes import region_class_indices
from flakeseg.data.preprocess import resize_probabilities
from flakeseg.evaluation.curves import PAPER_PRECISION, one_vs_rest_curves
from flakeseg.evaluation.flake_scores import FlakeScores
from flakeseg.evaluation.flakes import apply_colour_check, background_class
from flakeseg.evaluation.postprocess import PREDICT_DEFAULTS, Postprocess, postprocessed_map
from flakeseg.evaluation.regions import counted_regions, pixel_scores, region_accuracy, region_min_area_px

__all__ = [
    "SplitScores",
    "colour_check_listing",
    "flake_scores",
    "held_out_flake_matches",
    "score_test_split",
    "shown_maps",
]


def flake_scores(
    probs: Sequence[np.ndarray],
    stored_masks: Sequence[np.ndarray],
    names: Sequence[str],
    flake_classes: Sequence[int],
    postprocess: Postprocess = PREDICT_DEFAULTS,
    checked: Sequence[np.ndarray] | None = None,
) -> FlakeScores:
    """The flake matches of model-scale probabilities, put back onto the pixels of the masks as stored
    (as ``predict`` puts them back onto the image's). ``checked``: per image, what ``predict``'s colour
    check does to its flakes (:func:`~flakeseg.evaluation.flakes.colour_check_map`): an unknown flake is
    no prediction, so a true flake only it covers is a miss; a moved flake is scored in its new class."""
    scores = FlakeScores(names, flake_classes, postprocess.min_area, postprocess.min_confidence)
    background = background_class(names, flake_classes)
    for index, (prob, mask) in enumerate(zip(probs, stored_masks, strict=True)):
        prob = resize_probabilities(prob, *mask.shape)
        if checked is not None:
            prob = apply_colour_check(prob, checked[index], background)
        scores.update(prob, mask)
    return scores


def shown_maps(
    probs: Sequence[np.ndarray],
    stored_masks: Sequence[np.ndarray],
    names: Sequence[str],
    flake_classes: Sequence[int],
    postprocess: Postprocess = PREDICT_DEFAULTS,
    checked: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """The class maps a screening run shows, at the masks' stored resolution: the flakes ``predict``
    lists (``postprocess``) in the classes its colour check (``checked``) gives them, unknown ones and
    every other flake pixel background; what the ``*_listed/`` pixel scores are of."""
    background = background_class(names, flake_classes)
    out = []
    for index, (prob, mask) in enumerate(zip(probs, stored_masks, strict=True)):
        labels = postprocessed_map(
            resize_probabilities(prob, *mask.shape), names, flake_classes, postprocess.min_area,
            postprocess.min_confidence, background,
        )  # fmt: skip
        if checked is not None:
            moved = checked[index] >= 0
            labels[moved] = checked[index][moved]
        out.append(labels)
    return out


def colour_check_listing(
    probs: Sequence[np.ndarray],
    images: FlakeImages,
    flake_classes: Sequence[int],
    postprocess: Postprocess,
    data_name: str,
    card_setup: Mapping[str, Any] | None = None,
) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
    """Per image, what ``predict``'s colour check does to the flakes it lists
    (:func:`~flakeseg.evaluation.flakes.colour_check_map`), found as ``predict`` finds them: on the image
    as stored, with the setup it checks the model against (its card's ``card_setup``, else the shipped
    ``paper_<data_name>``). ``(None, {...})`` when there is no such setup; the dict says which setup,
    how many flakes are unknown (``flakes``) and how many it moved to another class (``reclassed``)."""
    from flakeseg.data.io import read_dataset_image
    from flakeseg.evaluation.flakes import colour_check_map
    from flakeseg.optics.calibration import SHIPPED_DIR, Setup, shipped_setup

    name = f"paper_{data_name}"
    nothing = {"setup": None, "flakes": 0, "reclassed": 0}
    if len(images.pairs) != len(probs):
        return None, nothing
    if card_setup:
        setup, name = Setup.from_dict(card_setup, "model card"), "the model card's setup"
    elif data_name and (SHIPPED_DIR / f"{name}.yaml").is_file():
        setup = shipped_setup(name)
    else:
        return None, nothing
    material = str(setup.fitted_on.get("material") or "")
    if not setup.substrates or not material:
        return None, nothing
    names = list(images.scheme.names)
    maps, unknown, reclassed = [], 0, 0
    for prob, pair in zip(probs, images.pairs, strict=True):
        image = read_dataset_image(pair.image_path)
        check, counts = colour_check_map(
            image,
            resize_probabilities(prob, *image.shape[:2]),
            names,
            flake_classes,
            postprocess.min_area,
            postprocess.min_confidence,
            setup,
            material,
        )
        maps.append(check)
        unknown += counts["unknown"]
        reclassed += counts["reclassed"]
    return maps, {"setup": name, "flakes": unknown, "reclassed": reclassed}


def held_out_flake_matches(
    probs: Sequence[np.ndarray],
    images: FlakeImages,
    classes_cfg: Mapping[str, Any],
    crop: int | None = None,
    scale: float = 1.0,
    postprocess: Postprocess = PREDICT_DEFAULTS,
) -> dict[str, Any]:
    """A CV fold's flake matches (plain JSON, to pool over folds with
    :meth:`~flakeseg.evaluation.flake_scores.FlakeScores.pooled`) of model-scale probabilities of its
    held-out ``images``, on their masks as stored; ``crop``: ``cv.score_crop``, as the fold was scored,
    on images loaded at ``scale`` (``data.scale``)."""
    names = list(images.scheme.names)
    stored = images.stored_masks(int(crop) if crop else None, scale)
    flakes = flake_scores(probs, stored, names, region_class_indices(classes_cfg, names), postprocess)
    return flakes.to_dict()


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
    stored_masks: Sequence[np.ndarray],
    postprocess: Postprocess = PREDICT_DEFAULTS,
    checked: Sequence[np.ndarray] | None = None,
    unknown: Mapping[str, Any] | None = None,
) -> SplitScores:
    """Pixel scores, region accuracy (ground-truth regions of at least ``data.region_min_area`` pixels
    at full scale: label specks are not flakes), ROC/PR curves of ``C x H x W`` probabilities, and flake
    precision, recall, F1 and AP50 against ``stored_masks`` (the masks at the files' resolution),
    predicted flakes kept as ``postprocess`` says, in the classes ``predict``'s colour check gives them
    and unknown ones left out (``checked``: :func:`colour_check_listing`, which ``unknown`` summarises).
    The ``test/`` pixel scores are of the arg-max map; ``test_listed/`` ones of the map ``predict``
    shows (:func:`shown_maps`)."""
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
    flakes = flake_scores(probs, stored_masks, names, regions_of, postprocess, checked)
    listed = pixel_scores(
        shown_maps(probs, stored_masks, names, regions_of, postprocess, checked), stored_masks, names,
        prefix="test_listed",
    )  # fmt: skip
    metrics = {
        **{k: v for k, v in scores.items() if k != "test/confmat"},
        **flakes.compute("test"),
        **flakes.intervals("test"),
        "test/flake_postprocess": {
            "min_area": postprocess.min_area,
            "min_confidence": postprocess.min_confidence,
        },
        # listed as unknown by predict's colour check (no listing: a true flake they cover is a miss)
        "test/flakes_unknown": int((unknown or {}).get("flakes", 0)),
        "test/flakes_reclassed": int((unknown or {}).get("reclassed", 0)),
        "test/flakes_unknown_setup": (unknown or {}).get("setup"),
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
        **listed,
    }
    return SplitScores(metrics, regions, curves, preds)
