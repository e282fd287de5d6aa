"""Test-set evaluation: region accuracy and one-vs-rest curves against hand-made cases, and the
curves and pixel scores against torchmetrics (computed without it, they must equal its values)."""

import math

import numpy as np
import pytest
import torch

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.evaluation.curves import PAPER_PRECISION, one_vs_rest_curves
from flakeseg.evaluation.metrics import flatten_metrics, segmentation_metrics
from flakeseg.evaluation.regions import flake_regions, pixel_scores, region_accuracy

NAMES = ["other", "monolayer", "bilayer"]


def _scene():
    """Two monolayer regions and one bilayer region on substrate (class 0)."""
    mask = np.zeros((10, 12), np.uint8)
    mask[1:4, 1:4] = 1  # monolayer A, 9 px
    mask[6:9, 1:5] = 1  # monolayer B, 12 px
    mask[1:5, 7:11] = 2  # bilayer C, 16 px
    pred = np.zeros_like(mask)
    pred[1:4, 1:4] = 1  # A: all right
    pred[6:9, 1:3] = 1  # B: 6 of 12 monolayer, 6 bilayer -> tie, lower index (monolayer) wins
    pred[6:9, 3:5] = 2
    pred[1:5, 7:11] = 1  # C: all predicted monolayer -> wrong
    pred[1, 7] = 2
    return mask, pred


def test_region_majority_vote_and_accuracy():
    mask, pred = _scene()
    rows = flake_regions(pred, mask, [1, 2], NAMES, "img")
    assert [(r["true_class"], r["area_px"], r["predicted_class"], r["correct"]) for r in rows] == [
        ("monolayer", 9, "monolayer", True),
        ("monolayer", 12, "monolayer", True),
        ("bilayer", 16, "monolayer", False),
    ]
    assert rows[2]["share_true_class"] == pytest.approx(1 / 16, abs=1e-4)
    assert rows[0]["centroid_y"] == 2.0 and rows[0]["centroid_x"] == 2.0
    assert region_accuracy(rows) == pytest.approx(2 / 3)
    assert np.isnan(region_accuracy([]))


def test_region_majority_counts_substrate_votes():
    mask = np.zeros((5, 5), np.uint8)
    mask[0:2, 0:5] = 1  # 10 px monolayer region
    pred = np.zeros_like(mask)
    pred[0, 0:4] = 1  # 4 monolayer votes, 6 substrate votes -> predicted "other"
    (row,) = flake_regions(pred, mask, [1], NAMES)
    assert row["predicted_class"] == "other" and not row["correct"]


def test_curves_perfect_and_ignored_pixels():
    mask = np.array([[0, 1, 1, IGNORE_INDEX]], np.uint8)
    probs = np.zeros((3, 1, 4), np.float32)
    probs[1] = [[0.1, 0.8, 0.9, 0.0]]  # the ignored pixel would be a false negative if counted
    probs[0] = 1 - probs[1]
    curve = one_vs_rest_curves([probs], [mask], 1)
    assert curve["auc"] == pytest.approx(1.0)
    assert curve["average_precision"] == pytest.approx(1.0)
    assert curve["recall_at_precision"] == pytest.approx(1.0)
    assert curve["positives"] == 2 and curve["pixels"] == 3


def test_curves_recall_at_precision_reads_the_operating_point():
    # scores sorted: 4 positives on top, then a negative, then 1 positive, then negatives
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.1, 0.05], np.float32)
    truth = np.array([1, 1, 1, 1, 0, 1, 0, 0], np.uint8)
    probs = np.stack([1 - scores, scores, np.zeros_like(scores)])[:, None, :]
    curve = one_vs_rest_curves([probs], [truth[None, :]], 1)
    # precision >= 0.9 holds down to threshold 0.96 (4/4); at 0.94 it is 5/6 < 0.9: recall 4/5
    assert curve["recall_at_precision"] == pytest.approx(0.8)
    assert curve["threshold_at_precision"] == pytest.approx(0.96)
    assert 0.5 < curve["auc"] < 1.0


def test_pixel_scores_match_a_hand_count():
    mask, pred = _scene()
    scores = pixel_scores([pred], [mask], NAMES)
    confmat = np.array(scores["test/confmat"])
    assert confmat.sum() == mask.size
    # bilayer: 16 true pixels, 1 predicted right
    assert scores["test/acc_bilayer"] == pytest.approx(1 / 16)
    assert scores["test/precision_bilayer"] == pytest.approx(1 / 7)


