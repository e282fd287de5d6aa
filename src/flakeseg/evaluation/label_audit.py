"""Labels whose colour contradicts their class: a check of the masks against the data's own contrasts.

Per image, the substrate colour ``b`` is the densest colour of the pixels of the background class
(:func:`flakeseg.optics.substrate.substrate_colour`, as ``flakeseg calibrate`` measures it). Each
labelled region is a 4-connected region of a flake class in the labels after
:func:`~flakeseg.evaluation.flake_scores.clean_labels`, of at least ``min_area`` pixels; its contrast
is the per-channel median ``I / b - 1`` of its pixels, on the channels where the substrate is not
clipped (``b < clip``). Per class, an image's contrast is the area-weighted median of its regions';
the data set's centre is the median of those (each image once) and its spread the MAD-based sigma
over the images (``1.4826 * MAD``, at least ``sigma_floor``). A region's ``z`` is its largest
``|contrast - centre| / sigma`` over the class's dominant channels (:func:`dominant_channels`); above
``threshold`` it is flagged. "Looks like" is the class (or the substrate, contrast 0) whose centre is
nearest to the region's contrast on its unclipped channels. No label is changed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from flakeseg.evaluation.flake_scores import clean_labels
from flakeseg.optics.calibration import RELATIVE_FLOOR, Setup
from flakeseg.optics.drift import CONTRAST_TOLERANCE, contrast_error
from flakeseg.optics.substrate import substrate_colour

#: a threshold that flags the MoS2 monolayers of 00001 and 00006 (red contrast -0.33 against a
#: centre near -0.21) and few other regions of MoS2 and graphene (docs/data.md, "Auditing labels")
DEFAULT_THRESHOLD = 5.0
MIN_AREA = 100
CLIP = 250.0
SIGMA_FLOOR = 0.01
MAD_TO_SIGMA = 1.4826
DOMINANT_SHARE = 0.5
#: the optics flags a region whose contrast is off its labelled layer count's prediction by more than
#: this share (:data:`flakeseg.optics.drift.CONTRAST_TOLERANCE`)
OPTICS_TOLERANCE = CONTRAST_TOLERANCE


@dataclass
class Region:
    """One labelled region and its audit."""

    image_id: str
    cls: int
    class_name: str
    region_id: int
    area: int
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    contrast: np.ndarray  # I/b - 1 per RGB channel; NaN where the substrate is clipped
    substrate: np.ndarray
    centre: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    z: float = float("nan")
    looks_like: str = ""
    flagged: bool = False
    optics_layers: int | None = None  # the layer count the optics predicts nearest (None: not asked)
    optics_error: float = float("nan")  # relative to the optics' contrast of the labelled layer count
    optics_flagged: bool = False

    def row(self) -> dict[str, object]:
        def fmt(values: np.ndarray) -> str:
            return " ".join("nan" if not np.isfinite(v) else f"{v:+.3f}" for v in values)

        return {
            "image_id": self.image_id,
            "class": self.class_name,
            "region": self.region_id,
            "area_px": self.area,
            "bbox_x0y0x1y1": " ".join(map(str, self.bbox)),
            "contrast_rgb": fmt(self.contrast),
            "class_centre_rgb": fmt(self.centre),
            "z": round(self.z, 2) if np.isfinite(self.z) else "nan",
            "looks_like": self.looks_like,
            "flagged": self.flagged,
            "optics_layers": "" if self.optics_layers is None else self.optics_layers,
            "optics_error": round(self.optics_error, 2) if np.isfinite(self.optics_error) else "",
            "optics_flagged": self.optics_flagged,
        }


def measure_regions(
    image_id: str,
    image: np.ndarray,
    mask: np.ndarray,
    class_names: Mapping[int, str],
    substrate_mask: np.ndarray | None = None,
    min_area: int = MIN_AREA,
    clip: float = CLIP,
) -> list[Region]:
    """The regions of ``class_names``' classes in one image, with their median contrasts; the
    substrate colour from the pixels of ``substrate_mask`` (default: those of class 0)."""
    substrate = substrate_colour(image, mask == 0 if substrate_mask is None else substrate_mask)
    usable = substrate < clip
    labels = clean_labels(mask, list(class_names))
    pixels = image.astype(np.float64)
    out = []
    for cls, name in class_names.items():
        regions, count = ndimage.label(labels == cls)
        if not count:
            continue
        areas = np.bincount(regions.ravel(), minlength=count + 1)
        boxes = ndimage.find_objects(regions)
        for index in np.flatnonzero(areas[1:] >= min_area) + 1:
            box = boxes[index - 1]
            inside = regions[box] == index
            median = np.median(pixels[box][inside], axis=0)
            contrast = np.where(usable, median / np.maximum(substrate, 1.0) - 1.0, np.nan)
            bbox = (box[1].start, box[0].start, box[1].stop, box[0].stop)
            out.append(Region(image_id, cls, name, int(index), int(areas[index]), bbox, contrast, substrate))
    return out


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def class_statistics(
    regions: Sequence[Region], sigma_floor: float = SIGMA_FLOOR
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per class: (centre, sigma) per channel over the images, each image once: an image's contrast is
    the area-weighted median of its regions' contrasts; the centre is the median of those, sigma
    ``max(1.4826 * MAD, sigma_floor)``; NaN on a channel no image of the class can use."""
    stats = {}
    for cls in sorted({r.cls for r in regions}):
        per_image: dict[str, list[Region]] = {}
        for region in regions:
            if region.cls == cls:
                per_image.setdefault(region.image_id, []).append(region)
        centre = np.full(3, np.nan)
        sigma = np.full(3, np.nan)
        for c in range(3):
            column = []
            for members in per_image.values():
                values = np.array([r.contrast[c] for r in members])
                if np.isfinite(values).all():
                    column.append(_weighted_median(values, np.array([r.area for r in members], float)))
            if column:
                centre[c] = np.median(column)
                spread = MAD_TO_SIGMA * float(np.median(np.abs(np.array(column) - centre[c])))
                sigma[c] = max(spread, sigma_floor)
        stats[cls] = (centre, sigma)
    return stats


