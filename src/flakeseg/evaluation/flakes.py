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
    "apply_colour_check",
    "background_class",
    "checked_listing",
    "class_regions",
    "colour_check_map",
    "colour_checked_flakes",
    "find_flakes",
    "rounded_row",
    "substrate_beside_flakes",
]

#: the class a listed flake gets when its colour fits none of the model's layer classes (``predict``
#: lists it apart; flake scores count it as no listing, so a true flake it covers is a miss)
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


def colour_checked_flakes(
    image: np.ndarray,
    flake_ids: np.ndarray,
    flakes: Sequence[Flake],
    setup: Setup,
    material: str,
    substrate: np.ndarray,
    classes: Sequence[str],
) -> list[Flake]:
    """``flakes`` with their colour checked by the optics: a flake whose median contrast is off the
    prediction for its class's layer count (:func:`~flakeseg.optics.drift.contrast_error` above
    ``CONTRAST_TOLERANCE``) takes the layer class among ``classes`` (the model's flake classes) whose
    prediction it fits within that tolerance, the nearest; one that fits none is :data:`UNKNOWN`. On
    9-fold CV the move beat calling every such flake unknown (docs/results/unknown_cv). ``image`` is
    the RGB image the flakes were found on, ``substrate`` its substrate colour
    (:func:`substrate_beside_flakes`)."""
    from flakeseg.data.contrasts import LAYER_COUNTS
    from flakeseg.optics.calibration import CLIP
    from flakeseg.optics.drift import CONTRAST_TOLERANCE, contrast_error

    layer_classes = {c: LAYER_COUNTS[c] for c in classes if c in LAYER_COUNTS}
    out = []
    usable = np.asarray(substrate) < CLIP
    for flake in flakes:
        if flake.class_name in layer_classes:
            box = (slice(flake.bbox_y0, flake.bbox_y1), slice(flake.bbox_x0, flake.bbox_x1))  # not the image
            median = np.median(image[box][flake_ids[box] == flake.flake_id].astype(np.float64), axis=0)
            contrast = np.where(usable, median / np.maximum(substrate, 1.0) - 1.0, np.nan)
            errors = {
                c: contrast_error(setup, material, n, contrast, substrate) for c, n in layer_classes.items()
            }
            if errors[flake.class_name] > CONTRAST_TOLERANCE:
                fits = {c: e for c, e in errors.items() if e <= CONTRAST_TOLERANCE}
                flake = dataclasses.replace(flake, class_name=min(fits, key=fits.get) if fits else UNKNOWN)
        out.append(flake)
    return out


def colour_check_map(
    image: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    flake_classes: Sequence[int],
    min_area: int,
    min_confidence: float,
    setup: Setup,
    material: str,
) -> tuple[np.ndarray, dict[str, int]]:
    """What ``predict``'s colour check does to the flakes it lists on ``image`` (``probabilities`` at
    its pixels, flakes kept from ``min_area`` / ``min_confidence``): an ``H x W`` int16 map, -1 where it
    changes nothing, else the class index it gives the pixels (the background class for an
    :data:`UNKNOWN` flake: no listing), for :func:`apply_colour_check`; and how many flakes it calls
    ``unknown`` and moves to another class (``reclassed``)."""
    _, _, check, counts = _colour_check(
        image, probabilities, class_names, flake_classes, min_area, min_confidence, setup, material
    )
    return check, counts


def _colour_check(
    image,
    probabilities,
    class_names,
    flake_classes,
    min_area,
    min_confidence,
    setup,
    material,
    pixel_size_um=None,
):
    """The network's flakes (id map; the list, each in its class after the colour check), the check map
    and the counts of :func:`colour_check_map`."""
    flake_ids, flakes = find_flakes(
        probabilities, class_names, flake_classes, min_area, min_confidence, pixel_size_um
    )
    substrate = substrate_beside_flakes(image, probabilities, class_names, flake_classes)
    names = [class_names[c] for c in flake_classes]
    checked = colour_checked_flakes(image, flake_ids, flakes, setup, material, substrate, names)
    check = np.full(flake_ids.shape, -1, np.int16)
    counts = {"unknown": 0, "reclassed": 0}
    background = background_class(class_names, flake_classes)
    for old, new in zip(flakes, checked, strict=True):
        if new.class_name != old.class_name:
            unknown = new.class_name == UNKNOWN
            check[flake_ids == old.flake_id] = (
                background if unknown else list(class_names).index(new.class_name)
            )
            counts["unknown" if unknown else "reclassed"] += 1
    return flake_ids, checked, check, counts


def checked_listing(
    image: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    flake_classes: Sequence[int],
    min_area: int,
    min_confidence: float,
    setup: Setup,
    material: str,
    pixel_size_um: float | None = None,
) -> tuple[np.ndarray, list[Flake], dict[int, str]]:
    """What ``predict`` lists on ``image`` after the colour check, the flakes the scores count: the
    flakes of the checked probabilities (:func:`apply_colour_check`: a moved flake joins what it
    touches of its new class, as a region of one class is one flake), then the :data:`UNKNOWN` ones
    with ids after them. Returns the ``H x W`` flake id map, the flakes, and per listed flake that
    holds moved pixels the class the network gave them."""
    network_ids, network_flakes, check, _ = _colour_check(
        image,
        probabilities,
        class_names,
        flake_classes,
        min_area,
        min_confidence,
        setup,
        material,
        pixel_size_um,
    )
    background = background_class(class_names, flake_classes)
    ids, listed = find_flakes(
        apply_colour_check(probabilities, check, background),
        class_names, flake_classes, min_area, min_confidence, pixel_size_um,
    )  # fmt: skip
    network = probabilities.argmax(axis=0)
    moved_from = {}
    for flake in listed:
        inside = (ids == flake.flake_id) & (check >= 0)
        if inside.any():
            moved_from[flake.flake_id] = class_names[int(np.bincount(network[inside]).argmax())]
    for flake in network_flakes:  # the unknown ones, as the network found them (no listing in the scores)
        if flake.class_name == UNKNOWN:
            pixels = network_ids == flake.flake_id
            ids[pixels] = len(listed) + 1
            listed.append(dataclasses.replace(flake, flake_id=len(listed) + 1))
    return ids, listed, moved_from


def apply_colour_check(probabilities: np.ndarray, check: np.ndarray, background: int) -> np.ndarray:
    """``probabilities`` (``C x H x W``, at ``check``'s size) as the colour check lists them: the pixels
    of an unknown flake all background, those of a moved flake with the probabilities of their old and
    new class swapped (the network's confidence goes with the flake). ``check``: :func:`colour_check_map`."""
    if not (check >= 0).any():
        return probabilities
    out = probabilities.copy()
    gone = check == background
    out[:, gone] = 0.0
    out[background, gone] = 1.0
    moved = (check >= 0) & ~gone
    if moved.any():
        old = probabilities.argmax(axis=0)[moved]
        new = check[moved].astype(np.int64)
        columns = np.flatnonzero(moved.ravel())
        flat = out.reshape(out.shape[0], -1)
        flat[new, columns], flat[old, columns] = flat[old, columns], flat[new, columns].copy()
    return out