def _torchmetrics_curves(probs, masks, cls, num_thresholds=201, min_precision=PAPER_PRECISION):
    """The reference: torchmetrics' functional classification metrics on the same pixels."""
    from torchmetrics.functional.classification import (
        binary_auroc,
        binary_average_precision,
        binary_precision_recall_curve,
        binary_recall_at_fixed_precision,
        binary_roc,
    )

    valid = [m != IGNORE_INDEX for m in masks]
    score = torch.cat([torch.from_numpy(p[cls][v]) for p, v in zip(probs, valid, strict=True)])
    truth = torch.cat(
        [torch.from_numpy((m[v] == cls).astype(np.int64)) for m, v in zip(masks, valid, strict=True)]
    )
    fpr, tpr, roc_thr = binary_roc(score, truth, thresholds=num_thresholds)
    precision, recall, pr_thr = binary_precision_recall_curve(score, truth, thresholds=num_thresholds)
    recall_at, threshold_at = binary_recall_at_fixed_precision(score, truth, min_precision, thresholds=None)
    return {
        "auc": float(binary_auroc(score, truth, thresholds=None)),
        "average_precision": float(binary_average_precision(score, truth, thresholds=None)),
        "recall_at_precision": float(recall_at),
        "threshold_at_precision": float(threshold_at),
        "positives": int(truth.sum()),
        "pixels": int(truth.numel()),
        "roc": {"threshold": roc_thr.tolist(), "fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "pr": {
            "threshold": pr_thr.tolist(),
            "precision": precision[:-1].tolist(),
            "recall": recall[:-1].tolist(),
        },
    }


def _identical(a, b) -> bool:
    """Equal to the last bit, nan equal to nan."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def _scored_images(seed: int, dtype: type, shapes=((40, 50), (260, 220))):
    """Probabilities that lean towards the true class, many tied (rounded to 3 decimals), and masks
    with ignored pixels; the second image takes the pixel count past torchmetrics' 50 000, where its
    binned curves switch from a vectorized count to a loop."""
    rng = np.random.default_rng(seed)
    probs, masks = [], []
    for shape in shapes:
        mask = rng.integers(0, 3, shape).astype(np.uint8)
        logits = rng.normal(size=(3, *shape)) + 2.5 * np.eye(3)[mask].transpose(2, 0, 1)
        prob = np.exp(logits) / np.exp(logits).sum(axis=0)
        prob[:, : shape[0] // 2] = np.round(prob[:, : shape[0] // 2], 3)
        mask[rng.random(shape) < 0.05] = IGNORE_INDEX
        probs.append(prob.astype(dtype))
        masks.append(mask)
    return probs, masks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("min_precision", [0.5, PAPER_PRECISION, 0.999])
def test_curves_equal_torchmetrics_bit_for_bit(dtype, min_precision):
    probs, masks = _scored_images(int(min_precision * 1000), dtype)
    for cls in range(3):
        got = one_vs_rest_curves(probs, masks, cls, min_precision=min_precision)
        expected = _torchmetrics_curves(probs, masks, cls, min_precision=min_precision)
        assert _identical(got, expected), cls
    # an operating point no threshold reaches: recall 0, no threshold (as torchmetrics says)
    hopeless = one_vs_rest_curves([np.full((3, 2, 2), 0.5, dtype)], [np.array([[0, 1], [0, 0]], np.uint8)], 1)
    assert hopeless["recall_at_precision"] == 0.0 and math.isnan(hopeless["threshold_at_precision"])


def test_curves_of_a_class_without_pixels_are_empty():
    probs, masks = _scored_images(0, np.float32, shapes=((20, 30),))
    masks[0][masks[0] == 2] = 1
    curve = one_vs_rest_curves(probs, masks, 2)
    assert math.isnan(curve["auc"]) and curve["roc"] is None and curve["positives"] == 0


def test_pixel_scores_equal_torchmetrics_bit_for_bit():
    """From the summed confusion matrix, the values of the torchmetrics collection updated image by
    image: a class never predicted (precision 0) and a class absent from truth and predictions (left
    out of the means) included."""
    names = ["other", "monolayer", "bilayer", "trilayer"]
    rng = np.random.default_rng(7)
    preds, masks = [], []
    for shape in ((50, 60), (33, 47)):
        mask = rng.integers(0, 3, shape).astype(np.uint8)
        right = (rng.random(shape) < 0.7) & (mask != 2)  # bilayer is never predicted
        pred = np.where(right, mask, rng.integers(0, 2, shape)).astype(np.uint8)
        mask[rng.random(shape) < 0.1] = IGNORE_INDEX
        preds.append(pred)
        masks.append(mask)
    metrics = segmentation_metrics(len(names))
    for pred, mask in zip(preds, masks, strict=True):
        metrics.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(mask.astype(np.int64)))
    values = metrics.compute()
    expected = {**flatten_metrics(values, names, "test"), "test/confmat": values["confmat"].tolist()}
    got = pixel_scores(preds, masks, names)
    assert got["test/precision_bilayer"] == 0.0 and got["test/confmat"][3] == [0, 0, 0, 0]
    assert _identical(got, expected)
