"""Test-time augmentation over the 8 symmetries of the square (flips and 90-degree rotations).

A flake's class does not depend on how the sample sits under the objective, so the network's
probabilities of the 8 rotated and mirrored copies of an image, each turned back, are averaged. Each
transform acts on the last two axes of ``... x H x W`` tensors and has an exact inverse.
"""

from __future__ import annotations

import torch

__all__ = ["D4", "apply", "invert"]

#: (quarter turns counter-clockwise, mirror left-right first): the dihedral group of the square
D4: tuple[tuple[int, bool], ...] = tuple((turns, flip) for flip in (False, True) for turns in range(4))


def apply(x: torch.Tensor, transform: tuple[int, bool]) -> torch.Tensor:
    """Mirror (if asked) then rotate by ``turns`` quarter turns, on the last two axes."""
    turns, flip = transform
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k=turns, dims=(-2, -1))


def invert(x: torch.Tensor, transform: tuple[int, bool]) -> torch.Tensor:
    """Undo :func:`apply`: rotate back, then mirror back."""
    turns, flip = transform
    x = torch.rot90(x, k=-turns, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x
