"""Checkpoints that resume exactly: :class:`RandomStateCheckpoint` stores the random-number states
(torch, CUDA, numpy, Python) in each checkpoint and restores them when training resumes. A Lightning
checkpoint alone does not, and a resumed run then draws different dropout masks than an uninterrupted
one. (Reading checkpoints safely: :func:`flakeseg.inference.checkpoint.load_checkpoint`.)
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

__all__ = [
    "RANDOM_STATES_KEY",
    "RandomStateCheckpoint",
    "capture_random_states",
    "restore_random_states",
]

RANDOM_STATES_KEY = "random_states"


def capture_random_states() -> dict[str, Any]:
    """The global random-number states, as plain containers and tensors (``weights_only`` safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the global random-number states captured by :func:`capture_random_states`."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStateCheckpoint(pl.Callback):
    """Save the random-number states in every checkpoint; restore them when ``fit`` resumes from one."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[RANDOM_STATES_KEY] = capture_random_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Restored as soon as the checkpoint is read, before the fit loop creates the first training
        # iterator (which draws a seed): the resumed run then draws exactly what the uninterrupted
        # run drew after saving. (Later, in on_train_start, would be after that draw.)
        states = checkpoint.get(RANDOM_STATES_KEY)
        if states is not None:
            restore_random_states(states)
