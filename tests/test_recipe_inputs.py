"""The recipe's input steps: copy-paste, per-channel gain, fitted input features (GMM channels)."""

from __future__ import annotations

import numpy as np
import pytest

from flakeseg.data.copy_paste import FlakeBank
from flakeseg.data.transforms import ChannelGain, build_train_transform
from flakeseg.errors import ConfigError


def flake_images(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two 96 x 96 images, each one substrate colour with a 2-class flake (bilayer core in monolayer)."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for substrate in ((176, 152, 208), (220, 190, 226)):
        base = np.array(substrate, np.float64)
        image = np.tile(base, (96, 96, 1)) + rng.normal(0, 1.0, (96, 96, 3))
        mask = np.zeros((96, 96), np.uint8)
        mask[20:40, 30:60] = 1
        mask[25:32, 38:50] = 2
        image[mask == 1] = base * (1 - 0.2)
        image[mask == 2] = base * (1 - 0.4)
        images.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
        masks.append(mask)
    return images, masks


def test_copy_paste_keeps_every_pasted_pixels_label_and_its_contrast():
    images, masks = flake_images()
    bank = FlakeBank(images, masks, flake_classes=[1, 2], background_classes=[0])
    assert len(bank) == 2
    rng = np.random.default_rng(3)
    pastes = 0
    for _ in range(10):
        image, mask, placed = bank.paste(images[1], masks[1], target=1, rng=rng, count=2)
        pasted = np.zeros(mask.shape, bool)
        for flake, top, left in placed:
            assert flake.source == 0  # never the image's own flake
            h, w = flake.inside.shape
            window = (slice(top, top + h), slice(left, left + w))
            assert np.array_equal(mask[window][flake.inside], flake.labels[flake.inside])
            # the pasted bilayer keeps its contrast (0.6 x substrate) on the destination's substrate
            bilayer = image[window][flake.labels == 2].mean(axis=0) / np.array([220, 190, 226])
            assert bilayer == pytest.approx([0.6, 0.6, 0.6], abs=0.02)
            pasted[window] |= flake.inside
        pastes += len(placed)
        assert np.array_equal(mask[~pasted], masks[1][~pasted])  # nothing else changed
        assert np.array_equal(image[~pasted], images[1][~pasted])
    assert pastes > 0


def test_copy_paste_never_pastes_an_images_own_flake():
    images, masks = flake_images()
    bank = FlakeBank(images[:1], masks[:1], flake_classes=[1, 2])
    image, mask, placed = bank.paste(images[0], masks[0], target=0, rng=np.random.default_rng(0))
    assert not placed and np.array_equal(mask, masks[0]) and np.array_equal(image, images[0])


def test_channel_gain_scales_rgb_within_its_limit_and_keeps_extra_channels():
    image = np.full((8, 8, 5), 100, np.uint8)
    gain = ChannelGain(0.1, p=1.0)
    gain.set_random_seed(0)
    out = gain(image=image)["image"]
    factors = out[0, 0, :3] / 100.0
    assert np.all((factors >= 0.9 - 0.01) & (factors <= 1.1 + 0.01)) and len(set(factors)) > 1
    assert np.array_equal(out[..., 3:], image[..., 3:])


def test_colour_augmentation_on_extra_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="augment.hue_shift"):
        build_train_transform({"hue_shift": 10}, 32, channels=6)
    with pytest.raises(ConfigError, match="augment.gain_jitter"):
        build_train_transform({"gain_jitter": 1.5}, 32)
    assert build_train_transform({"gain_jitter": 0.1, "hflip": 0.5}, 32, channels=6) is not None


def test_posterior_dropout_blanks_the_posterior_channels_where_input_features_put_them():
    from flakeseg.data.transforms import posterior_blocks
    from flakeseg.inference.inputs import InputFeatures

    data_cfg = {"substrate_channels": True, "gmm_channels": True, "optics_channels": True}
    blocks = posterior_blocks(data_cfg, 3)
    assert blocks == [(6, 9), (9, 12)]

    class _Posteriors:  # what the stacking order needs of a fitted model: its class count
        num_classes = 3

    features = InputFeatures(substrate_channels=True, gmm=_Posteriors(), optics=_Posteriors())
    assert blocks[-1][1] == features.channels  # the last block ends where the input does
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 40, 12), dtype=np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    always = build_train_transform({"posterior_dropout": 1.0}, 40, channels=12, posterior_blocks=blocks)
    out = always(image=image, mask=mask)["image"]
    assert np.array_equal(out[..., :6], image[..., :6])  # RGB and the substrate colour untouched
    assert np.all(out[..., 6:] == 85)  # 255 / 3: every class equally likely
    never = build_train_transform({"posterior_dropout": 0.0}, 40, channels=12, posterior_blocks=blocks)
    assert np.array_equal(never(image=image, mask=mask)["image"], image)
    with pytest.raises(ConfigError, match="augment.posterior_dropout: the inputs hold no fitted posteriors"):
        build_train_transform({"posterior_dropout": 0.5}, 40)
    with pytest.raises(ConfigError, match=r"augment.posterior_dropout: must be in \[0, 1\]"):
        build_train_transform({"posterior_dropout": 1.5}, 40, channels=12, posterior_blocks=blocks)


