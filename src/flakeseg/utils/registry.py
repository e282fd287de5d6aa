"""A name -> builder table for one config group (``loss``, ``optim``): a new entry is one decorated
function and one YAML file in the group's ``conf/`` folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flakeseg.errors import ConfigError

__all__ = ["Registry"]


class Registry:
    """Builders registered under the names that ``<group>.name`` takes.

    Args:
        group: the config group, for error messages (``loss`` gives ``loss.name: unknown ...``).
        kind: what a builder builds, for error messages (``loss``, ``optimiser``).
    """

    def __init__(self, group: str, kind: str):
        self.group, self.kind = group, kind
        self._builders: dict[str, Callable[..., Any]] = {}
        self._traits: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **traits: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the decorated builder under ``name``; ``traits`` are facts callers may ask about."""

        def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            self._traits[name] = dict(traits)
            return builder

        return decorate

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: Any) -> Callable[..., Any]:
        """The builder of ``name``; an unknown name is one line naming ``<group>.name`` and the choices."""
        if name not in self._builders:
            raise ConfigError(
                f"{self.group}.name: unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            )
        return self._builders[name]

    def trait(self, name: Any, trait: str, default: Any = None) -> Any:
        self.get(name)
        return self._traits[name].get(trait, default)
