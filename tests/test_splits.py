import os
import re

import pytest

from flakeseg.data.splits import fold_ids, make_folds, make_split, split_from_config
from flakeseg.errors import ConfigError
from tests.conftest import compose_train

IDS = [f"{i:03d}" for i in range(24)]


@pytest.mark.parametrize("n_ids,k", [(24, 3), (30, 3), (10, 4), (5, 5)])
def test_folds_are_disjoint_cover_all_and_balanced(n_ids, k):
    ids = IDS[:n_ids] if n_ids <= 24 else [f"{i:03d}" for i in range(n_ids)]
    folds = make_folds(ids, k, seed=0)
    flat = [i for f in folds for i in f]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


def test_folds_depend_on_seed_only():
    assert make_folds(IDS, 3, 0) == make_folds(list(reversed(IDS)), 3, 0)
    assert make_folds(IDS, 3, 0) != make_folds(IDS, 3, 1)


def test_fold_ids_train_and_val_partition_the_training_ids():
    for fold in range(3):
        train, val = fold_ids(IDS, 3, fold, seed=0)
        assert not set(train) & set(val) and sorted(train + val) == IDS
    with pytest.raises(ConfigError, match="cv.fold"):
        fold_ids(IDS, 3, 3, seed=0)


def test_bad_fold_counts_are_config_errors():
    with pytest.raises(ConfigError, match="cv.folds"):
        make_folds(IDS, 1, 0)
    with pytest.raises(ConfigError, match="cv.folds"):
        make_folds(IDS[:2], 3, 0)


def test_overlapping_split_is_refused():
    with pytest.raises(ConfigError, match="both train and test"):
        split_from_config({"split": {"train": ["1", "2"], "test": ["2"]}})


@pytest.mark.parametrize("data,n_train,n_test", [("mos2", 24, 11), ("graphene", 30, 14)])
def test_committed_split_has_paper_sizes_and_is_reproducible(data_root, data, n_train, n_test):
    cfg = compose_train([f"data={data}", f"data.root={data_root}"])
    split = split_from_config(cfg.data)
    assert (len(split["train"]), len(split["test"])) == (n_train, n_test)
    image_dir = data_root / cfg.data.image_dir

    on_disk = [
        re.fullmatch(cfg.data.image_pattern, n).group("id")
        for n in os.listdir(image_dir)
        if re.fullmatch(cfg.data.image_pattern, n)
    ]
    assert sorted(split["train"] + split["test"]) == sorted(on_disk)
    assert make_split(on_disk, n_test, cfg.data.split.seed) == split
