"""K-fold cross-validation: one fresh model and Trainer per fold, results in ``metrics.json``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from flakeseg.data import FlakeDataModule, FlakeImages, fold_ids, load_dataset
from flakeseg.data.splits import cv_ids, split_from_config
from flakeseg.evaluation.flake_scores import FlakeScores
from flakeseg.evaluation.folds import plot_learning_curves, print_cv_table, summarize_folds
from flakeseg.evaluation.metrics import confusion_scores, present_class_accuracy
from flakeseg.evaluation.test_scores import held_out_flake_matches
from flakeseg.inference.checkpoint import load_checkpoint
from flakeseg.models import is_classical
from flakeseg.stages.fold_inputs import prepare_fold_inputs
from flakeseg.stages.resume import METRICS_FILE, RunStart, start_run
from flakeseg.training.callbacks import ValidateAtEpochs
from flakeseg.training.classical import train_classical_fold
from flakeseg.training.losses import class_pixel_counts, median_frequency_weights, uses_class_weights
from flakeseg.training.progress import quiet_lightning
from flakeseg.training.trainer import LAST_CHECKPOINT, build_module, build_trainer, describe_device, fit
from flakeseg.training.wandb_tracking import WandbTracker
from flakeseg.utils.files import write_json_atomic

log = logging.getLogger(__name__)


def eval_epochs(cfg: DictConfig) -> list[int]:
    """The epoch budgets of ``cv.eval_epochs`` (sorted), or ``[]`` when unset."""
    return sorted({int(e) for e in (cfg.cv.get("eval_epochs") or [])})


@dataclass(frozen=True)
class FoldPlan:
    """One fold of one repeat of the CV: repeat ``r`` assigns folds with seed ``cv.seed + r``."""

    repeat: int
    fold: int

    @property
    def name(self) -> str:
        """Its folder (and log version): ``fold_K``, ``repeat_R_fold_K`` for repeats after the first."""
        return f"fold_{self.fold}" if self.repeat == 0 else f"repeat_{self.repeat}_fold_{self.fold}"


def fold_plans(cfg: DictConfig) -> list[FoldPlan]:
    """The folds ``cv.folds``, ``cv.fold`` and ``cv.repeats`` ask for, in training order."""
    repeats = int(cfg.cv.get("repeats") or 1)
    folds = range(int(cfg.cv.folds)) if cfg.cv.get("fold") is None else [int(cfg.cv.fold)]
    return [FoldPlan(r, k) for r in range(repeats) for k in folds]


def train_fold(
    cfg: DictConfig,
    images: FlakeImages,
    plan: FoldPlan,
    output_dir: Path,
    tracker: WandbTracker | None = None,
) -> dict[str, Any]:
    """Train and validate one fold with a fresh model and Trainer; return its metrics entry.

    With ``cv.eval_epochs`` the fold is validated after exactly those epochs and the entry's
    ``budgets`` holds the validation metrics of each. With ``cv.score_crop`` the validation images
    are their centre crops (the upstream code's scoring).
    """
    fold = plan.fold
    train_ids, val_ids = fold_ids(images.ids, int(cfg.cv.folds), fold, int(cfg.cv.seed) + plan.repeat)
    train_data, val_data = images.subset(train_ids), images.subset(val_ids)
    if is_classical(cfg.model):  # fitted in one go on the same fold, scored by the same metrics
        if cfg.cv.get("score_crop"):
            val_data = val_data.center_cropped(round(int(cfg.cv.score_crop) * float(cfg.data.scale)))
        return {
            "repeat": plan.repeat,
            **train_classical_fold(cfg, train_data, val_data, fold, output_dir / plan.name),
        }
    # fitted on this fold's training images only; the substrate is found on whole images, then cropped
    features, train_data, val_data, data_cfg = prepare_fold_inputs(cfg, train_data, val_data, int(cfg.seed))
    train_ids = list(train_data.ids)  # without those data.exclude_mislabelled left out
    if cfg.cv.get("score_crop"):
        val_data = val_data.center_cropped(round(int(cfg.cv.score_crop) * float(cfg.data.scale)))
    scheme = images.scheme
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    counts = class_pixel_counts(train_data.masks, scheme.num_classes)
    weights = median_frequency_weights(counts).tolist()
    use_weights = uses_class_weights(cfg.loss)
    log.info(
        "%s: %d train / %d val images; median-frequency class weights %s (%s)",
        plan.name.replace("_", " "),
        len(train_ids),
        len(val_ids),
        dict(zip(scheme.names, [round(w, 3) for w in weights], strict=True)),
        "used by the loss" if use_weights else f"not used by loss={cfg.loss.name}",
    )
    module = build_module(cfg, scheme, weights, features)
    datamodule = FlakeDataModule(
        train_data,
        val_data,
        data_cfg,
        OmegaConf.to_container(cfg.augment, resolve=True),
        seed=int(cfg.seed) + fold + 1000 * plan.repeat,
    )
    budgets = eval_epochs(cfg)
    loggers = None
    if tracker is not None:  # W&B plus the local CSV log, the record of truth if the run is killed
        loggers = [
            CSVLogger(save_dir=str(output_dir), name="csv", version=plan.name, flush_logs_every_n_steps=1),
            tracker.fold_logger(fold, weights),
        ]
    trainer, checkpoint = build_trainer(
        cfg,
        output_dir / plan.name,
        label=f"{fold + 1}/{cfg.cv.folds}" + (f" (repeat {plan.repeat + 1})" if plan.repeat else ""),
        version=plan.name,
        extra_callbacks=[ValidateAtEpochs(budgets)] if budgets else (),
        loggers=loggers,
    )

    last = output_dir / plan.name / "checkpoints" / LAST_CHECKPOINT
    resume_from = None
    if cfg.get("resume", True) and last.exists():
        epoch = load_checkpoint(last).get("epoch", 0)  # refuses a truncated or foreign file in one line
        log.info("%s: resuming from %s (after epoch %d)", plan.name.replace("_", " "), last, epoch + 1)
        resume_from = str(last)
    start = time.perf_counter()
    fit(trainer, module, datamodule, resume_from, plan.name.replace("_", " "))
    train_seconds = time.perf_counter() - start
    # Score the model as it is after the last epoch: the epoch count is a hyperparameter chosen by CV,
    # so picking the best epoch on the validation fold would bias the CV score upwards. With budgets,
    # the last epoch is one of them and was validated during fit; so was it when fit validates every
    # epoch (the CPU and GPU presets), and validating the same weights again would only repeat it.
    if not budgets and module.last_val_epochs != int(trainer.current_epoch):
        trainer.validate(module, datamodule=datamodule, verbose=False)
    predictor = module.predictor()
    val_probs = [predictor.probabilities_at_model_scale(image) for image in val_data.images]
    best_score = checkpoint.best_model_score
    entry = {
        "fold": fold,
        "repeat": plan.repeat,
        "train_ids": train_ids,
        "val_ids": val_ids,
        **module.last_val,
        "val/flake_matches": held_out_flake_matches(
            val_probs, val_data, cfg.data.classes, cfg.cv.get("score_crop"), float(cfg.data.scale)
        ),
        "class_pixel_counts": counts.tolist(),
        "median_frequency_weights": weights,
        "loss_weighted": use_weights,
        "epochs": int(trainer.current_epoch),
        "val_history": module.val_history,
        "train_seconds": train_seconds,
        "best_epoch_score": float(best_score) if best_score is not None else None,
        "best_checkpoint": checkpoint.best_model_path,
        "last_checkpoint": str(last) if last.exists() else "",
    }
    if tracker is not None:
        tracker.end_fold(entry, module, val_data, OmegaConf.to_container(cfg.data, resolve=True))
    if budgets:
        entry["budgets"] = {
            str(h["epoch"]): {k: v for k, v in h.items() if k.startswith("val/")}
            for h in module.val_history
            if h["epoch"] in budgets
        }
    return entry


def pooled_scores(folds: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """The out-of-fold confusion matrix pooled over every fold (of every repeat) and its scores, the
    pooled flake scores (``cv/flake_*``: matches summed over every fold of every repeat), and each
    held-out image's mean per-class accuracy over the classes its labels hold (mean over the repeats
    that held it out): a fold's score can be one image's, and this says which."""
    confmat = np.sum([np.asarray(f["val/confmat"], dtype=np.int64) for f in folds], axis=0)
    pooled = {
        f"cv/pooled_{key.removeprefix('pooled/')}": value
        for key, value in confusion_scores(confmat, class_names, "pooled").items()
    }
    per_image: dict[str, list[float]] = {}
    for fold in folds:
        for image_id, matrix in zip(fold["val_ids"], fold.get("val/image_confmats") or [], strict=False):
            per_image.setdefault(image_id, []).append(present_class_accuracy(np.asarray(matrix)))
    # flakes: true positives, false alarms and misses summed over every fold of every repeat
    matches = [f["val/flake_matches"] for f in folds if f.get("val/flake_matches")]
    if matches and len(matches) == len(folds):  # folds resumed from before flake scores have none
        flake_classes = sorted({list(class_names).index(key.split("|")[0]) for key in matches[0]})
        pooled.update(FlakeScores.pooled(matches, class_names, flake_classes).compute("cv"))
    return {
        **pooled,
        "cv/pooled_confmat": confmat.tolist(),
        "images": {i: {"mean_class_acc": float(np.mean(v))} for i, v in sorted(per_image.items())},
    }


def summarize_budgets(folds: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``cv/...`` mean and std over folds of each epoch budget that every fold reached."""
    common = set.intersection(*(set(f.get("budgets") or {}) for f in folds)) if folds else set()
    return {e: summarize_folds([f["budgets"][e] for f in folds]) for e in sorted(common, key=int)}


