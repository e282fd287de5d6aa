"""``data.flatfield``: training images divided by a blank image's field, the field kept in the model card,
and prediction and evaluation dividing new images by it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flakeseg.data.catalog import load_dataset
from flakeseg.data.classes import ClassScheme
from flakeseg.errors import ConfigError
from flakeseg.optics.substrate import (
    apply_flat_field,
    compact_flat_field,
    expand_flat_field,
    flat_field_from_blank,
)
from tests.conftest import compose_train
from tests.test_data_integrity import _make_set

SHAPE = (60, 80)


def _vignette(shape=SHAPE, fall_off: float = 0.3) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    r2 = ((y - shape[0] / 2) ** 2 + (x - shape[1] / 2) ** 2) / ((shape[0] / 2) ** 2 + (shape[1] / 2) ** 2)
    return (1.0 - fall_off * r2)[..., None] * np.ones(3)


def _blank(path: Path, shape=SHAPE) -> Path:
    Image.fromarray(np.round(200 * _vignette(shape)).astype(np.uint8)).save(path)
    return path


def test_the_card_keeps_a_small_field_that_expands_back():
    field = flat_field_from_blank(np.round(200 * _vignette((525, 700))).astype(np.uint8))
    compact = compact_flat_field(field)
    small = np.asarray(compact["field"])
    assert max(small.shape[:2]) == 64 and (compact["height"], compact["width"]) == (525, 700)
    assert np.abs(expand_flat_field(compact) - field).max() < 0.02


def test_training_images_are_divided_by_the_blank_field(tmp_path):
    cfg = _make_set(tmp_path, shape=SHAPE)
    for path in (tmp_path / "img").glob("*.png"):  # flat grey images seen through the vignette
        Image.fromarray(np.round(150 * _vignette()).astype(np.uint8)).save(path)
    plain = load_dataset(cfg, progress=False)
    flat = load_dataset({**cfg, "flatfield": str(_blank(tmp_path / "blank.png"))}, progress=False)
    corner_dark = plain.images[0][0, 0, 0] / plain.images[0][30, 40, 0]
    assert corner_dark < 0.8
    # evenly lit again, away from the border (the blank's smoothing, 4 px, reflects at the edge)
    assert abs(int(flat.images[0][10, 10, 0]) - int(flat.images[0][30, 40, 0])) <= 3


def test_training_images_are_divided_by_the_field_a_setup_file_keeps(tmp_path):
    """A lab without a blank image trains with the field `calibrate --flatfield-from-images` estimated:
    ``data.flatfield=setup.yaml``."""
    from flakeseg.optics.calibration import Setup

    cfg = _make_set(tmp_path, shape=SHAPE)
    for path in (tmp_path / "img").glob("*.png"):
        Image.fromarray(np.round(150 * _vignette()).astype(np.uint8)).save(path)
    field = _vignette() / np.median(_vignette().reshape(-1, 3), axis=0)
    Setup(oxide_nm=285.0, flat_field=compact_flat_field(field, 32)).save(tmp_path / "setup.yaml")
    flat = load_dataset({**cfg, "flatfield": str(tmp_path / "setup.yaml")}, progress=False)
    assert abs(int(flat.images[0][3, 3, 0]) - int(flat.images[0][30, 40, 0])) <= 3  # evenly lit
    Setup(oxide_nm=285.0).save(tmp_path / "plain.yaml")
    with pytest.raises(ConfigError, match=r"^data.flatfield: .*plain.yaml: the setup holds no flat field"):
        load_dataset({**cfg, "flatfield": str(tmp_path / "plain.yaml")}, progress=False)
    (tmp_path / "broken.yaml").write_text("oxide_nm: [")
    with pytest.raises(ConfigError, match=r"^data.flatfield: .*broken.yaml: not a setup file"):
        load_dataset({**cfg, "flatfield": str(tmp_path / "broken.yaml")}, progress=False)


def test_training_images_field_is_estimated_from_the_training_split_only(tmp_path, caplog):
    """``data.flatfield=training_images``: the field estimated from the training split's own images (as
    ``calibrate --flatfield-from-images`` from a folder); the test images, evenly lit here, are not read
    (with them the median field would be half as deep)."""
    cfg = {**_make_set(tmp_path, n=7, shape=SHAPE), "split": {"train": ["00000", "00001", "00002"]}}
    for i, path in enumerate(sorted((tmp_path / "img").glob("*.png"))):
        lit = _vignette() if i < 3 else np.ones((*SHAPE, 3))
        Image.fromarray(np.round(150 * lit).astype(np.uint8)).save(path)
    flat = load_dataset({**cfg, "flatfield": "training_images"}, progress=False)
    assert abs(int(flat.images[0][3, 3, 0]) - int(flat.images[0][30, 40, 0])) <= 3  # evenly lit
    # one or two training images (a lab's first model): no field, and a warning says so
    few = {**cfg, "split": {"train": ["00000", "00001"]}, "flatfield": "training_images"}
    plain = load_dataset(cfg, progress=False)
    assert np.array_equal(load_dataset(few, progress=False).images[0], plain.images[0])
    assert "2 training image(s), a field needs 3" in caplog.text


def test_a_bad_flatfield_is_one_line_naming_the_key(tmp_path):
    cfg = _make_set(tmp_path, shape=SHAPE)
    with pytest.raises(ConfigError, match=r"data.flatfield: .*nothing.png"):
        load_dataset({**cfg, "flatfield": str(tmp_path / "nothing.png")}, progress=False)
    with pytest.raises(Exception, match=r"the flat field 40 x 30"):
        load_dataset({**cfg, "flatfield": str(_blank(tmp_path / "small.png", (30, 40)))}, progress=False)


def test_the_card_carries_the_field_and_predict_divides_by_it(tmp_path):
    """A model trained with data.flatfield predicts a vignetted image as the same image evenly lit."""
    from flakeseg.inference.predictor import Predictor
    from flakeseg.training.trainer import build_module

    blank = _blank(tmp_path / "blank.png")
    cfg = compose_train(["experiment=cpu_quick", "model.base_channels=4", f"data.flatfield={blank}"])
    module = build_module(cfg, ClassScheme.from_config(cfg.data.classes), [1.0, 1.0, 1.0])
    card = module.card
    assert card.flatfield is not None and (card.flatfield["height"], card.flatfield["width"]) == SHAPE
    rng = np.random.default_rng(0)
    vignetted = np.round(rng.normal(140, 20, (*SHAPE, 3)).clip(0, 255) * _vignette()).astype(np.uint8)
    through_lens = Predictor.for_network(module.net.eval(), card).probabilities(vignetted)
    plain = Predictor.for_network(module.net.eval(), replace(card, flatfield=None))
    evened = apply_flat_field(vignetted, expand_flat_field(card.flatfield))
    assert (
        np.abs(evened[10:50, 10:70].astype(float).mean(axis=(0, 1)) - evened[25:35, 35:45].mean()).max() < 10
    )
    assert np.array_equal(through_lens, plain.probabilities(evened))
    assert not np.allclose(through_lens, plain.probabilities(vignetted), atol=1e-3)
    # an image of another camera's size: the card's field is not its field, so it is left as it is
    wider = np.round(rng.normal(140, 20, (SHAPE[0], SHAPE[1] + 16, 3)).clip(0, 255)).astype(np.uint8)
    assert np.array_equal(
        Predictor.for_network(module.net.eval(), card).probabilities(wider), plain.probabilities(wider)
    )


def _vignetted_images(root: Path, count: int = 5, fall_off: float = 0.3) -> tuple[list[Path], int]:
    """MoS2-coloured images seen through a vignette, each with a few monolayer flakes of its own, at
    different exposures; no blank among them. Also the number of flake pixels."""
    from flakeseg.optics.shifts import decode, encode, falloff

    rng = np.random.default_rng(3)
    paths, flake_pixels = [], 0
    for index in range(count):
        image = np.ones((*SHAPE, 3)) * np.array([176.0, 153.0, 207.0]) * rng.uniform(0.9, 1.05)
        flakes = np.zeros(SHAPE, bool)
        for _ in range(3):
            top, left = rng.integers(0, SHAPE[0] - 20), rng.integers(0, SHAPE[1] - 25)
            flakes[top : top + 15, left : left + 20] = True
        image[flakes] *= (0.79, 0.95, 1.05)
        flake_pixels += int(flakes.sum())
        noisy = np.clip(np.round(image + rng.normal(0, 1.0, image.shape)), 0, 255).astype(np.uint8)
        paths.append(root / f"im{index}.png")
        Image.fromarray(encode(decode(noisy) * falloff(SHAPE, fall_off))).save(paths[-1])
    return paths, flake_pixels


def test_a_field_estimated_from_images_with_flakes_restores_a_flat_substrate(tmp_path):
    from flakeseg.data.io import read_image
    from flakeseg.optics.substrate import estimate_flat_field

    images = [read_image(p) for p in _vignetted_images(tmp_path)[0]]
    field = estimate_flat_field(images)
    assert field.shape == images[0].shape and np.median(field.reshape(-1, 3), axis=0) == pytest.approx(1.0)
    corner, centre = (slice(0, 4), slice(0, 4)), (slice(28, 32), slice(38, 42))
    for image in images[:2]:
        before = image[corner].mean() / image[centre].mean()
        flat = apply_flat_field(image, field)
        after = flat[corner].mean() / flat[centre].mean()
        assert before < 0.9 and abs(after - 1.0) < 0.03, (before, after)
    with pytest.raises(Exception, match=r"b.png: 40 x 30 px, the first 80 x 60"):
        estimate_flat_field(
            [images[0], np.zeros((30, 40, 3), np.uint8), images[1]], names=["a", "b.png", "c"]
        )


def test_calibrate_keeps_the_folder_field_and_predict_divides_by_it(tmp_path, capsys):
    """A lab without a blank image: `calibrate --flatfield-from-images` puts the field into the setup;
    `predict --setup` divides by it, and the optics finds the flakes at their size, surely."""
    import csv

    from flakeseg.cli import main as flakeseg
    from flakeseg.cli.calibrate import main as calibrate
    from flakeseg.optics.calibration import Setup

    folder = tmp_path / "images"
    folder.mkdir()
    _, truth = _vignetted_images(folder, fall_off=0.45)
    with_field, without = tmp_path / "setup.yaml", tmp_path / "plain.yaml"
    assert calibrate([str(folder), "--flatfield-from-images", "--out", str(with_field)]) == 0
    assert "flat field from 5 images" in capsys.readouterr().out
    assert calibrate([str(folder), "--out", str(without)]) == 0
    setup = Setup.load(with_field)
    assert Setup.load(without).flat_field is None and setup.flat_field["height"] == SHAPE[0]
    assert np.asarray(setup.flat_field["field"]).min() < 0.88  # corners ~0.82 of the median

    def flakes(setup_file: Path, out: str) -> tuple[float, float]:
        """Monolayer pixels listed, and the lowest confidence of a listed flake."""
        args = ["predict", "--material", "MoS2", "--setup", str(setup_file), str(folder), "--out"]
        assert flakeseg([*args, str(tmp_path / out), "--min-area", "20"]) == 0
        with open(tmp_path / out / "flakes.csv") as file:
            rows = list(csv.DictReader(file))
        area = sum(float(r["area_px"]) for r in rows if r["class_name"] == "monolayer")
        return area, min(float(r["confidence"]) for r in rows)

    flat_area, flat_confidence = flakes(with_field, "flat")
    vignetted_area, vignetted_confidence = flakes(without, "vignetted")
    assert abs(flat_area - truth) < 0.05 * truth < abs(vignetted_area - truth)
    assert flat_confidence > vignetted_confidence


def test_contrasts_are_measured_on_the_images_as_stored(tmp_path):
    """The optics measures the images as stored whatever flat field the training recipe divides by
    (``AS_STORED``): the setups it fits are compared with images as `predict` reads them."""
    from flakeseg.data.contrasts import measure_labelled

    cfg = {**_make_set(tmp_path, n=4, shape=SHAPE), "split": {"train": ["00000", "00001", "00002", "00003"]}}
    for i, path in enumerate(sorted((tmp_path / "img").glob("*.png"))):
        Image.fromarray(np.round((120 + 20 * i) * _vignette()).astype(np.uint8)).save(path)
    plain = measure_labelled(cfg)
    recipe = measure_labelled({**cfg, "flatfield": "training_images"})
    assert [m.substrate.tolist() for m in plain] == [m.substrate.tolist() for m in recipe]
    divided = load_dataset({**cfg, "flatfield": "training_images"}, progress=False)
    assert not np.array_equal(divided.images[0], load_dataset(cfg, progress=False).images[0])
