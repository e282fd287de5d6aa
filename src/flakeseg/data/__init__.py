"""Data: reading the upstream layout, class schemes, splits, folds, augmentation and loaders."""

from flakeseg.data.catalog import FlakeImages, load_dataset
from flakeseg.data.classes import IGNORE_INDEX, ClassScheme
from flakeseg.data.datamodule import FlakeDataModule
from flakeseg.data.splits import fold_ids, make_folds, make_split

__all__ = [
    "IGNORE_INDEX",
    "ClassScheme",
    "FlakeDataModule",
    "FlakeImages",
    "fold_ids",
    "load_dataset",
    "make_folds",
    "make_split",
]
