"""Scores of what a screening run lists and shows (``*_listed/``): the flakes ``predict`` keeps, with
those whose colour fits no layer count listed as unknown (no listing, their pixels background); on CV
checked against a setup calibrated on each fold's own training labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flakeseg.evaluation.postprocess import Postprocess
from flakeseg.evaluation.test_scores import score_test_split, shown_maps
from flakeseg.stages.fold_evaluation import CVPredictions, EvalOptions, fold_setups

NAMES = ["other", "monolayer", "bilayer"]


def _one_hot(labels: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[labels].transpose(2, 0, 1)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 40 mask with one monolayer and one bilayer; the prediction finds both, paints a false
    bilayer (10 x 10) on the substrate and a 4-px monolayer speck."""
    mask = np.zeros((40, 40), np.uint8)
    mask[2:12, 2:12] = 1
    mask[20:30, 2:12] = 2
    pred = mask.copy()
    pred[20:30, 25:35] = 2  # false bilayer
    pred[36:38, 36:38] = 1  # a speck under the floor
    return mask, _one_hot(pred)


def test_shown_maps_keep_only_listed_flakes_and_blank_the_unknown():
    mask, prob = _scene()
    checked = np.full(mask.shape, -1, np.int16)
    checked[20:30, 25:35] = 0  # unknown: the background class
    (shown,) = shown_maps(
        [prob], [mask], NAMES, [1, 2], Postprocess(min_area=10, min_confidence=0.5), [checked]
    )
    assert (shown[2:12, 2:12] == 1).all() and (shown[20:30, 2:12] == 2).all()
    assert shown[20:30, 25:35].max() == 0 and shown[36:38, 36:38].max() == 0  # unknown, and too small
    moved = np.full(mask.shape, -1, np.int16)
    moved[2:12, 2:12] = 2  # the monolayer, moved to bilayer by its colour
    (shown_moved,) = shown_maps([prob], [mask], NAMES, [1, 2], Postprocess(10, 0.5), [moved])
    assert (shown_moved[2:12, 2:12] == 2).all() and (shown_moved[20:30, 25:35] == 2).all()
    (plain,) = shown_maps([prob], [mask], NAMES, [1, 2], Postprocess(min_area=1, min_confidence=0.5))
    assert (plain[20:30, 25:35] == 2).all() and (plain[36:38, 36:38] == 1).all()
    # a flake class that comes first: the background is the first class that is not a flake
    (four,) = shown_maps(
        [prob[[1, 0, 2]]], [mask], ["monolayer", "substrate", "bilayer"], [0, 2], Postprocess(10, 0.5)
    )
    assert (four[36:38, 36:38] == 1).all() and (four[2:12, 2:12] == 0).all()  # dropped: substrate


def test_listed_pixel_scores_leave_unknown_flakes_out_and_argmax_scores_do_not():
    mask, prob = _scene()
    checked = np.full(mask.shape, -1, np.int16)
    checked[20:30, 25:35] = 0
    data_cfg = {"scale": 1.0, "region_min_area": 10}
    scores = score_test_split(
        [prob], [mask], ["x"], NAMES, [1, 2], data_cfg, [mask], Postprocess(10, 0.5), [checked],
        {"setup": "s", "flakes": 1, "reclassed": 0},
    ).metrics  # fmt: skip
    assert scores["test/precision_bilayer"] == pytest.approx(0.5)  # the arg-max map keeps the false one
    assert scores["test_listed/precision_bilayer"] == 1.0
    assert scores["test_listed/precision_monolayer"] == 1.0 and scores["test/precision_monolayer"] < 1.0
    assert scores["test_listed/acc_bilayer"] == scores["test/acc_bilayer"] == 1.0
    assert scores["test/flakes_unknown"] == 1 and scores["test/flake_precision_bilayer"] == 1.0
    assert scores["test/flakes_reclassed"] == 0


def _cv_predictions(data_cfg: dict, ids_by_fold: list[list[str]], **extra) -> CVPredictions:
    """Perfect predictions (the labels, one-hot) of each fold's held-out images, as stored."""
    from flakeseg.data.catalog import AS_STORED, load_dataset

    cfg = {**data_cfg, **AS_STORED}
    everything = sorted({i for ids in ids_by_fold for i in ids})
    data = load_dataset(cfg, ids=everything, progress=False)
    val_sets = [data.subset(ids) for ids in ids_by_fold]
    masks = [v.stored_masks() for v in val_sets]
    return CVPredictions(
        class_names=list(data.scheme.names),
        flake_classes=[1, 2],
        val_masks=masks,
        val_probs=[[_one_hot(np.where(m == 255, 0, m)) for m in ms] for ms in masks],
        val_stored_masks=masks,
        test_ids=[],
        test_masks=[],
        test_probs=[[] for _ in ids_by_fold],
        test_stored_masks=[],
        region_min_area=100,
        data_config=cfg,
        fold_train_ids=[[i for i in everything if i not in ids] for ids in ids_by_fold],
        val_sets=val_sets,
        **extra,
    )


