"""Synthetic flakes for a material with no labels: shapes pasted onto real bare substrate, coloured by
the optics.

A training image of the new material's microscope (its labels unused) is cleaned and then receives
flakes of known layer count:

1. **Its substrate colour** is its densest colour; each pixel's optical contrast ``I / b - 1`` against
   it is measured on the unclipped channels.
2. **Thin unknown flakes are removed**: pixels whose contrast against the substrate's local
   brightness lies between ``tolerance`` and ``thin_max`` (the range a few layers of the material
   span; they may be real monolayers, whose thickness nobody labelled) are filled with that
   brightness plus the substrate's noise and become substrate. Pixels above ``thin_max`` (thick
   flakes, tape residue, the scale bar) stay, labelled "other", so the network still sees thick
   flakes as not-a-target.
3. **Flakes are pasted**: shapes (connected flake regions of another material's masks, and random
   star-shaped polygons), rotated, flipped and scaled, placed where they lie wholly on substrate, each
   of ``n`` layers (1 or 2). Every pixel of a flake is multiplied, per channel, by the ratio of the
   colours the optics predicts for ``n`` layers and for the bare substrate on this image
   (:meth:`flakeseg.optics.calibration.Setup.colours`, through the image's own substrate colour, so
   exposure and clipping follow the image), the ratio blurred by ``edge_px`` so edges are as soft as
   a microscope's. The flake's pixels get label ``n`` exactly.

No label of the material is read; the setup is a zero-label one (another material's camera and tone
curve, the oxide fitted on the image's substrate colour), as ``flakeseg predict --material`` uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from flakeseg.errors import DataError
from flakeseg.optics.calibration import CLIP, Setup, fit_oxide
from flakeseg.optics.substrate import substrate_colour

__all__ = ["FlakeRenderer", "random_polygon", "shapes_from_masks"]

#: width of the Gaussian the substrate's local brightness is smoothed with (uneven lighting is smooth)
FIELD_SIGMA_PX = 25.0


def random_polygon(rng: np.random.Generator, radius: tuple[float, float] = (8.0, 60.0)) -> np.ndarray:
    """A filled star-shaped polygon (5-10 vertices at random angles and radii) as a boolean mask."""
    count = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, count))
    size = float(rng.uniform(*radius))
    radii = size * rng.uniform(0.45, 1.0, count)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    points -= points.min(axis=0)
    side = int(np.ceil(points.max())) + 2
    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32) + 1], 1)
    return mask.astype(bool)


def shapes_from_masks(masks: Sequence[np.ndarray], classes: Sequence[int], min_area: int = 100) -> list:
    """Every connected region of ``classes`` in ``masks`` of at least ``min_area`` pixels, cut to its
    bounding box (boolean arrays): flake outlines of another material."""
    shapes = []
    for mask in masks:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(np.isin(mask, classes).astype(np.uint8))
        for index in range(1, count):
            x, y, w, h, area = stats[index]
            if area >= min_area:
                shapes.append(labels[y : y + h, x : x + w] == index)
    return shapes


@dataclass
class FlakeRenderer:
    """Renders synthetic flakes of ``material`` on an image of its microscope; see the module notes.

    Attributes:
        material: the crystal (:func:`flakeseg.optics.materials.material`'s names).
        setup: a zero-label setup (its oxide refitted per image within ``oxide_window_nm``, kept where
            the substrate is clipped in two channels).
        shapes: flake outlines to draw from (random polygons are added at ``polygon_p``).
        flakes: ``(low, high)`` flakes pasted per image.
        layer_p: probability of 1, 2, ... layers per flake.
        tolerance, thin_max: the contrast band of thin unknown flakes removed first.
        edge_px: Gaussian blur of a flake's colour ratio at its edge.
        scale: ``(low, high)`` resize of a drawn shape.
    """

    material: str
    setup: Setup
    shapes: Sequence[np.ndarray]
    flakes: tuple[int, int] = (3, 8)
    layer_p: tuple[float, ...] = (0.6, 0.4)
    tolerance: float = 0.01
    thin_max: float = 0.15
    edge_px: float = 0.7
    scale: tuple[float, float] = (0.5, 1.5)
    polygon_p: float = 0.5
    oxide_window_nm: float = 40.0

    def _setup_for(self, substrate: np.ndarray) -> Setup:
        low = max(self.setup.oxide_nm - self.oxide_window_nm, 0.0)
        try:
            oxide = fit_oxide(
                substrate[None],
                self.setup.camera,
                self.setup.tone(),
                (low, self.setup.oxide_nm + self.oxide_window_nm, 2.0),
                self.setup.na,
                self.setup.illuminant,
            )
        except DataError:  # a substrate clipped in two channels says nothing of the oxide
            return self.setup
        return dataclasses.replace(self.setup, oxide_nm=oxide)

    def _shape(self, rng: np.random.Generator) -> np.ndarray:
        if not self.shapes or rng.random() < self.polygon_p:
            shape = random_polygon(rng)
        else:
            shape = self.shapes[int(rng.integers(len(self.shapes)))]
        shape = np.rot90(shape, int(rng.integers(4)))
        if rng.random() < 0.5:
            shape = shape[:, ::-1]
        factor = float(rng.uniform(*self.scale))
        size = (max(2, round(shape.shape[1] * factor)), max(2, round(shape.shape[0] * factor)))
        return cv2.resize(shape.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    def clean(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The image with thin unknown flakes filled in, its substrate colour, and the mask of what
        stays non-substrate (thick flakes and the like, label "other").

        Contrast is measured against the substrate's local brightness (a smooth field through the
        pixels near the substrate colour), so uneven lighting is not taken for flakes; filled pixels
        take that field plus noise of the substrate's own spread."""
        substrate = substrate_colour(image, np.ones(image.shape[:2], bool))
        usable = substrate < CLIP
        pixels = image.astype(np.float64)

        def deviation(reference: np.ndarray) -> np.ndarray:
            contrast = np.abs(pixels / np.maximum(reference, 1.0) - 1.0)
            return np.where(usable, contrast, 0.0).max(axis=2)

        def field_through(selected: np.ndarray) -> np.ndarray:
            weight = cv2.GaussianBlur(selected.astype(np.float64), (0, 0), FIELD_SIGMA_PX)
            total = cv2.GaussianBlur(pixels * selected[..., None], (0, 0), FIELD_SIGMA_PX)
            return np.where(weight[..., None] > 1e-3, total / np.maximum(weight, 1e-3)[..., None], substrate)

        field = field_through(deviation(substrate) <= 0.05)
        away = deviation(field)
        thick = away > self.thin_max
        bare = away <= self.tolerance
        # a one-pixel margin: flake edges blend into the substrate
        fill = cv2.dilate((~bare & ~thick).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~thick
        field = field_through(bare)
        spread = (pixels - field)[bare].std(axis=0) if bare.any() else np.zeros(3)
        noisy = field + rng.normal(0.0, 1.0, pixels.shape) * spread
        cleaned = np.where(fill[..., None], np.clip(np.round(noisy), 0, 255), pixels).astype(np.uint8)
        return cleaned, substrate, thick

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (uint8 RGB) with synthetic flakes, and its mask (0 other, n: n layers)."""
        cleaned, substrate, thick = self.clean(image, rng)
        setup = self._setup_for(substrate)
        counts = list(range(1, len(self.layer_p) + 1))
        colours = setup.colours(self.material, [0, *counts], substrate)[0]
        ratios = {n: colours[n] / np.maximum(colours[0], 1e-6) for n in counts}
        height, width = image.shape[:2]
        mask = np.zeros((height, width), np.uint8)
        # where a flake may go: substrate, away from thick flakes and the pasted ones
        blocked = cv2.dilate(thick.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        ratio_map = np.ones((height, width, 3), np.float64)
        for _ in range(int(rng.integers(self.flakes[0], self.flakes[1] + 1))):
            shape = self._shape(rng)
            h, w = shape.shape
            if h >= height or w >= width:
                continue
            for _attempt in range(20):
                top, left = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
                if not (blocked[top : top + h, left : left + w] & shape).any():
                    break
            else:
                continue
            layers = counts[int(rng.choice(len(counts), p=np.asarray(self.layer_p) / sum(self.layer_p)))]
            window = (slice(top, top + h), slice(left, left + w))
            mask[window][shape] = layers
            ratio_map[window][shape] = ratios[layers]
            grown = cv2.dilate(shape.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
            blocked[window] |= grown
        if self.edge_px > 0:
            ratio_map = cv2.GaussianBlur(ratio_map, (0, 0), self.edge_px)
        out = np.clip(np.round(cleaned.astype(np.float64) * ratio_map), 0, 255).astype(np.uint8)
        return out, mask
