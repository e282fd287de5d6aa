"""The substrate colour of a flake image, and images white-balanced against it.

Under an optical microscope a flake of a given thickness changes the colour of the substrate under it
by a fixed ratio, whatever the lamp, exposure or white balance (its optical contrast ``I / b - 1``
against the substrate colour ``b``). Labs identify layers by that contrast, 2DMatGMM classifies it,
MaskTerial feeds it to its network. :func:`normalize_substrate` rescales each channel so that the
substrate becomes a fixed grey: every pixel then encodes its contrast (up to a constant scale), and
images taken under different lighting look alike to a network.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["SUBSTRATE_GREY", "estimate_background", "normalize_substrate"]

#: the level the substrate is mapped to: flakes up to twice as bright as the substrate stay unclipped
SUBSTRATE_GREY = 128.0


def estimate_background(
    image: np.ndarray, bin_width: int = 4, radius: float = 10.0, max_pixels: int = 50_000
) -> np.ndarray:
    """The substrate colour (RGB, float, 0..255) of an ``H x W x 3`` image: its densest colour.

    Most pixels of a flake image are substrate, and the substrate is one uniform colour, so it is the
    highest peak of the colour histogram (bins of ``bin_width`` levels, smoothed over 3 x 3 x 3 bins).
    The peak is refined to the median of the pixels within ``radius`` RGB levels of it, three times (a
    mode-seeking step). Thick flakes, often brighter and larger than the thin ones, spread over many
    interference colours and make lower peaks. An image that is mostly one flake (MoS2 00005 is 68 %
    monolayer) has that flake's colour as its peak: the method's known failure.

    Args:
        image: ``H x W x 3`` uint8 RGB image.
        bin_width: histogram bin width in levels (256 must be a multiple of it).
        radius: RGB distance of the pixels that refine the peak.
        max_pixels: pixels used (an even subsample, deterministic).
    """
    pixels = image.reshape(-1, 3).astype(np.float64)
    sample = pixels[:: max(1, len(pixels) // max_pixels)]
    bins = 256 // bin_width
    index = np.minimum((sample // bin_width).astype(np.int64), bins - 1)
    histogram = np.bincount(np.ravel_multi_index(index.T, (bins,) * 3), minlength=bins**3)
    density = ndimage.uniform_filter(
        histogram.reshape((bins,) * 3).astype(np.float64), size=3, mode="constant"
    )
    colour = (np.array(np.unravel_index(density.argmax(), density.shape)) + 0.5) * bin_width
    for _ in range(3):
        near = sample[((sample - colour) ** 2).sum(axis=1) <= radius**2]
        if len(near) == 0:
            break
        colour = np.median(near, axis=0)
    return colour


def normalize_substrate(image: np.ndarray, grey: float = SUBSTRATE_GREY) -> np.ndarray:
    """White-balance ``image`` (``H x W x 3`` uint8) so its substrate becomes ``grey`` in each channel.

    Pixel ``I`` becomes ``grey * I / b``, so ``(pixel / grey) - 1`` is the optical contrast ``I / b - 1``
    (quantised to ``1 / grey``, clipped at ``255 / grey - 1``).
    """
    background = np.maximum(estimate_background(image), 1.0)
    scaled = image.astype(np.float64) * (grey / background)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
