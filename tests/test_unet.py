import torch
from torch import nn

from flakeseg.models import PaperUNet, available_models, build_model


def _conv3(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout  # 3x3 kernel + bias


def _upconv2(cin: int, cout: int) -> int:
    return 4 * cin * cout + cout  # 2x2 transposed kernel + bias


def test_parameter_count_at_paper_size_matches_hand_count():
    down = _conv3(3, 64) + _conv3(64, 128) + _conv3(128, 256) + _conv3(256, 512)
    bottom = _conv3(512, 1024)
    # each up step: 2x2 up-conv halving the maps, then a 3x3 conv on [skip, upsampled] (2x channels)
    up = sum(_upconv2(c, c // 2) + _conv3(c, c // 2) for c in (1024, 512, 256, 128))
    head = 64 * 3 + 3
    expected = down + bottom + up + head
    assert expected == 15_324_867
    model = PaperUNet(num_classes=3, base_channels=64)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_output_shape_is_input_shape_with_class_channels():
    model = build_model({"name": "unet_paper", "base_channels": 4}, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 96)
    assert model(x).shape == (2, 3, 64, 96)
    assert model.input_multiple == 16


def test_dropout_after_first_three_upconvolutions_only():
    model = PaperUNet(num_classes=3, base_channels=4)
    kinds = [type(m) for m in model.dropout]
    assert kinds == [nn.Dropout, nn.Dropout, nn.Dropout, nn.Identity]
    assert all(m.p == 0.5 for m in model.dropout if isinstance(m, nn.Dropout))
    # training mode is stochastic, eval mode is not
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_feature_maps_follow_64_128_256_512_1024():
    model = PaperUNet(num_classes=3, base_channels=64)
    widths = [block[0].out_channels for block in model.down] + [model.bottom[0].out_channels]
    assert widths == [64, 128, 256, 512, 1024]
    assert [u.out_channels for u in model.upconv] == [512, 256, 128, 64]


def test_registry_lists_the_paper_unet():
    assert "unet_paper" in available_models()
