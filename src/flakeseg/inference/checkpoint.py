"""Trained models on disk: reading checkpoints safely, and the model card prediction needs.

:func:`load_checkpoint` reads with ``weights_only=True`` (no Lightning needed, so ``flakeseg predict``
starts fast): a file carrying pickled code is refused and nothing in it runs; a truncated or corrupt
file is one clear error naming it. Every checkpoint read of the package goes through it, or through
Lightning's own loader with ``weights_only=True`` when a fold resumes.

A training checkpoint carries everything prediction needs (class names and colours, input
normalisation, the scale it was trained at, the model config; see :class:`ModelCard`).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from flakeseg.errors import ConfigError, DataError
from flakeseg.inference.model_files import NOT_A_CHECKPOINT, checkpoint_problem

__all__ = [
    "ModelCard",
    "card_from_config",
    "card_from_hparams",
    "inference_fields",
    "load_checkpoint",
    "load_torch_model",
    "network_weights",
]


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint without executing code from it.

    Raises:
        DataError: ``<path>: ...`` in one line when the file is missing, not a checkpoint (an image, a
            text file), truncated or corrupt, or holds pickled objects other than tensors and plain
            containers (refused, nothing run).
    """
    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is not None:
        raise DataError(problem)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: checkpoint not found") from None
    except (KeyError, IndexError, TypeError, AttributeError):  # the unpickler on bytes of another kind
        raise DataError(f"{path}: {NOT_A_CHECKPOINT}") from None
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise DataError(
                f"{path}: refused: the checkpoint holds pickled objects that are not plain data "
                f"(a tampered or foreign file?); nothing in it was run"
            ) from None
        raise DataError(f"{path}: unreadable checkpoint ({first})") from None
    except (EOFError, RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: unreadable checkpoint, truncated or corrupt ({first[:120]})") from None


@dataclass(frozen=True)
class ModelCard:
    """What prediction needs to know about a trained model.

    Attributes:
        model: the ``model`` config node (``name`` and the builder's options).
        class_names, class_colors: classes in index order and their ``#rrggbb`` display colours.
        mean, std: input normalisation, ``(pixel / 255 - mean) / std`` per RGB channel.
        data_scale: the factor the training images were resampled by (0.5: half size).
        crop_size: side of the training crops; the default tile side at prediction.
        pixel_size_um: micrometres per pixel of the training images as stored, if known.
        flake_classes: class names reported as flakes (the others are background).
        substrate_normalize: images are white-balanced against their substrate before the network
            (``data.substrate_normalize``, see :mod:`flakeseg.optics.substrate`).
        input_multiple: input sides must be multiples of this (the network's stride).
        inputs: the input features fitted on the training images (fitted substrate choice, GMM
            channels; :class:`~flakeseg.inference.inputs.InputFeatures` as a dict), or ``None``.
        postprocess: which predicted regions are listed as flakes, chosen on the CV folds by flake F1
            (``{"min_area", "min_confidence", "chosen_on"}``), or ``None`` (``predict``'s defaults).
        flatfield: the flat field the training images were divided by (``data.flatfield``), as
            :func:`~flakeseg.optics.substrate.compact_flat_field` keeps it, or ``None``; prediction
            divides every image by it first.
        setup: the microscope setup calibrated on the training images and labels
            (:func:`~flakeseg.data.contrasts.card_setup`, a :class:`~flakeseg.optics.calibration.Setup`
            as a dict), or ``None``; ``predict`` checks new images against it.
        source: the file the card was read from.
    """

    model: dict[str, Any]
    class_names: list[str]
    class_colors: list[str]
    mean: list[float]
    std: list[float]
    data_scale: float = 1.0
    crop_size: int = 512
    pixel_size_um: float | None = None
    flake_classes: list[str] = field(default_factory=list)
    input_multiple: int = 1
    data: str = ""
    substrate_normalize: bool = False
    inputs: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None
    flatfield: dict[str, Any] | None = None
    setup: dict[str, Any] | None = None
    source: str = ""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "source"})

    @classmethod
    def from_json(cls, text: str, source: str) -> ModelCard:
        return cls(**{**json.loads(text), "source": source})


