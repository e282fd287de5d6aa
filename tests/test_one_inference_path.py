"""One inference path: the fold-model evaluation of a CV run and ``flakeseg predict`` give the same
probabilities for the same checkpoint and image, and CV validation scores what the predictor gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from flakeseg.cli.predict import main as predict_main
from flakeseg.data import load_dataset
from flakeseg.data.classes import ClassScheme
from flakeseg.evaluation.regions import pixel_scores
from flakeseg.inference.predictor import Predictor, load_predictor
from flakeseg.stages.fold_evaluation import collect_predictions
from flakeseg.training.trainer import build_module
from tests.conftest import TINY, compose_train


@pytest.fixture(scope="module")
def full_scale_run(data_root, tmp_path_factory):
    """A checkpoint of an untrained tiny U-Net at full scale with substrate white balance, and the
    ``metrics.json`` of a one-fold CV run whose last checkpoint it is."""
    out = tmp_path_factory.mktemp("full_scale")
    overrides = ["data.scale=1.0", "data.substrate_normalize=true", f"data.root={data_root}"]
    cfg = compose_train([*TINY, *overrides, f"paths.output_dir={out}"])
    config = OmegaConf.to_container(cfg, resolve=True)
    data_cfg = config["data"]
    names = list(data_cfg["classes"]["names"])
    torch.manual_seed(0)
    module = build_module(cfg, ClassScheme.from_config(data_cfg["classes"]), [1.0] * len(names))
    path = out / "last.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    val_ids = list(data_cfg["split"]["train"][:2])
    metrics = {
        "complete": True,
        "config": config,
        "class_names": names,
        "folds": [{"fold": 0, "val_ids": val_ids, "last_checkpoint": str(path)}],
    }
    return path, metrics, module


def test_fold_evaluation_and_predict_give_the_same_probabilities(full_scale_run, data_root, tmp_path):
    path, metrics, _ = full_scale_run
    predictions = collect_predictions(metrics, device="cpu")
    test_id = predictions.test_ids[0]
    image = data_root / "data" / "ori" / f"or{test_id}.png"
    assert predict_main([str(path), str(image), "--out", str(tmp_path), "--save-probabilities"]) in (0, 1)
    predicted = np.load(tmp_path / "probabilities" / f"or{test_id}.npy")
    evaluated = predictions.test_probs[0][0]
    assert predicted.shape == evaluated.shape == (3, 525, 700)
    assert np.abs(predicted - evaluated).max() < 1e-5


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_cv_validation_scores_what_the_predictor_gives(full_scale_run):
    """The LightningModule's validation step (what the CV score is) against the predictor's maps."""
    _, metrics, module = full_scale_run
    data_cfg = metrics["config"]["data"]
    val = load_dataset(data_cfg, ids=metrics["folds"][0]["val_ids"], progress=False)
    module.eval()
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step((list(val.images), list(val.masks)), 0)
    values = module.val_metrics.compute()
    module.val_metrics.reset()
    # the per-image matrices (metrics.json's `images`) add up to the fold's
    assert np.sum(module._image_confmats, axis=0).tolist() == values["confmat"].tolist()
    predictor = Predictor.for_network(module.net, module.card)
    preds = [predictor.probabilities_at_model_scale(im).argmax(axis=0).astype(np.uint8) for im in val.images]
    expected = pixel_scores(preds, val.masks, metrics["class_names"], prefix="val")
    assert values["confmat"].tolist() == expected["val/confmat"]


def test_predictor_pads_like_a_reflection_not_a_black_border():
    """Validation used to pad images by reflection; the shared predictor keeps that, so CV scores stay."""
    from flakeseg.inference.checkpoint import ModelCard

    seen = []

    def backend(batch):
        seen.append(batch)
        return np.zeros((batch.shape[0], 2, *batch.shape[2:]), np.float32)

    backend.name = "probe"
    card = ModelCard(
        model={},
        class_names=["a", "b"],
        class_colors=["#000000"] * 2,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        input_multiple=16,
    )
    image = np.arange(20 * 18 * 3, dtype=np.uint8).reshape(20, 18, 3)
    probs = Predictor(backend, card, tile=64).probabilities_at_model_scale(image)
    assert probs.shape == (2, 20, 18)
    tile = seen[0][0]
    assert tile.shape == (3, 32, 32)
    assert np.array_equal(tile[:, 20, :18], tile[:, 18, :18])  # row 20 mirrors row 18 (reflect-101)
    assert np.array_equal(tile[:, :20, 18], tile[:, :20, 16])


def test_load_predictor_and_for_network_agree(full_scale_run, data_root):
    path, metrics, module = full_scale_run
    image = load_dataset(
        {**metrics["config"]["data"], "substrate_normalize": False, "scale": 1.0},
        ids=["00000"],
        progress=False,
    ).images[0]
    loaded = load_predictor(path).probabilities(image)
    in_memory = Predictor.for_network(module.net.cpu(), module.card).probabilities(image)
    assert np.abs(loaded - in_memory).max() < 1e-5


@pytest.fixture(scope="module")
def fitted_inputs_run(data_root, tmp_path_factory):
    """Like ``full_scale_run``, with inputs fitted on training labels: the substrate chosen with their
    flake contrasts and the contrast GMM's posteriors as three more channels."""
    from flakeseg.stages.fold_inputs import prepare_fold_inputs

    out = tmp_path_factory.mktemp("fitted_inputs")
    overrides = [
        "data.substrate_normalize=true",
        "data.substrate_choice=fitted",
        "data.gmm_channels=true",
        f"data.root={data_root}",
    ]
    cfg = compose_train([*TINY, *overrides, f"paths.output_dir={out}"])
    config = OmegaConf.to_container(cfg, resolve=True)
    data_cfg = config["data"]
    names = list(data_cfg["classes"]["names"])
    train_ids = list(data_cfg["split"]["train"][2:8])
    train = load_dataset(data_cfg, ids=train_ids, progress=False)
    features, prepared, _, loader_cfg = prepare_fold_inputs(cfg, train, None, seed=0)
    assert features.channels == 6 and prepared.images[0].shape[2] == 6
    assert len(loader_cfg["mean"]) == len(loader_cfg["std"]) == 6
    torch.manual_seed(0)
    module = build_module(cfg, ClassScheme.from_config(data_cfg["classes"]), [1.0] * len(names), features)
    path = out / "last.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    metrics = {
        "complete": True,
        "config": config,
        "class_names": names,
        "folds": [{"fold": 0, "val_ids": list(data_cfg["split"]["train"][:2]), "last_checkpoint": str(path)}],
    }
    return path, metrics


