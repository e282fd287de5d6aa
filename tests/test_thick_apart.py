"""Subclasses kept apart in training (``data.classes.apart``): MoS2's thick flakes are scored as
"other", but training masks keep them at their own index and each of their pixels weighs more in the
cross entropy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from flakeseg.data.catalog import load_dataset
from flakeseg.data.classes import IGNORE_INDEX, ClassScheme
from flakeseg.errors import ConfigError
from tests.conftest import compose_train
from tests.test_data_integrity import CLASSES, _make_set

APART = {**CLASSES, "apart": {"thick": {"values": [3], "weight": 3.0}}}


def test_scheme_reads_apart_subclasses_with_their_class_and_weight():
    scheme = ClassScheme.from_config(APART)
    assert scheme.apart == (("thick", (3,), 3.0),)
    assert scheme.apart_weights == [(0, 3.0)]
    raw = np.array([[0, 1, 2, 3]], dtype=np.uint8)
    assert scheme.encode(raw).tolist() == [[0, 1, 2, 0]]  # what is scored: thick is "other"
    assert scheme.training_table()[raw].tolist() == [[0, 1, 2, 3]]  # what training learns from
    assert ClassScheme.from_config(CLASSES).apart_weights == []


@pytest.mark.parametrize(
    ("apart", "message"),
    [
        ({"thick": {"values": [7], "weight": 2}}, r"apart.thick.values: raw values \[7\] must all belong"),
        ({"thick": {"values": [2, 3], "weight": 2}}, r"apart.thick.values: raw values \[2, 3\] must all"),
        ({"thick": {"values": [3], "weight": 0}}, r"apart.thick.weight: must be > 0, got 0"),
        ({"thick": [3]}, r"apart.thick: needs exactly `values` \(raw mask values\) and `weight`"),
        ({"bilayer": {"values": [3], "weight": 2}}, r"apart: 'bilayer' is already a class name"),
    ],
)
def test_a_bad_apart_entry_is_one_line_naming_the_key(apart, message):
    with pytest.raises(ConfigError, match=message):
        ClassScheme.from_config({**CLASSES, "apart": apart})


def test_loaded_data_keeps_thick_apart_for_training_only(tmp_path):
    cfg = _make_set(tmp_path)
    plain = load_dataset(cfg, progress=False)
    apart = load_dataset({**cfg, "classes": APART}, progress=False)
    assert plain.apart_masks is None and plain.training_masks is plain.masks
    assert all(np.array_equal(a, b) for a, b in zip(plain.masks, apart.masks, strict=True))
    for mask, train in zip(apart.masks, apart.training_masks, strict=True):
        assert set(np.unique(train)) == {0, 1, 2, 3}
        assert np.array_equal(np.where(train == 3, 0, train), mask)
    part = apart.subset(["00002", "00000"]).center_cropped(10)
    assert len(part.apart_masks) == 2 and part.apart_masks[0].shape == part.masks[0].shape == (10, 10)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("loss", ["ce", "ce_dice", "weighted_ce"])
def test_thick_pixels_weigh_more_in_the_loss_and_score_as_other(loss):
    """Thick pixels are "other" to the class loss, plus (weight - 1) x their cross entropy: a map of
    thick labels costs more than the same map labelled substrate, by exactly that term."""
    from flakeseg.training.trainer import build_module

    cfg = compose_train(
        ["experiment=cpu_quick", "data/classes=three_thick_apart", "model.base_channels=4", f"loss={loss}"]
    )
    scheme = ClassScheme.from_config(cfg.data.classes)
    module = build_module(cfg, scheme, [0.5, 1.0, 2.0])
    assert module.hparams["apart_weights"] == [[0, 3.0]]
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    substrate = torch.zeros(2, 32, 32, dtype=torch.long)
    substrate[:, :4] = 1
    thick = substrate.clone()
    thick[:, 8:24, 8:24] = 3
    substrate[0, 0, 0] = thick[0, 0, 0] = IGNORE_INDEX
    module.eval()  # no dropout or batch statistics: the two losses differ by their targets only
    with torch.no_grad():
        logits = module(images)
        extra = torch.nn.functional.cross_entropy(
            logits, substrate, ignore_index=IGNORE_INDEX, reduction="none"
        )
        extra = 2.0 * extra[thick == 3].sum() / (thick != IGNORE_INDEX).sum()
        assert module.training_step((images, thick), 0) == pytest.approx(
            float(module.training_step((images, substrate), 0) + extra), rel=1e-5
        )
    assert logits.shape[1] == 3 and module.card.class_names == ["other", "monolayer", "bilayer"]


def test_training_crops_carry_the_subclass(tmp_path):
    from flakeseg.data.datamodule import FlakeDataModule

    cfg = compose_train(["experiment=cpu_quick", "data.crop_size=16"])
    data_cfg = {**dict(cfg.data), "classes": APART, "batch_size": 4, "num_workers": 0}
    data = load_dataset({**_make_set(tmp_path, shape=(32, 32)), "classes": APART}, progress=False)
    module = FlakeDataModule(data, None, data_cfg, {**dict(cfg.augment), "copy_paste_p": 0.5}, seed=0)
    _, masks = next(iter(module.train_dataloader()))
    assert masks.shape == (4, 16, 16) and 3 in masks.unique().tolist()
    plain = FlakeDataModule(replace(data, apart_masks=None), None, data_cfg, dict(cfg.augment), seed=0)
    _, plain_masks = next(iter(plain.train_dataloader()))
    assert 3 not in plain_masks.unique().tolist()
