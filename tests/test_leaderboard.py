"""``flakeseg leaderboard``: the profile, the rows and the report on made-up results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flakeseg.errors import ConfigError
from flakeseg.studies.leaderboard import ROW_KEYS, BoardModel, BoardResult, LeaderboardProfile, board_row
from flakeseg.studies.leaderboard_report import write_report


def _metrics(acc: float, pooled_precision: float, flake_f1: float = 0.5) -> dict:
    flakes = {
        f"cv/flake_{k}_{n}{s}": flake_f1
        for k in ("f1", "precision", "recall")
        for n in ("monolayer", "bilayer")
        for s in ("", "_device")
    }
    return {
        **flakes,
        "cv/flake_ap50_monolayer": flake_f1,
        "cv/flake_ap50_bilayer": flake_f1,
        "cv/mean_class_acc": acc,
        "cv/mean_class_acc_std": 0.05,
        "cv/macro_precision": pooled_precision - 0.1,  # the fold mean: not what the board shows
        "cv/pooled_macro_precision": pooled_precision,
        "cv/mean_iou": 0.5,
        "folds": [{"train_seconds": 10.0}, {"train_seconds": 12.5}, {"train_seconds": 11.0}],
    }


def test_the_cpu_profile_has_every_family_and_protocol():
    profile = LeaderboardProfile.load("cpu")
    assert {m.kind for m in profile.models} == {"network", "classical"}
    assert [m.name for m in profile.models][:2] == ["best_network", "paper_recipe"]
    # the trivial rows that show what each number rewards
    assert {"constant_monolayer", "constant_bilayer"} <= {m.name for m in profile.models}
    assert {p.name: p.datasets for p in profile.protocols} == {
        "paper": ["mos2", "graphene"],
        "upstream": ["mos2"],
    }
    model = profile.models[0]
    overrides = profile.overrides("mos2", "upstream", model, Path("/r"))
    assert "protocol=upstream" in overrides and "cv.repeats=1" in overrides
    # zero labels: each material screened by the optics with the setup fitted on the other's labels
    optics = next(m for m in profile.models if m.name == "optics_zero_labels")
    assert "model.setup=paper_graphene" in profile.overrides("mos2", "paper", optics, Path("/r"))
    assert "model.setup=paper_mos2" in profile.overrides("graphene", "paper", optics, Path("/r"))
    assert "model.setup=paper_mos2" not in profile.overrides("mos2", "paper", optics, Path("/r"))


def test_the_optics_rows_compose_with_the_other_materials_setup():
    from tests.conftest import compose_train

    profile = LeaderboardProfile.load("cpu")
    optics = next(m for m in profile.models if m.name == "optics_zero_labels")
    for dataset, setup in (("mos2", "paper_graphene"), ("graphene", "paper_mos2")):
        cfg = compose_train(profile.overrides(dataset, "paper", optics, Path("/r"))[:-1])
        assert (cfg.model.name, cfg.model.setup, cfg.data.name) == ("optics", setup, dataset)


def test_a_bad_kind_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "datasets: [mos2]\nprotocols: {paper: [mos2]}\nmodels:\n  - {name: a, kind: deep, overrides: []}\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml: model a: kind must be network or classical"):
        LeaderboardProfile.load(str(path))


def test_a_per_dataset_override_for_a_data_set_not_run_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "datasets: [mos2]\nprotocols: {paper: [mos2]}\nmodels:\n"
        "  - {name: a, kind: classical, overrides: [], per_dataset: {hbn: [model.setup=x]}}\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml: model a: per_dataset names \['hbn'\]"):
        LeaderboardProfile.load(str(path))


def test_row_keys_sum_of_training_and_pooled_precision():
    model = BoardModel("gmm", "GMM", "classical", [])
    row = board_row(model, _metrics(0.9, 0.8), {"test/region_accuracy": 0.75, "test/flake_f1_monolayer": 0.4})
    assert tuple(row)[: len(ROW_KEYS)] == ROW_KEYS
    assert row["cv/flake_f1_monolayer_device"] == 0.5 and row["test/flake_f1_monolayer"] == 0.4
    assert row["cv/macro_precision"] == 0.8 and row["train_s"] == pytest.approx(33.5)
    assert board_row(model, _metrics(0.9, 0.8), None)["test/region_accuracy"] is None


def test_report_json_has_the_documented_shape(tmp_path):
    profile = LeaderboardProfile.load("cpu")
    best, gmm = profile.models[0], next(m for m in profile.models if m.name == "contrast_gmm")
    results = [
        BoardResult(
            "mos2",
            "paper",
            best,
            tmp_path,
            "cmd1",
            row=board_row(best, _metrics(0.82, 0.77, flake_f1=0.91), {"test/region_accuracy": 0.9}),
        ),
        BoardResult(
            "mos2",
            "paper",
            gmm,
            tmp_path,
            "cmd2",
            row=board_row(gmm, _metrics(0.6, 0.5), {"test/region_accuracy": 0.5}),
        ),
        BoardResult(
            "mos2", "upstream", best, tmp_path, "cmd3", row=board_row(best, _metrics(0.86, 0.8), None)
        ),
        BoardResult("mos2", "upstream", gmm, tmp_path, "cmd4", error="boom"),
    ]
    path = write_report(profile, results, tmp_path, 12.0)
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert set(board) == {"mos2"} and set(board["mos2"]) == {"paper", "upstream"}
    assert set(board["mos2"]["paper"]) == {"best_network", "contrast_gmm"}
    assert set(ROW_KEYS) <= set(board["mos2"]["paper"]["best_network"])
    assert board["mos2"]["paper"]["best_network"]["cv/flake_f1_bilayer_device"] == 0.91
    assert board["mos2"]["upstream"]["best_network"]["test/region_accuracy"] is None
    text = path.read_text()
    assert "**0.820 ± 0.050**" in text and "failed: boom" in text and "`cmd3`" in text
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    assert header.index("flake F1 monolayer >= 600 px") < header.index("CV mean per-class acc")
    assert "| **0.910** | **0.910** |" in text  # the best flake F1, monolayer and bilayer
    assert (tmp_path / "leaderboard.png").stat().st_size > 0


def test_report_only_trains_nothing_and_says_which_rows_did_not_run(tmp_path):
    from flakeseg.studies.leaderboard import run_leaderboard

    profile = LeaderboardProfile.load("cpu")
    results = run_leaderboard(profile, ["mos2"], tmp_path / "out", tmp_path / "runs", report_only=True)
    assert len(results) == 2 * len(profile.models)  # paper and upstream on MoS2
    assert all(r.row is None and r.error.startswith("not run") for r in results)
    assert not (tmp_path / "runs").exists()
    assert json.loads((tmp_path / "out" / "leaderboard.json").read_text()) == {}


def test_a_partial_invocation_keeps_the_other_rows_of_the_report_it_finds(tmp_path):
    """``--dataset`` / ``--models`` run part of the profile: the rows they do not run stay in the
    report, marked, while a row they run (even one that does not finish) is never the stale one."""
    from flakeseg.studies.leaderboard import run_leaderboard

    profile = LeaderboardProfile.load("cpu")
    best, gmm = profile.models[0], next(m for m in profile.models if m.name == "contrast_gmm")
    out = tmp_path / "out"
    out.mkdir()
    earlier = {
        "mos2": {"paper": {"best_network": board_row(best, _metrics(0.8, 0.7, flake_f1=0.61), None)}},
        "graphene": {
            "paper": {
                "best_network": board_row(best, _metrics(0.7, 0.6, flake_f1=0.42), None),
                "contrast_gmm": board_row(gmm, _metrics(0.5, 0.4, flake_f1=0.23), None),
            }
        },
        "elsewhere": {"paper": {"best_network": board_row(best, _metrics(0.1, 0.1), None)}},
    }
    (out / "leaderboard.json").write_text(json.dumps(earlier))

    results = run_leaderboard(
        profile, ["graphene"], out, tmp_path / "runs", report_only=True, models=["best_network"]
    )
    assert [(r.dataset, r.protocol, r.model.name) for r in results] == [("graphene", "paper", "best_network")]
    assert results[0].error.startswith("not run")
    board = json.loads((out / "leaderboard.json").read_text())
    # kept: the rows this invocation did not run (of the profile's data sets only); the rerun row is gone
    assert board == {
        "mos2": {"paper": {"best_network": earlier["mos2"]["paper"]["best_network"]}},
        "graphene": {"paper": {"contrast_gmm": earlier["graphene"]["paper"]["contrast_gmm"]}},
    }
    text = (out / "leaderboard.md").read_text()
    assert "| optical contrast + GMM (earlier invocation) | classical |" in text
    assert "- mos2 / paper / best_network (earlier invocation): `python train.py data=mos2" in text
    assert "| best network recipe (best_cpu) | not run" in text

    with pytest.raises(ConfigError, match="--models: nope not in the profile"):
        run_leaderboard(profile, ["graphene"], out, tmp_path / "runs", report_only=True, models=["nope"])
    (out / "leaderboard.json").write_text("{broken")
    with pytest.raises(ConfigError, match="leaderboard.json: not a leaderboard.json"):
        run_leaderboard(profile, ["graphene"], out, tmp_path / "runs", report_only=True)
