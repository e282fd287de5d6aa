"""Epoch budgets from one run equal separate runs; finished work is skipped on a rerun."""

import json

import pytest
from omegaconf import OmegaConf

from flakeseg.errors import ConfigError
from flakeseg.stages import cv
from flakeseg.stages.cv import run_cross_validation
from flakeseg.stages.resume import config_differences, load_previous


@pytest.mark.slow
def test_epoch_budget_read_from_a_long_run_equals_a_short_run(tiny_cfg, tmp_path):
    # dropout 0.5 draws from the global RNG every step: any drift between the runs would show
    long_cfg = tiny_cfg("cv.fold=0", "trainer.max_epochs=4", "cv.eval_epochs=[2,4]")
    long_cfg.paths.output_dir = str(tmp_path / "long")
    long = run_cross_validation(long_cfg)
    short_cfg = tiny_cfg("cv.fold=0", "trainer.max_epochs=2")
    short_cfg.paths.output_dir = str(tmp_path / "short")
    short = run_cross_validation(short_cfg)

    fold_long, fold_short = long["folds"][0], short["folds"][0]
    assert [h["epoch"] for h in fold_long["val_history"]] == [2, 4]  # validated at the budgets only
    budget = fold_long["budgets"]["2"]
    scalars = {k: v for k, v in fold_short.items() if k.startswith("val/") and isinstance(v, float)}
    assert budget == scalars  # bitwise: the same model after 2 epochs
    assert long["budgets"]["2"]["cv/mean_class_acc"] == short["cv/mean_class_acc"]
    assert fold_long["budgets"]["4"]["val/mean_class_acc"] == fold_long["val/mean_class_acc"]
    assert fold_long["budgets"]["4"] != budget  # two more epochs changed the model


def test_eval_epochs_must_end_at_max_epochs(tiny_cfg):
    with pytest.raises(ConfigError, match=r"cv.eval_epochs: the largest budget \(3\) must equal"):
        run_cross_validation(tiny_cfg("trainer.max_epochs=2", "cv.eval_epochs=[1,3]"))
    with pytest.raises(ConfigError, match="cv.eval_epochs: expected a list"):
        run_cross_validation(tiny_cfg("cv.eval_epochs=3"))


@pytest.mark.slow
def test_rerun_skips_complete_and_keeps_finished_folds(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg()
    first = run_cross_validation(cfg)
    path = tmp_path / "metrics.json"

    def no_training(*args, **kwargs):
        raise AssertionError("a complete run was trained again")

    monkeypatch.setattr(cv, "train_fold", no_training)
    assert run_cross_validation(cfg)["cv/mean_class_acc"] == first["cv/mean_class_acc"]

    # as if killed during fold 2: folds 0 and 1 are kept, only fold 2 trains
    partial = json.loads(path.read_text())
    partial["complete"] = False
    partial["folds"] = partial["folds"][:2]
    path.write_text(json.dumps(partial))
    trained = []

    def only_missing(cfg_, images, plan, out, tracker=None):
        trained.append(plan.fold)
        return first["folds"][plan.fold]

    monkeypatch.setattr(cv, "train_fold", only_missing)
    again = run_cross_validation(cfg)
    assert trained == [2]
    assert again["complete"] and again["cv/mean_class_acc"] == pytest.approx(first["cv/mean_class_acc"])


def test_results_of_another_config_are_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    other = OmegaConf.to_container(cfg, resolve=True)
    other["optim"]["lr"] = 5.0
    (tmp_path / "metrics.json").write_text(json.dumps({"complete": True, "config": other}))
    with pytest.raises(
        ConfigError, match=r"metrics.json: holds results of a different config \(optim.lr: 5.0 ->"
    ):
        run_cross_validation(cfg)


def test_config_differences_ignore_locations_only():
    old = {"paths": {"output_dir": "/a"}, "data": {"root": "/x", "scale": 0.5}, "resume": True}
    new = {"paths": {"output_dir": "/b"}, "data": {"root": "/y", "scale": 0.5}, "resume": False}
    assert config_differences(old, new) == []
    assert config_differences(old, {**new, "seed": 1}) == ["seed"]


def test_half_written_results_count_as_absent(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"complete": tr')
    assert load_previous(path, {}) is None
    assert load_previous(tmp_path / "missing.json", {}) is None
