"""What every image goes through before a model sees it, in training and at prediction alike:
resampling to the model's scale, then (optionally) white balance against its substrate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from flakeseg.optics.substrate import normalize_substrate

__all__ = [
    "SUBSTRATE_CHOICES",
    "network_rgb",
    "prepare_image",
    "resize_image",
    "resize_probabilities",
    "uses_fitted_inputs",
]

#: ``data.substrate_choice``: the densest colour, or a choice among colour peaks fitted on labels
SUBSTRATE_CHOICES = ("densest", "fitted")


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resampled by ``factor``: area averaging when shrinking, bilinear when enlarging."""
    if abs(factor - 1.0) <= 1e-9:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def resize_probabilities(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """``C x h x w`` class probabilities resampled (bilinear) onto ``height x width`` pixels, summing
    to 1 again: how a model's output at its working scale goes back onto the image's own pixels."""
    if probs.shape[1:] == (height, width):
        return probs
    planes = [cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) for p in probs]
    out = np.stack(planes)
    return out / np.clip(out.sum(axis=0, keepdims=True), 1e-6, None)


def prepare_image(image: np.ndarray, scale: float, substrate_normalize: bool) -> np.ndarray:
    """An ``H x W x 3`` uint8 image as the model was trained on: resampled by ``scale``, then, with
    ``substrate_normalize``, white-balanced against its own substrate (:mod:`flakeseg.optics.substrate`)."""
    image = resize_image(image, scale)
    return normalize_substrate(image) if substrate_normalize else image


def network_rgb(
    image: np.ndarray, background: np.ndarray, substrate_normalize: bool, substrate_channels: bool
) -> np.ndarray:
    """The network's colour channels of an image whose substrate colour is ``background`` (8-bit RGB):
    the image, white-balanced against it with ``substrate_normalize`` (contrast channels), followed with
    ``substrate_channels`` by three constant channels holding the substrate colour itself (what the
    contrast channels lose: which oxide, lamp and camera the image comes from)."""
    rgb = normalize_substrate(image, background=background) if substrate_normalize else image
    if not substrate_channels:
        return rgb
    colour = np.clip(np.round(np.asarray(background, dtype=np.float64)), 0, 255).astype(np.uint8)
    return np.concatenate([rgb, np.broadcast_to(colour, (*rgb.shape[:2], 3))], axis=2)


def uses_fitted_inputs(data_cfg: Mapping[str, Any]) -> bool:
    """Whether the network's inputs are fitted on training labels (``data.substrate_choice=fitted`` with
    ``data.substrate_normalize``, ``data.substrate_channels``, ``data.gmm_channels`` or
    ``data.optics_channels``;
    :mod:`flakeseg.inference.inputs`). The data
    loader then leaves images resampled but otherwise as the microscope gave them, and each stage fits
    and applies the inputs on its (fold's) training images."""
    from flakeseg.errors import ConfigError

    choice = str(data_cfg.get("substrate_choice") or "densest")
    if choice not in SUBSTRATE_CHOICES:
        raise ConfigError(
            f"data.substrate_choice: must be one of {', '.join(SUBSTRATE_CHOICES)}, got {choice!r}"
        )
    fitted_substrate = choice == "fitted" and bool(data_cfg.get("substrate_normalize"))
    extra = ("gmm_channels", "substrate_channels", "optics_channels")
    return any(bool(data_cfg.get(key)) for key in extra) or fitted_substrate
