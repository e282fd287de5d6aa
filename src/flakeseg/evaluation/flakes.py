"""Flakes from a probability map: connected regions of one class, with size, confidence and place."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from flakeseg.optics.calibration import Setup

__all__ = [
    "FLAKE_COLUMNS",
    "FLAKE_DECIMALS",
    "UNKNOWN",
    "ClassRegions",
    "Flake",
    "background_class",
    "class_regions",
    "find_flakes",
    "rounded_row",
    "substrate_beside_flakes",
    "unknown_flakes",
    "unlisted_pixels",
]

#: the class a listed flake gets when its colour fits no layer count of the optics (``predict`` lists
#: it apart; flake scores count it as no listing, so a true flake it covers is a miss)
UNKNOWN = "unknown"

#: columns of ``flakes.csv`` that come from a :class:`Flake` (the image name comes first)
FLAKE_COLUMNS = (
    "flake_id",
    "class_name",
    "area_px",
    "area_um2",
    "confidence",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
    "centroid_x",
    "centroid_y",
)


@dataclass(frozen=True)
class Flake:
    """One connected region (4-connectivity) of one flake class in the predicted class map.

    Attributes:
        flake_id: 1-based number within its image, ordered by class then by area (largest first).
        class_name: the predicted class of all its pixels.
        area_px: its area in image pixels.
        area_um2: its area in square micrometres, when the pixel size is known.
        confidence: mean predicted probability of its class over its pixels.
        bbox_x0, bbox_y0, bbox_x1, bbox_y1: bounding box in pixels, ``x1``/``y1`` exclusive.
        centroid_x, centroid_y: centre of mass in pixels.
    """

    flake_id: int
    class_name: str
    area_px: int
    area_um2: float | None
    confidence: float
    bbox_x0: int
    bbox_y0: int
    bbox_x1: int
    bbox_y1: int
    centroid_x: float
    centroid_y: float

    def row(self) -> dict[str, object]:
        """Its values as written to ``flakes.csv`` and the run's records, rounded (:data:`FLAKE_DECIMALS`)."""
        return rounded_row(asdict(self))


#: decimals of the float columns of ``flakes.csv``: what a microscope's resolution and a mean
#: probability can tell apart, and no float noise such as ``639.5600000000002``
FLAKE_DECIMALS = {"area_um2": 2, "confidence": 3, "centroid_x": 1, "centroid_y": 1}


