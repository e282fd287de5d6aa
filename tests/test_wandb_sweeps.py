"""W&B logging offline, the sweep files through W&B's engine, and `sweep-local`."""

import json
import warnings
from pathlib import Path

import pytest
import sweeps

from flakeseg.stages.config_checks import validate_config
from flakeseg.stages.cv import run_cross_validation
from flakeseg.studies.sweep_local import _plain, load_sweep, override_value, run_argv
from flakeseg.training.wandb_tracking import resolve_mode
from tests.conftest import REPO_ROOT, TINY, compose_train
from tests.wandb_records import run_info

SWEEP_FILES = sorted((REPO_ROOT / "sweeps").glob("*.yaml"))


def _engine(sweep):
    return {k: v for k, v in sweep.items() if k != "run_cap"}


def _generated_overrides(path, n=3):
    sweep = load_sweep(path)
    runs, out = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            suggestion = sweeps.next_run(_engine(sweep), runs, validate=True)
            params = {k: {"value": _plain(v["value"])} for k, v in suggestion.config.items()}
            argv = run_argv(sweep, params, [], Path("unused"))
            out.append(argv[2:-1])  # drop interpreter, program and the run folder
            runs.append(sweeps.SweepRun(name=str(i), state="finished", config=suggestion.config))
    return sweep, out


def test_there_are_the_three_sweep_files():
    assert {p.name for p in SWEEP_FILES} == {"paper_grid.yaml", "random.yaml", "bayes.yaml"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_generated_run_composes_into_a_valid_config(path, data_root):
    sweep, override_lists = _generated_overrides(path)
    assert sweep["program"] == "train.py" and sweep["metric"]["name"] == "cv/mean_class_acc"
    assert "${args_no_hyphens}" in sweep["command"]
    for overrides in override_lists:
        cfg = compose_train([*overrides, f"data.root={data_root}", "paths.output_dir=/tmp/unused"])
        validate_config(cfg)
        assert cfg.logger.name == "wandb"
        for item in overrides:
            key, value = item.split("=", 1)
            if "." in key:  # a value override reached the config as a number where it is one
                node = cfg
                for part in key.split("."):
                    node = node[part]
                assert str(node) == value or float(node) == float(value)


def test_sweep_numbers_parse_as_numbers():
    for path in SWEEP_FILES:
        for name, spec in load_sweep(path)["parameters"].items():
            for value in [*spec.get("values", []), spec.get("min", 1.0), spec.get("max", 1.0)]:
                if name in ("optim.lr", "data.batch_size", "trainer.max_epochs"):
                    assert isinstance(value, (int, float)), f"{path.name}: {name}: {value!r} is not a number"
    assert (
        override_value(1e-5) == "1.0e-05"
        and override_value(None) == "null"
        and override_value(True) == "true"
    )


def test_wandb_mode_without_key_is_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert resolve_mode("auto") == ("offline", "no W&B API key")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto")[0] == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == ("offline", "WANDB_MODE")


def _logged(run, *names):
    """Whether every name was logged (media and tables are stored as ``name/<field>`` keys)."""
    keys = run["history_keys"]
    return all(any(k == n or k.startswith(n + "/") for k in keys) for n in names)


def _offline_runs(folder):
    return sorted((folder / "wandb").glob("offline-run-*"))


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_one_generated_run_per_sweep_trains_with_wandb_offline(path, data_root, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    _, (overrides, *_) = _generated_overrides(path, n=1)
    # the generated values first, then the tiny sizes (the paper grid asks for up to 500 epochs)
    generated = [o for o in overrides if not o.startswith("experiment=")]
    cfg = compose_train(
        [*generated, *TINY, f"data.root={data_root}", f"paths.output_dir={tmp_path}", "cv.folds=2"]
    )
    metrics = run_cross_validation(cfg)
    assert metrics["complete"]
    runs = [run_info(next(r.glob("*.wandb"))) for r in _offline_runs(tmp_path)]
    assert len(runs) == 3  # one CV run and one run per fold, each finished on its own
    assert len({r["id"] for r in runs}) == 3 and {r["group"] for r in runs} == {tmp_path.name}
    (cv_run,) = [r for r in runs if r["job_type"] == "cv"]
    assert cv_run["summary"]["cv/mean_class_acc"] == pytest.approx(metrics["cv/mean_class_acc"])
    assert cv_run["summary"]["cv/mean_class_acc_std"] == pytest.approx(metrics["cv/mean_class_acc_std"])
    assert _logged(cv_run, "val/roc_pr", "val/confusion_matrix", "val/curves", "val/confmat")
    fold_runs = sorted((r for r in runs if r["job_type"] == "fold"), key=lambda r: r["name"])
    for fold_run, fold in zip(fold_runs, metrics["folds"], strict=True):
        # each fold's numbers are in its own run: nothing leaked from one fold into the other
        assert fold_run["summary"]["val/mean_class_acc"] == pytest.approx(fold["val/mean_class_acc"])
        weights = fold_run["summary"]["median_frequency_weights"]
        assert list(weights.values()) == pytest.approx(fold["median_frequency_weights"])
        assert _logged(fold_run, "val/predictions", "train/loss_epoch", "val/mean_class_acc")
    assert (tmp_path / "csv" / "fold_0" / "metrics.csv").is_file()  # the local record of truth


@pytest.mark.slow
def test_sweep_local_bayes_runs_and_reports_back_to_the_engine(data_root, tmp_path, monkeypatch):
    from flakeseg.studies.sweep_local import main

    out = tmp_path / "sweep"
    monkeypatch.setenv("FLAKESEG_DATA", str(data_root))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(REPO_ROOT)  # the sweep file's program, train.py, as an agent finds it
    # in this process: the runs are the sweep command's own processes, as a W&B agent starts them
    argv = ["sweeps/bayes.yaml", "--count", "3", "--out", str(out), *TINY, "cv.folds=2", "logger=csv"]
    assert main(argv) == 0
    results = json.loads((out / "sweep_local.json").read_text())
    assert [r["name"] for r in results["runs"]] == ["run_000", "run_001", "run_002"]
    for record in results["runs"]:
        metrics = json.loads((Path(record["run_dir"]) / "metrics.json").read_text())
        assert record["value"] == metrics["cv/mean_class_acc"]  # what the engine was told
        assert metrics["config"]["optim"]["lr"] == pytest.approx(record["config"]["optim.lr"]["value"])
    # the engine sees the three results as the samples of its Gaussian process
    from sweeps.bayes_search import _construct_gp_data, bayes_baseline_validate_and_fill

    from flakeseg.studies.sweep_local import _sweep_run

    sweep = bayes_baseline_validate_and_fill(_engine(load_sweep(REPO_ROOT / "sweeps" / "bayes.yaml")))
    runs = [_sweep_run(r, "cv/mean_class_acc") for r in results["runs"]]
    samples = _construct_gp_data(runs, sweep)[3]
    assert sorted(abs(float(v)) for v in samples) == pytest.approx(
        sorted(r["value"] for r in results["runs"])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sweeps.next_run(sweep, runs, validate=True).search_info["predicted_value"] is not None
