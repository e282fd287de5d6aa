import numpy as np
import pytest
import torch

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.evaluation.metrics import flatten_metrics, segmentation_metrics

# rows: true class, columns: predicted class
CONFMAT = [[5, 1, 0], [2, 3, 1], [0, 0, 4]]


def _pixels_from_confmat(confmat):
    target, preds = [], []
    for t, row in enumerate(confmat):
        for p, n in enumerate(row):
            target += [t] * n
            preds += [p] * n
    # ignored pixels with arbitrary predictions must not count
    target += [IGNORE_INDEX] * 7
    preds += [0, 1, 2, 2, 1, 0, 2]
    return torch.tensor(preds).view(1, 1, -1), torch.tensor(target).view(1, 1, -1)


def test_metrics_match_a_hand_computed_confusion_matrix():
    preds, target = _pixels_from_confmat(CONFMAT)
    metrics = segmentation_metrics(3)
    # feed in two batches: accumulation must pool pixels
    metrics.update(preds[..., :9], target[..., :9])
    metrics.update(preds[..., 9:], target[..., 9:])
    values = metrics.compute()
    assert values["confmat"].tolist() == CONFMAT
    recall = [5 / 6, 3 / 6, 4 / 4]
    precision = [5 / 7, 3 / 4, 4 / 5]
    iou = [5 / (6 + 7 - 5), 3 / (6 + 4 - 3), 4 / (4 + 5 - 4)]
    flat = flatten_metrics(values, ["other", "monolayer", "bilayer"], "val")
    assert flat["val/mean_class_acc"] == pytest.approx(sum(recall) / 3)
    assert flat["val/macro_precision"] == pytest.approx(sum(precision) / 3)
    assert flat["val/mean_iou"] == pytest.approx(sum(iou) / 3)
    assert flat["val/acc_monolayer"] == pytest.approx(0.5)
    assert flat["val/precision_other"] == pytest.approx(5 / 7)
    assert flat["val/iou_bilayer"] == pytest.approx(0.8)


def test_class_never_predicted_has_zero_precision():
    preds = torch.tensor([[0, 0, 0, 0]])
    target = torch.tensor([[0, 0, 1, 1]])
    metrics = segmentation_metrics(2)
    metrics.update(preds, target)
    flat = flatten_metrics(metrics.compute(), ["a", "b"], "val")
    assert flat["val/precision_b"] == 0.0
    assert flat["val/macro_precision"] == pytest.approx(0.25)  # (2/4 + 0) / 2
    assert flat["val/mean_class_acc"] == pytest.approx(0.5)


def test_class_absent_everywhere_is_left_out_of_macro_averages():
    preds = torch.tensor([[0, 1, 1]])
    target = torch.tensor([[0, 1, 0]])
    metrics = segmentation_metrics(3)
    metrics.update(preds, target)
    flat = flatten_metrics(metrics.compute(), ["a", "b", "c"], "val")
    assert flat["val/mean_class_acc"] == pytest.approx((1 / 2 + 1) / 2)
    assert flat["val/macro_precision"] == pytest.approx((1 + 1 / 2) / 2)


def test_per_image_accuracy_averages_only_the_classes_in_the_truth():
    from flakeseg.evaluation.metrics import present_class_accuracy

    # no bilayer in the truth, 31 stray bilayer pixels predicted: the image is not punished as if a
    # whole class were missed (MoS2 00030 in the upstream run: 0.651 -> 0.488 when counted as 0)
    confmat = np.array([[900, 0, 31], [0, 60, 9], [0, 0, 0]])
    assert present_class_accuracy(confmat) == pytest.approx((900 / 931 + 60 / 69) / 2)
    assert np.isnan(present_class_accuracy(np.zeros((3, 3))))
