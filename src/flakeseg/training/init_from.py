"""Fine-tuning: start a network from a trained model's weights (``model.init_from``), and keep its
encoder frozen for the first epochs (``model.freeze_encoder_epochs``).

``model.init_from`` is a shipped model's name (``mos2``, ``graphene``: :mod:`flakeseg.inference.shipped`)
or a training checkpoint's path. Its model config must be the one this run builds (same family, widths,
input channels), else one line says which keys differ. When the class scheme is the same (names in the
same order) every weight is copied; when it differs, the classifier head is rebuilt: its rows start
from scratch, except those of classes with the same name, and row 0 (the background) from row 0, so a
new material's ``monolayer`` starts from MoS2's ``monolayer``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.inference.checkpoint import load_checkpoint, network_weights
from flakeseg.models.registry import FINE_TUNING_KEYS

__all__ = ["FINE_TUNING_KEYS", "FreezeEncoder", "InitReport", "load_initial_weights", "split_fine_tuning"]

log = logging.getLogger(__name__)


def split_fine_tuning(model_cfg: Mapping[str, Any]) -> tuple[dict[str, Any], str | None, int]:
    """``model_cfg`` without the fine-tuning keys, its ``init_from`` (``None``: from scratch) and its
    ``freeze_encoder_epochs``; a bad value is one line naming the key."""
    model = {k: v for k, v in model_cfg.items() if k not in FINE_TUNING_KEYS}
    init_from = model_cfg.get("init_from")
    init_from = None if init_from in (None, "", "null", "None") else str(init_from)
    try:
        freeze = int(model_cfg.get("freeze_encoder_epochs") or 0)
    except (TypeError, ValueError):
        raise ConfigError(
            f"model.freeze_encoder_epochs: must be a whole number, got {model_cfg['freeze_encoder_epochs']!r}"
        ) from None
    if freeze < 0:
        raise ConfigError(f"model.freeze_encoder_epochs: must be >= 0, got {freeze}")
    if freeze and init_from is None:
        raise ConfigError(
            "model.freeze_encoder_epochs: a frozen encoder needs trained weights; set model.init_from too"
        )
    return model, init_from, freeze


def _prefixes(net: nn.Module, attribute: str, model_name: str) -> tuple[str, ...]:
    prefixes = tuple(getattr(net, attribute, ()) or ())
    if not prefixes:
        raise ConfigError(f"model.init_from: model {model_name} does not name its {attribute} (fine-tuning)")
    return prefixes


class InitReport(dict):
    """What :func:`load_initial_weights` did: ``source`` (the file), ``copied`` (tensors copied whole),
    ``head_rows`` (per target class: the source class its head row came from, or ``None``)."""


def load_initial_weights(
    net: nn.Module,
    init_from: str,
    model_cfg: Mapping[str, Any],
    class_names: Sequence[str],
) -> InitReport:
    """Copy the weights of ``init_from`` into ``net`` (built from ``model_cfg`` for ``class_names``).

    Raises:
        ConfigError: one line when ``init_from`` is neither a shipped name nor a file, is not a flakeseg
            network checkpoint, or holds another model than ``model_cfg`` (the differing keys named).
    """
    from flakeseg.inference.shipped import resolve_model

    try:
        path = resolve_model(init_from)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--model", "model.init_from", 1)) from None
    try:
        checkpoint = load_checkpoint(path)
    except FlakesegError as exc:
        raise ConfigError(f"model.init_from: {exc}") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "model" not in hparams or not isinstance(state, dict):
        raise ConfigError(f"model.init_from: {path}: not a flakeseg network checkpoint (no model or weights)")
    source_model = {k: v for k, v in dict(hparams["model"]).items() if k not in FINE_TUNING_KEYS}
    target_model = dict(model_cfg)
    differing = sorted(
        key for key in set(source_model) | set(target_model) if source_model.get(key) != target_model.get(key)
    )
    if differing:
        shown = ", ".join(
            f"{k}: {source_model.get(k)!r} there, {target_model.get(k)!r} here" for k in differing
        )
        # in_channels is no model key a user sets: the data.* input options add the channels
        fix = (
            "set data.substrate_channels, data.gmm_channels and data.optics_channels as the source was "
            "trained (its training config is in the checkpoint)"
            if differing == ["in_channels"]
            else "set the same model config (its training config is in the checkpoint)"
        )
        raise ConfigError(
            f"model.init_from: {path} holds another network than this run builds ({shown}); "
            f"{fix} or train from scratch"
        )
    weights = network_weights(state)
    source_names = list(hparams.get("class_names") or [])
    target_names = list(class_names)
    same_scheme = source_names == target_names
    head = () if same_scheme else _prefixes(net, "head_prefixes", str(target_model.get("name")))
    own = net.state_dict()
    missing = sorted(set(own) - set(weights))
    if missing:
        raise ConfigError(f"model.init_from: {path} lacks weights of this network ({', '.join(missing[:3])})")

    rows: list[int | None] = []
    for index, name in enumerate(target_names):
        if index == 0 and source_names:
            rows.append(0)  # background from background, whatever it is called
        else:
            rows.append(source_names.index(name) if name in source_names else None)
    loaded: dict[str, torch.Tensor] = {}
    copied = 0
    for key, value in own.items():
        source = weights[key]
        if key.startswith(head):
            fresh = value.clone()  # the new head's random initialisation, where no class matches
            for target, row in enumerate(rows):
                if row is not None:
                    fresh[target] = source[row]
            loaded[key] = fresh
            continue
        if source.shape != value.shape:
            raise ConfigError(
                f"model.init_from: {path}: weight {key} has shape {tuple(source.shape)}, this network "
                f"{tuple(value.shape)}"
            )
        loaded[key] = source
        copied += 1
    net.load_state_dict(loaded)
    report = InitReport(
        source=str(path),
        copied=copied,
        head_rows={
            name: (source_names[r] if r is not None else None)
            for name, r in zip(target_names, rows, strict=True)
        }
        if head
        else None,
    )
    if head:
        log.info(
            "init_from %s: %d tensors copied; head rebuilt for %s (rows from %s)",
            path.name,
            copied,
            target_names,
            report["head_rows"],
        )
    else:
        log.info("init_from %s: all %d tensors copied (same classes)", path.name, copied)
    return report


class FreezeEncoder(pl.Callback):
    """Keep the network's encoder (its ``encoder_prefixes`` parameters) frozen for the first ``epochs``
    epochs, so a rebuilt head and the decoder adapt before the pretrained features move. Batch-norm
    statistics of the encoder still follow the new images (they are buffers, not parameters)."""

    def __init__(self, epochs: int):
        self.epochs = int(epochs)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        net = pl_module.net
        prefixes = _prefixes(net, "encoder_prefixes", type(net).__name__)
        frozen = trainer.current_epoch < self.epochs
        for name, parameter in net.named_parameters():
            if name.replace("_orig_mod.", "").startswith(prefixes):
                parameter.requires_grad_(not frozen)
