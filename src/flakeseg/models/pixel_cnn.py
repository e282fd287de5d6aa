"""The pixel-wise CNN of the paper's comparison (Saito et al. 2019, Supplementary V), fully convolutional.

A patch classifier looks at a ``P x P`` patch centred on a pixel and gives that pixel's class scores:
three valid 3x3 convolutions with ReLU, the first two followed by 3x3 max-pooling of stride 2, then two
fully connected layers. Run patch by patch, a 700 x 525 image is 367,500 forward passes.

:meth:`PixelCNN.forward` computes the same function for every pixel of an image in one pass, by the
"shift-and-stitch" identity: a stride-2 layer followed by layers at half resolution equals the same
layer with stride 1 followed by the later layers dilated by 2. So pooling runs with stride 1, each
later layer's dilation doubles after every pooling, and the first fully connected layer becomes a
``k x k`` convolution with the accumulated dilation. The image is first reflect-padded by ``P // 2``,
so the output has the input's size and a border pixel sees the same reflected patch that
:meth:`PixelCNN.classify_patches` would be given (see :func:`extract_patches`). Each pixel's scores
depend on its own patch only, never on its neighbours' predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from flakeseg.errors import ConfigError
from flakeseg.models.registry import register_model

#: how the image is extended beyond its border, for the dense pass and for patches alike
PADDING_MODE = "reflect"


def patch_grid_size(patch_size: int) -> int:
    """Side ``k`` of the feature grid the first fully connected layer sees, for a ``patch_size`` patch.

    ``P -> P - 2`` (conv) ``-> (P - 3) // 2`` (pool) ``-> ... -> k``; the patch is used without any
    leftover pixel only when ``P = 17 + 4 k``.

    >>> [patch_grid_size(p) for p in (21, 33)]
    [1, 4]
    """
    if patch_size < 21 or (patch_size - 17) % 4:
        valid = ", ".join(str(17 + 4 * k) for k in range(1, 7))
        raise ConfigError(f"model.patch_size: must be 17 + 4k for k >= 1 ({valid}, ...), got {patch_size}")
    return (patch_size - 17) // 4


@register_model("pixel_cnn")  # the class is its own builder: build_model passes the config as kwargs
class PixelCNN(nn.Module):
    """Classify each pixel from the ``patch_size x patch_size`` patch centred on it.

    Args:
        num_classes: output classes.
        in_channels: input channels.
        patch_size: side of the square patch, ``17 + 4k`` (21, 25, 29, 33, ...); 33 by default.
        channels: output channels of the three convolutions.
        hidden: units of the first fully connected layer.
        dropout: dropout before the last layer. Dropout draws a mask per unit *and pixel* in the dense
            pass; in evaluation mode (no dropout) both paths agree exactly.
    """

    input_multiple = 1

    #: parameter-name prefixes of the class scores and of the encoder (fine-tuning: model.init_from)
    head_prefixes = ("fc2.",)
    encoder_prefixes = ("convs.",)

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        patch_size: int = 33,
        channels: Sequence[int] = (16, 32, 32),
        hidden: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.grid = patch_grid_size(int(patch_size))
        self.patch_size = int(patch_size)
        channels = [int(c) for c in channels]
        if len(channels) != 3 or min(channels) < 1:
            raise ConfigError(f"model.channels: three positive channel counts expected, got {channels}")
        if int(hidden) < 1:
            raise ConfigError(f"model.hidden: must be positive, got {hidden}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"model.dropout: must be in [0, 1), got {dropout}")
        widths = [in_channels, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 3) for i in range(3))
        self.fc1 = nn.Linear(channels[-1] * self.grid**2, int(hidden))
        self.fc2 = nn.Linear(int(hidden), num_classes)
        self.dropout = nn.Dropout(float(dropout))
        #: (dilation of each convolution, dilation of the first fully connected layer)
        self.dilations = (1, 2, 4)
        self.fc_dilation = 4

    def classify_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Class scores ``N x C`` of ``N x in_channels x P x P`` patches, the classic patch-wise network."""
        if patches.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"patches must be {self.patch_size}x{self.patch_size}, got {tuple(patches.shape)}"
            )
        x = patches
        for index, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if index < 2:
                x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``N x C x H x W`` of every pixel of ``N x in_channels x H x W`` images, one pass."""
        half = self.patch_size // 2
        x = F.pad(x, (half, half, half, half), mode=PADDING_MODE)
        for index, (conv, dilation) in enumerate(zip(self.convs, self.dilations, strict=True)):
            x = F.relu(F.conv2d(x, conv.weight, conv.bias, dilation=dilation))
            if index < 2:
                x = F.max_pool2d(x, kernel_size=3, stride=1, dilation=dilation)
        # fc1 as a k x k convolution over the dilated grid: its weight is fc1's, reshaped
        weight = self.fc1.weight.view(self.fc1.out_features, -1, self.grid, self.grid)
        x = F.relu(F.conv2d(x, weight, self.fc1.bias, dilation=self.fc_dilation))
        x = self.dropout(x)
        weight = self.fc2.weight.view(*self.fc2.weight.shape, 1, 1)
        return F.conv2d(x, weight, self.fc2.bias)


def extract_patches(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, patch_size: int):
    """The ``patch_size`` patches centred on pixels ``(rows[i], cols[i])`` of ``images[0]``.

    The image is extended beyond its border the way :meth:`PixelCNN.forward` extends it, so a patch
    of a border pixel holds the same reflected pixels. Returns ``N x C x P x P``.
    """
    half = patch_size // 2
    padded = F.pad(images[:1], (half, half, half, half), mode=PADDING_MODE)[0]
    return torch.stack(
        [padded[:, r : r + patch_size, c : c + patch_size] for r, c in zip(rows, cols, strict=True)]
    )
