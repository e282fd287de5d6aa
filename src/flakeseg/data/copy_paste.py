"""Copy-paste augmentation: flakes cut from training images, pasted onto other training images'
substrate (``augment.copy_paste_p``).

Flakes are few (MoS2: about 6 % of the pixels, 42 % of all monolayer pixels in one image), so a network
sees the same few flakes in every epoch. Pasting each flake (its pixels and its labels, a connected
region of flake classes) at a new place on another image's substrate multiplies the scenes it appears
in. The paste keeps the flake's optical contrast: its pixels are scaled by the ratio of the two
images' substrate colours (1 when images are white-balanced against their substrate, where every
substrate is the same grey), so a monolayer stays a monolayer of the destination's lighting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.optics.substrate import estimate_background

__all__ = ["Flake", "FlakeBank"]


@dataclass(frozen=True)
class Flake:
    """One flake cut from a training image: its bounding box of pixels and labels, and where it is."""

    source: int  # index of the image it was cut from
    pixels: np.ndarray  # h x w x channels uint8
    labels: np.ndarray  # h x w uint8 class indices (the flake's own, IGNORE_INDEX outside it)
    inside: np.ndarray  # h x w bool: the flake's pixels


class FlakeBank:
    """The flakes of a set of training images, and pastes of them onto those images.

    Args:
        images: ``H x W x channels`` uint8 training images (as the network sees them).
        masks: their ``H x W`` class-index masks.
        flake_classes: indices of the flake classes (a flake is a connected region of them).
        background_classes: classes a flake may be pasted over (the substrate's class).
        normalized: images are white-balanced against their substrate (no contrast scaling needed).
        min_area: flakes under this many pixels are not cut (label specks).
        max_side: flakes larger than this in either side are not cut (they would cover the image).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        flake_classes: Sequence[int],
        background_classes: Sequence[int] = (0,),
        normalized: bool = False,
        min_area: int = 20,
        max_side: int | None = None,
    ):
        self.flake_classes = list(flake_classes)
        self.background_classes = list(background_classes)
        self.substrates = [
            np.ones(3) if normalized else np.maximum(estimate_background(image[..., :3]), 1.0)
            for image in images
        ]
        self.flakes: list[Flake] = []
        for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
            regions, _ = ndimage.label(np.isin(mask, self.flake_classes))
            for number, box in enumerate(ndimage.find_objects(regions), start=1):
                inside = regions[box] == number
                height, width = inside.shape
                if inside.sum() < min_area or (max_side and max(height, width) > max_side):
                    continue
                labels = np.where(inside, mask[box], IGNORE_INDEX).astype(np.uint8)
                self.flakes.append(Flake(index, image[box].copy(), labels, inside))

    def __len__(self) -> int:
        return len(self.flakes)

    def paste(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        target: int,
        rng: np.random.Generator,
        count: int = 1,
        tries: int = 10,
        max_overlap: float = 0.1,
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[Flake, int, int]]]:
        """``image`` and ``mask`` (training image ``target``) with up to ``count`` flakes of *other*
        images pasted on, each where at most ``max_overlap`` of its pixels cover anything but
        background (``tries`` random places each). Every pasted pixel takes the flake's label.
        Also returns each paste: ``(flake, top, left)``."""
        candidates = [f for f in self.flakes if f.source != target]
        placed: list[tuple[Flake, int, int]] = []
        if not candidates:
            return image, mask, placed
        image, mask = image.copy(), mask.copy()
        height, width = mask.shape
        for _ in range(count):
            flake = candidates[int(rng.integers(len(candidates)))]
            h, w = flake.inside.shape
            if h > height or w > width:
                continue
            for _ in range(tries):
                top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
                under = mask[top : top + h, left : left + w]
                covered = flake.inside & ~np.isin(under, self.background_classes)
                if covered.sum() <= max_overlap * flake.inside.sum():
                    break
            else:
                continue
            pixels = flake.pixels.astype(np.float64)
            # the flake's contrast against its own substrate, on the destination's substrate
            pixels[..., :3] *= self.substrates[target] / self.substrates[flake.source]
            window = image[top : top + h, left : left + w]
            window[flake.inside] = np.clip(np.round(pixels[flake.inside]), 0, 255).astype(np.uint8)
            mask[top : top + h, left : left + w][flake.inside] = flake.labels[flake.inside]
            placed.append((flake, top, left))
        return image, mask, placed
