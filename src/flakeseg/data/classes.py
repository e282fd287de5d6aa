"""Class schemes: which raw mask values make which training class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flakeseg.errors import ConfigError, DataError

#: Label given to pixels that carry no training signal: padding, pixels rotated in from outside the
#: image. Loss and metrics skip them.
IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassScheme:
    """Names, colours and raw label values of the classes a model predicts.

    Attributes:
        names: class names in index order, e.g. ``("other", "monolayer", "bilayer")``.
        label_values: for each class, the raw mask values that belong to it.
        colors: a display colour per class (hex strings).
        apart: subclasses kept apart in training though scored inside their class, ``(name, raw
            values, weight)`` each (``data.classes.apart``, e.g. MoS2's thick flakes inside "other"):
            each of their pixels counts ``weight`` times in the loss's cross-entropy term
            (:class:`flakeseg.training.module.FlakeSegModule`).
    """

    names: tuple[str, ...]
    label_values: tuple[tuple[int, ...], ...]
    colors: tuple[str, ...]
    apart: tuple[tuple[str, tuple[int, ...], float], ...] = ()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ClassScheme:
        """Build a scheme from the ``data.classes`` config node, checking it for consistency."""
        names = tuple(str(n) for n in cfg["names"])
        values = tuple(tuple(int(v) for v in group) for group in cfg["label_values"])
        colors = tuple(str(c) for c in cfg.get("colors") or ["#000000"] * len(names))
        if len(names) < 2:
            raise ConfigError("data.classes.names: at least two classes are needed")
        if len(set(names)) != len(names):
            raise ConfigError(f"data.classes.names: duplicate class names in {list(names)}")
        if len(values) != len(names):
            raise ConfigError(
                f"data.classes.label_values: {len(values)} groups for {len(names)} classes {list(names)}"
            )
        if len(colors) != len(names):
            raise ConfigError(f"data.classes.colors: {len(colors)} colours for {len(names)} classes")
        flat = [v for group in values for v in group]
        if len(set(flat)) != len(flat):
            raise ConfigError(f"data.classes.label_values: a raw value is assigned twice in {values}")
        if any(not 0 <= v < IGNORE_INDEX for v in flat):
            raise ConfigError(f"data.classes.label_values: raw values must be in 0..{IGNORE_INDEX - 1}")
        apart = []
        for name, entry in (cfg.get("apart") or {}).items():
            key = f"data.classes.apart.{name}"
            if not isinstance(entry, Mapping) or set(entry) != {"values", "weight"}:
                raise ConfigError(f"{key}: needs exactly `values` (raw mask values) and `weight`")
            group = tuple(int(v) for v in entry["values"])
            parents = {index for index, own in enumerate(values) if set(group) & set(own)}
            if name in names:
                raise ConfigError(f"data.classes.apart: {name!r} is already a class name")
            if not group or len(parents) != 1 or not set(group) <= set(values[next(iter(parents))]):
                raise ConfigError(
                    f"{key}.values: raw values {list(group)} must all belong to one class "
                    f"of label_values {[list(v) for v in values]}"
                )
            weight = float(entry["weight"])
            if not weight > 0:
                raise ConfigError(f"{key}.weight: must be > 0, got {entry['weight']}")
            apart.append((str(name), group, weight))
        return cls(names=names, label_values=values, colors=colors, apart=tuple(apart))

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def apart_weights(self) -> list[tuple[int, float]]:
        """``(class index, weight)`` of each subclass kept apart, in the order of their training
        indices ``num_classes, num_classes + 1, ...`` (:meth:`training_table`)."""
        return [
            (next(i for i, own in enumerate(self.label_values) if group[0] in own), weight)
            for _, group, weight in self.apart
        ]

    def lookup_table(self) -> np.ndarray:
        """A 256-entry table from raw value to class index; unmapped values map to ``IGNORE_INDEX``."""
        table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for index, group in enumerate(self.label_values):
            table[list(group)] = index
        return table

    def training_table(self) -> np.ndarray:
        """:meth:`lookup_table` with each subclass trained apart at its own index, ``num_classes + k``."""
        table = self.lookup_table()
        for k, (_, group, _) in enumerate(self.apart):
            table[list(group)] = self.num_classes + k
        return table

    def encode(self, raw_mask: np.ndarray, source: str = "<mask>") -> np.ndarray:
        """Map raw mask values to class indices; a value outside the scheme is a :class:`DataError`."""
        table = self.lookup_table()
        present = np.unique(raw_mask)
        unknown = [int(v) for v in present if table[v] == IGNORE_INDEX]
        if unknown:
            known = sorted(v for group in self.label_values for v in group)
            raise DataError(f"{source}: label values {unknown} are not in the class mapping (known: {known})")
        return table[raw_mask]


def region_class_indices(classes_cfg: Mapping[str, Any], class_names: Sequence[str]) -> list[int]:
    """Indices of ``data.classes.region_classes``, the classes that are flakes (default: every class but
    the first, the background); a name that is not a class is one line naming the key."""
    wanted = classes_cfg.get("region_classes")
    if wanted is None:
        return list(range(1, len(class_names)))
    unknown = [n for n in wanted if n not in class_names]
    if unknown:
        raise ConfigError(f"data.classes.region_classes: {unknown} are not class names {list(class_names)}")
    return [list(class_names).index(n) for n in wanted]
