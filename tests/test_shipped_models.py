"""The models shipped in the package: they load, predict, and score what their cards claim."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flakeseg.errors import ConfigError
from flakeseg.inference.shipped import SHIPPED_DIR, resolve_model, shipped_names


def test_mos2_and_graphene_ship_with_their_cards():
    assert shipped_names() == ["graphene", "mos2"]
    for name in shipped_names():
        card = json.loads((SHIPPED_DIR / f"{name}.json").read_text())
        assert card["data"] == name and "test/region_accuracy" in card
        assert (SHIPPED_DIR / f"{name}.ckpt").stat().st_size < 5_000_000  # small: weights and card only


@pytest.mark.parametrize("name", ["mos2", "graphene"])
def test_shipped_model_loads_and_predicts_the_right_shape(name):
    from flakeseg.inference.predictor import load_predictor

    predictor = load_predictor(resolve_model(name))
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(170, 5, (90, 130, 3)), 0, 255).astype(np.uint8)
    probs = predictor.probabilities(image)
    assert probs.shape == (len(predictor.card.class_names), 90, 130)
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-4)


def test_unknown_model_name_is_one_line():
    with pytest.raises(ConfigError, match=r"--model: 'hbn' is neither a shipped model \(graphene, mos2\)"):
        resolve_model("hbn")


@pytest.mark.parametrize("name", ["mos2", "graphene"])
def test_evaluate_reproduces_the_committed_test_numbers(name, data_root, tmp_path, capsys):
    from flakeseg.cli.evaluate import main

    out = tmp_path / "metrics.json"
    assert main([name, "--data", name, "--out", str(out), "--set", f"data.root={data_root}"]) == 0
    printed = capsys.readouterr().out
    # the flake table first, then per-class pixel scores: a user sees bilayer precision
    assert (
        printed.index("found / false / missed")
        < printed.index(": pixels (")
        < printed.index("region accuracy")
    )
    assert "bilayer" in printed and ">= 600 px" in printed and "precision, as listed" in printed
    measured = json.loads(out.read_text())
    claimed = json.loads((SHIPPED_DIR / f"{name}.json").read_text())
    flake_keys = [
        k
        for k, v in claimed.items()
        if k.startswith(("test/flake_", "test_listed/")) and isinstance(v, (int, float))
    ]
    assert "test_listed/precision_bilayer" in flake_keys  # pixels of the map predict shows
    for key in (
        "test/region_accuracy",
        "test/mean_class_acc",
        "test/macro_precision",
        "test/mean_iou",
        "test/flakes_unknown",  # listed as unknown by predict's colour check: no listing
        *flake_keys,
    ):
        assert measured[key] == pytest.approx(claimed[key], abs=1e-6, nan_ok=True), key
    assert measured["test/confmat"] == claimed["test/confmat"]


def test_predict_with_a_shipped_model_on_a_real_image(data_root, tmp_path):
    from flakeseg.cli.predict import main

    image = data_root / "data" / "ori" / "or00000.png"
    assert main(["--model", "mos2", str(image), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "flakes.csv").exists() and (tmp_path / "overlays" / "or00000.png").exists()
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["settings"]["checkpoint"].endswith("mos2.ckpt")


def _reship_with(tmp_path, postprocess):
    """The shipped MoS2 model shipped again into ``tmp_path`` with ``postprocess`` in its card."""
    from flakeseg.stages.shipping import ship

    claimed = json.loads((SHIPPED_DIR / "mos2.json").read_text())
    run = tmp_path / "run"
    run.mkdir()
    metrics = {
        "data": "mos2",
        "train_ids": claimed["trained_on"],
        "test_ids": claimed["scored_on"],
        "epochs": claimed["epochs"],
        "train_seconds": claimed["train_seconds"],
        "device": claimed["device"],
        "config": claimed["config"],
        "checkpoint": str(SHIPPED_DIR / "mos2.ckpt"),
        "test/mean_class_acc": 0.5,
    }
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    return ship(run, "mos2", dest=tmp_path / "shipped", postprocess=postprocess)


def test_the_post_processing_chosen_on_cv_goes_into_the_card_and_predict_uses_it(data_root, tmp_path):
    from flakeseg.cli.predict import main
    from flakeseg.errors import DataError
    from flakeseg.inference.predictor import load_card
    from flakeseg.stages.shipping import chosen_postprocess

    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(
        json.dumps(
            {"options": {"postprocess": True}, "postprocess": {"min_area": 400, "min_confidence": 0.7}}
        )
    )
    chosen = chosen_postprocess(evaluation)
    assert (chosen["min_area"], chosen["min_confidence"]) == (400, 0.7) and "CV folds" in chosen["chosen_on"]
    evaluation.write_text(
        json.dumps(
            {"options": {"postprocess": False}, "postprocess": {"min_area": 100, "min_confidence": 0.5}}
        )
    )
    with pytest.raises(DataError, match="evaluate.postprocess=false"):
        chosen_postprocess(evaluation)
    evaluation.write_text(
        json.dumps(
            {
                "options": {"postprocess": True, "tta": True},
                "postprocess": {"min_area": 1, "min_confidence": 1},
            }
        )
    )
    with pytest.raises(DataError, match=r"evaluate\.tta=true, on probabilities `predict` does not compute"):
        chosen_postprocess(evaluation)
    evaluation.write_text("not json")
    with pytest.raises(DataError, match="not a CV run's evaluation.json"):
        chosen_postprocess(evaluation)

    model = _reship_with(tmp_path, {"min_area": 400, "min_confidence": 0.7, "chosen_on": "test"})
    assert load_card(model).postprocess["min_area"] == 400
    shipped = json.loads(model.with_suffix(".json").read_text())
    assert shipped["postprocess"]["min_confidence"] == 0.7
    # its test flake scores are those of the flakes the card lists, as `flakeseg evaluate` gives them
    assert shipped["test/flake_postprocess"] == {"min_area": 400, "min_confidence": 0.7}
    assert shipped["test/flake_tp_monolayer_device"] + shipped["test/flake_fn_monolayer_device"] > 0
    image = data_root / "data" / "ori" / "or00000.png"
    assert main([str(model), str(image), "--out", str(tmp_path / "card")]) == 0
    settings = json.loads((tmp_path / "card" / "run.json").read_text())["settings"]
    assert (settings["min_area"], settings["min_confidence"]) == (400, 0.7)
    assert main([str(model), str(image), "--out", str(tmp_path / "asked"), "--min-area", "150"]) == 0
    settings = json.loads((tmp_path / "asked" / "run.json").read_text())["settings"]
    assert (settings["min_area"], settings["min_confidence"]) == (150, 0.7)  # what is asked wins


def test_a_shipped_file_holds_its_flat_field_packed_and_its_card_reads_it_back(tmp_path):
    """The card's flat field travels as one float32 tensor (a third of the bytes of nested floats, so
    a shipped model stays under 2 MiB) and reads back as the very numbers the card had."""
    import torch

    from flakeseg.inference.checkpoint import load_checkpoint
    from flakeseg.inference.predictor import load_card

    shipped = load_card(SHIPPED_DIR / "mos2.ckpt")
    assert shipped.flatfield is not None
    path = _reship_with(tmp_path, shipped.postprocess)
    stored = load_checkpoint(path)["hyper_parameters"]["inference"]["flatfield"]["field"]
    assert isinstance(stored, torch.Tensor) and stored.dtype == torch.float32
    assert load_card(path).flatfield == shipped.flatfield
    assert path.stat().st_size < 2 * 1024 * 1024
