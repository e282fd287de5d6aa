"""What every image goes through before a model sees it, in training and at prediction alike:
resampling to the model's scale, then (optionally) white balance against its substrate."""

from __future__ import annotations

import cv2
import numpy as np

from flakeseg.data.substrate import normalize_substrate

__all__ = ["prepare_image", "resize_image"]


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resampled by ``factor``: area averaging when shrinking, bilinear when enlarging."""
    if abs(factor - 1.0) <= 1e-9:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def prepare_image(image: np.ndarray, scale: float, substrate_normalize: bool) -> np.ndarray:
    """An ``H x W x 3`` uint8 image as the model was trained on: resampled by ``scale``, then, with
    ``substrate_normalize``, white-balanced against its own substrate (:mod:`flakeseg.data.substrate`)."""
    image = resize_image(image, scale)
    return normalize_substrate(image) if substrate_normalize else image