def test_fold_setups_say_why_there_is_none(data_root: Path):
    from tests.conftest import compose_train

    data_cfg = dict(compose_train([f"data.root={data_root}"]).data)
    folds = [["00005", "00007"], ["00008", "00009"]]
    assert "data.material" in fold_setups(_cv_predictions({**data_cfg, "material": None}, folds))
    assert "cv.score_crop" in fold_setups(_cv_predictions(data_cfg, folds, score_crop=512))
    # a crystal the optics does not know: the CV scores stand, the colour check is skipped with why
    unknown = _cv_predictions({**data_cfg, "material": "Unobtainium"}, folds)
    reason = fold_setups(unknown)
    assert isinstance(reason, str) and reason.startswith("no setup for the colour check (")
    assert "Unobtainium" in reason and unknown.setups == []
    from flakeseg.stages.fold_evaluation import listed_scores

    skipped = listed_scores(_cv_predictions(data_cfg, folds, score_crop=512), [[], []], Postprocess())
    assert list(skipped) == ["cv_listed/skipped"]


@pytest.mark.slow  # calibrates a setup per fold (about 10 s each)
def test_cv_listing_checks_each_fold_against_a_setup_of_its_own_training_labels(data_root: Path):
    """Perfect predictions list every labelled flake; the colour check of each fold's setup (fitted on
    the other fold's images only) lists 00006's labelled monolayers, which have a bilayer's contrast,
    as unknown: the listed monolayer pixel accuracy falls below 1, its precision stays 1."""
    from flakeseg.optics.calibration import Setup
    from flakeseg.stages.fold_evaluation import evaluate_predictions
    from tests.conftest import compose_train

    data_cfg = dict(compose_train([f"data.root={data_root}"]).data)
    folds = [["00006", "00007", "00008"], ["00009", "00010", "00012"]]
    preds = _cv_predictions(data_cfg, folds)
    result = evaluate_predictions(preds, EvalOptions(unknown=True))
    setups = [Setup.from_dict(s) for s in preds.setups]
    assert [s.fitted_on["labelled_images"] for s in setups] == [3, 3]
    assert setups[0].to_dict() != setups[1].to_dict()  # each fitted on its own fold's training images
    assert result["cv_listed/flakes_unknown"] >= 1
    assert result["cv_listed/precision_monolayer"] == 1.0
    assert result["cv_listed/acc_monolayer"] < 1.0
    assert result["cv_listed/flake_fn_monolayer"] > result["cv/flake_fn_monolayer"]
    plain = evaluate_predictions(preds, EvalOptions())
    assert not any(k.startswith("cv_listed/") for k in plain)


def test_flakes_are_measured_against_the_substrate_beside_them_not_the_densest_colour():
    """An image that is mostly one flake (MoS2 00005: 68 % monolayer) has the flake's colour as its
    densest; the colour check measures flakes against the densest colour the model calls background."""
    from flakeseg.evaluation.flakes import substrate_beside_flakes
    from flakeseg.optics.substrate import estimate_background

    rng = np.random.default_rng(0)
    image = np.empty((60, 60, 3), np.uint8)
    image[:] = (120, 90, 150)  # substrate
    image[5:55, 5:55] = (95, 86, 156)  # one monolayer over 69 % of the image
    image = np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((60, 60), np.uint8)
    labels[5:55, 5:55] = 1
    probs = _one_hot(labels)
    assert np.abs(estimate_background(image) - (95, 86, 156)).max() < 3  # the flake
    assert np.abs(substrate_beside_flakes(image, probs, NAMES, [1, 2]) - (120, 90, 150)).max() < 3
    # a model that calls every pixel a flake: the densest colour of the image, as before
    everything = _one_hot(np.ones((60, 60), np.uint8))
    assert np.abs(substrate_beside_flakes(image, everything, NAMES, [1, 2]) - (95, 86, 156)).max() < 3
