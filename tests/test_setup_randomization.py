"""Training across simulated microscopes (``augment/setup=microscopes``): shifted training images keep
their labels, are reproducible per seed, stay physical, and never reach what the robustness benchmark
measures."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.classes import ClassScheme
from flakeseg.data.datasets import CropDataset
from flakeseg.data.setup_randomization import SetupRandomization
from flakeseg.data.transforms import build_train_transform
from flakeseg.errors import ConfigError
from flakeseg.optics.substrate import normalize_substrate, substrate_colour
from flakeseg.studies.robustness import SHIFTS
from tests.conftest import REPO_ROOT, compose_train
from tests.test_data_integrity import CLASSES

PRESETS = sorted(p.stem for p in (REPO_ROOT / "conf" / "augment" / "setup").glob("*.yaml"))
SUBSTRATE = (176.0, 153.0, 207.0)  # an MoS2 image's substrate on the paper's microscope
MONOLAYER = (-0.21, -0.05, 0.05)  # its measured monolayer contrast


def _image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 60 x 80 substrate with a monolayer square and a bilayer strip, and its layer map."""
    rng = np.random.default_rng(seed)
    layers = np.zeros((60, 80), dtype=np.int64)
    layers[10:30, 10:30] = 1
    layers[40:50, 20:70] = 2
    colour = np.array(SUBSTRATE) * np.where(layers[..., None] == 1, 1 + np.array(MONOLAYER), 1.0)
    colour = np.where(layers[..., None] == 2, colour * 0.7, colour)
    image = np.clip(np.round(colour + rng.normal(0, 1.0, colour.shape)), 0, 255).astype(np.uint8)
    return image, layers


def _preset_cfg(name: str = "microscopes") -> dict:
    """The preset's ``augment.setup`` node, composed as train.py does: a preset may build on another
    through its defaults list."""
    return OmegaConf.to_container(compose_train([f"augment/setup={name}"]).augment.setup, resolve=True)


def _preset(name: str = "microscopes", **changes) -> SetupRandomization:
    return SetupRandomization.from_config({**_preset_cfg(name), **changes}, "mos2", "MoS2")


def _outside(value: float, low_high) -> bool:
    return not low_high[0] <= value <= low_high[1]


def test_the_presets_are_what_their_names_say():
    assert "photometric" in PRESETS and "microscopes" in PRESETS
    microscopes, photometric = _preset("microscopes"), _preset("photometric")
    assert microscopes.oxide_p > 0 and microscopes.vignetting[1] > 0
    assert photometric.oxide_p == 0 and photometric.vignetting == (0.0, 0.0)
    assert photometric.lamp_k == microscopes.lamp_k and photometric.exposure == microscopes.exposure


@pytest.mark.parametrize("name", PRESETS)
def test_no_benchmark_strength_is_sampled_in_training(name):
    preset = _preset(name)
    checks = {
        "exposure": preset.exposure,
        "white_balance": preset.lamp_k,
        "gamma": preset.gamma,
        "vignetting": preset.vignetting,
        "vignetting_flatfield": preset.vignetting,
        "vignetting_folder": preset.vignetting,
        "defocus": preset.blur,
        "noise": preset.noise,
        "jpeg": preset.jpeg,
    }
    for shift, low_high in checks.items():
        for strength in SHIFTS[shift]:
            assert _outside(float(strength), low_high), (shift, strength, low_high)
    for strength in SHIFTS["oxide"]:
        assert all(_outside(float(strength), r) for r in preset.oxide_nm), strength
    # "no change" is inside every range: shifted images are spread around the microscope's own
    for low_high, identity in [(preset.exposure, 1), (preset.gamma, 1), (preset.vignetting, 0)]:
        assert low_high[0] <= identity <= low_high[1]


def test_a_seed_gives_the_same_shift_and_another_seed_another():
    image, layers = _image()
    preset = _preset(p=1.0, oxide_p=1.0)
    substrate = substrate_colour(image, layers == 0)
    first, colour = preset(image, layers, substrate, np.random.default_rng(5))
    again, _ = preset(image, layers, substrate, np.random.default_rng(5))
    other, _ = preset(image, layers, substrate, np.random.default_rng(6))
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    # the substrate colour handed on is the shifted image's own (blur and vignetting aside)
    assert np.abs(substrate_colour(first, layers == 0) - colour).max() <= 4