def run_cross_validation(cfg: DictConfig, started: RunStart | None = None) -> dict[str, Any]:
    """Run the cross-validation that ``cfg`` describes and write ``<paths.output_dir>/metrics.json``.

    With ``resume=true`` (the default) a complete ``metrics.json`` of the same config in the output
    folder is returned without training, and the folds of an incomplete one are kept. ``started``: what
    :func:`~flakeseg.stages.resume.start_run` already found for this config (the task checks first).

    Returns:
        the ``metrics.json`` content: ``cv/<metric>`` and ``cv/<metric>_std`` over folds, a ``folds``
        list with each fold's validation metrics, ids, class weights and checkpoints, and the config;
        with ``cv.eval_epochs`` also ``budgets``: the ``cv/`` summary of each epoch budget.
    """
    quiet_lightning()
    output_dir, metrics_path, config, previous = started or start_run(cfg, METRICS_FILE)
    if previous is not None and previous.get("complete"):
        return previous
    data_cfg = config["data"]
    n_folds = int(cfg.cv.folds)
    plans = fold_plans(cfg)
    done = {
        (f.get("repeat", 0), f["fold"]): f
        for f in (previous or {}).get("folds", [])
        if FoldPlan(f.get("repeat", 0), f["fold"]) in plans
    }
    if done:
        log.info("resuming %s: folds %s already done", metrics_path, sorted(done))

    split = split_from_config(data_cfg)
    images = load_dataset(data_cfg, ids=cv_ids(split, str(cfg.cv.get("pool") or "train")))
    started = time.perf_counter() - float((previous or {}).get("wall_seconds", 0.0))
    payload: dict[str, Any] = {
        "complete": False,
        "data": data_cfg["name"],
        "class_names": list(images.scheme.names),
        "folds_requested": sorted({plan.fold for plan in plans}),
        "repeats": int(cfg.cv.get("repeats") or 1),
        "device": describe_device(str(cfg.trainer.accelerator)),
        "versions": {"torch": torch.__version__, "pytorch_lightning": pl.__version__},
        "config": config,
        "folds": [],
    }
    if not done:  # the config goes on disk before any checkpoint, so a rerun can check what it resumes
        write_json_atomic(metrics_path, payload)
    use_wandb = bool(cfg.get("logger")) and cfg.logger.get("name") == "wandb"
    tracker = WandbTracker(config["logger"], output_dir, config, images.scheme.names) if use_wandb else None
    try:
        for plan in plans:
            key = (plan.repeat, plan.fold)
            entry = done[key] if key in done else train_fold(cfg, images, plan, output_dir, tracker)
            payload["folds"].append(entry)
            payload.update(summarize_folds(payload["folds"]))
            payload.update(pooled_scores(payload["folds"], list(images.scheme.names)))
            if eval_epochs(cfg):
                payload["budgets"] = summarize_budgets(payload["folds"])
            payload["wall_seconds"] = time.perf_counter() - started
            write_json_atomic(metrics_path, _ordered(payload))
        payload["complete"] = True
        write_json_atomic(metrics_path, _ordered(payload))
    except BaseException:
        if tracker is not None:
            tracker.abort()
        raise
    if tracker is not None:
        tracker.finish(payload)

    repeats = f" x {payload['repeats']} repeats" if payload["repeats"] > 1 else ""
    title = (
        f"{n_folds}-fold CV{repeats}, {data_cfg['name']}, {cfg.model.name}, loss={cfg.loss.name}, "
        f"augment={cfg.augment.name} ({payload['wall_seconds']:.0f} s)"
    )
    print_cv_table(payload["folds"], payload, list(images.scheme.names), title)
    if any(f.get("val_history") for f in payload["folds"]):  # classical models have no epochs
        plot_learning_curves(payload["folds"], output_dir / "learning_curves.png", title)
    log.info("metrics written to %s", metrics_path)
    return payload


def _ordered(payload: dict[str, Any]) -> dict[str, Any]:
    """Headline ``cv/`` keys first, so a glance at the file shows the result."""
    head = {k: v for k, v in payload.items() if k.startswith("cv/")}
    return {**head, **{k: v for k, v in payload.items() if not k.startswith("cv/")}}
