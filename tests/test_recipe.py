"""Pieces of the modern training recipe: Dice loss, calibration, test-time augmentation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError
from flakeseg.evaluation.calibration import expected_calibration_error, fit_temperature, reliability_bins
from flakeseg.inference.tta import D4, apply, invert
from flakeseg.training.losses import build_loss


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
    mean = sum(invert(apply(x, t), t) for t in D4) / len(D4)
    assert torch.equal(mean, x)  # a wrong inverse would blur the average
    marked = torch.zeros(1, 1, 4, 4)
    marked[..., 0, 1] = 1.0  # one pixel off the diagonals: every symmetry moves it
    views = [invert(apply(marked, t), t) for t in D4]
    assert all(torch.equal(v, marked) for v in views)


# --- normalised U-Net, learning-rate schedule, foreground crops ---------------------------------------


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_norm_unet_builds_from_config_with_two_normalised_convs_per_level(norm):
    from flakeseg.models import build_model
    from flakeseg.models.unet_norm import NormUNet

    net = build_model({"name": "unet_norm", "base_channels": 8, "depth": 3, "norm": norm}, num_classes=3)
    assert isinstance(net, NormUNet) and net.input_multiple == 8
    assert net(torch.randn(2, 3, 40, 56)).shape == (2, 3, 40, 56)
    convs = [m for m in net.down[0] if isinstance(m, torch.nn.Conv2d)]
    kinds = {"batch": torch.nn.BatchNorm2d, "group": torch.nn.GroupNorm, "instance": torch.nn.InstanceNorm2d}
    assert len(convs) == 2 and sum(isinstance(m, kinds[norm]) for m in net.down[0]) == 2
    with pytest.raises(ConfigError, match="model.norm"):
        build_model({"name": "unet_norm", "norm": "layer"}, num_classes=3)


def test_poly_and_cosine_schedules_decay_to_zero_and_none_stays():
    from flakeseg.training.schedules import lr_factor

    poly = [lr_factor("poly", s, 100) for s in range(101)]
    cosine = [lr_factor("cosine", s, 100) for s in range(101)]
    for curve in (poly, cosine):
        assert curve[0] == 1.0 and curve[-1] == pytest.approx(0.0, abs=1e-12)
        assert all(a >= b for a, b in itertools.pairwise(curve))  # never rises
    assert poly[50] == pytest.approx(0.5**0.9) and cosine[50] == pytest.approx(0.5)
    assert lr_factor("none", 70, 100) == 1.0
    with pytest.raises(ConfigError, match="optim.schedule"):
        lr_factor("step", 0, 10)


@pytest.mark.slow
def test_training_with_poly_schedule_ends_near_zero_learning_rate(tiny_cfg):
    from omegaconf import OmegaConf

    from flakeseg.data import FlakeDataModule, load_dataset
    from flakeseg.training.trainer import build_module, build_trainer

    cfg = tiny_cfg(
        "model=unet_norm",
        "loss=ce_dice",
        "optim.schedule=poly",
        "trainer.max_epochs=2",
        "data.substrate_normalize=true",
    )
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    images = load_dataset(data_cfg, ids=list(cfg.data.split.train)[:4])
    module = build_module(cfg, images.scheme, None)
    datamodule = FlakeDataModule(images, None, data_cfg, OmegaConf.to_container(cfg.augment), seed=0)
    trainer, _ = build_trainer(cfg, Path(cfg.paths.output_dir), "t", "v", validate=False)
    trainer.fit(module, datamodule=datamodule)
    steps = trainer.global_step
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert steps == 4 and lr == pytest.approx(float(cfg.optim.lr) * 0.0, abs=1e-12)  # poly reaches 0
    # the loaded images were white-balanced, and the checkpoint tells predict to do the same
    assert module.hparams.inference["substrate_normalize"] is True
    from flakeseg.optics.substrate import estimate_background

    raw = load_dataset({**data_cfg, "substrate_normalize": False}, ids=images.ids)
    assert all(abs(estimate_background(img) - 128).max() <= 2 for img in images.images)
    assert any(abs(estimate_background(img) - 128).max() > 10 for img in raw.images)


def test_foreground_crops_hold_a_flake_pixel_and_uniform_ones_mostly_do_not():
    from flakeseg.data.transforms import build_train_transform

    image = np.zeros((400, 400, 3), np.uint8)
    mask = np.zeros((400, 400), np.uint8)
    mask[300:310, 50:60] = 1  # one small flake: 0.06 % of the image
    mask[0:5, 395:400] = IGNORE_INDEX
    augment = {"hflip": 0.5, "vflip": 0.5, "rotate_limit": 0, "hue_shift": 0}

    def share_with_flake(foreground_p: float) -> float:
        transform = build_train_transform({**augment, "foreground_p": foreground_p}, 64)
        hits = 0
        for seed in range(200):
            transform.set_random_seed(seed)
            hits += bool((transform(image=image, mask=mask)["mask"] == 1).any())
        return hits / 200

    assert share_with_flake(1.0) == 1.0
    assert share_with_flake(0.0) < 0.15  # a 64 px crop meets the flake about 5 % of the time at random
    assert 0.35 < share_with_flake(0.5) < 0.75
    with pytest.raises(ConfigError, match="augment.foreground_p"):
        build_train_transform({**augment, "foreground_p": 1.5}, 64)


def _scene(light: float) -> np.ndarray:
    """A substrate of colour (200, 150, 100) x ``light`` with a flake of contrast (-0.2, -0.1, +0.1)."""
    substrate = np.array([200.0, 150.0, 100.0]) * light
    image = np.tile(substrate, (120, 160, 1))
    image[30:70, 40:100] = substrate * np.array([0.8, 0.9, 1.1])
    noise = np.random.default_rng(0).normal(0, 1.0, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8)


def test_substrate_normalisation_makes_lighting_vanish_and_keeps_contrast():
    from flakeseg.optics.substrate import estimate_background, normalize_substrate

    bright, dim = _scene(1.0), _scene(0.6)
    assert np.abs(estimate_background(bright) - [200, 150, 100]).max() <= 1.5
    assert np.abs(estimate_background(dim) - [120, 90, 60]).max() <= 1.5
    a, b = normalize_substrate(bright).astype(int), normalize_substrate(dim).astype(int)
    assert np.abs(a[5, 5] - 128).max() <= 3 and np.abs(b[5, 5] - 128).max() <= 3
    flake = a[30:70, 40:100].reshape(-1, 3).mean(axis=0) / 128 - 1
    assert np.allclose(flake, [-0.2, -0.1, 0.1], atol=0.015)  # the contrast survives
    assert np.abs(np.median(a - b, axis=(0, 1))).max() <= 2  # the lighting does not