def test_oxide_rerendered_at_its_own_thickness_changes_less_than_a_grey_level():
    image, layers = _image()
    preset = _preset()
    own = preset.setup.oxide_nm
    still = SetupRandomization(preset.setup, "MoS2", p=1.0, oxide_p=1.0, oxide_nm=((own, own),))
    out, _ = still(image, layers, substrate_colour(image, layers == 0), np.random.default_rng(0))
    assert np.abs(out.astype(int) - image).max() <= 1
    moved = SetupRandomization(preset.setup, "MoS2", p=1.0, oxide_p=1.0, oxide_nm=((240.0, 240.0),))
    shifted, _ = moved(image, layers, substrate_colour(image, layers == 0), np.random.default_rng(0))
    assert np.abs(shifted.astype(int) - image).max() > 10  # 36 nm less oxide is another colour


def test_exposure_with_clipping_clips_and_contrast_survives_white_balance():
    image, layers = _image()
    preset = _preset()
    bright = SetupRandomization(preset.setup, "MoS2", p=1.0, exposure=(2.0, 2.0))
    out, colour = bright(image, layers, substrate_colour(image, layers == 0), np.random.default_rng(0))
    assert out[..., 2].max() == 255 and colour[2] == 255  # blue of a substrate near 207, doubled
    warm = SetupRandomization(preset.setup, "MoS2", p=1.0, lamp_k=(4000.0, 4000.0))
    out, colour = warm(image, layers, substrate_colour(image, layers == 0), np.random.default_rng(0))
    # a lamp change is a per-channel gain on the linear signal: after normalising against the shifted
    # substrate, a monolayer's red contrast is within a grey level or two of the unshifted one
    before = normalize_substrate(image)[layers == 1].mean(axis=0)
    after = normalize_substrate(out, background=colour)[layers == 1].mean(axis=0)
    assert not np.allclose(out, image, atol=3)
    assert abs(after[0] - before[0]) < 3


def test_jpeg_compresses_the_shifted_image_and_keeps_its_substrate():
    image, layers = _image()
    preset = _preset()
    substrate = substrate_colour(image, layers == 0)
    plain = SetupRandomization(preset.setup, "MoS2", p=1.0)
    out, _ = plain(image, layers, substrate, np.random.default_rng(0))
    assert np.array_equal(out, image)  # quality 100: no compression
    lossy = SetupRandomization(preset.setup, "MoS2", p=1.0, jpeg=(40.0, 40.0))
    out, colour = lossy(image, layers, substrate, np.random.default_rng(0))
    assert np.abs(out.astype(int) - image).max() > 3  # blocks and subsampled chroma
    assert np.abs(substrate_colour(out, layers == 0) - colour).max() <= 3
    again, _ = lossy(image, layers, substrate, np.random.default_rng(0))
    assert np.array_equal(out, again)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exposre": [1, 1]}, r"augment.setup.exposre: unknown key"),
        ({"gamma": [1.2, 0.9]}, r"augment.setup.gamma: expected 0 <= low <= high"),
        ({"p": 2}, r"augment.setup.p: must be in \[0, 1\]"),
        ({"oxide_nm": []}, r"augment.setup.oxide_nm: oxide_p > 0 needs ranges"),
        ({"source": "paper_hbn"}, r"augment.setup.source: setup paper_hbn: not shipped"),
        ({"jpeg": [0, 90]}, r"augment.setup.jpeg: qualities in \[1, 100\]"),
    ],
)
def test_a_bad_setup_value_is_one_line_naming_the_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        _preset(**changes)
    with pytest.raises(ConfigError, match=r"augment.setup.oxide_p: .* needs data.material"):
        SetupRandomization.from_config(_preset_cfg(), "mos2", None)


