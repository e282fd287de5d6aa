"""Post-processing, the evaluation of CV fold models (TTA, ensemble, temperature) and the ablation runner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flakeseg.errors import ConfigError
from flakeseg.evaluation.postprocess import choose_postprocess, postprocessed_map
from flakeseg.stages.fold_evaluation import (
    CVPredictions,
    EvalOptions,
    apply_temperature,
    evaluate_predictions,
)


def test_postprocess_choice_takes_the_best_score_and_the_least_dropped_on_ties():
    table = {0: 0.5, 10: 0.7, 25: 0.7, 50: 0.6}
    best, scores = choose_postprocess(
        lambda a, c: table[a] + (0.1 if c == 0.6 else 0.0), [50, 25, 10, 0], [0.6, 0.5]
    )
    assert best == (10, 0.6) and list(scores)[:2] == [(0, 0.5), (0, 0.6)]
    best, _ = choose_postprocess(lambda a, c: table[a], [50, 25, 10, 0], [0.7, 0.5])
    assert best == (10, 0.5)  # a tie in confidence: the lower, which drops less
    with pytest.raises(ValueError):
        choose_postprocess(lambda a, c: 0.0, [], [0.5])


def test_postprocessed_map_drops_what_predict_would_not_list():
    probs = np.zeros((3, 10, 10), np.float32)
    probs[0] = 1.0
    probs[:, 0:2, 0:2] = np.array([0.0, 1.0, 0.0])[:, None, None]  # 4 px monolayer, sure
    probs[:, 5:10, 5:10] = np.array([0.0, 0.0, 1.0])[:, None, None]  # 25 px bilayer, sure
    probs[:, 5:10, 0:4] = np.array([0.4, 0.6, 0.0])[:, None, None]  # 20 px monolayer, unsure
    shown = postprocessed_map(probs, ["other", "monolayer", "bilayer"], [1, 2], 5, 0.7)
    assert shown[0:2, 0:2].max() == 0 and (shown[5:10, 0:4] == 0).all()
    assert (shown[5:10, 5:10] == 2).all()


def test_eval_options_from_config_refuse_bad_values_by_key():
    assert EvalOptions.from_config(
        {"tta": True, "min_areas": [0, 5], "min_confidences": [0.5, 1]}
    ) == EvalOptions(tta=True, min_areas=(0, 5), min_confidences=(0.5, 1.0))
    for bad in ([1.5], [], "0.5", [True]):
        with pytest.raises(ConfigError, match=r"evaluate\.min_confidences"):
            EvalOptions.from_config({"min_confidences": bad})
    with pytest.raises(ConfigError, match=r"evaluate\.tta: must be true or false"):
        EvalOptions.from_config({"tta": "yes"})
    with pytest.raises(ConfigError, match=r"evaluate\.bogus: unknown key"):
        EvalOptions.from_config({"bogus": True})
    with pytest.raises(ConfigError, match=r"evaluate\.min_areas"):
        EvalOptions.from_config({"min_areas": [-1]})
    with pytest.raises(ConfigError, match=r"evaluate\.min_areas"):
        EvalOptions.from_config({"min_areas": 50})


def test_evaluate_keys_are_checked_before_training_and_never_block_a_resume():
    from flakeseg.stages.config_checks import validate_config
    from flakeseg.stages.resume import config_differences
    from tests.conftest import compose_train

    with pytest.raises(ConfigError, match=r"evaluate\.tta: .*not model=bovw"):
        validate_config(compose_train(["model=bovw", "evaluate.tta=true"]))
    with pytest.raises(ConfigError, match=r"evaluate\.min_areas"):
        validate_config(compose_train(["evaluate.min_areas=7"]))
    plain = {"optim": {"lr": 1e-3}, "evaluate": {"tta": False}}
    assert config_differences(plain, {"optim": {"lr": 1e-3}, "evaluate": {"tta": True}}) == []
    assert (
        config_differences({"optim": {"lr": 1e-3}}, {"optim": {"lr": 1e-3}, "evaluate": {"tta": True}}) == []
    )
    assert config_differences(plain, {"optim": {"lr": 1e-4}, "evaluate": {"tta": False}}) == ["optim.lr"]


def test_temperature_keeps_the_argmax_and_flattens_or_sharpens():
    prob = np.array([[[0.7]], [[0.2]], [[0.1]]], np.float32)
    hot, cold = apply_temperature(prob, 2.0), apply_temperature(prob, 0.5)
    assert hot.argmax(0) == cold.argmax(0) == 0
    assert hot[0, 0, 0] < 0.7 < cold[0, 0, 0]
    assert hot.sum() == pytest.approx(1.0) and cold.sum() == pytest.approx(1.0)


def _synthetic_predictions(seed: int = 0, fold_confidence=(0.99, 0.99, 0.99)) -> CVPredictions:
    """Three folds of over-confident models on 32 x 32 images: one big flake and specks of noise.

    Each model gives its predicted class probability 0.99, and is right about 70 % of the time on the
    big flake (70 %). Specks of wrong bilayer (single pixels) sit on the substrate.
    """
    rng = np.random.default_rng(seed)

    def image(top: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
        mask = np.zeros((32, 32), np.uint8)
        mask[4:28, 4:28] = 1
        pred = mask.copy()
        flip = rng.random(mask.shape) < 0.3
        pred[flip & (mask == 1)] = 0
        for _ in range(6):  # isolated wrong bilayer pixels on the substrate
            y, x = rng.integers(0, 6, size=2) * 5 + 1
            if mask[y, x] == 0:
                pred[y, x] = 2
        prob = np.full((3, 32, 32), (1 - top) / 2, np.float32)
        np.put_along_axis(prob, pred[None].astype(np.int64), top, axis=0)
        return mask, prob

    val_masks, val_probs, test_probs = [], [], []
    for top in fold_confidence:
        pairs = [image(top) for _ in range(3)]
        val_masks.append([m for m, _ in pairs])
        val_probs.append([p for _, p in pairs])
    test = [image() for _ in range(2)]
    test_masks = [m for m, _ in test]
    for _ in range(3):
        test_probs.append([image()[1] for _ in range(2)])
    return CVPredictions(
        class_names=["other", "monolayer", "bilayer"],
        flake_classes=[1, 2],
        val_masks=val_masks,
        val_probs=val_probs,
        val_stored_masks=val_masks,
        test_ids=["a", "b"],
        test_masks=test_masks,
        test_probs=test_probs,
        test_stored_masks=test_masks,
        region_min_area=10,
    )


def test_evaluation_steps_do_what_they_claim_on_synthetic_predictions():
    preds = _synthetic_predictions()
    plain = evaluate_predictions(preds, EvalOptions())
    # every held-out pixel is predicted with probability 0.99 but right ~83 % of the time
    assert plain["cv/ece"] > 0.1 and plain["temperatures"] == [1.0, 1.0, 1.0]
    assert plain["test/models"] == "each fold model" and len(plain["temperatures"]) == 3
    # the specks are the only bilayer: the macro precision suffers until post-processing drops them
    post = evaluate_predictions(preds, EvalOptions(postprocess=True))
    assert post["postprocess_min_area"] >= 100 and post["postprocess"]["min_confidence"] >= 0.5
    assert post["cv/macro_precision"] > plain["cv/macro_precision"]
    # the flake scores: one big flake per image, found in every held-out image
    assert post["cv/flake_recall_monolayer"] == 1.0 and post["cv/flake_tp_monolayer"] == 9
    assert post["test/flake_f1_monolayer"] == 1.0
    # temperature fitted on the other folds flattens the over-confident probabilities
    calibrated = evaluate_predictions(preds, EvalOptions(temperature=True))
    assert all(t > 1.5 for t in calibrated["temperatures"]) and calibrated["test_temperature"] > 1.5
    assert calibrated["cv/ece"] < plain["cv/ece"] / 2
    assert calibrated["cv/mean_class_acc"] == pytest.approx(plain["cv/mean_class_acc"])  # argmax kept
    # averaging three noisy models votes the noise away on the test split
    ensemble = evaluate_predictions(preds, EvalOptions(ensemble=True))
    assert (
        ensemble["test/models"] == "ensemble of the fold models"
        and ensemble["test/region_accuracy_std"] == 0.0
    )
    assert ensemble["test/mean_class_acc"] > plain["test/mean_class_acc"]
    with pytest.raises(ValueError, match="tta"):
        evaluate_predictions(preds, EvalOptions(tta=True))


def test_test_labels_change_no_choice_made_on_cv():
    """Swapping the test split's labels changes no CV-chosen setting and no fitted parameter: only the
    test scores move."""
    preds = _synthetic_predictions()
    options = EvalOptions(postprocess=True, temperature=True, min_confidences=(0.5, 0.99, 1.0))
    before = evaluate_predictions(preds, options)
    swapped = [np.where(m == 1, 2, m).astype(np.uint8) for m in preds.test_masks]
    preds.test_masks, preds.test_stored_masks = swapped, swapped
    after = evaluate_predictions(preds, options)
    for key in ("postprocess", "postprocess_scores", "temperatures", "test_temperature"):
        assert after[key] == before[key], key
    cv_keys = [k for k in before if k.startswith("cv/")]
    assert [json.dumps(after[k]) for k in cv_keys] == [json.dumps(before[k]) for k in cv_keys]
    assert after["test/flake_f1_monolayer"] != before["test/flake_f1_monolayer"]


def test_fold_models_are_never_scored_on_test_images_they_trained_on():
    from omegaconf import OmegaConf

    from flakeseg.stages.fold_evaluation import collect_predictions
    from tests.conftest import compose_train

    cfg = compose_train(["protocol=upstream"])
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "cv", "model")}
    metrics = {
        "complete": True,
        "config": config,
        "class_names": config["data"]["classes"]["names"],
        "folds": [],
    }
    with pytest.raises(ConfigError, match=r"^cv\.pool=all: the CV pool holds 11 test images"):
        collect_predictions(metrics)


def test_each_fold_temperature_is_fitted_on_the_other_folds_only():
    # folds 0 and 1 are over-confident (0.99), fold 2 much less (0.75): fold 2's temperature comes from
    # folds 0 and 1 alone, so it is the largest; fitted on itself it would be the smallest
    preds = _synthetic_predictions(fold_confidence=(0.99, 0.99, 0.75))
    temperatures = evaluate_predictions(preds, EvalOptions(temperature=True))["temperatures"]
    assert temperatures[2] > 1.2 * max(temperatures[0], temperatures[1])
    assert temperatures[0] == pytest.approx(temperatures[1], rel=0.3)  # same mix of folds behind both


def test_ablation_profile_checks_and_override_merging(tmp_path):
    from flakeseg.studies.ablation import AblationProfile, merge_overrides

    assert merge_overrides(["a=1", "b=2"], ["a=3"], ["+c=4"]) == ["b=2", "a=3", "+c=4"]
    assert merge_overrides(["+x=1"], ["x=2"]) == ["+x=2"]  # the + a new key needs survives
    assert merge_overrides(["augment=contrast"], ["augment=none", "augment.hue_shift=0"]) == [
        "augment=none",
        "augment.hue_shift=0",
    ]
    profile = AblationProfile.load("cpu")
    assert profile.steps[0].train and profile.targets["cv_mean_class_acc"] == 0.85
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "datasets: [mos2]\nsteps:\n  - {name: a, train: [loss=ce]}\n  - {name: b, evaluate: {tpa: true}}\n"
    )
    with pytest.raises(ConfigError, match="unknown evaluate key 'tpa'"):
        AblationProfile.load(str(bad))
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        AblationProfile.load("nope")
    bad.write_text(
        "datasets: [mos2]\nsteps:\n  - {name: a, train: [loss=ce]}\n  - {name: b, evaluate: {tta: 1}}\n"
    )
    with pytest.raises(ConfigError, match=r"step b: evaluate\.tta: must be true or false"):
        AblationProfile.load(str(bad))


@pytest.mark.slow
def test_micro_ablation_writes_one_row_per_step_and_matches_the_cv_run(data_root, tmp_path, monkeypatch):
    from flakeseg.studies.ablation import AblationProfile, run_ablation

    monkeypatch.setenv("FLAKESEG_DATA", str(data_root))
    out = tmp_path / "ablation"
    profile = AblationProfile.load("micro")
    rows = run_ablation(profile, ["mos2"], out)
    assert [r.error for r in rows] == [None] * len(profile.steps)
    assert [r.trained for r in rows] == [True, True, False, False]
    assert rows[2].run_dir == rows[1].run_dir == rows[3].run_dir  # evaluation steps train nothing
    # the re-scored held-out folds of a trained row are the CV run's own scores
    metrics = json.loads((rows[1].run_dir / "metrics.json").read_text())
    for key in ("cv/mean_class_acc", "cv/mean_class_acc_std", "cv/macro_precision_std"):
        assert rows[1].scores[key] == pytest.approx(metrics[key], abs=1e-4)
    assert metrics["config"]["data"]["substrate_normalize"] is True  # training steps accumulate
    assert metrics["config"]["loss"]["name"] == "ce_dice"
    last = rows[-1].scores
    assert {
        k: last["options"][k] for k in ("tta", "ensemble", "postprocess", "temperature")
    } == dict.fromkeys(("tta", "ensemble", "postprocess", "temperature"), True)
    assert last["test/models"] == "ensemble of the fold models" and len(last["temperatures"]) == 2
    md = (out / "ablation.md").read_text()
    assert md.count("\n| ") == 2 + len(profile.steps) and "Targets (micro profile)" in md
    assert "python train.py data=mos2" in md
    for name in ("ablation.csv", "ablation.json", "ablation_steps.png", "reliability_mos2.png"):
        assert (out / name).stat().st_size > 0
    history = json.loads((out / "invocations.json").read_text())
    assert len(history) == 1 and history[0]["rows"] == len(profile.steps)  # the run's wall time is kept


@pytest.mark.parametrize(("preset", "base", "accelerator"), [("best_cpu", 8, "cpu"), ("best_gpu", 32, "gpu")])
def test_best_presets_hold_the_whole_recipe(preset, base, accelerator):
    from omegaconf import OmegaConf

    from flakeseg.stages.config_checks import validate_config
    from tests.conftest import compose_train

    cfg = compose_train([f"experiment={preset}"])
    validate_config(cfg)
    assert (cfg.model.name, cfg.model.base_channels, cfg.loss.name) == ("unet_norm", base, "ce_dice")
    assert cfg.data.substrate_normalize and cfg.augment.hue_shift == 0 and cfg.augment.contrast is None
    assert cfg.augment.foreground_p == 0.5 and cfg.optim.schedule == "poly"
    assert cfg.trainer.accelerator == accelerator
    options = EvalOptions.from_config(OmegaConf.to_container(cfg.evaluate))
    # the post-processing for the card is chosen on what `predict` computes: one model, no flips
    assert options.postprocess and not options.tta and not options.ensemble and not options.temperature
    assert options.unknown  # and what predict shows, its colour check included, is scored too
    # a command-line choice still wins over the preset's
    assert compose_train([f"experiment={preset}", "model=unet_paper"]).model.name == "unet_paper"


def test_repeats_pool_their_matches_and_fit_each_temperature_within_the_repeat():
    # repeat 0's models are over-confident (0.99), repeat 1's much less (0.75); the same images are
    # held out once per repeat
    first = _synthetic_predictions(seed=0)
    second = _synthetic_predictions(seed=1, fold_confidence=(0.75, 0.75, 0.75))
    both = _synthetic_predictions(seed=0)
    both.val_masks = first.val_masks + second.val_masks
    both.val_probs = first.val_probs + second.val_probs
    both.val_stored_masks = both.val_masks
    both.test_probs = first.test_probs + second.test_probs
    both.fold_repeats = [0, 0, 0, 1, 1, 1]
    assert both.repeats() == [[0, 1, 2], [3, 4, 5]]

    # every held-out image's flake counts once per repeat
    plain = {k: evaluate_predictions(p, EvalOptions()) for k, p in (("both", both), ("first", first))}
    plain["second"] = evaluate_predictions(second, EvalOptions())
    assert plain["both"]["cv/repeats"] == 2 and plain["first"]["cv/repeats"] == 1
    for count in ("tp", "fp", "fn"):
        key = f"cv/flake_{count}_monolayer"
        assert plain["both"][key] == plain["first"][key] + plain["second"][key]
    assert plain["both"]["cv/flake_tp_monolayer"] > plain["first"]["cv/flake_tp_monolayer"] == 9

    options = EvalOptions(temperature=True, ensemble=True)
    pooled = evaluate_predictions(both, options)
    alone = evaluate_predictions(first, options)
    # a fold's temperature sees only its own repeat: repeat 0's are those of repeat 0 scored alone
    assert pooled["temperatures"][:3] == pytest.approx(alone["temperatures"])
    assert min(pooled["temperatures"][:3]) > max(pooled["temperatures"][3:])
    # one ensemble per repeat, scored on the test split, mean and std over the two
    assert pooled["test/models"] == "ensemble of the fold models of each repeat"
    assert pooled["test/mean_class_acc_std"] > 0.0


def test_the_crossfitted_post_processing_of_a_fold_is_chosen_without_its_images():
    options = EvalOptions(postprocess=True, min_confidences=(0.5, 0.99, 1.0))
    preds = _synthetic_predictions(fold_confidence=(0.99, 0.99, 0.99))
    before = evaluate_predictions(preds, options)
    assert len(before["cv_crossfit/postprocess"]) == 3
    assert before["cv_crossfit/flake_tp_monolayer"] + before["cv_crossfit/flake_fn_monolayer"] == 9
    # fold 0's held-out flakes made unsure: its own listing drops them, and its choice stays the same
    preds.val_probs[0] = [np.full_like(p, 1 / 3) for p in preds.val_probs[0]]
    after = evaluate_predictions(preds, options)
    assert after["cv_crossfit/postprocess"][0] == before["cv_crossfit/postprocess"][0]
    assert after["cv_crossfit/flake_tp_monolayer"] < before["cv_crossfit/flake_tp_monolayer"]
    # one fold of a repeat has no other folds to choose on: no cross-fitted scores
    preds.fold_repeats = [0, 0, 1]
    assert not any(k.startswith("cv_crossfit/") for k in evaluate_predictions(preds, options))
