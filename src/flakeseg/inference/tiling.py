"""Whole-image prediction from overlapping tiles, blended with a Gaussian window (no seams).

A fully convolutional network predicts an image of any size in one pass, but memory grows with the
image and a network trained on crops sees most context near a crop's centre. Large images are
therefore cut into overlapping tiles; each tile's class probabilities are weighted by a Gaussian that
is highest at the tile centre (as nnU-Net does), so a pixel's result comes mostly from the tile in
which it sits deepest, and the weights change smoothly from tile to tile.

Tile origins are multiples of the network's stride (``multiple``), so pooling cells line up with those
of the untiled image: a pixel whose receptive field lies inside one tile gets exactly the untiled
value from it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TileLayout", "gaussian_window", "plan_tiles", "predict_tiled"]

#: ``logits = fn(batch)``: ``N x 3 x h x w`` float32 -> ``N x C x h x w`` float32.
BatchFn = Callable[[np.ndarray], np.ndarray]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class TileLayout:
    """Where the tiles of an ``height x width`` image go.

    Attributes:
        tile: tile height and width ``(th, tw)``; each a multiple of ``multiple``.
        starts_y, starts_x: tile origins, multiples of ``multiple``.
        padded: ``(H', W')`` the image is padded to so every tile lies inside it.
    """

    def __init__(self, height: int, width: int, tile: int, overlap: float, multiple: int):
        if tile % multiple:
            raise ValueError(f"tile size {tile} is not a multiple of the network stride {multiple}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
        # An image smaller than a tile is one tile of its own size, padded to the stride.
        self.tile = (min(tile, _ceil_to(height, multiple)), min(tile, _ceil_to(width, multiple)))
        self.starts_y = _starts(height, self.tile[0], overlap, multiple)
        self.starts_x = _starts(width, self.tile[1], overlap, multiple)
        self.padded = (self.starts_y[-1] + self.tile[0], self.starts_x[-1] + self.tile[1])

    def __len__(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    def origins(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.starts_y for x in self.starts_x]


def _starts(length: int, tile: int, overlap: float, multiple: int) -> list[int]:
    if length <= tile:
        return [0]
    # The step is the largest multiple of the stride that keeps at least `overlap` of a tile shared.
    step = max(multiple, int(tile * (1.0 - overlap)) // multiple * multiple)
    count = 1 + -(-(length - tile) // step)
    return [k * step for k in range(count)]


def plan_tiles(height: int, width: int, tile: int, overlap: float = 0.25, multiple: int = 1) -> TileLayout:
    """The :class:`TileLayout` for an image of ``height x width``."""
    return TileLayout(height, width, tile, overlap, multiple)


def gaussian_window(height: int, width: int, sigma_scale: float = 0.125) -> np.ndarray:
    """A separable Gaussian weight map, 1 at the centre, sigma = ``sigma_scale`` x side (nnU-Net: 1/8).

    Each axis is clipped below at 1e-3 (not the product), so a tile's edge always weighs far less than
    the neighbour the pixel sits deep in, also along the image border where both are low in the other
    axis; and the corners of edge tiles, which no other tile covers, still count.
    """
    axes = []
    for side in (height, width):
        coords = np.arange(side, dtype=np.float64) - (side - 1) / 2.0
        axis = np.exp(-0.5 * (coords / max(sigma_scale * side, 1e-6)) ** 2)
        axes.append(np.maximum(axis / axis.max(), 1e-3))
    return np.outer(axes[0], axes[1]).astype(np.float32)


def predict_tiled(
    predict_logits: BatchFn,
    image: np.ndarray,
    tile: int,
    overlap: float = 0.25,
    multiple: int = 1,
    batch_size: int = 4,
) -> np.ndarray:
    """Class probabilities (``C x H x W`` float32, softmax) of a normalised ``3 x H x W`` image.

    Args:
        predict_logits: the network, as a function of a batch of tiles (see :data:`BatchFn`).
        image: the normalised image, ``3 x H x W`` float32.
        tile: tile side (a multiple of ``multiple``); images no larger are predicted whole.
        overlap: share of a tile that overlaps its neighbour (0.25: a quarter).
        multiple: the network's stride; tile origins and sizes are multiples of it.
        batch_size: tiles per call of ``predict_logits``.
    """
    _, height, width = image.shape
    layout = plan_tiles(height, width, tile, overlap, multiple)
    pad_h, pad_w = layout.padded[0] - height, layout.padded[1] - width
    # Reflected (OpenCV's BORDER_REFLECT_101): no artificial edge for the network to react to.
    padded = np.pad(image, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    th, tw = layout.tile
    window = gaussian_window(th, tw) if len(layout) > 1 else np.ones((th, tw), np.float32)
    total: np.ndarray | None = None
    weight = np.zeros(layout.padded, np.float32)
    origins = layout.origins()
    for first in range(0, len(origins), batch_size):
        chunk = origins[first : first + batch_size]
        batch = np.stack([padded[:, y : y + th, x : x + tw] for y, x in chunk]).astype(np.float32)
        # C-contiguous first: a channels-last network hands back NHWC memory, over which numpy's
        # softmax along the class axis (and the weighted sum below) ran about 7x slower
        probs = _softmax(np.ascontiguousarray(predict_logits(batch), dtype=np.float32))
        if total is None:
            total = np.zeros((probs.shape[1], *layout.padded), np.float32)
        for (y, x), tile_probs in zip(chunk, probs, strict=True):
            total[:, y : y + th, x : x + tw] += tile_probs * window
            weight[y : y + th, x : x + tw] += window
    assert total is not None
    return total[:, :height, :width] / weight[None, :height, :width]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
