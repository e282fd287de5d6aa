"""Reading checkpoint files safely, without Lightning (so ``flakeseg predict`` starts fast)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from flakeseg.errors import DataError


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint without executing code from it.

    Raises:
        DataError: ``<path>: ...`` in one line when the file is missing, truncated or corrupt, or holds
            pickled objects other than tensors and plain containers (refused, nothing run).
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise DataError(
                f"{path}: refused: the checkpoint holds pickled objects that are not plain data "
                f"(a tampered or foreign file?); nothing in it was run"
            ) from None
        raise DataError(f"{path}: unreadable checkpoint ({first})") from None
    except (EOFError, RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: unreadable checkpoint, truncated or corrupt ({first[:120]})") from None