def dominant_channels(centre: np.ndarray, share: float = DOMINANT_SHARE) -> np.ndarray:
    """The channels a class is told apart by: those whose ``|centre|`` is at least ``share`` of the
    largest (MoS2: red; graphene: green)."""
    size = np.abs(np.nan_to_num(centre, nan=0.0))
    return size >= share * size.max() if size.max() > 0 else np.ones(3, bool)


def score_regions(
    regions: Sequence[Region],
    stats: Mapping[int, tuple[np.ndarray, np.ndarray]],
    class_names: Mapping[int, str],
    threshold: float = DEFAULT_THRESHOLD,
    substrate_name: str = "substrate",
) -> None:
    """Set each region's centre, ``z``, "looks like" and flag (in place)."""
    for region in regions:
        centre, sigma = stats[region.cls]
        z = np.abs(region.contrast - centre) / sigma
        dominant = dominant_channels(centre)
        z = z[dominant] if np.isfinite(z[dominant]).any() else z  # else: its usable channels
        z = z[np.isfinite(z)]
        region.centre = centre
        region.z = float(z.max()) if len(z) else float("nan")
        region.flagged = bool(len(z) and region.z > threshold)
        candidates = {substrate_name: np.zeros(3)}
        candidates |= {class_names[cls]: stats[cls][0] for cls in stats}
        best, best_distance = "", np.inf
        for name, point in candidates.items():
            diff = region.contrast - point
            diff = diff[np.isfinite(diff)]
            distance = float(np.sqrt((diff**2).sum())) if len(diff) else np.inf
            if distance < best_distance:
                best, best_distance = name, distance
        region.looks_like = best


def optics_verdicts(
    regions: Sequence[Region],
    setup: Setup,
    material: str,
    layers_of_class: Mapping[int, int],
    tolerance: float = OPTICS_TOLERANCE,
    max_layers: int = 6,
) -> None:
    """The optics' verdict on each region (in place): ``optics_error``, the relative difference
    between its contrast and the contrast ``setup`` predicts for its labelled layer count on its
    substrate, in the prediction's dominant channels (:func:`dominant_channels`); ``optics_flagged``
    above ``tolerance``; ``optics_layers``, the layer count (0: bare substrate, up to ``max_layers``)
    predicted nearest, relative to each prediction's size."""
    counts = list(range(max_layers + 1))
    for region in regions:
        labelled = layers_of_class.get(region.cls)
        predicted = np.stack(
            [np.zeros(3)] + [setup.contrast(material, n, region.substrate[None])[0] for n in counts[1:]]
        )
        usable = np.isfinite(region.contrast) & np.isfinite(predicted).all(axis=0)
        if labelled is None or not usable.any():
            continue
        scale = np.maximum(np.abs(predicted[:, usable]), RELATIVE_FLOOR)
        distance = np.sqrt((((region.contrast[usable] - predicted[:, usable]) / scale) ** 2).sum(axis=1))
        region.optics_layers = int(counts[int(np.argmin(distance))])
        region.optics_error = contrast_error(setup, material, labelled, region.contrast, region.substrate)
        region.optics_flagged = region.optics_error > tolerance


