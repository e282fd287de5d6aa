"""The contract every registered model keeps (segmentation_models_pytorch's base-tester style): it
builds from its own ``conf/model/<name>.yaml``, gives ``N x C x H x W`` at its ``input_multiple``, and
its weights (or fitted numbers) load back into a fresh build with the same output. A model is added
by one subclass of :class:`ModelContract` naming it and its small test size."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from flakeseg.inference.checkpoint import load_classical
from flakeseg.models import available_models, build_model, is_classical
from flakeseg.utils.config_files import CONFIG_DIR

NUM_CLASSES = 3


def sides(multiple: int) -> tuple[int, int]:
    """A small non-square input at the network's stride, at least 32 px (patch models reflect-pad)."""
    k = max(2, -(-32 // multiple))
    return k * multiple, (k + 1) * multiple


def model_config(name: str, **small: Any) -> dict[str, Any]:
    """The model's config file as ``train.py`` reads it, with ``small`` overrides for test speed."""
    return {**OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")), **small}


class ModelContract:
    """Subclasses set ``name`` (the registry key) and ``small`` (config overrides for a tiny build)."""

    name: ClassVar[str]
    small: ClassVar[dict[str, Any]] = {}

    def build(self):
        return build_model(model_config(self.name, **self.small), num_classes=NUM_CLASSES)

    def test_config_file_names_the_model(self):
        assert model_config(self.name)["name"] == self.name


class NetworkContract(ModelContract):
    def test_output_is_one_score_per_class_and_pixel_at_its_input_multiple(self):
        torch.manual_seed(0)
        net = self.build().eval()
        height, width = sides(int(getattr(net, "input_multiple", 1)))
        with torch.no_grad():
            out = net(torch.randn(2, 3, height, width))
        assert out.shape == (2, NUM_CLASSES, height, width)
        assert torch.isfinite(out).all()

    def test_state_dict_loads_back_into_a_fresh_build_with_the_same_output(self):
        torch.manual_seed(0)
        net = self.build().eval()
        torch.manual_seed(1)  # the fresh build starts from other weights
        fresh = self.build().eval()
        fresh.load_state_dict(net.state_dict())
        x = torch.randn(1, 3, *sides(int(getattr(net, "input_multiple", 1))))
        with torch.no_grad():
            assert torch.equal(net(x), fresh(x))


class ClassicalContract(ModelContract):
    def test_fit_predict_and_file_round_trip(self, tmp_path):
        rng = np.random.default_rng(0)
        images, masks = [], []
        for _ in range(2):  # substrate with a darker and a brighter square flake
            image = np.clip(rng.normal(150, 3, (48, 64, 3)), 0, 255).astype(np.uint8)
            mask = np.zeros((48, 64), np.uint8)
            image[8:24, 8:24] = (120, 140, 155)
            mask[8:24, 8:24] = 1
            image[28:44, 36:56] = (100, 125, 160)
            mask[28:44, 36:56] = 2
            images.append(image)
            masks.append(mask)
        model = self.build()
        model.fit(images, masks, seed=0)
        probs = model.predict_proba(images[0])
        assert probs.shape == (NUM_CLASSES, 48, 64)
        assert np.allclose(probs.sum(axis=0), 1, atol=1e-4)
        model.save(tmp_path / "model.npz")
        assert np.array_equal(
            load_classical(tmp_path / "model.npz", NUM_CLASSES).predict_proba(images[0]), probs
        )


class TestUnetPaper(NetworkContract):
    name = "unet_paper"
    small: ClassVar[dict[str, Any]] = {"base_channels": 4}


class TestUnetNorm(NetworkContract):
    name = "unet_norm"
    small: ClassVar[dict[str, Any]] = {"base_channels": 4, "depth": 2}


class TestSmp(NetworkContract):
    name = "smp"
    small: ClassVar[dict[str, Any]] = {"arch": "FPN", "encoder": "mobilenet_v2"}


class TestPixelCnn(NetworkContract):
    name = "pixel_cnn"
    small: ClassVar[dict[str, Any]] = {"patch_size": 21, "channels": [4, 4, 4], "hidden": 8}


class TestBovw(ClassicalContract):
    name = "bovw"
    small: ClassVar[dict[str, Any]] = {"colour_words": 4, "gradient_words": 4}


class TestContrastGmm(ClassicalContract):
    name = "contrast_gmm"


class TestOptics(ClassicalContract):
    name = "optics"
    small: ClassVar[dict[str, Any]] = {"material": "MoS2"}  # the config reads ${data.material}


class TestConstant(ClassicalContract):
    name = "constant"


def test_every_registered_model_has_a_contract_test():
    tested = {cls.name for cls in (*NetworkContract.__subclasses__(), *ClassicalContract.__subclasses__())}
    assert tested == set(available_models())
    assert {c.name for c in ClassicalContract.__subclasses__()} == {
        m for m in available_models() if is_classical({"name": m})
    }


@pytest.mark.parametrize("name", ["unet_paper", "unet_norm", "smp", "pixel_cnn"])
def test_networks_are_not_classical(name):
    assert not is_classical({"name": name})
