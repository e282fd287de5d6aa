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
    optics too: through that setup when ``train`` is the split it was calibrated on, else (a CV fold)
    through one calibrated on ``train``'s own images and labels. Left out of training only: a CV fold
    still scores them when they are held out."""
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.classes import region_class_indices
    from flakeseg.data.contrasts import card_setup, layer_classes, shipped_split, substrate_masks
    from flakeseg.evaluation.label_audit import audit_labels, mislabelled_images, optics_verdicts
    from flakeseg.optics.calibration import Setup, shipped_setup

    stored = load_dataset({**data_cfg, **AS_STORED}, ids=train.ids, progress=False)
    names = stored.scheme.names
    flake = region_class_indices(data_cfg["classes"], names)
    regions, _ = audit_labels(
        stored.ids, stored.images, stored.masks, {i: names[i] for i in flake}, substrate_masks(stored)
    )
    split = shipped_split(data_cfg)  # None: no setup ships for the data set
    optics = bool(data_cfg.get("material")) and split is not None
    if optics:
        # the shipped setup has read every training label: a CV fold audits by a setup of its own
        # training images, so no held-out label decides what it trains on
        if sorted(train.ids) == sorted(split):
            setup = shipped_setup(f"paper_{data_cfg['name']}")
        else:
            own = card_setup(data_cfg, train.ids)
            if own is None:  # never the shipped setup instead: it has read the held-out labels
                log.warning("data.exclude_mislabelled: no setup for the optics' verdict; nothing left out")
                return train
            setup = Setup.from_dict(own, "the fold's setup")
        optics_verdicts(regions, setup, data_cfg["material"], layer_classes(names))
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
