"""Pieces of the modern training recipe: Dice loss, calibration, test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flakeseg.calibration import expected_calibration_error, fit_temperature, reliability_bins
from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError
from flakeseg.losses import build_loss
from flakeseg.tta import D4, apply, invert, predict_with_tta


def test_ce_dice_loss_matches_a_hand_computed_case():
    # one 2 x 2 image, 3 classes; logits = log(p), so softmax gives back exactly p
    p = np.array(
        [
            [[0.7, 0.1], [0.2, 0.6]],  # class 0
            [[0.2, 0.8], [0.1, 0.3]],  # class 1
            [[0.1, 0.1], [0.7, 0.1]],  # class 2
        ]
    )
    target = np.array([[0, 1], [2, 0]])
    ce = -np.mean([np.log(p[target[i, j], i, j]) for i in range(2) for j in range(2)])
    dice = []
    for c in range(3):
        y = (target == c).astype(float)
        dice.append(2 * (p[c] * y).sum() / (p[c].sum() + y.sum()))
    expected = ce + 0.5 * np.mean([1 - d for d in dice])
    loss = build_loss({"name": "ce_dice", "dice_weight": 0.5}, None)
    logits = torch.tensor(np.log(p), dtype=torch.float32)[None]
    value = loss(logits, torch.tensor(target)[None])
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # an ignored pixel changes neither term
    wide_logits = torch.cat(
        [logits, torch.tensor([[[[5.0], [-3.0]], [[0.0], [9.0]], [[1.0], [1.0]]]])], dim=3
    )
    wide_target = torch.cat([torch.tensor(target)[None], torch.full((1, 2, 1), IGNORE_INDEX)], dim=2)
    assert float(loss(wide_logits, wide_target)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="loss.dice_weight"):
        build_loss({"name": "ce_dice", "dice_weight": -1}, None)


def _overconfident(n: int = 60_000, scale: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z), and logits ``scale * z``: right ranking, too confident."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=gen) * 1.5
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    return scale * z, labels


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model():
    logits, labels = _overconfident()
    before = expected_calibration_error(torch.softmax(logits, 1), labels)
    temperature = fit_temperature(logits, labels)
    after = expected_calibration_error(torch.softmax(logits / temperature, 1), labels)
    assert temperature == pytest.approx(3.0, rel=0.1)  # it finds the over-confidence factor
    assert before > 0.05 and after < 0.02 and after < before / 3
    assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))  # no prediction changes


def test_ece_of_images_skips_ignored_pixels_and_reliability_bins_count_by_hand():
    probs = torch.zeros(1, 2, 1, 4)
    probs[0, 0] = torch.tensor([0.9, 0.9, 0.6, 0.6])
    probs[0, 1] = 1 - probs[0, 0]
    target = torch.tensor([[[0, 1, 0, IGNORE_INDEX]]])
    # bins: 0.9 -> accuracy 1/2 (|0.5 - 0.9| x 2/3), 0.6 -> accuracy 1 (|1 - 0.6| x 1/3)
    assert expected_calibration_error(probs, target, n_bins=10) == pytest.approx(0.4 * 2 / 3 + 0.4 / 3)
    rows = reliability_bins(np.array([0.05, 0.95, 0.91, 0.5]), np.array([0, 1, 0, 1]), n_bins=10)
    assert [r["count"] for r in rows] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert rows[9]["accuracy"] == pytest.approx(0.5) and rows[9]["confidence"] == pytest.approx(0.93)


def test_every_tta_transform_is_undone_exactly_and_identity_survives_the_average():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)  # not square
    seen = set()
    for transform in D4:
        moved = apply(x, transform)
        if transform[0] % 2:
            assert moved.shape[-2:] == (6, 4)
        assert torch.equal(invert(moved, transform), x)
        seen.add(moved.flatten().tolist().__repr__())
    assert len(D4) == 8 and len(seen) == 8  # eight different orientations
    assert torch.equal(predict_with_tta(lambda t: t, x), x)  # a wrong inverse would blur the average
    marked = torch.zeros(1, 1, 4, 4)
    marked[..., 0, 1] = 1.0  # one pixel off the diagonals: every symmetry moves it
    views = [invert(apply(marked, t), t) for t in D4]
    assert all(torch.equal(v, marked) for v in views)
