"""Finding the image/mask pairs of a data set on disk, checking them and loading them into memory."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import Progress

from flakeseg.data.classes import ClassScheme
from flakeseg.data.io import read_dataset_image, read_dataset_mask, read_image
from flakeseg.data.preprocess import prepare_image, uses_fitted_inputs
from flakeseg.errors import ConfigError, DataError, FlakesegError

log = logging.getLogger(__name__)

UPSTREAM_URL = "https://github.com/xinkent/mos2_segmentation"
HOW_TO_GET_DATA = (
    f"get the data with `make data` (clones {UPSTREAM_URL}) or `git clone {UPSTREAM_URL}`, then set "
    "FLAKESEG_DATA (or data.root=...) to the folder that holds its data/"
)


@dataclass(frozen=True)
class Pair:
    """One labelled image on disk."""

    id: str
    image_path: Path
    mask_path: Path


@dataclass
class FlakeImages:
    """Decoded images and class-index masks of a data set, kept in memory (the sets are small).

    Attributes:
        ids: image ids in the order of ``images``.
        images: ``H x W x 3`` uint8 RGB arrays.
        masks: ``H x W`` uint8 class-index arrays (values ``0..num_classes-1``).
        scheme: the class scheme the masks are encoded with.
        apart_masks: with subclasses trained apart (``scheme.apart``), the masks training learns from,
            each subclass at its own index (:meth:`ClassScheme.training_table`); else ``None``.
        originals: after :meth:`mapped`, the images before it (what training across simulated
            setups re-renders before the fitted input features apply); else ``None``.
    """

    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    scheme: ClassScheme
    pairs: list[Pair] = field(default_factory=list)
    apart_masks: list[np.ndarray] | None = None
    originals: list[np.ndarray] | None = None

    @property
    def training_masks(self) -> list[np.ndarray]:
        """The masks training crops are cut from: :attr:`apart_masks` if any, else :attr:`masks`."""
        return self.masks if self.apart_masks is None else self.apart_masks

    def subset(self, ids: Iterable[str]) -> FlakeImages:
        """The images with the given ids, in the given order."""
        position = {image_id: i for i, image_id in enumerate(self.ids)}
        wanted = list(ids)
        missing = [i for i in wanted if i not in position]
        if missing:
            raise DataError(
                f"{self.pairs[0].image_path.parent if self.pairs else '<data>'}: ids {missing} not found"
            )
        idx = [position[i] for i in wanted]
        return FlakeImages(
            ids=wanted,
            images=[self.images[i] for i in idx],
            masks=[self.masks[i] for i in idx],
            scheme=self.scheme,
            pairs=[self.pairs[i] for i in idx] if self.pairs else [],
            apart_masks=None if self.apart_masks is None else [self.apart_masks[i] for i in idx],
            originals=None if self.originals is None else [self.originals[i] for i in idx],
        )

    def mapped(self, prepare: Callable[[np.ndarray], np.ndarray]) -> FlakeImages:
        """The same images passed through ``prepare`` (e.g. a fold's fitted input features)."""
        return FlakeImages(
            ids=list(self.ids),
            images=[prepare(image) for image in self.images],
            masks=self.masks,
            scheme=self.scheme,
            pairs=self.pairs,
            apart_masks=self.apart_masks,
            originals=self.images if self.originals is None else self.originals,
        )

    def stored_masks(self, crop: int | None = None, scale: float = 1.0) -> list[np.ndarray]:
        """The class masks as stored on disk, at the files' own resolution whatever ``data.scale``
        loaded them at (flake scores are measured there).

        With ``crop`` (``cv.score_crop``, pixels at scale 1), each is cut to the stored pixels that the
        loaded image's centre ``round(crop * scale)`` square (:meth:`center_cropped`) covers, so a
        prediction on the cut image resized onto it lines up pixel for pixel.
        """
        if len(self.pairs) != len(self.ids):
            raise DataError("stored masks: these images were not loaded from files")
        masks = [self.scheme.encode(read_dataset_mask(p.mask_path), str(p.mask_path)) for p in self.pairs]
        if not crop:
            return masks
        cut = max(1, round(int(crop) * float(scale)))
        return [_stored_crop(mask, cut, float(scale)) for mask in masks]

    def center_cropped(self, size: int) -> FlakeImages:
        """Each image and mask cut to its centre ``size x size`` (a side already shorter stays whole):
        how the upstream code scored its CV (``cv.score_crop``, ``protocol=upstream``)."""

        return FlakeImages(
            ids=list(self.ids),
            images=[_center_crop(image, size) for image in self.images],
            masks=[_center_crop(mask, size) for mask in self.masks],
            scheme=self.scheme,
            pairs=list(self.pairs),
            apart_masks=None
            if self.apart_masks is None
            else [_center_crop(mask, size) for mask in self.apart_masks],
            originals=None if self.originals is None else [_center_crop(im, size) for im in self.originals],
        )


def _center_crop(array: np.ndarray, size: int) -> np.ndarray:
    top, left = max(0, (array.shape[0] - size) // 2), max(0, (array.shape[1] - size) // 2)
    return array[top : top + size, left : left + size]


def _stored_crop(mask: np.ndarray, cut: int, scale: float) -> np.ndarray:
    """The part of a stored ``mask`` under the centre ``cut``-pixel square of its image resampled by
    ``scale`` (sizes as :func:`~flakeseg.data.preprocess.resize_image` rounds them)."""
    box = []
    for length in mask.shape[:2]:
        resampled = max(1, round(length * scale))
        start, size = max(0, (resampled - cut) // 2), min(cut, resampled)
        ratio = length / resampled
        box.append(slice(round(start * ratio), round((start + size) * ratio)))
    return mask[box[0], box[1]]


def resolve_root(root: str | Path | None) -> Path:
    """The data root as a path; a missing root says how to get the data."""
    if root is None or str(root).strip() in ("", "None", "null"):
        raise DataError(f"data.root: not set (FLAKESEG_DATA is empty); {HOW_TO_GET_DATA}")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: data root does not exist; {HOW_TO_GET_DATA}")
    return path


def _template_regex(template: str) -> re.Pattern[str]:
    if "{id}" not in template:
        raise ConfigError(f"data.mask_template: {template!r} must contain '{{id}}'")
    head, tail = template.split("{id}", 1)
    return re.compile(re.escape(head) + r"(?P<id>.+?)" + re.escape(tail))


def discover_pairs(data_cfg: Mapping[str, Any]) -> tuple[list[Pair], list[str]]:
    """Match every image under ``data.image_dir`` with its mask under ``data.mask_dir``.

    Returns:
        the complete pairs sorted by id, and one problem line per image without a mask, mask without an
        image, or duplicate id.
    """
    root = resolve_root(data_cfg.get("root"))
    image_dir = root / str(data_cfg["image_dir"])
    mask_dir = root / str(data_cfg["mask_dir"])
    for key, folder in (("data.image_dir", image_dir), ("data.mask_dir", mask_dir)):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found ({key}); {HOW_TO_GET_DATA}")
    try:
        image_re = re.compile(str(data_cfg["image_pattern"]))
    except re.error as exc:
        raise ConfigError(f"data.image_pattern: not a valid regular expression ({exc})") from None
    if "id" not in image_re.groupindex:
        raise ConfigError("data.image_pattern: needs a named group (?P<id>...) for the image id")
    template = str(data_cfg["mask_template"])
    mask_re = _template_regex(template)

    problems: list[str] = []
    images: dict[str, Path] = {}
    for path in sorted(p for p in image_dir.iterdir() if p.is_file()):
        match = image_re.fullmatch(path.name)
        if not match:
            continue
        image_id = match.group("id")
        if image_id in images:
            problems.append(f"{path}: duplicate image id {image_id!r} (also {images[image_id].name})")
            continue
        images[image_id] = path
    if not images:
        raise DataError(
            f"{image_dir}: no image matches data.image_pattern {image_re.pattern!r}; {HOW_TO_GET_DATA}"
        )

    masks: dict[str, Path] = {}
    for path in sorted(p for p in mask_dir.iterdir() if p.is_file()):
        match = mask_re.fullmatch(path.name)
        if match:
            masks[match.group("id")] = path
    if not masks:  # one mistake (the wrong folder or template), not one "no mask" line per image
        raise DataError(
            f"{mask_dir}: no file matches data.mask_template {template!r} (data.mask_dir); {HOW_TO_GET_DATA}"
        )

    pairs = []
    for image_id, image_path in sorted(images.items()):
        mask_path = mask_dir / template.format(id=image_id)
        if image_id not in masks:
            problems.append(f"{image_path}: no mask (expected {mask_path})")
            continue
        pairs.append(Pair(image_id, image_path, masks[image_id]))
    for mask_id, mask_path in sorted(masks.items()):
        if mask_id not in images:
            problems.append(f"{mask_path}: mask without an image in {image_dir}")
    return pairs, problems


#: ``data`` values that load the images as stored: no resampling, white balance or flat-field division
#: (what the optics measures and the robustness benchmark shifts), whatever the training recipe sets
AS_STORED = {"scale": 1.0, "substrate_normalize": False, "flatfield": None}

#: ``data.flatfield`` naming this: the field estimated from the training split's own images (no label
#: read; :func:`~flakeseg.optics.substrate.estimate_flat_field`), as ``flakeseg calibrate
#: --flatfield-from-images`` estimates it from a folder
TRAINING_IMAGES_FIELD = "training_images"
#: fewer training images than this: no field (a median over one or two images is mostly their flakes)
MIN_FIELD_IMAGES = 3


@functools.lru_cache(maxsize=4)
def _estimated_field(paths: tuple[Path, ...]) -> np.ndarray:
    """The flat field of the images at ``paths`` (cached: every fold model's card asks for it)."""
    from flakeseg.optics.substrate import estimate_flat_field

    return estimate_flat_field([read_dataset_image(p) for p in paths], names=[str(p) for p in paths])


def _training_images_field(data_cfg: Mapping[str, Any]) -> np.ndarray | None:
    train = [str(i) for i in (data_cfg.get("split") or {}).get("train") or []]
    by_id = {p.id: p.image_path for p in discover_pairs(data_cfg)[0]}
    paths = tuple(by_id[i] for i in train if i in by_id)
    if len(paths) < MIN_FIELD_IMAGES:
        # the default recipe's setting must not stop a lab's first model on one or two images
        log.warning(
            "data.flatfield=%s: %d training image(s), a field needs %d; the images are not divided",
            TRAINING_IMAGES_FIELD,
            len(paths),
            MIN_FIELD_IMAGES,
        )
        return None
    return _estimated_field(paths)


def flat_field(data_cfg: Mapping[str, Any]) -> np.ndarray | None:
    """The flat field (median 1) of ``data.flatfield``, or ``None``: a blank image's smoothed brightness,
    the field a setup file keeps (``flakeseg calibrate IMAGES --flatfield-from-images``: a lab without a
    blank image), or :data:`TRAINING_IMAGES_FIELD`: the field estimated the same way from the training
    split's images (the test images never read; ``None``, with a warning, under
    :data:`MIN_FIELD_IMAGES`). An unreadable file, or a setup without a field, is one line naming the
    key."""
    path = data_cfg.get("flatfield")
    if not path:
        return None
    from flakeseg.optics.substrate import compact_flat_field, expand_flat_field, flat_field_from_blank

    if str(path) == TRAINING_IMAGES_FIELD:
        try:
            estimated = _training_images_field(data_cfg)
        except DataError as exc:
            raise ConfigError(f"data.flatfield: {str(exc).splitlines()[0]}") from None
        # as the model card will keep it, so training divides by the very field prediction does
        return None if estimated is None else expand_flat_field(compact_flat_field(estimated))
    path = Path(str(path))
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            from flakeseg.optics.calibration import Setup

            kept = Setup.load(path).flat_field
            if kept is None:
                raise DataError(
                    f"{path}: the setup holds no flat field (flakeseg calibrate --flatfield-from-images "
                    "or --blank writes one)"
                )
            return expand_flat_field(kept)
        return flat_field_from_blank(read_image(path))
    except (DataError, ConfigError) as exc:
        raise ConfigError(f"data.flatfield: {str(exc).splitlines()[0]}") from None


def load_dataset(
    data_cfg: Mapping[str, Any],
    ids: Iterable[str] | None = None,
    progress: bool = True,
    flatfield: np.ndarray | None = None,
) -> FlakeImages:
    """Load, check and (optionally) rescale the data set described by ``data_cfg``.

    Every pair is checked before anything is returned: both files decode, sizes match and every mask
    value is in the class mapping. All problems are collected and raised together as one
    :class:`DataError` with a ``file: problem`` line each.

    Args:
        data_cfg: the ``data`` config node.
        ids: load only these ids (default: every pair found).
        progress: show a progress bar while decoding.
        flatfield: divide every image by this field first (a model card's); default: the field of
            ``data.flatfield``, if set.

    With ``data.substrate_normalize`` each image is white-balanced against its own substrate colour
    after rescaling (:func:`flakeseg.optics.substrate.normalize_substrate`), unless the inputs are fitted
    on labels (:func:`~flakeseg.data.preprocess.uses_fitted_inputs`): then the stage does it per fold.
    """
    scheme = ClassScheme.from_config(data_cfg["classes"])
    scale = float(data_cfg.get("scale", 1.0))
    if not scale > 0:
        raise ConfigError(f"data.scale: must be > 0, got {scale}")
    # inputs fitted on labels are prepared per fold by the stage (flakeseg.inference.inputs)
    substrate = bool(data_cfg.get("substrate_normalize", False)) and not uses_fitted_inputs(data_cfg)
    field_error: FlakesegError | None = None
    try:
        blank_field = flatfield if flatfield is not None else flat_field(data_cfg)
    except FlakesegError as exc:
        if str(data_cfg.get("flatfield")) != TRAINING_IMAGES_FIELD:
            raise
        # the training images the field is estimated from are broken: the check below names every
        # problem of every file at once, not the first one the field met
        blank_field, field_error = None, exc
    pairs, problems = discover_pairs(data_cfg)
    if ids is not None:
        wanted = list(ids)
        by_id = {p.id: p for p in pairs}
        missing_ids = [i for i in wanted if i not in by_id]
        root = resolve_root(data_cfg.get("root")) / str(data_cfg["image_dir"])
        problems += [
            f"{root}: split names id {i!r}, which has no complete image/mask pair" for i in missing_ids
        ]
        pairs = [by_id[i] for i in wanted if i in by_id]

    apart_table = scheme.training_table() if scheme.apart else None
    loaded = FlakeImages(
        ids=[], images=[], masks=[], scheme=scheme, pairs=[], apart_masks=[] if scheme.apart else None
    )
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"loading {data_cfg.get('name', 'data')}", total=len(pairs))
        for pair in pairs:
            bar.advance(task)
            try:
                image = read_dataset_image(pair.image_path)
                raw = read_dataset_mask(pair.mask_path)
                if image.shape[:2] != raw.shape:
                    raise DataError(
                        f"{pair.mask_path}: size {raw.shape[1]}x{raw.shape[0]} does not match image "
                        f"{pair.image_path.name} ({image.shape[1]}x{image.shape[0]})"
                    )
                mask = scheme.encode(raw, str(pair.mask_path))
                if blank_field is not None:
                    from flakeseg.optics.substrate import apply_flat_field

                    image = apply_flat_field(image, blank_field, str(pair.image_path))
            except DataError as exc:
                problems.extend(exc.problems)
                continue
            # the same preparation as prediction's; nearest for masks, so no label is invented
            image = prepare_image(image, scale, substrate)
            masks = [mask] if apart_table is None else [mask, apart_table[raw]]
            if image.shape[:2] != mask.shape:
                masks = [cv2.resize(m, image.shape[1::-1], interpolation=cv2.INTER_NEAREST) for m in masks]
            loaded.ids.append(pair.id)
            loaded.images.append(image)
            loaded.masks.append(masks[0])
            loaded.pairs.append(pair)
            if loaded.apart_masks is not None:
                loaded.apart_masks.append(masks[1])
    if problems:
        raise DataError(problems)
    if field_error is not None:
        raise field_error
    return loaded
