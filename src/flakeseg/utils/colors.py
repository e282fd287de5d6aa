"""Class colours: ``#rrggbb`` strings from the class scheme turned into pictures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["colorize", "hex_to_rgb"]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#1f5fff"`` -> ``(31, 95, 255)``."""
    digits = color.lstrip("#")
    if len(digits) != 6:
        raise ValueError(f"colour {color!r} is not of the form #rrggbb")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def colorize(labels: np.ndarray, colors: Sequence[str]) -> np.ndarray:
    """An ``H x W x 3`` uint8 picture of a class-index map; ignored pixels are grey."""
    table = np.full((256, 3), 128, np.uint8)
    for index, color in enumerate(colors):
        table[index] = hex_to_rgb(color)
    return table[labels]
