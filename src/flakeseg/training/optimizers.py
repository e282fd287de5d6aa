"""Optimisers by ``optim.name``: ``adam`` (the paper's), ``adamw`` and ``sgd`` (nnU-Net's: Nesterov
momentum 0.99). A new one is one decorated builder here and one ``conf/optim/<name>.yaml``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from flakeseg.errors import ConfigError
from flakeseg.utils.registry import Registry

__all__ = ["OPTIMIZERS", "build_optimizer"]

#: ``optim.name`` -> builder ``(parameters, lr, optim_cfg) -> torch.optim.Optimizer``
OPTIMIZERS = Registry("optim", "optimiser")


def _weight_decay(optim_cfg: Mapping[str, Any]) -> float:
    return float(optim_cfg.get("weight_decay") or 0.0)


@OPTIMIZERS.register("adam")
def adam(parameters: Iterable[torch.nn.Parameter], lr: float, optim_cfg: Mapping[str, Any]):
    return torch.optim.Adam(parameters, lr=lr, weight_decay=_weight_decay(optim_cfg))


@OPTIMIZERS.register("adamw")
def adamw(parameters: Iterable[torch.nn.Parameter], lr: float, optim_cfg: Mapping[str, Any]):
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=_weight_decay(optim_cfg))


@OPTIMIZERS.register("sgd")
def sgd(parameters: Iterable[torch.nn.Parameter], lr: float, optim_cfg: Mapping[str, Any]):
    momentum = float(optim_cfg.get("momentum", 0.99))
    return torch.optim.SGD(
        parameters,
        lr=lr,
        momentum=momentum,
        nesterov=bool(optim_cfg.get("nesterov", True)) and momentum > 0,
        weight_decay=_weight_decay(optim_cfg),
    )


def build_optimizer(parameters: Iterable[torch.nn.Parameter], optim_cfg: Mapping[str, Any]):
    """The optimiser ``optim.name`` names, at ``optim.lr`` (checked: > 0)."""
    builder = OPTIMIZERS.get(optim_cfg.get("name", "adam"))
    lr = float(optim_cfg["lr"])
    if not lr > 0:
        raise ConfigError(f"optim.lr: must be > 0, got {lr}")
    return builder(parameters, lr, optim_cfg)
