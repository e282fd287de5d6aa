"""Hand-crafted dense local descriptors for the bag of visual words: colour and gradient histograms.

Both are computed for every pixel at once with box filters over a ``(2 r + 1)`` square window, and
sampled on a grid by the caller.

- **colour**: the window's mean and standard deviation of CIELAB colour, relative to the image's median
  colour (so a word means "this much darker and bluer than the substrate" whatever the illumination).
  The histogram of colour words over a region is a colour histogram over a palette k-means learned.
- **gradient**: a HOG cell at every pixel: gradient magnitudes of the lightness, binned by unsigned
  orientation and summed over the window, L2-normalised, plus the log mean gradient magnitude (edge
  strength, which the normalisation removes).
"""

from __future__ import annotations

import cv2
import numpy as np


def _box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.blur(values, (size, size), borderType=cv2.BORDER_REFLECT_101)


def lab_image(image: np.ndarray) -> np.ndarray:
    """``H x W x 3`` CIELAB (float32; L in 0..100) of an RGB uint8 image."""
    from skimage.color import rgb2lab

    return rgb2lab(image).astype(np.float32)


def colour_descriptors(lab: np.ndarray, radius: int, relative: bool = True) -> np.ndarray:
    """``H x W x 6``: window mean and standard deviation of Lab, the mean relative to the image median."""
    mean = _box_mean(lab, radius)
    spread = np.sqrt(np.maximum(_box_mean(lab * lab, radius) - mean * mean, 0.0))
    if relative:
        mean = mean - np.median(lab.reshape(-1, 3), axis=0)
    return np.concatenate([mean, spread], axis=2)


def gradient_descriptors(lab: np.ndarray, radius: int, orientations: int = 8) -> np.ndarray:
    """``H x W x (orientations + 1)``: a dense HOG cell (L2-normalised) and the log mean gradient."""
    lightness = np.ascontiguousarray(lab[..., 0])
    gx = cv2.Sobel(lightness, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(lightness, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    magnitude = np.hypot(gx, gy)
    # unsigned orientation in [0, pi), linearly shared between the two nearest bins
    position = (np.arctan2(gy, gx) % np.pi) / np.pi * orientations
    lower = np.floor(position).astype(np.int64) % orientations
    upper_share = (position - np.floor(position)).astype(np.float32)
    cells = np.zeros((*lightness.shape, orientations), np.float32)
    rows, cols = np.indices(lightness.shape)
    cells[rows, cols, lower] = magnitude * (1 - upper_share)
    cells[rows, cols, (lower + 1) % orientations] += magnitude * upper_share
    cells = _box_mean(cells, radius)
    norm = np.sqrt((cells**2).sum(axis=2, keepdims=True))
    # the floor keeps the camera noise of flat regions from being blown up into strong histograms
    histogram = cells / (norm + 1.0)
    energy = np.log1p(_box_mean(magnitude, radius))[..., None]
    return np.concatenate([histogram, energy], axis=2)


def grid_points(height: int, width: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a regular grid with spacing ``step``, offset to the cells' centres."""
    rows = np.arange(step // 2, height, step)
    cols = np.arange(step // 2, width, step)
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    return grid_rows.ravel(), grid_cols.ravel()
