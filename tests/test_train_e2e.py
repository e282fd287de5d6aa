"""End-to-end cross-validation on the real data at a tiny size."""

import json
import os
import subprocess
import sys

import pytest
import torch

from flakeseg.stages.cv import run_cross_validation
from flakeseg.training.module import FlakeSegModule
from tests.conftest import REPO_ROOT, compose_train

HEADLINE_KEYS = ["cv/mean_class_acc", "cv/macro_precision", "cv/mean_iou"]


def _check_metrics(path, class_names, n_folds=3):
    metrics = json.loads(path.read_text())
    assert metrics["complete"] is True
    for key in HEADLINE_KEYS:
        assert 0.0 <= metrics[key] <= 1.0
        assert metrics[f"{key}_std"] >= 0.0
    for name in class_names:
        for kind in ("acc", "precision", "iou"):
            assert f"cv/{kind}_{name}" in metrics
    assert metrics["class_names"] == class_names
    assert [f["fold"] for f in metrics["folds"]] == list(range(n_folds))
    val_ids = [i for f in metrics["folds"] for i in f["val_ids"]]
    assert len(val_ids) == len(set(val_ids))
    for fold in metrics["folds"]:
        assert not set(fold["train_ids"]) & set(fold["val_ids"])
        assert len(fold["val/confmat"]) == len(class_names)
        assert len(fold["median_frequency_weights"]) == len(class_names)
        for key in ("val/mean_class_acc", "val/macro_precision", "val/mean_iou"):
            assert 0.0 <= fold[key] <= 1.0
    mean = sum(f["val/mean_class_acc"] for f in metrics["folds"]) / n_folds
    assert metrics["cv/mean_class_acc"] == pytest.approx(mean)
    return metrics


@pytest.mark.slow
def test_mos2_cv_writes_every_metric_and_checkpoints(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    run_cross_validation(cfg)
    metrics = _check_metrics(tmp_path / "metrics.json", ["other", "monolayer", "bilayer"])
    assert set(i for f in metrics["folds"] for i in f["val_ids"]) == set(cfg.data.split.train)
    for fold in metrics["folds"]:
        best = torch.load(fold["best_checkpoint"], weights_only=True, map_location="cpu")
        assert best["hyper_parameters"]["class_names"] == ["other", "monolayer", "bilayer"]
        assert os.path.exists(fold["last_checkpoint"])
        # median-frequency weights were computed on this fold's training masks
        counts = fold["class_pixel_counts"]
        total = sum(counts)
        freqs = sorted(c / total for c in counts)
        assert fold["median_frequency_weights"][1] == pytest.approx(freqs[1] / (counts[1] / total))
        assert fold["loss_weighted"] is True
        assert best["hyper_parameters"]["class_weights"] == fold["median_frequency_weights"]
    model = FlakeSegModule.load_from_checkpoint(metrics["folds"][0]["best_checkpoint"], map_location="cpu")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert (tmp_path / "csv" / "fold_0" / "metrics.csv").exists()
    # one learning-curve point per training epoch, and the plot of them
    assert [h["epoch"] for h in metrics["folds"][0]["val_history"]] == [1]
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize(("every", "epochs", "validated"), [(1, 1, [1]), (2, 3, [2])])
def test_a_fold_is_scored_on_its_final_weights(tiny_cfg, tmp_path, every, epochs, validated):
    """Validated in the last epoch, the fold keeps that validation's scores; validated earlier only, the
    final weights are validated after training. Either way the scores are those of the last weights."""
    from flakeseg.data import load_dataset
    from flakeseg.evaluation.regions import pixel_scores
    from flakeseg.inference.predictor import load_predictor

    cfg = tiny_cfg("cv.fold=0", f"trainer.max_epochs={epochs}", f"trainer.check_val_every_n_epoch={every}")
    run_cross_validation(cfg)
    fold = json.loads((tmp_path / "metrics.json").read_text())["folds"][0]
    assert [h["epoch"] for h in fold["val_history"]] == validated and fold["epochs"] == epochs
    predictor = load_predictor(fold["last_checkpoint"])
    val = load_dataset(cfg.data, ids=fold["val_ids"], progress=False)
    preds = [predictor.probabilities_at_model_scale(image).argmax(axis=0) for image in val.images]
    assert fold["val/confmat"] == pixel_scores(preds, val.masks, list(val.scheme.names), "val")["val/confmat"]


@pytest.mark.slow
def test_graphene_cv(tiny_cfg, tmp_path):
    run_cross_validation(tiny_cfg("data=graphene"))
    metrics = _check_metrics(tmp_path / "metrics.json", ["other", "monolayer", "bilayer"])
    assert metrics["data"] == "graphene"
    assert len([i for f in metrics["folds"] for i in f["val_ids"]]) == 30


@pytest.mark.slow
def test_four_class_scheme_and_single_fold(tiny_cfg, tmp_path):
    run_cross_validation(tiny_cfg("data/classes=four", "cv.fold=1", "loss=ce", "logger=tensorboard"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["class_names"] == ["substrate", "monolayer", "bilayer", "thick"]
    assert [f["fold"] for f in metrics["folds"]] == [1]
    assert metrics["cv/mean_class_acc_std"] == 0.0
    assert list((tmp_path / "tensorboard" / "fold_1").glob("events.out.tfevents.*"))


def _train_py(*args, cwd=REPO_ROOT, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_bad_config_value_is_one_line_naming_the_key(tmp_path):
    result = _train_py("optim.lr=-1", f"hydra.run.dir={tmp_path}", env_extra={"FLAKESEG_DATA": str(tmp_path)})
    assert result.returncode == 1
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "optim.lr: must be > 0" in errors[0]
    assert "Traceback" not in output


def test_missing_data_says_how_to_get_it(tmp_path):
    result = _train_py(f"hydra.run.dir={tmp_path}", env_extra={"FLAKESEG_DATA": ""})
    assert result.returncode == 1
    assert "make data" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_crop_not_a_multiple_of_the_stride_is_refused(tiny_cfg):
    from flakeseg.errors import ConfigError

    with pytest.raises(ConfigError, match="data.crop_size: 60 is not a multiple of 16"):
        run_cross_validation(tiny_cfg("data.crop_size=60"))


@pytest.mark.parametrize(
    "override,key",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("cv.fold=3", "cv.fold"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("data.scale=0", "data.scale"),
        ("cv.folds=1", "cv.folds"),
    ],
)
def test_config_checks_name_the_key(override, key):
    from flakeseg.errors import ConfigError
    from flakeseg.stages.config_checks import validate_config

    with pytest.raises(ConfigError, match=f"^{key}:"):
        validate_config(compose_train([override]))


def test_presets_compose_and_command_line_wins():
    paper = compose_train(["experiment=paper"])
    assert (paper.model.base_channels, paper.data.crop_size, paper.trainer.accelerator) == (64, 512, "gpu")
    assert paper.loss.name == "weighted_ce" and paper.augment.name == "contrast"
    assert compose_train(["experiment=paper", "trainer=cpu"]).trainer.accelerator == "cpu"
    assert compose_train(["experiment=paper", "augment=gray"]).augment.grayscale_p > 0
    quick = compose_train([])
    assert quick.model.base_channels < 64 and quick.data.scale < 1
    # presets override top-level defaults of train.yaml too, and the command line overrides presets
    assert quick.fast.channels_last is True and quick.data.num_workers == 0
    assert compose_train(["fast.channels_last=false"]).fast.channels_last is False