def test_input_features_round_trip_through_a_plain_dict():
    from flakeseg.inference.inputs import InputFeatures, fit_input_features

    images, masks = flake_images()
    data_cfg = {
        "substrate_normalize": True,
        "substrate_choice": "fitted",
        "gmm_channels": True,
        "classes": {"names": ["other", "monolayer", "bilayer"]},
    }
    features = fit_input_features(data_cfg, images, masks, ["other", "monolayer", "bilayer"])
    assert features.channels == 6
    assert len(features.prior.contrasts) == 4
    prepared = features.apply(images[0])
    assert prepared.shape == (96, 96, 6) and prepared.dtype == np.uint8
    assert np.abs(np.median(prepared[60:, :, :3].reshape(-1, 3), axis=0) - 128).max() <= 1
    # the posterior channels say which class each pixel is
    assert prepared[30, 35, 4] > 200 and prepared[28, 40, 5] > 200 and prepared[80, 80, 3] > 200
    again = InputFeatures.from_dict(features.to_dict())
    assert np.array_equal(again.apply(images[1]), features.apply(images[1]))
    assert features.normalization([0.5] * 3, [0.25] * 3)["mean"] == [0.5] * 6


def test_unknown_substrate_choice_names_the_key():
    from flakeseg.data.preprocess import uses_fitted_inputs

    with pytest.raises(ConfigError, match="data.substrate_choice"):
        uses_fitted_inputs({"substrate_choice": "brightest"})


def test_optics_channels_hold_the_layer_posteriors_of_a_setup_calibrated_on_the_labels():
    """data.optics_channels: images rendered by the optics, their labels calibrate a setup, and the
    three extra channels say substrate (or thicker), one layer, two layers where the labels do; the
    features survive the checkpoint's plain dict. A data set with no crystal named is one line."""
    from flakeseg.inference.inputs import InputFeatures, fit_input_features
    from flakeseg.optics.calibration import shipped_setup
    from tests.test_optics_layers import rendered

    setup = shipped_setup()
    # substrates of one colour group: each image's own oxide fit then agrees with the setup's
    pairs = [rendered(setup, "MoS2", substrate=s, seed=i) for i, s in enumerate(setup.substrates[1:4])]
    images = [image for image, _ in pairs]
    masks = [np.where(layers == 12, 0, layers).astype(np.uint8) for _, layers in pairs]
    names = ["other", "monolayer", "bilayer"]
    data_cfg = {"optics_channels": True, "material": "MoS2", "classes": {"names": names}}
    features = fit_input_features(data_cfg, images, masks, names)
    assert features.channels == 6
    prepared = features.apply(images[0])
    assert prepared.shape == (*images[0].shape[:2], 6) and prepared.dtype == np.uint8
    layers = pairs[0][1]
    for count, channel in ((1, 4), (2, 5), (0, 3), (12, 3)):
        inside = layers == count
        assert np.median(prepared[..., channel][inside]) > 200, (count, channel)
    again = InputFeatures.from_dict(features.to_dict())
    assert np.array_equal(again.apply(images[1]), features.apply(images[1]))
    with pytest.raises(ConfigError, match="data.optics_channels: needs data.material"):
        fit_input_features({**data_cfg, "material": None}, images, masks, names)


@pytest.mark.slow  # trains a test-stage model: end to end, outside `make test-fast`
def test_the_test_stage_of_a_network_fed_more_than_rgb_writes_its_pictures_and_predicts(tiny_cfg, tmp_path):
    """The test stage's example panels show the image, not the network's input (6 channels here)."""
    from flakeseg.inference.predictor import load_predictor
    from flakeseg.stages.test_split import run_test_stage

    run_test_stage(
        tiny_cfg(
            "stage=test",
            "augment=none",  # colour steps need RGB-only inputs
            "augment.hue_shift=0",
            "data.substrate_normalize=true",
            "data.substrate_channels=true",
        )
    )
    assert (tmp_path / "examples.png").stat().st_size > 0
    predictor = load_predictor(tmp_path / "checkpoints" / "final.ckpt")
    image = np.full((64, 80, 3), 160, np.uint8)
    assert predictor.probabilities(image).shape == (3, 64, 80)
