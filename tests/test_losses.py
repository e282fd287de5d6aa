import numpy as np
import pytest
import torch

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError
from flakeseg.training.losses import build_loss, class_pixel_counts, median_frequency_weights


def test_median_frequency_weights_hand_case():
    # 100 labelled pixels: 90 / 6 / 4 -> freq 0.90, 0.06, 0.04, median 0.06.
    weights = median_frequency_weights([90, 6, 4])
    np.testing.assert_allclose(weights, [0.06 / 0.90, 1.0, 0.06 / 0.04])


def test_median_frequency_weights_even_number_of_classes():
    # freq 0.4, 0.3, 0.2, 0.1 -> median (0.3 + 0.2) / 2 = 0.25.
    np.testing.assert_allclose(median_frequency_weights([40, 30, 20, 10]), [0.625, 0.25 / 0.3, 1.25, 2.5])


def test_absent_class_gets_zero_weight_and_leaves_the_median():
    # present freq 0.75, 0.25 -> median 0.5
    np.testing.assert_allclose(median_frequency_weights([3, 0, 1]), [0.5 / 0.75, 0.0, 2.0])


def test_pixel_counts_skip_ignored_pixels():
    mask = np.array([[0, 0, 1], [2, IGNORE_INDEX, IGNORE_INDEX]], dtype=np.uint8)
    other = np.array([[1, 1]], dtype=np.uint8)
    assert class_pixel_counts([mask, other], 3).tolist() == [2, 3, 1]


def test_weighted_loss_uses_the_weights():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 0] = 5.0  # predicts class 0 everywhere
    target = torch.tensor([[[1, IGNORE_INDEX]]])
    plain = build_loss({"name": "ce"}, None)(logits, target)
    weighted = build_loss({"name": "weighted_ce"}, [1.0, 2.0, 1.0])(logits, target)
    # One labelled pixel: the weighted mean divides by the same weight, so both equal -log p(class 1);
    # with a second class-0 pixel the weights shift the mean.
    assert torch.isclose(plain, weighted)
    target2 = torch.tensor([[[1, 0]]])
    w = build_loss({"name": "weighted_ce"}, [1.0, 3.0, 1.0])(logits, target2)
    p = build_loss({"name": "ce"}, None)(logits, target2)
    assert w > p


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="loss.name"):
        build_loss({"name": "focal"}, None)
