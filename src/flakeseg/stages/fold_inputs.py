"""Inputs fitted on one stage's training images (a CV fold's, or the whole training split's), applied
to its training and held-out images alike (:mod:`flakeseg.inference.inputs`)."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.preprocess import uses_fitted_inputs
from flakeseg.inference.inputs import InputFeatures, fit_input_features

__all__ = ["prepare_fold_inputs", "without_mislabelled"]

log = logging.getLogger(__name__)


def without_mislabelled(train: FlakeImages, data_cfg: dict[str, Any]) -> FlakeImages:
    """``train`` without the images whose labels the label audit finds one class off
    (:func:`flakeseg.evaluation.label_audit.mislabelled_images`), audited among ``train`` alone, as
    stored, by the data and, where a setup ships for the data set (``paper_<data.name>``), by the
    optics too. Left out of training only: a CV fold still scores them when they are held out."""
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.classes import region_class_indices
    from flakeseg.data.contrasts import layer_classes, substrate_masks
    from flakeseg.evaluation.label_audit import audit_labels, mislabelled_images, optics_verdicts
    from flakeseg.optics.calibration import SHIPPED_DIR, shipped_setup

    stored = load_dataset({**data_cfg, **AS_STORED}, ids=train.ids, progress=False)
    names = stored.scheme.names
    flake = region_class_indices(data_cfg["classes"], names)
    regions, _ = audit_labels(
        stored.ids, stored.images, stored.masks, {i: names[i] for i in flake}, substrate_masks(stored)
    )
    setup_name = f"paper_{data_cfg['name']}"
    optics = bool(data_cfg.get("material")) and (SHIPPED_DIR / f"{setup_name}.yaml").is_file()
    if optics:
        optics_verdicts(regions, shipped_setup(setup_name), data_cfg["material"], layer_classes(names))
    dropped = mislabelled_images(regions, optics)
    if not dropped:
        return train
    if len(dropped) == len(train.ids):
        return train  # nothing would be left to train on: the audit's centres are these labels' own
    log.info("data.exclude_mislabelled: %s left out of training (label audit)", ", ".join(dropped))
    return train.subset([i for i in train.ids if i not in dropped])


def prepare_fold_inputs(
    cfg: DictConfig, train: FlakeImages, held_out: FlakeImages | None, seed: int
) -> tuple[InputFeatures | None, FlakeImages, FlakeImages | None, dict[str, Any]]:
    """Fit the input features ``cfg.data`` asks for on ``train`` and apply them to both sets. With
    ``data.exclude_mislabelled``, first drop from ``train`` the images :func:`without_mislabelled`
    leaves out (the features are then fitted without them too).

    Returns:
        the features (``None`` when the config asks for none), the two sets as the network sees them,
        and the ``data`` config as a dict with the normalisation of every input channel (what the data
        module needs).
    """
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if data_cfg.get("exclude_mislabelled"):
        train = without_mislabelled(train, data_cfg)
    if not uses_fitted_inputs(data_cfg):
        return None, train, held_out, data_cfg
    features = fit_input_features(data_cfg, train.images, train.masks, train.scheme.names, seed=seed)
    train = train.mapped(features.apply)
    held_out = held_out.mapped(features.apply) if held_out is not None else None
    return (
        features,
        train,
        held_out,
        {**data_cfg, **features.normalization(data_cfg["mean"], data_cfg["std"])},
    )
