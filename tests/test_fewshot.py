"""``flakeseg fewshot``: the profile, the image sets of the draws and the report on made-up results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flakeseg.errors import ConfigError
from flakeseg.studies.fewshot import METRICS, FewshotProfile, FewshotRun, draw_sets, images_with_flakes
from flakeseg.studies.fewshot_report import write_report
from tests.conftest import compose_train

IDS = [f"{i:03d}" for i in range(30)]


def test_the_cpu_profile_compares_fine_tuning_from_mos2_with_scratch_on_graphene():
    profile = FewshotProfile.load("cpu")
    assert profile.datasets == ["graphene"] and profile.ks == ["1", "3", "5", "10", "all"]
    assert profile.arms == {"finetuned": ["model.init_from=mos2"], "scratch": []}
    assert profile.draws >= 3 and profile.pool == "with_flakes"


def test_draws_are_fixed_distinct_nested_in_the_pool_and_all_is_everything():
    pool = IDS[:21]
    sets = draw_sets(IDS, ["1", "3", "5", "all"], draws=3, seed=0, pool=pool)
    assert sets == draw_sets(IDS, ["1", "3", "5", "all"], draws=3, seed=0, pool=pool)  # reruns resume
    assert sets["all"] == [IDS]
    for k in ("1", "3", "5"):
        assert len(sets[k]) == 3 and all(len(s) == int(k) for s in sets[k])
        assert all(set(s) <= set(pool) for s in sets[k])
        assert len({tuple(s) for s in sets[k]}) == 3  # no draw repeats another
    assert draw_sets(IDS, ["5"], 3, seed=1, pool=pool) != sets["5"]
    with pytest.raises(ConfigError, match="k=40 is more than the 21"):
        draw_sets(IDS, ["40"], 3, 0, pool)
    with pytest.raises(ConfigError, match="fewer than 3 distinct sets of 2 among 2"):
        draw_sets(IDS, ["2"], 3, 0, IDS[:2])


def test_the_pool_holds_the_images_whose_labels_show_a_flake(data_root: Path):
    """Nine of graphene's 30 training images have no monolayer or bilayer pixel (034-044)."""
    cfg = compose_train(["data=graphene", f"data.root={data_root}"])
    train = list(cfg.data.split.train)
    pool = images_with_flakes(cfg.data, train)
    assert len(pool) == 21 and "001" in pool and "039" not in pool


def test_bad_profiles_are_one_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets: [graphene]\nks: [1, many]\narms: {a: []}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: ks: 'many' is neither"):
        FewshotProfile.load(str(path))
    path.write_text("datasets: [graphene, mos2]\nks: [1]\narms: {a: []}\n")
    with pytest.raises(ConfigError, match="one data set per few-shot profile"):
        FewshotProfile.load(str(path))


def _run(arm: str, k: str, draw: int, region: float, train_s: float = 60.0) -> FewshotRun:
    scores = {
        "heldout/flake_f1_monolayer_device": region - 0.1,
        "heldout/flake_f1_bilayer_device": 0.4,
        "heldout/mean_class_acc": 0.6,
        "test/flake_f1_monolayer_device": region,
        "test/flake_f1_bilayer_device": 0.5,
        "test/region_accuracy": region,
        "test/macro_precision": 0.8,
        "test/mean_class_acc": 0.7,
    }
    if k == "all":  # every training image drawn: nothing held out
        scores |= {key: math.nan for key in scores if key.startswith("heldout/")}
    ids = IDS if k == "all" else IDS[: int(k)]
    return FewshotRun(
        "graphene", arm, k, draw, ids, Path("r"), "python train.py ...", {**scores, "train_s": train_s}
    )


def test_report_json_has_the_documented_shape_and_the_draws_spread(tmp_path: Path):
    profile = FewshotProfile.load("cpu")
    results = [
        _run("finetuned", "5", 0, 0.6),
        _run("finetuned", "5", 1, 0.8, train_s=80.0),
        _run("scratch", "5", 0, 0.2),
        _run("scratch", "all", 0, 0.5),
        FewshotRun("graphene", "scratch", "5", 1, IDS[:5], Path("r"), "cmd", error="DataError: broken"),
    ]
    write_report(profile, results, tmp_path, wall_seconds=12.0)
    table = json.loads((tmp_path / "fewshot.json").read_text())
    assert set(table) == {"finetuned", "scratch"}
    cell = table["finetuned"]["5"]
    assert set(cell) == {*METRICS, *(f"{m}_std" for m in METRICS), "train_s", "train_s_std", "draws"}
    assert cell["test/region_accuracy"] == pytest.approx(0.7) and cell[
        "test/region_accuracy_std"
    ] == pytest.approx(0.1)
    assert cell["draws"] == 2 and cell["train_s"] == pytest.approx(70.0)
    assert table["scratch"]["5"]["draws"] == 1  # the failed draw counts nowhere
    page = (tmp_path / "fewshot.md").read_text()
    assert (
        "| 5 | finetuned | 0.600 ± 0.100 | 0.400 ± 0.000 | 0.600 ± 0.000 | 0.700 ± 0.100 | 0.500 ± 0.000 |"
        in page
    )
    assert "| 10 | scratch | — |" in page
    assert "| all | scratch | — | — | — | 0.500 ± 0.000 |" in page  # no held-out images, no nan cells
    assert "scratch, k=5, draw 1: DataError: broken" in page
    assert (tmp_path / "fewshot.png").stat().st_size > 10_000


def test_a_run_is_scored_on_the_training_images_it_did_not_draw(monkeypatch, tmp_path: Path):
    """Arms are compared on held-out training images (``heldout/...``), never on the test split: the
    job scores its model on every training image outside its set, and on the test split anew (a
    resumed run's stored test scores may predate a change to what ``predict`` lists)."""
    import flakeseg.stages.model_evaluation as model_evaluation
    import flakeseg.stages.test_split as test_split
    from flakeseg.studies.fewshot import run_job

    scored = []

    def fake_test_stage(cfg, started=None):
        return {"checkpoint": "final.ckpt", "train_seconds": 1.0, "test/flake_f1_monolayer_device": 0.3}

    def fake_evaluate(model, data, split="test", progress=True, ids=None, **options):
        scored.append({"model": model, "data": data, "split": split, "ids": ids and list(ids)})
        value = 0.9 if ids else 0.5
        return {"test/flake_f1_monolayer_device": value, "test/mean_class_acc": 0.8}

    monkeypatch.setattr(test_split, "run_test_stage", fake_test_stage)
    monkeypatch.setattr(model_evaluation, "evaluate_model", fake_evaluate)
    profile = FewshotProfile.load("cpu")
    result = run_job(profile, "graphene", "scratch", "3", 0, IDS[:3], tmp_path, train_ids=IDS)
    assert result.error is None
    assert scored == [
        {"model": "final.ckpt", "data": "graphene", "split": "test", "ids": None},
        {"model": "final.ckpt", "data": "graphene", "split": "test", "ids": IDS[3:]},
    ]
    assert result.scores["heldout/flake_f1_monolayer_device"] == 0.9
    assert result.scores["test/flake_f1_monolayer_device"] == 0.5  # scored anew, not the stored 0.3
    everything = run_job(profile, "graphene", "scratch", "all", 0, IDS, tmp_path, train_ids=IDS)
    assert math.isnan(everything.scores["heldout/mean_class_acc"])  # k = all: nothing held out
