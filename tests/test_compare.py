"""``flakeseg compare``: the report writers on made-up results, one micro run end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flakeseg.cli.studies import compare_main as main
from flakeseg.errors import ConfigError
from flakeseg.models import build_model, is_classical
from flakeseg.studies.compare import CompareModel, CompareProfile, JobResult
from flakeseg.studies.compare_report import leader_sentence, markdown_table, result_row, write_report
from tests.conftest import compose_train


def _metrics(scores: list[float], classical: bool = False) -> dict:
    folds = [
        {
            "fold": k,
            "train_seconds": 10.0 + k,
            "val/mean_class_acc": s,
            **({"model_file": f"fold_{k}/model.npz"} if classical else {"last_checkpoint": "x"}),
        }
        for k, s in enumerate(scores)
    ]
    mean, std = float(np.mean(scores)), float(np.std(scores, ddof=1))
    return {
        "complete": True,
        "class_names": ["other", "monolayer", "bilayer"],
        "device": "CPU test",
        "wall_seconds": 33.0,
        "config": {"data": {"scale": 0.5}},
        "folds": folds,
        "cv/mean_class_acc": mean,
        "cv/mean_class_acc_std": std,
        "cv/macro_precision": 0.4,
        "cv/macro_precision_std": 0.01,
        "cv/mean_iou": 0.3,
        "cv/mean_iou_std": 0.02,
    }


def _result(
    name: str, scores: list[float] | None, classical: bool = False, dataset: str = "mos2"
) -> JobResult:
    result = JobResult(
        dataset, CompareModel(name, name.upper(), []), Path(f"/runs/{name}"), f"python train.py {name}"
    )
    if scores is None:
        result.error = "model.arch: unknown architecture"
        return result
    result.metrics = _metrics(scores, classical)
    result.extras = {
        "inference_seconds": 0.25,
        "inference_images_per_s": 4.0,
        "parameters": 30 if classical else 1_000_000,
        "parameter_kind": "fitted numbers" if classical else "weights",
        "inference_threads": 2,
    }
    result.prediction = np.zeros((6, 8), np.uint8)
    return result


def test_report_table_marks_the_leader_and_reports_failures(tmp_path):
    results = [
        _result("unet", [0.5, 0.6, 0.7]),
        _result("gmm", [0.7, 0.8, 0.75], classical=True),
        _result("bad", None),
    ]
    rows = [result_row(r) for r in results]
    assert rows[1]["kind"] == "classical" and rows[0]["kind"] == "network"
    assert rows[0]["cv_mean_class_acc"] == 0.6 and rows[0]["train_seconds_per_fold"] == 11.0
    assert rows[2]["cv_mean_class_acc"] == "" and rows[2]["error"].startswith("model.arch")
    table = markdown_table(rows).splitlines()
    assert len(table) == 2 + 3
    assert "**0.750 ± 0.050**" in table[3] and "30 fitted" in table[3] and "1,000,000" in table[2]
    assert "failed: model.arch" in table[4]
    sentence = leader_sentence(rows)
    assert sentence.startswith("Best CV mean per-class accuracy: **GMM**, 0.750 ± 0.050, 0.150 ahead of UNET")

    profile = CompareProfile("fake", ["mos2"], 3, [], [r.model for r in results])
    example = {
        "id": "00000",
        "shown_image": np.full((6, 8, 3), 200, np.uint8),
        "shown_mask": np.ones((6, 8), np.uint8),
        "colors": ["#000000", "#1f5fff", "#20c020"],
    }
    write_report(profile, results, {"mos2": example}, tmp_path, wall=12.0)
    with (tmp_path / "compare.csv").open() as handle:
        table_rows = list(csv.DictReader(handle))
    assert [r["model"] for r in table_rows] == ["unet", "gmm", "bad"]
    assert (
        float(table_rows[1]["cv_mean_class_acc"]) == 0.75
        and table_rows[1]["parameter_kind"] == "fitted numbers"
    )
    markdown = (tmp_path / "compare.md").read_text()
    assert "python train.py gmm" in markdown and "(examples_mos2.png)" in markdown
    for figure in ("compare_scores.png", "examples_mos2.png"):
        assert (tmp_path / figure).stat().st_size > 5000
    assert json.loads((tmp_path / "invocations.json").read_text())[0]["wall_s"] == 12.0


def test_every_job_of_the_cpu_profile_composes_and_builds():
    profile = CompareProfile.load("cpu")
    assert profile.datasets == ["mos2", "graphene"] and profile.folds == 3
    families = set()
    for model in profile.models:
        cfg = compose_train(profile.overrides("mos2", model, Path("/tmp/x"))[:-1])
        assert cfg.cv.folds == 3 and cfg.data.scale == 0.5
        families.add(cfg.model.name)
        built = build_model(dict(cfg.model), num_classes=3)
        if not is_classical(cfg.model):
            assert cfg.data.crop_size % built.input_multiple == 0
    assert families == {"unet_paper", "smp", "pixel_cnn", "bovw", "contrast_gmm"}


def test_printed_train_command_resumes_the_same_run_folder():
    from flakeseg.stages.resume import config_differences
    from flakeseg.studies.compare import train_command

    profile = CompareProfile.load("cpu")
    run_dir = Path("outputs/compare/mos2/bovw")
    overrides = profile.overrides("mos2", profile.models[-2], run_dir.resolve())
    command = train_command(overrides, run_dir)
    assert command.startswith("python train.py data=mos2 experiment=cpu_quick model=bovw")
    assert command.endswith("task_name=compare hydra.run.dir=outputs/compare/mos2/bovw")
    # train.py resolves hydra.run.dir to an absolute path, the compare run may have been given a relative
    # one: the resolved logger.save_dir then differs, which is where files go, not what is computed
    old = {"logger": {"save_dir": "outputs/compare/mos2/bovw"}, "model": {"name": "bovw"}}
    new = {"logger": {"save_dir": str(run_dir.resolve())}, "model": {"name": "bovw"}}
    assert config_differences(old, new) == []


def test_unknown_profile_is_one_line():
    with pytest.raises(ConfigError, match="^--profile: no profile 'nope' \\(known: cpu, micro"):
        CompareProfile.load("nope")


@pytest.mark.slow
def test_micro_compare_writes_table_and_plots_and_resumes(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAKESEG_DATA", str(data_root))
    out = tmp_path / "compare"
    assert main(["--profile", "micro", "--out", str(out)]) == 0
    with (out / "compare.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    profile = CompareProfile.load("micro")
    assert [r["model"] for r in rows] == [m.name for m in profile.models]
    for row in rows:
        assert row["error"] == "" and row["folds"] == "2"
        for key in ("cv_mean_class_acc", "cv_macro_precision", "cv_mean_iou"):
            assert 0.0 <= float(row[key]) <= 1.0
        assert float(row["inference_images_per_s"]) > 0 and int(row["parameters"]) > 0
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert metrics["cv/mean_class_acc"] == pytest.approx(float(row["cv_mean_class_acc"]), abs=1e-4)
        # every model saw the same folds
        assert [f["val_ids"] for f in metrics["folds"]] == [
            f["val_ids"]
            for f in json.loads((out / "mos2" / rows[0]["model"] / "metrics.json").read_text())["folds"]
        ]
    kinds = {r["model"]: (r["kind"], r["parameter_kind"]) for r in rows}
    assert kinds["bovw"] == ("classical", "fitted numbers") and kinds["unet_paper"] == ("network", "weights")
    markdown = (out / "compare.md").read_text()
    assert "## mos2" in markdown and "Best CV mean per-class accuracy" in markdown
    assert markdown.count("python train.py data=mos2") == len(rows)
    for figure in ("compare_scores.png", "examples_mos2.png"):
        assert (out / figure).stat().st_size > 5000

    # a rerun trains nothing: every metrics.json is complete for the same config
    stamps = {r["model"]: (Path(r["run_dir"]) / "metrics.json").stat().st_mtime_ns for r in rows}
    assert main(["--profile", "micro", "--out", str(out)]) == 0
    assert stamps == {r["model"]: (Path(r["run_dir"]) / "metrics.json").stat().st_mtime_ns for r in rows}
    assert len(json.loads((out / "invocations.json").read_text())) == 2
