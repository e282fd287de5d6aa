"""A name -> builder registry, so a new model is one decorated function and one YAML file.

A model is either a *network* (a ``torch.nn.Module`` trained by Lightning on random crops) or a
*classical* model (:class:`flakeseg.models.classical.base.ClassicalModel`, fitted on whole training images
without gradient descent). Both go through the same folds, metrics and ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flakeseg.errors import ConfigError

ModelBuilder = Callable[..., Any]
#: ``model`` keys that say how training starts (:mod:`flakeseg.training.init_from`), not what the
#: network is: never passed to a builder, never stored in a checkpoint's model config
FINE_TUNING_KEYS = ("init_from", "freeze_encoder_epochs")
#: what a registered model is: trained by Lightning, or fitted by :mod:`flakeseg.training.classical`
KINDS = ("network", "classical")
_REGISTRY: dict[str, tuple[ModelBuilder, str]] = {}


def register_model(name: str, kind: str = "network") -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(num_classes=..., **model_cfg)`` under ``name`` (the ``model.name`` value).

    Args:
        name: the ``model.name`` value.
        kind: ``"network"`` (the builder returns an ``nn.Module``) or ``"classical"`` (it returns a
            :class:`flakeseg.models.classical.base.ClassicalModel`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = (builder, kind)
        return builder

    return decorator


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: Any) -> tuple[ModelBuilder, str]:
    if name not in _REGISTRY:
        raise ConfigError(f"model.name: unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name]


def model_kind(model_cfg: Mapping[str, Any]) -> str:
    """``"network"`` or ``"classical"``: how the model that ``model_cfg["name"]`` names is trained."""
    return _entry(model_cfg.get("name"))[1]


def is_classical(model_cfg: Mapping[str, Any]) -> bool:
    """Whether ``model_cfg`` names a classical (non-Lightning) model."""
    return model_kind(model_cfg) == "classical"


def build_model(model_cfg: Mapping[str, Any], num_classes: int) -> Any:
    """Build the model that ``model_cfg["name"]`` names, passing the other keys as keyword arguments.

    A network maps ``N x C x H x W`` images to ``N x num_classes x H x W`` logits and has an
    ``input_multiple`` attribute: input sides must be multiples of it. A classical model has
    ``fit``/``predict_proba`` (see :class:`flakeseg.models.classical.base.ClassicalModel`). The
    fine-tuning keys (:data:`FINE_TUNING_KEYS`) are not the builder's and are left out.
    """
    options = {k: v for k, v in model_cfg.items() if k not in FINE_TUNING_KEYS}
    builder, _ = _entry(options.pop("name", None))
    try:
        return builder(num_classes=num_classes, **options)
    except TypeError as exc:  # an unknown or missing key in the model config
        raise ConfigError(f"model: {model_cfg.get('name')} does not accept these options ({exc})") from None
