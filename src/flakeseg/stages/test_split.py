"""The test stage (``stage=test``): train on the whole training split, score the held-out test split.

This is step 3 of the paper's protocol, run with the hyperparameters cross-validation selected. It
writes, into the run folder: ``test_metrics.json`` (pixel metrics, region accuracy, AUC, average
precision, recall at precision 0.9), ``regions.csv``, ``roc_pr.csv``/``roc_pr.png``,
``confusion_matrix.png``, ``examples.png`` (image, ground truth, prediction) and the final checkpoint.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from flakeseg.data import FlakeDataModule, load_dataset
from flakeseg.data.classes import region_class_indices
from flakeseg.data.contrasts import card_setup
from flakeseg.data.splits import split_from_config
from flakeseg.evaluation.curves import curve_rows, plot_curves
from flakeseg.evaluation.flake_scores import DEVICE_FLOOR_PX
from flakeseg.evaluation.plots import plot_confusion_matrix, plot_examples
from flakeseg.evaluation.postprocess import PREDICT_DEFAULTS
from flakeseg.evaluation.test_scores import colour_check_listing, score_test_split
from flakeseg.inference.checkpoint import card_from_config
from flakeseg.inference.predictor import ClassicalBackend, Predictor
from flakeseg.models import is_classical
from flakeseg.stages.fold_inputs import prepare_fold_inputs
from flakeseg.stages.resume import TEST_METRICS_FILE, RunStart, start_run
from flakeseg.training.classical import MODEL_FILE, fit_classical
from flakeseg.training.losses import class_pixel_counts, median_frequency_weights
from flakeseg.training.progress import quiet_lightning
from flakeseg.training.trainer import build_module, build_trainer, describe_device, fit
from flakeseg.utils.files import write_csv_atomic, write_json_atomic

log = logging.getLogger(__name__)

#: how many test images the example figure shows (the paper's Fig. 2 shows four)
EXAMPLE_IMAGES = 4


def run_test_stage(cfg: DictConfig, started: RunStart | None = None) -> dict[str, Any]:
    """Train on the training split, evaluate on the test split; write and return ``test_metrics.json``.

    With ``resume=true`` a complete ``test_metrics.json`` of the same config is returned untouched.
    ``started``: what :func:`~flakeseg.stages.resume.start_run` already found (the task checks first).
    """
    quiet_lightning()
    output_dir, metrics_path, config, previous = started or start_run(cfg, TEST_METRICS_FILE)
    if previous is not None and previous.get("complete"):
        return previous

    data_cfg = config["data"]
    split = split_from_config(data_cfg)  # an empty test split is refused by validate_config
    train = load_dataset(data_cfg, ids=split["train"])
    test = load_dataset(data_cfg, ids=split["test"])
    scheme = train.scheme
    names = list(scheme.names)
    regions_of = region_class_indices(data_cfg["classes"], names)
    started = time.perf_counter()

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    counts = class_pixel_counts(train.masks, scheme.num_classes)
    weights = median_frequency_weights(counts).tolist()
    if is_classical(cfg.model):  # fitted in one go; the same test metrics and files follow
        model, _, train_seconds = fit_classical(cfg, train, seed=int(cfg.seed))
        predictor = Predictor(ClassicalBackend(model), card_from_config(config))
        model_path, epochs = output_dir / MODEL_FILE, None
        model.save(model_path)
    else:
        features, train, test, loader_cfg = prepare_fold_inputs(cfg, train, test, int(cfg.seed))
        module = build_module(cfg, scheme, weights, features)
        setup = card_setup(data_cfg, split["train"])  # None: the shipped setup serves (or none)
        if setup is not None:
            module.hparams["inference"]["setup"] = setup
            log.info("model card: setup calibrated on the %d training images", len(split["train"]))
        datamodule = FlakeDataModule(
            train,
            None,
            loader_cfg,
            config["augment"],
            seed=int(cfg.seed),
        )
        trainer, checkpoint = build_trainer(
            cfg, output_dir, label="test stage", version="final", validate=False
        )
        fit(trainer, module, datamodule, None, "test stage")
        train_seconds = time.perf_counter() - started
        predictor = module.predictor()
        model_path = checkpoint.best_model_path or checkpoint.last_model_path
        epochs = int(trainer.current_epoch)
    probs = [predictor.probabilities_at_model_scale(image) for image in test.images]
    checked, unknown = colour_check_listing(
        probs, test, regions_of, PREDICT_DEFAULTS, str(data_cfg["name"]), predictor.card.setup
    )
    scored = score_test_split(
        probs, test.masks, test.ids, names, regions_of, data_cfg, test.stored_masks(), PREDICT_DEFAULTS,
        checked, unknown,
    )  # fmt: skip
    preds, regions, curves = scored.preds, scored.regions, scored.curves

    title = (
        f"test split, {data_cfg['name']}: {cfg.model.name}, loss={cfg.loss.name}, "
        f"augment={cfg.augment.name}, "
        f"lr={cfg.optim.lr}, batch={cfg.data.batch_size}, {cfg.trainer.max_epochs} epochs"
    )
    write_csv_atomic(
        output_dir / "regions.csv",
        regions,
        columns=list(regions[0])
        if regions
        else ["image", "region", "true_class", "predicted_class", "correct"],
    )
    write_csv_atomic(output_dir / "roc_pr.csv", curve_rows(curves), ["class", "curve", "threshold", "x", "y"])
    plot_curves(curves, output_dir / "roc_pr.png", title)
    plot_confusion_matrix(
        scored.metrics["test/confmat"], names, output_dir / "confusion_matrix.png", "test pixels"
    )
    shown = min(EXAMPLE_IMAGES, len(test.ids))
    plot_examples(
        [image[..., :3] for image in test.images[:shown]],  # RGB: the input's extra channels are no picture
        test.masks[:shown],
        preds[:shown],
        test.ids[:shown],
        names,
        list(scheme.colors),
        output_dir / "examples.png",
        title,
    )

    payload: dict[str, Any] = {
        **scored.metrics,
        "complete": True,
        "data": data_cfg["name"],
        "class_names": names,
        "region_classes": [names[c] for c in regions_of],
        "train_ids": list(train.ids),
        "test_ids": list(test.ids),
        "median_frequency_weights": weights,
        "epochs": epochs,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "device": describe_device(str(cfg.trainer.accelerator)),
        "versions": {"torch": torch.__version__, "pytorch_lightning": pl.__version__},
        "checkpoint": str(model_path),
        "config": config,
    }
    write_json_atomic(metrics_path, payload)
    log.info(
        "test split: flake F1 (>= %d px) %s; mean class acc %.3f, macro precision %.3f, region accuracy "
        "%.3f over %d regions; %s",
        DEVICE_FLOOR_PX,
        ", ".join(f"{names[c]} {payload[f'test/flake_f1_{names[c]}_device']:.3f}" for c in regions_of),
        payload["test/mean_class_acc"],
        payload["test/macro_precision"],
        payload["test/region_accuracy"],
        len(regions),
        metrics_path,
    )
    return payload
