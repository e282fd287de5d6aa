"""Inputs fitted on one stage's training images (a CV fold's, or the whole training split's), applied
to its training and held-out images alike (:mod:`flakeseg.inference.inputs`)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.preprocess import uses_fitted_inputs
from flakeseg.inference.inputs import InputFeatures, fit_input_features

__all__ = ["prepare_fold_inputs"]


def prepare_fold_inputs(
    cfg: DictConfig, train: FlakeImages, held_out: FlakeImages | None, seed: int
) -> tuple[InputFeatures | None, FlakeImages, FlakeImages | None, dict[str, Any]]:
    """Fit the input features ``cfg.data`` asks for on ``train`` and apply them to both sets.

    Returns:
        the features (``None`` when the config asks for none), the two sets as the network sees them,
        and the ``data`` config as a dict with the normalisation of every input channel (what the data
        module needs).
    """
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
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
