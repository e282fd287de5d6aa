"""Data: reading the upstream layout, class schemes, splits, folds, augmentation and loaders.

Names are imported on first use (PEP 562), so ``flakeseg.data.io`` alone (used by ``flakeseg predict``)
does not pull in Lightning and albumentations, about 13 s of imports on a 2-core machine.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "IGNORE_INDEX": "flakeseg.data.classes",
    "ClassScheme": "flakeseg.data.classes",
    "FlakeDataModule": "flakeseg.data.datamodule",
    "FlakeImages": "flakeseg.data.catalog",
    "load_dataset": "flakeseg.data.catalog",
    "fold_ids": "flakeseg.data.splits",
    "make_folds": "flakeseg.data.splits",
    "make_split": "flakeseg.data.splits",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'flakeseg.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