def test_fitted_inputs_are_prepared_alike_by_fold_evaluation_and_predict(
    fitted_inputs_run, data_root, tmp_path
):
    path, metrics = fitted_inputs_run
    predictions = collect_predictions(metrics, device="cpu")
    test_id = predictions.test_ids[0]
    image = data_root / "data" / "ori" / f"or{test_id}.png"
    assert predict_main([str(path), str(image), "--out", str(tmp_path), "--save-probabilities"]) in (0, 1)
    predicted = np.load(tmp_path / "probabilities" / f"or{test_id}.npy")
    predictor = load_predictor(path)
    assert predictor.card.inputs is not None and predictor.card.model["in_channels"] == 6
    assert predictor.prepare(np.zeros((40, 60, 3), np.uint8) + 150).shape == (10, 15, 6)
    full = load_dataset(
        {**metrics["config"]["data"], "scale": 1.0, "gmm_channels": False, "substrate_normalize": False},
        ids=[test_id],
        progress=False,
    ).images[0]
    # predict prepares the microscope image as the fold evaluation prepared the loaded one
    direct = predictor.probabilities_at_model_scale(predictor.prepare(full))
    assert np.abs(direct - predictions.test_probs[0][0]).max() < 1e-5
    assert np.abs(predictor.probabilities(full) - predicted).max() < 1e-5