def rounded_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` (a flake's columns) with its floats rounded to :data:`FLAKE_DECIMALS`; ``None`` stays."""
    return {
        key: round(float(value), FLAKE_DECIMALS[key])
        if key in FLAKE_DECIMALS and value not in (None, "")
        else value
        for key, value in row.items()
    }


@dataclass(frozen=True)
class ClassRegions:
    """Every connected region (4-connectivity) of one class in an arg-max map, before any filter.

    Attributes:
        regions: ``H x W`` region numbers ``1..n`` (0: another class).
        areas: pixels per region, ``n + 1`` values (index 0: the rest of the image).
        confidence: mean probability of the class over each region, ``n + 1`` values.
        order: the region numbers by area, largest first (ties: lower number first), the order in
            which :func:`find_flakes` numbers flakes.
    """

    regions: np.ndarray
    areas: np.ndarray
    confidence: np.ndarray
    order: np.ndarray

    def kept(self, min_area: int = 0, min_confidence: float = 0.0) -> np.ndarray:
        """The region numbers, in :attr:`order`, that have ``min_area`` pixels and ``min_confidence``."""
        keep = (self.areas[self.order] >= min_area) & (self.confidence[self.order] >= min_confidence)
        return self.order[keep]


def class_regions(
    probabilities: np.ndarray, class_names: Sequence[str], flake_classes: Sequence[int]
) -> dict[int, ClassRegions]:
    """The :class:`ClassRegions` of each flake class of a ``C x H x W`` probability map's arg-max.

    Computed once, the regions serve every ``min_area`` / ``min_confidence``: filtering drops whole
    regions and never changes the others."""
    if probabilities.ndim != 3 or probabilities.shape[0] != len(class_names):
        raise ValueError(f"probabilities of shape {probabilities.shape} do not fit classes {class_names}")
    labels = probabilities.argmax(axis=0)
    out = {}
    for cls in flake_classes:
        regions, count = ndimage.label(labels == cls)
        index = regions.ravel()
        areas = np.bincount(index, minlength=count + 1)
        summed = np.bincount(index, weights=probabilities[cls].ravel(), minlength=count + 1)
        confidence = summed / np.maximum(areas, 1)
        order = np.arange(1, count + 1)[np.argsort(-areas[1:], kind="stable")]
        out[cls] = ClassRegions(regions, areas, confidence, order)
    return out


def find_flakes(
    probabilities: np.ndarray,
    class_names: Sequence[str],
    flake_classes: Sequence[int],
    min_area: int = 0,
    min_confidence: float = 0.0,
    pixel_size_um: float | None = None,
) -> tuple[np.ndarray, list[Flake]]:
    """The flakes of a ``C x H x W`` probability map.

    Each pixel takes its most probable class; each connected region of a class in ``flake_classes`` is
    a flake candidate, kept when it has at least ``min_area`` pixels and a mean class probability of at
    least ``min_confidence`` (raising either trades recall for precision).

    Returns:
        an ``H x W`` int32 map of kept flake ids (0: none) and the kept flakes, ids ``1..n``.
    """
    regions_of = class_regions(probabilities, class_names, flake_classes)
    ids = np.zeros(probabilities.shape[1:], np.int32)
    flakes: list[Flake] = []
    for cls, found in regions_of.items():
        kept = found.kept(min_area, min_confidence)
        if not len(kept):
            continue
        new_id = np.zeros(len(found.areas), np.int32)
        new_id[kept] = np.arange(len(flakes) + 1, len(flakes) + len(kept) + 1)
        ids += new_id[found.regions]  # the classes' regions are disjoint
        index = found.regions.ravel()
        height, width = found.regions.shape
        sum_y = np.bincount(index, weights=np.repeat(np.arange(height, dtype=np.float64), width))
        sum_x = np.bincount(index, weights=np.tile(np.arange(width, dtype=np.float64), height))
        boxes = ndimage.find_objects(found.regions)
        for region in kept:
            area, box = int(found.areas[region]), boxes[region - 1]
            flakes.append(
                Flake(
                    flake_id=len(flakes) + 1,
                    class_name=class_names[cls],
                    area_px=area,
                    area_um2=None
                    if pixel_size_um is None
                    else round(area * float(pixel_size_um) ** 2, FLAKE_DECIMALS["area_um2"]),
                    confidence=round(float(found.confidence[region]), 4),
                    bbox_x0=box[1].start,
                    bbox_y0=box[0].start,
                    bbox_x1=box[1].stop,
                    bbox_y1=box[0].stop,
                    centroid_x=round(float(sum_x[region] / area), 1),
                    centroid_y=round(float(sum_y[region] / area), 1),
                )
            )
    return ids, flakes


def background_class(class_names: Sequence[str], flake_classes: Sequence[int]) -> int:
    """The class a flake becomes when it is not listed: the first class that is no flake class."""
    return next(c for c in range(len(class_names)) if c not in flake_classes)


def substrate_beside_flakes(
    image: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], flake_classes: Sequence[int]
) -> np.ndarray:
    """The substrate colour a flake's contrast is measured against: the densest colour among the
    pixels the model gives the background class (the first class that is no flake), all pixels if it
    gives it none. The densest colour of the whole image is a flake's when one flake covers most of
    it (MoS2 00005: 68 % monolayer), which would make that flake's contrast zero."""
    from flakeseg.optics.substrate import substrate_colour

    background = background_class(class_names, flake_classes)
    return substrate_colour(image, probabilities.argmax(axis=0) == background)


def unknown_flakes(
    image: np.ndarray,
    flake_ids: np.ndarray,
    flakes: Sequence[Flake],
    setup: Setup,
    material: str,
    substrate: np.ndarray,
) -> list[Flake]:
    """``flakes`` with those whose median contrast is off the optics' prediction for their class's
    layer count (:func:`~flakeseg.optics.drift.contrast_error` above ``CONTRAST_TOLERANCE``) called
    :data:`UNKNOWN`: the model calls them a class their colour does not fit. ``image`` is the RGB
    image the flakes were found on, ``substrate`` its substrate colour
    (:func:`substrate_beside_flakes`)."""
    from flakeseg.data.contrasts import LAYER_COUNTS
    from flakeseg.optics.calibration import CLIP
    from flakeseg.optics.drift import CONTRAST_TOLERANCE, contrast_error

    out = []
    usable = np.asarray(substrate) < CLIP
    for flake in flakes:
        layers = LAYER_COUNTS.get(flake.class_name)
        if layers is not None:
            box = (slice(flake.bbox_y0, flake.bbox_y1), slice(flake.bbox_x0, flake.bbox_x1))  # not the image
            median = np.median(image[box][flake_ids[box] == flake.flake_id].astype(np.float64), axis=0)
            contrast = np.where(usable, median / np.maximum(substrate, 1.0) - 1.0, np.nan)
            if contrast_error(setup, material, layers, contrast, substrate) > CONTRAST_TOLERANCE:
                flake = dataclasses.replace(flake, class_name=UNKNOWN)
        out.append(flake)
    return out


def unlisted_pixels(
    image: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    flake_classes: Sequence[int],
    min_area: int,
    min_confidence: float,
    setup: Setup,
    material: str,
) -> tuple[np.ndarray, int]:
    """The pixels of the flakes ``predict`` would list as :data:`UNKNOWN` on ``image`` (``probabilities``
    at its pixels, flakes kept from ``min_area`` / ``min_confidence``), as an ``H x W`` bool mask, and
    how many flakes they are."""
    flake_ids, flakes = find_flakes(probabilities, class_names, flake_classes, min_area, min_confidence)
    substrate = substrate_beside_flakes(image, probabilities, class_names, flake_classes)
    named = unknown_flakes(image, flake_ids, flakes, setup, material, substrate)
    unknown = [f.flake_id for f in named if f.class_name == UNKNOWN]
    return np.isin(flake_ids, unknown), len(unknown)
