"""What a classical model is, and how it is saved: fitted numbers in an ``.npz``, never a pickle.

A classical model is built from its ``model`` config like a network (``build_model``), fitted on whole
training images and masks, and predicts per-pixel class probabilities of a whole image. Its file holds
the config (as JSON text) and the fitted arrays only, read back with ``np.load(allow_pickle=False)``:
loading a model file runs no code from it, the guarantee ``weights_only=True`` gives the checkpoints.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flakeseg.utils.files import write_bytes_atomic

#: key of the model config (JSON text) inside a model file
CONFIG_KEY = "__config__"


class ClassicalModel(ABC):
    """A per-pixel classifier fitted without gradient descent.

    Subclasses keep their constructor arguments in :attr:`config` (the ``model`` config node with
    ``name``) and their fitted parameters as numpy arrays (:meth:`state`).

    Args:
        num_classes: classes to predict (indices ``0..num_classes-1``; masks may hold 255 = ignore).
    """

    #: the ``model.name`` it is registered under
    name = ""

    def __init__(self, num_classes: int, **config: Any):
        self.num_classes = int(num_classes)
        self.config = {"name": self.name, **config}

    @abstractmethod
    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        """Fit on ``H x W x 3`` uint8 RGB images and their ``H x W`` class-index masks.

        Returns:
            a few plain numbers describing the fit (sample counts, iterations), kept in ``metrics.json``.
        """

    @abstractmethod
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``C x H x W`` (float32, summing to 1 per pixel) of one RGB image."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The fitted parameters, as numpy arrays of numbers."""

    @abstractmethod
    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Set the fitted parameters from :meth:`state`'s arrays."""

    def num_parameters(self) -> int:
        """How many numbers were fitted (the classical counterpart of a network's parameter count)."""
        return int(sum(np.asarray(a).size for a in self.state().values()))

    def save(self, path: Path) -> None:
        """Write the config and fitted arrays to ``path`` (``.npz``), atomically."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{CONFIG_KEY: np.array(json.dumps(self.config))}, **self.state())
        write_bytes_atomic(Path(path), buffer.getvalue())


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax along ``axis``, stable for large and ``-inf`` logits (a row of all ``-inf`` gives NaN)."""
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)
