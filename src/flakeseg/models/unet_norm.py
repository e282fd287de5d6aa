"""A U-Net with normalisation and two convolutions per level (nnU-Net's plain U-Net), beside the paper's.

The paper's U-Net has one unnormalised 3x3 convolution per step; at small widths it drifts from epoch to
epoch and needs a careful learning rate. Two convolutions per level, each followed by a normalisation
and a (leaky) ReLU, are the default of nnU-Net and of most segmentation work since.
"""

from __future__ import annotations

import torch
from torch import nn

from flakeseg.errors import ConfigError
from flakeseg.models.registry import register_model
from flakeseg.models.unet_parts import encode

NORMS = ("batch", "group", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":  # 8 channels per group, as many groups as that allows (at least 1)
        return nn.GroupNorm(max(1, channels // 8), channels)
    return nn.InstanceNorm2d(channels, affine=True)


def _double_conv(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers += [
            nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        ]
    return nn.Sequential(*layers)


@register_model("unet_norm")  # the class is its own builder: build_model passes the config as kwargs
class NormUNet(nn.Module):
    """U-Net with ``depth`` poolings, widths ``b, 2b, ..., 2^depth b``, two conv-norm-LeakyReLU per level.

    Args:
        num_classes: output classes.
        in_channels: input channels.
        base_channels: width ``b`` of the first level.
        depth: number of 2x2 poolings (the input sides must be multiples of ``2**depth``).
        norm: ``batch``, ``group`` or ``instance`` normalisation.
        dropout: dropout before the last 1x1 convolution (0: none).
    """

    #: parameter-name prefixes of the class scores and of the encoder (fine-tuning: model.init_from)
    head_prefixes = ("head.",)
    encoder_prefixes = ("down.", "bottom.")

    def __init__(self, num_classes: int, in_channels=3, base_channels=16, depth=4, norm="batch", dropout=0.0):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"model.norm: must be one of {', '.join(NORMS)}, got {norm!r}")
        if not 1 <= depth <= 6:
            raise ConfigError(f"model.depth: must be in 1..6, got {depth}")
        if base_channels < 1:
            raise ConfigError(f"model.base_channels: must be positive, got {base_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {dropout}")
        self.input_multiple = 2**depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.down.append(_double_conv(channels, width, norm))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.bottom = _double_conv(widths[-2], widths[-1], norm)
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in reversed(range(depth)):
            self.upconv.append(nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2))
            self.up.append(_double_conv(2 * widths[level], widths[level], norm))
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = encode(x, self.down, self.pool, self.bottom)
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips), strict=True):
            x = block(torch.cat([skip, upconv(x)], dim=1))
        return self.head(self.dropout(x))
