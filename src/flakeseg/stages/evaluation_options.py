"""The ``evaluate.*`` options of ``train.py``: which evaluation steps score the fold models after a CV
(:mod:`flakeseg.stages.fold_evaluation`). Light to import, so configs are checked before Lightning loads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flakeseg.errors import ConfigError
from flakeseg.evaluation.postprocess import DEFAULT_MIN_AREAS, DEFAULT_MIN_CONFIDENCES

__all__ = ["EvalOptions"]


@dataclass(frozen=True)
class EvalOptions:
    """The evaluation-time steps of the recipe (each off by default, so each is an ablation step).

    Attributes:
        tta: average the probabilities over the 8 flips and 90-degree rotations.
        ensemble: score the test split with the fold models' averaged probabilities.
        postprocess: choose ``predict``'s ``min_area`` and ``min_confidence`` on the CV folds (from
            ``min_areas`` x ``min_confidences``, by the pooled out-of-fold flake F1); off: ``predict``'s
            defaults (100 px, 0.5).
        temperature: temperature scaling fitted on held-out folds.
        unknown: also score what ``predict`` lists and shows (``cv_listed/...``): the held-out flakes
            in the classes the optics' colour check gives them (``unknown`` when their colour fits no
            layer class), checked against a setup calibrated on each fold's own training images and
            labels (needs ``data.material``).
        min_areas: candidate areas for ``postprocess``, in pixels of the images as stored (the unit of
            ``predict --min-area``).
        min_confidences: candidate mean class probabilities for ``postprocess``.
    """

    tta: bool = False
    ensemble: bool = False
    postprocess: bool = False
    temperature: bool = False
    unknown: bool = False
    min_areas: tuple[int, ...] = DEFAULT_MIN_AREAS
    min_confidences: tuple[float, ...] = DEFAULT_MIN_CONFIDENCES

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> EvalOptions:
        """From an ``evaluate`` config node (mapping or OmegaConf node); unknown keys are refused by name."""
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
        node = dict(node or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ConfigError(f"evaluate.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for key in ("tta", "ensemble", "postprocess", "temperature", "unknown"):
            if key in node:
                if not isinstance(node[key], bool):
                    raise ConfigError(f"evaluate.{key}: must be true or false, got {node[key]!r}")
                values[key] = node[key]
        if "min_areas" in node:
            areas = node["min_areas"]
            if (
                not isinstance(areas, (list, tuple))
                or not areas
                or any(not isinstance(a, int) or isinstance(a, bool) or a < 0 for a in areas)
            ):
                raise ConfigError(f"evaluate.min_areas: a list of whole numbers >= 0, got {areas!r}")
            values["min_areas"] = tuple(int(a) for a in areas)
        if "min_confidences" in node:
            confidences = node["min_confidences"]
            if (
                not isinstance(confidences, (list, tuple))
                or not confidences
                or any(
                    not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 <= c <= 1
                    for c in confidences
                )
            ):
                raise ConfigError(
                    f"evaluate.min_confidences: a list of numbers in [0, 1], got {confidences!r}"
                )
            values["min_confidences"] = tuple(float(c) for c in confidences)
        return cls(**values)

    @property
    def any(self) -> bool:
        return self.tta or self.ensemble or self.postprocess or self.temperature or self.unknown
