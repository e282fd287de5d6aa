"""The fixed train/test split and the cross-validation folds, both by image id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flakeseg.errors import ConfigError


def make_split(ids: Sequence[str], n_test: int, seed: int) -> dict[str, list[str]]:
    """Draw a train/test split of ``ids`` with a fixed seed.

    This is how the split lists committed in ``conf/data/*.yaml`` were made; run it once for a new
    material (``python -m flakeseg.data.splits``) and commit the result, so the split never moves.
    """
    ordered = sorted(ids)
    if not 0 < n_test < len(ordered):
        raise ConfigError(f"data.split: n_test={n_test} must be between 1 and {len(ordered) - 1}")
    order = np.random.default_rng(seed).permutation(len(ordered))
    test = sorted(ordered[i] for i in order[:n_test])
    train = sorted(ordered[i] for i in order[n_test:])
    return {"train": train, "test": test}


def make_folds(train_ids: Sequence[str], n_folds: int, seed: int) -> list[list[str]]:
    """Split the training ids into ``n_folds`` disjoint validation folds that together cover them all.

    Fold sizes differ by at most one. The same ids and seed always give the same folds.
    """
    ordered = sorted(train_ids)
    if n_folds < 2:
        raise ConfigError(f"cv.folds: must be at least 2, got {n_folds}")
    if n_folds > len(ordered):
        raise ConfigError(f"cv.folds: {n_folds} folds for only {len(ordered)} training images")
    order = np.random.default_rng(seed).permutation(len(ordered))
    return [sorted(ordered[i] for i in chunk) for chunk in np.array_split(order, n_folds)]


def fold_ids(train_ids: Sequence[str], n_folds: int, fold: int, seed: int) -> tuple[list[str], list[str]]:
    """The (training, validation) ids of fold ``fold``."""
    folds = make_folds(train_ids, n_folds, seed)
    if not 0 <= fold < n_folds:
        raise ConfigError(f"cv.fold: must be in 0..{n_folds - 1}, got {fold}")
    val = folds[fold]
    train = sorted(i for k, f in enumerate(folds) if k != fold for i in f)
    return train, val


#: what ``cv.pool`` may be: the training split, or every image of both splits
CV_POOLS = ("train", "all")


def cv_ids(split: Mapping[str, Sequence[str]], pool: str = "train") -> list[str]:
    """The images a CV runs over: the training split (``cv.pool=train``), or every image of both splits
    (``cv.pool=all``, the upstream code's CV: then no test split is held out)."""
    if pool not in CV_POOLS:
        raise ConfigError(f"cv.pool: must be one of {', '.join(CV_POOLS)}, got {pool!r}")
    return list(split["train"]) + (list(split["test"]) if pool == "all" else [])


def split_from_config(data_cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    """The committed split of ``data.split``, checked to be disjoint."""
    split = data_cfg.get("split")
    if not split or not split.get("train") or split.get("test") is None:
        raise ConfigError(
            "data.split: no train/test id lists; make them once with "
            "`python -m flakeseg.data.splits DATA_CONFIG_NAME` and paste them into the data YAML"
        )
    train = [str(i) for i in split["train"]]
    test = [str(i) for i in split["test"]]
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ConfigError(f"data.split: ids {overlap} are in both train and test")
    if len(set(train)) != len(train) or len(set(test)) != len(test):
        raise ConfigError("data.split: an id is listed twice")
    return {"train": train, "test": test}


def _main() -> None:
    """Print a split for a data config, for pasting into its YAML."""
    import argparse

    from hydra import compose, initialize_config_dir

    from flakeseg.data.catalog import discover_pairs
    from flakeseg.utils.config_files import CONFIG_DIR

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("data", help="name of a config in conf/data/, e.g. mos2")
    parser.add_argument("--n-test", type=int, required=True, help="number of test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={args.data}", "~data.split"])
    pairs, problems = discover_pairs(cfg.data)
    for line in problems:
        print(f"# warning: {line}")
    split = make_split([p.id for p in pairs], args.n_test, args.seed)
    print(f"split:\n  seed: {args.seed}")
    for key in ("train", "test"):
        print(f"  {key}: [{', '.join(repr(i) for i in split[key])}]")


if __name__ == "__main__":
    _main()
