"""Building what trains one model: the LightningModule from a config, the Trainer with its
checkpoints, callbacks, progress bar and logger, and ``fit`` with SIGTERM turned into an error."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from flakeseg.data.classes import ClassScheme
from flakeseg.errors import ConfigError, Interrupted
from flakeseg.inference.checkpoint import inference_fields
from flakeseg.inference.inputs import InputFeatures
from flakeseg.training.callbacks import CheckpointOnSigterm, StopOnNonFinite
from flakeseg.training.init_from import FreezeEncoder, load_initial_weights, split_fine_tuning
from flakeseg.training.losses import uses_class_weights
from flakeseg.training.module import FlakeSegModule
from flakeseg.training.progress import CompactProgressBar
from flakeseg.training.random_state import RandomStateCheckpoint

__all__ = ["LAST_CHECKPOINT", "build_module", "build_trainer", "describe_device", "fit"]

LAST_CHECKPOINT = "last.ckpt"


def describe_device(accelerator: str) -> str:
    """A short description of where training ran, for reports."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"CPU {_cpu_model()}, {torch.get_num_threads()} threads"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_module(
    cfg: DictConfig,
    scheme: ClassScheme,
    weights: list[float] | None,
    features: InputFeatures | None = None,
) -> FlakeSegModule:
    """The LightningModule for ``cfg``: model, loss (given ``weights`` if it uses them), optimiser.

    ``features``: the input features fitted on the training images (their channels set the network's
    ``in_channels``; the checkpoint keeps them for prediction)."""
    data_cfg = cfg.data
    # init_from / freeze_encoder_epochs say how training starts; the checkpoint keeps the network only
    model, init_from, _ = split_fine_tuning(OmegaConf.to_container(cfg.model, resolve=True))
    normalization = {"mean": list(data_cfg.mean), "std": list(data_cfg.std)}
    inference = inference_fields(OmegaConf.to_container(data_cfg, resolve=True), list(scheme.names))
    if features is not None:
        model["in_channels"] = features.channels
        normalization = features.normalization(data_cfg.mean, data_cfg.std)
        inference["inputs"] = features.to_dict()
    module = FlakeSegModule(
        model=model,
        class_names=list(scheme.names),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        class_weights=weights if uses_class_weights(cfg.loss) else None,
        class_colors=list(scheme.colors),
        normalization=normalization,
        data_scale=float(data_cfg.scale),
        fast=[name for name, on in (cfg.get("fast") or {}).items() if on],
        inference=inference,
        apart_weights=[[into, weight] for into, weight in scheme.apart_weights] or None,
    )
    if int(data_cfg.crop_size) % module.input_multiple:
        raise ConfigError(
            f"data.crop_size: {data_cfg.crop_size} is not a multiple of {module.input_multiple}, "
            f"which model {cfg.model.name} needs"
        )
    if init_from is not None:
        load_initial_weights(module.net, init_from, model, list(scheme.names))
    return module


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    label: str,
    version: str,
    validate: bool = True,
    extra_callbacks: Sequence[pl.Callback] = (),
    loggers: list[Any] | None = None,
    **overrides: Any,
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """A Trainer writing to ``run_dir``, with its checkpoint callback, progress bar and logger.

    Args:
        label: shown in the progress bar (e.g. ``"2/3"`` for the second fold).
        version: the logger's version folder (e.g. ``"fold_1"``).
        validate: with ``False`` there is no validation loop and the checkpoint is the final model.
        loggers: Lightning loggers to use instead of instantiating ``cfg.logger``.
        overrides: replace ``trainer`` config values (the benchmark uses them to shorten runs).
    """
    _, _, freeze_epochs = split_fine_tuning(cfg.model)
    if freeze_epochs:
        extra_callbacks = [FreezeEncoder(freeze_epochs), *extra_callbacks]
    state_callbacks: list[pl.Callback] = [
        RandomStateCheckpoint(),
        CheckpointOnSigterm(run_dir / "checkpoints" / "interrupted.ckpt"),
    ]
    if validate:
        checkpoint = ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=str(cfg.checkpoint.monitor),
            mode="max",
            save_last=False,
            auto_insert_metric_name=False,
        )
        if cfg.checkpoint.save_last:
            # last.ckpt after every epoch (not only validated ones): what a killed run resumes from
            state_callbacks.append(
                ModelCheckpoint(
                    dirpath=run_dir / "checkpoints",
                    filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
                    monitor=None,
                    save_top_k=1,
                    save_on_train_epoch_end=True,
                    enable_version_counter=False,
                )
            )
    else:
        checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="final", save_last=False)
        overrides = {"limit_val_batches": 0, "num_sanity_val_steps": 0, **overrides}
    if loggers is not None:
        logger = loggers
    elif cfg.get("logger") and "_target_" in cfg.logger:
        logger = instantiate(cfg.logger, version=version)
    else:
        logger = False
    kwargs = {**OmegaConf.to_container(cfg.trainer, resolve=True), **overrides}
    try:
        trainer = pl.Trainer(
            **kwargs,
            # first: a non-finite loss stops the step before any checkpoint callback runs
            callbacks=[
                StopOnNonFinite(version.replace("_", " ")),
                checkpoint,
                *state_callbacks,
                CompactProgressBar(label),
                *extra_callbacks,
            ],
            logger=logger,
            default_root_dir=str(run_dir),
            enable_model_summary=False,
        )
    except TypeError as exc:
        raise ConfigError(f"trainer: {exc}") from None
    return trainer, checkpoint


def fit(trainer: pl.Trainer, module: FlakeSegModule, datamodule, ckpt_path: str | None, label: str) -> None:
    """``trainer.fit``, with Lightning's quiet exit on SIGTERM turned into :class:`Interrupted`."""
    try:
        # weights_only: Lightning's own read of the checkpoint a fold resumes from runs no pickled code
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        raise Interrupted(
            f"{label}: stopped by SIGTERM in epoch {trainer.current_epoch + 1} (step {trainer.global_step}); "
            "state saved as interrupted.ckpt; rerun the same command to resume from the last complete epoch"
        ) from None
