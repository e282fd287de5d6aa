"""A name -> builder registry, so a new model is one decorated function and one YAML file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from flakeseg.errors import ConfigError

ModelBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(num_classes=..., **model_cfg)`` under ``name`` (the ``model.name`` value)."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorator


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(model_cfg: Mapping[str, Any], num_classes: int) -> nn.Module:
    """Build the model that ``model_cfg["name"]`` names, passing the other keys as keyword arguments.

    The returned module maps ``N x C x H x W`` images to ``N x num_classes x H x W`` logits and has an
    ``input_multiple`` attribute: input sides must be multiples of it.
    """
    options = dict(model_cfg)
    name = options.pop("name", None)
    if name not in _REGISTRY:
        raise ConfigError(f"model.name: unknown model {name!r}; available: {', '.join(available_models())}")
    try:
        return _REGISTRY[name](num_classes=num_classes, **options)
    except TypeError as exc:  # an unknown or missing key in the model config
        raise ConfigError(f"model: {name} does not accept these options ({exc})") from None