def test_crops_keep_their_labels_when_the_setup_is_shifted():
    images, layer_maps = zip(*(_image(seed) for seed in range(3)), strict=True)
    masks = [np.where(layers > 0, layers, 0).astype(np.uint8) for layers in layer_maps]
    raw = FlakeImages(["a", "b", "c"], list(images), masks, ClassScheme.from_config(CLASSES))
    data = raw.mapped(normalize_substrate)
    assert data.originals is not None and data.subset(["c"]).originals[0] is images[2]
    transform = build_train_transform({"hflip": 0.5, "rotate_limit": 30}, 32)
    plain = CropDataset(data, transform, [0.5] * 3, [0.25] * 3)
    shifted = CropDataset(
        data,
        transform,
        [0.5] * 3,
        [0.25] * 3,
        randomize=_preset(p=1.0),
        layers=list(layer_maps),
        substrate_normalize=True,
    )
    changed = 0
    for seed in range(8):
        x_plain, y_plain = plain[seed]
        x_shift, y_shift = shifted[seed]
        assert (y_plain == y_shift).all()  # same crop, same labels
        assert (x_shift == shifted[seed][0]).all()  # reproducible per sample seed
        changed += int(not (x_plain == x_shift).all())
    assert changed >= 6


def test_substrate_channels_carry_the_substrate_colour_the_contrast_channels_divide_out():
    from flakeseg.data.preprocess import network_rgb
    from flakeseg.inference.inputs import InputFeatures

    image, layers = _image()
    background = substrate_colour(image, layers == 0)
    six = network_rgb(image, background, True, True)
    assert six.shape == (*image.shape[:2], 6)
    assert np.array_equal(six[..., :3], normalize_substrate(image, background=background))
    assert (six[..., 3:] == np.round(background).astype(np.uint8)).all()
    assert np.array_equal(network_rgb(image, background, False, False), image)
    features = InputFeatures(substrate_normalize=True, substrate_channels=True)
    assert features.channels == 6 and len(features.normalization([0.5] * 3, [0.25] * 3)["std"]) == 6
    again = InputFeatures.from_dict(features.to_dict())
    assert again.substrate_channels and np.array_equal(again.apply(image), features.apply(image))
    assert not InputFeatures.from_dict({"substrate_normalize": True}).substrate_channels  # older cards


@pytest.mark.slow
@pytest.mark.parametrize("channels", ["false", "true"])
def test_a_fold_trains_on_shifted_substrate_normalised_crops(tiny_cfg, channels):
    from flakeseg.stages.cv import run_cross_validation

    cfg = tiny_cfg(
        "augment/setup=microscopes",
        "data.substrate_normalize=true",
        "data.substrate_choice=fitted",
        f"data.substrate_channels={channels}",
        "augment.hue_shift=0",  # colour jitter is for RGB-only inputs
        "augment.contrast=null",
        "cv.fold=0",
    )
    fold = run_cross_validation(cfg)["folds"][0]
    assert 0.0 <= fold["val/mean_class_acc"] <= 1.0


def test_shifts_refuse_images_white_balanced_when_loaded(tiny_cfg):
    from flakeseg.stages.cv import run_cross_validation

    cfg = tiny_cfg("augment/setup=microscopes", "data.substrate_normalize=true", "cv.fold=0")
    with pytest.raises(ConfigError, match=r"augment.setup: needs the images as the microscope gave them"):
        run_cross_validation(cfg)


def test_shifted_images_are_white_balanced_against_the_bare_substrate_not_a_thick_flake(tiny_cfg):
    """MoS2 00005: class 0 ("other") holds a 42k-px thick flake, the densest colour of the class. A
    shifted training image is white-balanced against the colour of its labelled bare substrate, which
    must be the substrate colour the unshifted path (and ``predict``) estimates, on every image."""
    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.datamodule import FlakeDataModule
    from flakeseg.optics.substrate import estimate_background
    from flakeseg.stages.fold_inputs import prepare_fold_inputs

    cfg = tiny_cfg("data.scale=0.5", "data.substrate_normalize=true", "data.substrate_choice=fitted")
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    train = load_dataset(data_cfg, ids=list(data_cfg["split"]["train"]), progress=False)
    features, train, _, loader_cfg = prepare_fold_inputs(cfg, train, None, 0)
    augment = {**OmegaConf.to_container(cfg.augment, resolve=True), "setup": {"p": 1.0}}
    dataset = FlakeDataModule(train, None, loader_cfg, augment, 0).train_dataloader().dataset
    for image_id, original, colour in zip(train.ids, dataset.originals, dataset.substrates, strict=True):
        estimated = estimate_background(original, prior=features.prior)
        assert np.abs(colour - estimated).max() <= 1, image_id
    thick_flake = substrate_colour(dataset.originals[0], train.masks[0] == 0)  # class 0 as a whole
    assert train.ids[0] == "00005" and np.abs(thick_flake - dataset.substrates[0]).max() > 50
