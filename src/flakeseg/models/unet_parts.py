"""What the U-Nets share: the contracting path."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["encode"]


def encode(
    x: torch.Tensor,
    blocks: Iterable[Callable[[torch.Tensor], torch.Tensor]],
    pool: Callable[[torch.Tensor], torch.Tensor],
    bottom: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Each block, its output kept as the skip connection of its level, then pooling; then the bottom
    block. Returns the bottom's output and the skips, finest first."""
    skips = []
    for block in blocks:
        x = block(x)
        skips.append(x)
        x = pool(x)
    return bottom(x), skips