def _unpacked_flatfield(field: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A card's flat field as plain data: a shipped file holds its samples as a float32 tensor
    (:func:`~flakeseg.stages.shipping.packed_flatfield`), given back as the numbers they were (float32
    values already: :func:`~flakeseg.optics.substrate.compact_flat_field` rounds a float32 array)."""
    if not field:
        return None
    samples = field["field"]
    if isinstance(samples, torch.Tensor):
        samples = samples.double().tolist()
    return {**dict(field), "field": samples}


def card_from_hparams(
    hparams: Mapping[str, Any], net: torch.nn.Module | None, source: str, input_multiple: int = 1
) -> ModelCard:
    """The card of a checkpoint's hyperparameters; the stride comes from ``net`` when given."""
    names = list(hparams["class_names"])
    inference = dict(hparams.get("inference") or {})  # absent in checkpoints older than predict
    norm = hparams.get("normalization") or {"mean": [0.5] * 3, "std": [0.25] * 3}
    return ModelCard(
        model=dict(hparams["model"]),
        class_names=names,
        class_colors=list(hparams.get("class_colors") or ["#000000", "#1f5fff", "#20c020", "#d04040"])[
            : len(names)
        ],
        mean=[float(v) for v in norm["mean"]],
        std=[float(v) for v in norm["std"]],
        data_scale=float(hparams.get("data_scale", 1.0)),
        crop_size=int(inference.get("crop_size") or 512),
        pixel_size_um=inference.get("pixel_size_um"),
        flake_classes=list(inference.get("flake_classes") or names[1:]),
        input_multiple=int(getattr(net, "input_multiple", input_multiple)),
        data=str(inference.get("data", "")),
        substrate_normalize=bool(inference.get("substrate_normalize", False)),
        inputs=inference.get("inputs") or None,
        postprocess=inference.get("postprocess") or None,
        flatfield=_unpacked_flatfield(inference.get("flatfield")),
        setup=inference.get("setup") or None,
        source=source,
    )


def inference_fields(data_cfg: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """What prediction needs of the ``data`` config beyond classes and normalisation (a checkpoint's
    ``inference`` hyperparameters)."""
    from flakeseg.data.catalog import flat_field
    from flakeseg.data.classes import region_class_indices
    from flakeseg.optics.substrate import compact_flat_field

    field = flat_field(data_cfg)
    return {
        "crop_size": int(data_cfg["crop_size"]),
        "pixel_size_um": data_cfg.get("pixel_size_um"),
        "flake_classes": [class_names[i] for i in region_class_indices(data_cfg["classes"], class_names)],
        "data": str(data_cfg["name"]),
        "substrate_normalize": bool(data_cfg.get("substrate_normalize", False)),
        **({"flatfield": compact_flat_field(field)} if field is not None else {}),
    }


def card_from_config(config: Mapping[str, Any], input_multiple: int = 1) -> ModelCard:
    """The card of a model trained with the resolved ``train.py`` config ``config`` (a classical model's,
    whose file holds no card)."""
    data_cfg = config["data"]
    names = list(data_cfg["classes"]["names"])
    hparams = {
        "model": dict(config["model"]),
        "class_names": names,
        "class_colors": list(data_cfg["classes"].get("colors") or []),
        "normalization": {"mean": list(data_cfg["mean"]), "std": list(data_cfg["std"])},
        "data_scale": float(data_cfg["scale"]),
        "inference": inference_fields(data_cfg, names),
    }
    return card_from_hparams(hparams, None, source="", input_multiple=input_multiple)


def network_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's own weights of a Lightning ``state_dict`` (``net.`` keys, prefix dropped)."""
    weights = {k.removeprefix("net."): v for k, v in state_dict.items() if k.startswith("net.")}
    # torch.compile wraps modules as `_orig_mod`; compiled training keeps plain keys (nn.Module.compile)
    return {k.replace("_orig_mod.", ""): v for k, v in weights.items()}


def load_torch_model(path: Path | str) -> tuple[torch.nn.Module, ModelCard]:
    """The network (eval mode, CPU) and card of a training checkpoint, loaded without running pickles.

    Raises:
        DataError: one line naming the file when it is missing, corrupt, carries pickled code, or is
            not a flakeseg training checkpoint.
    """
    from flakeseg.models import build_model  # the model files import torch.nn and smp's registry

    path = Path(path)
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "model" not in hparams or not isinstance(state, dict):
        raise DataError(f"{path}: not a flakeseg training checkpoint (no model config or weights in it)")
    names = list(hparams.get("class_names") or [])
    try:
        net = build_model(dict(hparams["model"]), num_classes=len(names))
    except ConfigError as exc:
        raise DataError(f"{path}: cannot rebuild its model ({exc})") from None
    weights = network_weights(state)
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: weights do not fit the model in its config ({first[:160]})") from None
    net.eval()
    return net, card_from_hparams(hparams, net, str(path))


def load_classical(path: Path | str, num_classes: int) -> Any:
    """Read a classical model file written by :meth:`~flakeseg.models.classical.base.ClassicalModel.save`
    with ``allow_pickle=False``: anything but arrays of numbers is refused, so loading runs no code.

    Raises:
        DataError: ``<path>: ...`` in one line when the file is missing, unreadable or not a model file.
    """
    import numpy as np

    from flakeseg.models import build_model
    from flakeseg.models.classical.base import CONFIG_KEY

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise DataError(f"{path}: model file not found") from None
    except (OSError, ValueError, EOFError) as exc:  # ValueError: pickled objects refused, or corrupt
        raise DataError(
            f"{path}: not a readable classical model file ({str(exc).splitlines()[0][:120]})"
        ) from None
    if CONFIG_KEY not in arrays:
        raise DataError(f"{path}: not a classical model file (no {CONFIG_KEY})")
    model = build_model(json.loads(str(arrays.pop(CONFIG_KEY))), num_classes)
    model.load_state(arrays)
    return model
