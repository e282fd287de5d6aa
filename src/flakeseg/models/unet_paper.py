"""The U-Net of Saito et al., npj Comput. Mater. 5, 124 (2019), Methods section."""

from __future__ import annotations

import torch
from torch import nn

from flakeseg.errors import ConfigError
from flakeseg.models.registry import register_model
from flakeseg.models.unet_parts import encode


def _conv_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)
    )


@register_model("unet_paper")  # the class is its own builder: build_model passes the config as kwargs
class PaperUNet(nn.Module):
    """U-Net exactly as the paper describes it.

    Four down steps of a 3x3 convolution + ReLU followed by 2x2 max-pooling (feature maps
    ``b, 2b, 4b, 8b``), a 3x3 convolution + ReLU at the bottom (``16b``), four up steps of a 2x2
    up-convolution, concatenation with the skip connection and a 3x3 convolution + ReLU, with dropout
    after the first three up-convolutions, and a final 1x1 convolution to class scores. The paper uses
    ``b = 64`` (64-128-256-512-1024). Convolutions are padded, so the output has the input's size.

    The forward pass returns logits; the softmax of the paper is applied by the loss and at prediction.

    Args:
        num_classes: number of output classes.
        in_channels: input channels (3 for RGB).
        base_channels: feature maps of the first level ``b``.
        dropout: dropout probability after the first three up-convolutions (paper: 0.5).
        init: ``"he"`` draws convolution weights from N(0, 2 / fan_in) with zero biases, as the original
            U-Net (Ronneberger et al. 2015) does for ReLU networks without normalisation, so the signal
            neither dies nor explodes through the layers; ``"torch"`` keeps PyTorch's default.
    """

    depth = 4
    input_multiple = 2**depth
    #: parameter-name prefixes of the class scores and of the encoder (fine-tuning: model.init_from)
    head_prefixes = ("head.",)
    encoder_prefixes = ("down.", "bottom.")

    def __init__(self, num_classes: int, in_channels=3, base_channels=64, dropout=0.5, init="he"):
        super().__init__()
        if init not in ("he", "torch"):
            raise ConfigError(f"model.init: must be 'he' or 'torch', got {init!r}")
        if base_channels < 1:
            raise ConfigError(f"model.base_channels: must be positive, got {base_channels}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {dropout}")
        widths = [base_channels * 2**level for level in range(self.depth + 1)]
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.down.append(_conv_relu(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.bottom = _conv_relu(widths[-2], widths[-1])
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        self.dropout = nn.ModuleList()
        for level in reversed(range(self.depth)):
            self.upconv.append(nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2))
            self.dropout.append(nn.Dropout(dropout) if level >= 1 else nn.Identity())
            self.up.append(_conv_relu(2 * widths[level], widths[level]))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        if init == "he":
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = encode(x, self.down, self.pool, self.bottom)
        for upconv, dropout, block, skip in zip(
            self.upconv, self.dropout, self.up, reversed(skips), strict=True
        ):
            x = dropout(upconv(x))
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)
