"""``model.init_from``: start from a shipped model or a checkpoint, with the same or another class
scheme; ``model.freeze_encoder_epochs`` keeps the pretrained encoder still."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flakeseg.data.classes import ClassScheme
from flakeseg.errors import ConfigError
from flakeseg.inference.checkpoint import load_checkpoint
from flakeseg.inference.shipped import SHIPPED_DIR
from tests.conftest import TINY, compose_train


def _module(*overrides: str):
    from flakeseg.training.trainer import build_module

    cfg = compose_train(list(overrides))
    return build_module(cfg, ClassScheme.from_config(cfg.data.classes), None)


def _shipped_weights(name: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(SHIPPED_DIR / f"{name}.ckpt")["state_dict"]
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


def test_same_classes_copy_every_weight():
    module = _module("data=graphene", "model.init_from=mos2")
    shipped = _shipped_weights("mos2")
    own = module.net.state_dict()
    assert own.keys() == shipped.keys()
    assert all(torch.equal(own[k], shipped[k]) for k in own)
    assert "init_from" not in module.hparams["model"]  # the checkpoint holds the network, not its start
    scratch = _module("data=graphene").net.state_dict()
    assert not torch.equal(scratch["head.weight"], shipped["head.weight"])


def test_other_classes_rebuild_the_head_by_class_name():
    """MoS2's three classes (other, monolayer, bilayer) into four (substrate, monolayer, bilayer,
    thick): background, monolayer and bilayer rows come over, thick starts fresh, the rest is copied."""
    module = _module("data=mos2", "data/classes=four", "model.init_from=mos2")
    shipped = _shipped_weights("mos2")
    own = module.net.state_dict()
    assert own["head.weight"].shape[0] == 4 and shipped["head.weight"].shape[0] == 3
    for target, source in ((0, 0), (1, 1), (2, 2)):
        assert torch.equal(own["head.weight"][target], shipped["head.weight"][source])
        assert own["head.bias"][target] == shipped["head.bias"][source]
    assert not torch.equal(own["head.weight"][3], torch.zeros_like(own["head.weight"][3]))
    assert all(torch.equal(own[k], shipped[k]) for k in own if not k.startswith("head."))


def test_a_different_network_or_a_bad_source_is_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"base_channels: 8 there, 16 here"):
        _module("data=graphene", "model.init_from=mos2", "model.base_channels=16")
    with pytest.raises(
        ConfigError, match=r"model.init_from: 'hbn' is neither a shipped model \(graphene, mos2\)"
    ):
        _module("data=graphene", "model.init_from=hbn")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"model.init_from: .*junk.ckpt: not a flakeseg checkpoint"):
        _module("data=graphene", f"model.init_from={junk}")
    with pytest.raises(ConfigError, match="needs trained weights"):
        _module("data=graphene", "model.freeze_encoder_epochs=2")
    # a run that feeds the network more than RGB (here the substrate's colour as 3 more channels)
    from flakeseg.inference.inputs import InputFeatures
    from flakeseg.training.trainer import build_module

    cfg = compose_train(["data=mos2", "model.init_from=mos2", "data.substrate_channels=true"])
    with pytest.raises(
        ConfigError,
        match=r"in_channels: 3 there, 6 here\); set data.substrate_channels, data.gmm_channels",
    ):
        build_module(
            cfg, ClassScheme.from_config(cfg.data.classes), None, InputFeatures(substrate_channels=True)
        )


@pytest.mark.slow
def test_fine_tuning_with_a_frozen_encoder(data_root: Path, tmp_path: Path):
    """Train a tiny model, fine-tune it for one epoch with the encoder frozen: the encoder's weights
    are the starting ones, the decoder's moved."""
    from flakeseg.stages.test_split import run_test_stage

    common = [*TINY, "stage=test", f"data.root={data_root}"]
    run_test_stage(compose_train([*common, f"paths.output_dir={tmp_path / 'first'}"]))
    first = tmp_path / "first" / "checkpoints" / "final.ckpt"
    run_test_stage(
        compose_train(
            [
                *common,
                f"model.init_from={first}",
                "model.freeze_encoder_epochs=1",
                "data=graphene",  # another material, the same classes
                f"paths.output_dir={tmp_path / 'second'}",
            ]
        )
    )
    before = load_checkpoint(first)["state_dict"]
    after = load_checkpoint(tmp_path / "second" / "checkpoints" / "final.ckpt")["state_dict"]
    encoder = [k for k in before if k.startswith(("net.down.", "net.bottom."))]
    decoder = [k for k in before if k.startswith(("net.up.", "net.upconv.", "net.head."))]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
