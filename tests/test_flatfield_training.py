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
