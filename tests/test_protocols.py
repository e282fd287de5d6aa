"""Protocols (``protocol=paper|upstream``) and repeated CV (``cv.repeats``): which images, which folds,
what is scored, and the pooled scores in ``metrics.json``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.data.splits import cv_ids, make_folds, split_from_config
from flakeseg.errors import ConfigError
from flakeseg.evaluation.metrics import (
    confusion_matrix,
    confusion_scores,
    flatten_metrics,
    segmentation_metrics,
)
from flakeseg.stages.config_checks import validate_config
from tests.conftest import TINY, compose_train

NAMES = ["substrate", "monolayer", "bilayer", "thick"]


def test_upstream_protocol_pools_35_images_into_3_disjoint_folds_with_four_classes():
    cfg = compose_train(["protocol=upstream"])
    assert list(cfg.data.classes.names) == NAMES and cfg.cv.score_crop == 512
    ids = cv_ids(split_from_config(cfg.data), cfg.cv.pool)
    assert len(ids) == len(set(ids)) == 35
    folds = make_folds(ids, int(cfg.cv.folds), int(cfg.cv.seed))
    assert len(folds) == 3 and sorted(i for f in folds for i in f) == sorted(ids)
    assert sorted(len(f) for f in folds) == [11, 12, 12]
    assert not any(set(a) & set(b) for k, a in enumerate(folds) for b in folds[k + 1 :])
    # shuffled, as the upstream code shuffled its names: the folds are not runs of consecutive ids
    runs = [list(chunk) for chunk in np.array_split(sorted(ids), 3)]
    assert [sorted(f) for f in folds] != runs


def test_paper_protocol_keeps_the_test_split_out_of_the_cv():
    cfg = compose_train([])
    split = split_from_config(cfg.data)
    assert cfg.cv.pool == "train" and cfg.cv.score_crop is None
    assert not set(cv_ids(split, cfg.cv.pool)) & set(split["test"])
    with pytest.raises(ConfigError, match="cv.pool"):
        cv_ids(split, "everything")


@pytest.mark.parametrize(
    ("override", "key"),
    [("cv.repeats=0", "cv.repeats"), ("cv.pool=test", "cv.pool"), ("cv.score_crop=0", "cv.score_crop")],
)
def test_protocol_values_are_checked_by_key(override, key, data_root):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(compose_train([override, f"data.root={data_root}"]))


def test_centre_crop_scoring_on_a_hand_case():
    """A 6 x 8 mask whose centre 4 x 4 holds the only flake: scored on the crop, the substrate around
    it (all wrongly predicted as flake here) does not count."""
    mask = np.zeros((6, 8), np.uint8)
    mask[1:5, 2:6] = 1
    images = FlakeImages(ids=["a"], images=[np.zeros((6, 8, 3), np.uint8)], masks=[mask], scheme=None)
    cropped = images.center_cropped(4)
    assert cropped.masks[0].shape == (4, 4) and (cropped.masks[0] == 1).all()
    assert cropped.images[0].shape == (4, 4, 3)
    everything_flake = np.ones((4, 4), np.uint8)
    assert confusion_matrix(everything_flake, cropped.masks[0], 2).tolist() == [[0, 0], [0, 16]]
    whole = confusion_matrix(np.ones((6, 8), np.uint8), mask, 2)
    assert whole.tolist() == [[0, 32], [0, 16]]  # uncropped, 32 substrate pixels would count wrong
    tall = FlakeImages(
        ids=["b"], images=[np.zeros((3, 9, 3), np.uint8)], masks=[np.zeros((3, 9), np.uint8)], scheme=None
    )
    assert tall.center_cropped(5).masks[0].shape == (3, 5)  # a side shorter than the crop stays whole


def test_confusion_scores_equal_torchmetrics():
    """The pooled scores from a summed confusion matrix follow torchmetrics' rules exactly (a class with
    no true and no predicted pixel left out of the means, an unpredicted class at precision 0)."""
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, (40, 50)).astype(np.uint8)  # class 3 never occurs
    pred = np.where(rng.random((40, 50)) < 0.7, target, rng.integers(0, 2, (40, 50))).astype(np.uint8)
    target[:3] = IGNORE_INDEX
    metrics = segmentation_metrics(4)
    metrics.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target.astype(np.int64)))
    values = metrics.compute()
    expected = flatten_metrics(values, NAMES, "x")
    matrix = confusion_matrix(pred, target, 4)
    assert matrix.tolist() == values["confmat"].tolist()
    got = confusion_scores(matrix, NAMES, "x")
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_repeated_upstream_cv_reports_every_fold_of_every_repeat(data_root, tmp_path):
    """The protocol is the same for every model: the contrast GMM fits a fold in a second."""
    from flakeseg.stages.cv import run_cross_validation

    tiny = [o for o in TINY if not o.startswith(("model.", "trainer."))]
    where = [f"data.root={data_root}", f"paths.output_dir={tmp_path}"]
    cfg = compose_train(
        [*tiny, *where, "model=contrast_gmm", "protocol=upstream", "cv.folds=2", "cv.repeats=2"]
    )
    metrics = run_cross_validation(cfg)
    folds = metrics["folds"]
    assert [(f["repeat"], f["fold"]) for f in folds] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for repeat in (0, 1):
        held_out = [i for f in folds if f["repeat"] == repeat for i in f["val_ids"]]
        assert len(held_out) == len(set(held_out)) == 35  # every image held out once per repeat
    assert {tuple(f["val_ids"]) for f in folds if f["repeat"] == 0} != {
        tuple(f["val_ids"]) for f in folds if f["repeat"] == 1
    }
    assert (tmp_path / "repeat_1_fold_0" / "model.npz").is_file()
    assert metrics["cv/mean_class_acc"] == pytest.approx(np.mean([f["val/mean_class_acc"] for f in folds]))
    side = round(512 * 0.25)  # centre crops at data.scale: every scored image is side x side
    for fold in folds:
        assert all(np.sum(m) <= side * side for m in fold["val/image_confmats"])
        assert np.sum(fold["val/confmat"]) == sum(np.sum(m) for m in fold["val/image_confmats"])
    pooled = np.sum([f["val/confmat"] for f in folds], axis=0)
    assert metrics["cv/pooled_confmat"] == pooled.tolist()
    assert metrics["cv/pooled_mean_class_acc"] == pytest.approx(
        confusion_scores(pooled, NAMES, "p")["p/mean_class_acc"]
    )
    assert sorted(metrics["images"]) == sorted(cv_ids(split_from_config(cfg.data), "all"))
    assert all(0 <= v["mean_class_acc"] <= 1 for v in metrics["images"].values())
    assert metrics["class_names"] == NAMES
