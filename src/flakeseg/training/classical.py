"""Cross-validation folds and the test stage for classical models, without Lightning.

A classical fold gives the same ``metrics.json`` entry as a network's fold: the validation metrics of
:func:`flakeseg.evaluation.regions.pixel_scores` (``val/mean_class_acc``, ``val/macro_precision``,
``val/mean_iou``, per class, confusion matrix) over the whole validation images, ids, class pixel
counts, training seconds. There are no epochs (``epochs`` is ``null``, ``val_history`` empty) and no
checkpoints: the fitted model is ``fold_K/model.npz`` (``model_file``), loaded by
:func:`flakeseg.inference.checkpoint.load_classical`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from flakeseg.data.catalog import FlakeImages
from flakeseg.errors import ConfigError
from flakeseg.evaluation.metrics import confusion_matrix
from flakeseg.inference.checkpoint import card_from_config
from flakeseg.inference.predictor import ClassicalBackend, Predictor
from flakeseg.models import build_model
from flakeseg.models.classical.base import ClassicalModel
from flakeseg.training.losses import class_pixel_counts, median_frequency_weights

log = logging.getLogger(__name__)

MODEL_FILE = "model.npz"


def check_classical_config(cfg: DictConfig) -> None:
    """Refuse options that only mean something for networks trained by epochs."""
    if cfg.cv.get("eval_epochs"):
        raise ConfigError(f"cv.eval_epochs: model {cfg.model.name} is fitted in one go and has no epochs")


def fit_classical(
    cfg: DictConfig, data: FlakeImages, seed: int
) -> tuple[ClassicalModel, dict[str, Any], float]:
    """Build the classical model of ``cfg.model`` and fit it on ``data``.

    Returns:
        the model, its fit summary and the fitting time in seconds.
    """
    check_classical_config(cfg)
    model = build_model(OmegaConf.to_container(cfg.model, resolve=True), data.scheme.num_classes)
    start = time.perf_counter()
    summary = model.fit(data.images, data.masks, seed=seed)
    return model, summary, time.perf_counter() - start


def train_classical_fold(
    cfg: DictConfig, train_data: FlakeImages, val_data: FlakeImages, fold: int, fold_dir: Path
) -> dict[str, Any]:
    """Fit fold ``fold`` of a classical model and score its validation images; return the fold's entry
    (the fitted model goes to ``fold_dir``)."""
    from flakeseg.evaluation.regions import pixel_scores
    from flakeseg.evaluation.test_scores import held_out_flake_matches

    scheme = train_data.scheme
    counts = class_pixel_counts(train_data.masks, scheme.num_classes)
    log.info(
        "fold %d: fitting %s on %d images, validating on %d",
        fold,
        cfg.model.name,
        len(train_data.ids),
        len(val_data.ids),
    )
    model, summary, train_seconds = fit_classical(cfg, train_data, seed=int(cfg.seed) + fold)
    predictor = Predictor(
        ClassicalBackend(model), card_from_config(OmegaConf.to_container(cfg, resolve=True))
    )
    probs = [predictor.probabilities_at_model_scale(image) for image in val_data.images]
    preds = [prob.argmax(axis=0).astype(np.uint8) for prob in probs]
    scores = pixel_scores(preds, val_data.masks, list(scheme.names), prefix="val")
    scores["val/flake_matches"] = held_out_flake_matches(
        probs, val_data, cfg.data.classes, cfg.cv.get("score_crop"), float(cfg.data.scale)
    )
    scores["val/image_confmats"] = [
        confusion_matrix(pred, mask, scheme.num_classes).tolist()
        for pred, mask in zip(preds, val_data.masks, strict=True)
    ]
    model_file = fold_dir / MODEL_FILE
    model.save(model_file)
    log.info(
        "fold %d: val mean class acc %.3f (%.1f s fit)", fold, scores["val/mean_class_acc"], train_seconds
    )
    return {
        "fold": fold,
        "train_ids": list(train_data.ids),
        "val_ids": list(val_data.ids),
        **scores,
        "class_pixel_counts": counts.tolist(),
        "median_frequency_weights": median_frequency_weights(counts).tolist(),
        "loss_weighted": False,
        "epochs": None,
        "val_history": [],
        "train_seconds": train_seconds,
        "fit": summary,
        "num_parameters": model.num_parameters(),
        "best_epoch_score": None,
        "best_checkpoint": "",
        "last_checkpoint": "",
        "model_file": str(model_file),
    }
