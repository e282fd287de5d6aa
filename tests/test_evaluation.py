"""Test-set evaluation: region accuracy and one-vs-rest curves against hand-made cases."""

import numpy as np
import pytest

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.evaluation.curves import one_vs_rest_curves
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