def audit_labels(
    ids: Sequence[str],
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    class_names: Mapping[int, str],
    substrate_masks: Sequence[np.ndarray | None] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_area: int = MIN_AREA,
    clip: float = CLIP,
    sigma_floor: float = SIGMA_FLOOR,
    substrate_name: str = "substrate",
) -> tuple[list[Region], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Every region of the flake classes ``class_names`` (index -> name) of the images, audited.

    ``substrate_masks``: per image, the pixels to take the substrate colour from (the raw label 0,
    without the thick flakes that class 0 may also hold); default: class 0.

    Returns:
        the regions (flagged or not) in image order, and the per-class (centre, sigma).
    """
    regions: list[Region] = []
    substrates = list(substrate_masks) if substrate_masks is not None else [None] * len(ids)
    for image_id, image, mask, substrate in zip(ids, images, masks, substrates, strict=True):
        regions += measure_regions(image_id, image, mask, class_names, substrate, min_area, clip)
    stats = class_statistics(regions, sigma_floor)
    score_regions(regions, stats, class_names, threshold, substrate_name)
    return regions, stats


#: an image is "mislabelled" when more than this share of its audited flake area is flagged
MISLABELLED_SHARE = 0.5


def mislabelled_images(regions: Sequence[Region], optics: bool) -> list[str]:
    """The images more than :data:`MISLABELLED_SHARE` of whose audited flake area (regions of
    ``min_area`` and more) is flagged by the data's own statistics and, with ``optics`` (the regions
    carry :func:`optics_verdicts`), by the optics too: labels that put every flake one class off, as
    those of MoS2 00006 do. In image order."""
    area: dict[str, int] = {}
    flagged: dict[str, int] = {}
    for region in regions:
        area[region.image_id] = area.get(region.image_id, 0) + region.area
        if region.flagged and (region.optics_flagged or not optics):
            flagged[region.image_id] = flagged.get(region.image_id, 0) + region.area
    return [i for i, total in area.items() if flagged.get(i, 0) > MISLABELLED_SHARE * total]


def region_crop_jpeg(
    image: np.ndarray, mask: np.ndarray, region: Region, margin: int = 24, max_side: int = 200
) -> bytes:
    """A JPEG of the region's box (plus ``margin``) with the cleaned region outlined in yellow, at most
    ``max_side`` pixels on its longer side."""
    x0, y0, x1, y1 = region.bbox
    top, left = max(0, y0 - margin), max(0, x0 - margin)
    bottom, right = min(image.shape[0], y1 + margin), min(image.shape[1], x1 + margin)
    labels = clean_labels(mask, [region.cls])
    regions, _ = ndimage.label(labels == region.cls)
    inside = (regions == region.region_id)[top:bottom, left:right]
    crop = image[top:bottom, left:right].copy()
    edge = inside & ~ndimage.binary_erosion(inside)
    crop[edge] = (255, 255, 0)
    if max(crop.shape[:2]) > max_side:  # keep the page small
        factor = max_side / max(crop.shape[:2])
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return encoded.tobytes() if ok else b""


def audit_html(
    title: str,
    flagged: Sequence[Region],
    crops: Mapping[tuple[str, str, int], bytes],
    stats_lines: Sequence[str],
) -> str:
    """A small self-contained page: the class statistics and a crop per flagged region."""
    rows = []
    for region in flagged:
        picture = crops.get((region.image_id, region.class_name, region.region_id), b"")
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in region.row().values())
        image = f'<img src="data:image/jpeg;base64,{base64.b64encode(picture).decode()}">' if picture else ""
        rows.append(f"<tr>{cells}<td>{image}</td></tr>")
    head = "".join(
        f"<th>{html.escape(k)}</th>"
        for k in Region("", 0, "", 0, 0, (0, 0, 0, 0), np.zeros(3), np.zeros(3)).row()
    )
    stats = "".join(f"<li>{html.escape(line)}</li>" for line in stats_lines)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse}img{max-width:320px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><ul>{stats}</ul>"
        f"<p>{len(flagged)} flagged regions (no label was changed).</p>"
        f"<table><tr>{head}<th>crop</th></tr>{''.join(rows)}</table></body></html>"
    )
