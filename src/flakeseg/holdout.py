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

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from flakeseg.classic.fitting import MODEL_FILE, fit_classical, predict_classical
from flakeseg.cv import build_module, build_trainer, describe_device, fit, start_run
from flakeseg.data import FlakeDataModule, load_dataset
from flakeseg.data.splits import split_from_config
from flakeseg.errors import ConfigError
from flakeseg.evaluation import (
    PAPER_PRECISION,
    curve_rows,
    flake_regions,
    one_vs_rest_curves,
    pixel_scores,
    plot_confusion_matrix,
    plot_curves,
    plot_examples,
    predict_probabilities,
    region_accuracy,
)
from flakeseg.losses import class_pixel_counts, median_frequency_weights
from flakeseg.models import is_classical
from flakeseg.report import write_csv_atomic, write_json_atomic

log = logging.getLogger(__name__)

TEST_METRICS_FILE = "test_metrics.json"
#: how many test images the example figure shows (the paper's Fig. 2 shows four)
EXAMPLE_IMAGES = 4


def region_class_indices(cfg: DictConfig, class_names: list[str]) -> list[int]:
    """Indices of ``data.classes.region_classes`` (default: every class but the first, the background)."""
    wanted = cfg.data.classes.get("region_classes")
    if wanted is None:
        return list(range(1, len(class_names)))
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise ConfigError(f"data.classes.region_classes: {unknown} are not class names {class_names}")
    return [class_names.index(n) for n in wanted]


def run_test_stage(cfg: DictConfig) -> dict[str, Any]:
    """Train on the training split, evaluate on the test split; write and return ``test_metrics.json``.

    With ``resume=true`` a complete ``test_metrics.json`` of the same config is returned untouched.
    """
    output_dir, metrics_path, config, previous = start_run(cfg, TEST_METRICS_FILE)
    if previous is not None and previous.get("complete"):
        return previous

    data_cfg = config["data"]
    split = split_from_config(data_cfg)
    train = load_dataset(data_cfg, ids=split["train"])
    test = load_dataset(data_cfg, ids=split["test"])
    scheme = train.scheme
    names = list(scheme.names)
    regions_of = region_class_indices(cfg, names)
    started = time.perf_counter()

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    counts = class_pixel_counts(train.masks, scheme.num_classes)
    weights = median_frequency_weights(counts).tolist()
    if is_classical(cfg.model):  # fitted in one go; the same test metrics and files follow
        model, _, train_seconds = fit_classical(cfg, train, seed=int(cfg.seed))
        probs = predict_classical(model, test.images)
        model_path, epochs = output_dir / MODEL_FILE, None
        model.save(model_path)
    else:
        module = build_module(cfg, scheme, weights)
        datamodule = FlakeDataModule(
            train,
            None,
            data_cfg,
            config["augment"],
            multiple=module.input_multiple,
            seed=int(cfg.seed),
        )
        trainer, checkpoint = build_trainer(
            cfg, output_dir, label="test stage", version="final", validate=False
        )
        fit(trainer, module, datamodule, None, "test stage")
        train_seconds = time.perf_counter() - started
        probs = predict_probabilities(
            module, test.images, data_cfg["mean"], data_cfg["std"], module.input_multiple
        )
        model_path = checkpoint.best_model_path or checkpoint.last_model_path
        epochs = int(trainer.current_epoch)
    preds = [p.argmax(axis=0).astype(np.uint8) for p in probs]
    scores = pixel_scores(preds, test.masks, names)
    # Label specks are not flakes: count regions from data.region_min_area pixels at full scale.
    min_area = max(1, round(float(data_cfg.get("region_min_area") or 0) * float(data_cfg["scale"]) ** 2))
    all_regions = [
        row
        for image_id, pred, mask in zip(test.ids, preds, test.masks, strict=True)
        for row in flake_regions(pred, mask, regions_of, names, image_id)
    ]
    regions = [r for r in all_regions if r["area_px"] >= min_area]
    for number, row in enumerate(regions, start=1):
        row["region"] = number
    curves = {names[c]: one_vs_rest_curves(probs, test.masks, c) for c in regions_of}

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
    plot_confusion_matrix(scores["test/confmat"], names, output_dir / "confusion_matrix.png", "test pixels")
    shown = min(EXAMPLE_IMAGES, len(test.ids))
    plot_examples(
        test.images[:shown],
        test.masks[:shown],
        preds[:shown],
        test.ids[:shown],
        names,
        list(scheme.colors),
        output_dir / "examples.png",
        title,
    )

    per_class_regions = {
        names[c]: region_accuracy([r for r in regions if r["true_class"] == names[c]]) for c in regions_of
    }
    payload: dict[str, Any] = {
        **{k: v for k, v in scores.items() if k != "test/confmat"},
        "test/region_accuracy": region_accuracy(regions),
        "test/regions": len(regions),
        "test/region_min_area_px": min_area,
        "test/regions_below_min_area": len(all_regions) - len(regions),
        "test/region_accuracy_per_class": per_class_regions,
        "test/curves": {
            name: {
                "auc": c["auc"],
                "average_precision": c["average_precision"],
                f"recall_at_precision_{PAPER_PRECISION}": c["recall_at_precision"],
                f"threshold_at_precision_{PAPER_PRECISION}": c["threshold_at_precision"],
                "positive_pixels": c["positives"],
            }
            for name, c in curves.items()
        },
        "test/confmat": scores["test/confmat"],
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
        "test split: mean class acc %.3f, macro precision %.3f, region accuracy %.3f over %d regions; %s",
        payload["test/mean_class_acc"],
        payload["test/macro_precision"],
        payload["test/region_accuracy"],
        len(regions),
        metrics_path,
    )
    return payload
