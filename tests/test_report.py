import json

import pytest

from flakeseg.evaluation.folds import cv_markdown, summarize_folds
from flakeseg.utils.files import write_json_atomic


def _fold(k, acc):
    return {
        "fold": k,
        "val/mean_class_acc": acc,
        "val/macro_precision": 0.5,
        "val/mean_iou": 0.4,
        "val/acc_a": acc,
        "val/acc_b": 1.0,
        "train_seconds": 10.0,
        "val/confmat": [[1, 0], [0, 1]],
    }


def test_summary_is_mean_and_sample_std_over_folds():
    summary = summarize_folds([_fold(0, 0.6), _fold(1, 0.8), _fold(2, 0.7)])
    assert summary["cv/mean_class_acc"] == pytest.approx(0.7)
    assert summary["cv/mean_class_acc_std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert summary["cv/macro_precision_std"] == 0.0
    assert "cv/confmat" not in summary
    assert summarize_folds([_fold(0, 0.6)])["cv/mean_class_acc_std"] == 0.0


def test_markdown_table_has_a_row_per_fold_and_the_mean():
    folds = [_fold(0, 0.6), _fold(1, 0.8)]
    metrics = {"class_names": ["a", "b"], "folds": folds, **summarize_folds(folds), "wall_seconds": 21.0}
    lines = cv_markdown(metrics).splitlines()
    assert len(lines) == 2 + 2 + 1
    assert lines[2].startswith("| 0 | 0.600 |") and "0.700 ± 0.141" in lines[-1]


def test_json_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 2}  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_json_is_strict_nan_becomes_null(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 0.5}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": 0.5}}
