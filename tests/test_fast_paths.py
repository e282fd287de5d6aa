"""The fast paths give the eager model's outputs (within floating-point tolerance)."""

import copy

import pytest
import torch

from flakeseg.errors import ConfigError
from flakeseg.models import build_model
from flakeseg.training.fast import apply_fast_paths


def _pair():
    torch.manual_seed(0)
    eager = build_model({"name": "unet_paper", "base_channels": 4, "dropout": 0.0}, num_classes=3).eval()
    return eager, copy.deepcopy(eager)


def test_channels_last_matches_eager():
    eager, fast = _pair()
    fast, autocast = apply_fast_paths(fast, ["channels_last"])
    assert autocast is None
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), eager(x), rtol=1e-4, atol=1e-5)
    assert fast.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == list(eager.state_dict())


@pytest.mark.slow
def test_compiled_model_matches_eager_and_keeps_state_dict_keys():
    eager, fast = _pair()
    fast, _ = apply_fast_paths(fast, ["compile"])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), eager(x), rtol=1e-4, atol=1e-5)
    assert list(fast.state_dict()) == list(eager.state_dict())


def test_bf16_autocast_is_close_to_fp32():
    eager, fast = _pair()
    fast, autocast = apply_fast_paths(fast, ["bf16"])
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), autocast:
        low = fast(x).float()
    with torch.no_grad():
        ref = eager(x)
    assert low.shape == ref.shape
    # bf16 keeps ~3 significant digits; the class decision agrees almost everywhere
    assert (low.argmax(1) == ref.argmax(1)).float().mean() > 0.95


def test_unknown_fast_path_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown"):
        apply_fast_paths(torch.nn.Conv2d(1, 1, 1), ["turbo"])
