"""What a labelled data set says about flake colour: per image, the substrate colour and the median
contrast of each layer class (:func:`flakeseg.optics.calibration.measure_contrast`), the input of
``flakeseg calibrate`` and of the optics validation (``make optics``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from flakeseg.data.catalog import AS_STORED, FlakeImages, load_dataset
from flakeseg.data.io import read_dataset_mask
from flakeseg.errors import ConfigError, DataError
from flakeseg.optics.calibration import ImageContrast, measure_contrast

log = logging.getLogger(__name__)

__all__ = [
    "LAYER_COUNTS",
    "card_setup",
    "layer_classes",
    "loaded_substrate_masks",
    "measure_labelled",
    "shipped_split",
    "substrate_masks",
]

#: class names that are a known number of layers
LAYER_COUNTS = {"monolayer": 1, "bilayer": 2, "trilayer": 3}


def layer_classes(names: Iterable[str]) -> dict[int, int]:
    """Class index -> layer count, for the classes named like :data:`LAYER_COUNTS`."""
    return {i: LAYER_COUNTS[n] for i, n in enumerate(names) if n in LAYER_COUNTS}


def substrate_masks(data: FlakeImages) -> list[np.ndarray]:
    """Per image, the pixels of the bare substrate: the first raw label value of the background class
    (MoS2: 0, not 3 = thick flakes, which share the class)."""
    value = data.scheme.label_values[0][0]
    return [read_dataset_mask(pair.mask_path) == value for pair in data.pairs]


def loaded_substrate_masks(data: FlakeImages) -> list[np.ndarray]:
    """:func:`substrate_masks` at the size the images were loaded at (nearest neighbour, as the class
    masks are resampled): class 0 without the thick flakes it may hold, whose colour is not the
    substrate's (MoS2 00005's 42k-px thick flake is the densest colour of its class 0). Class 0 itself
    when it holds one raw label value or the images were not loaded from files."""
    if len(data.scheme.label_values[0]) == 1 or len(data.pairs) != len(data.ids):
        return [mask == 0 for mask in data.masks]
    import cv2

    out = []
    for bare, mask in zip(substrate_masks(data), data.masks, strict=True):
        if bare.shape != mask.shape:
            bare = cv2.resize(bare.astype(np.uint8), mask.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        out.append(bare)
    return out


def measure_labelled(
    data_cfg: Mapping[str, Any], ids: Iterable[str] | None = None, progress: bool = False
) -> list[ImageContrast]:
    """Substrate colour and per-layer contrasts of the labelled images (all, or ``ids``), as stored
    (no resampling, white balance or flat field)."""
    cfg = {**dict(data_cfg), **AS_STORED}
    data = load_dataset(cfg, ids=ids, progress=progress)
    layers = layer_classes(data.scheme.names)
    if not layers:
        raise ConfigError(
            f"data.classes.names: no layer class among {list(data.scheme.names)} "
            f"(known: {', '.join(LAYER_COUNTS)})"
        )
    return [
        measure_contrast(image_id, image, {count: mask == cls for cls, count in layers.items()}, substrate)
        for image_id, image, mask, substrate in zip(
            data.ids, data.images, data.masks, substrate_masks(data), strict=True
        )
    ]


def shipped_split(data_cfg: Mapping[str, Any]) -> list[str] | None:
    """The training split a shipped setup (``paper_<data.name>``) was calibrated on: that data set's
    shipped config's own split, read as a file (this runs inside train.py's Hydra app too); ``None``
    when no setup ships for the data set."""
    from omegaconf import OmegaConf

    from flakeseg.data.splits import split_from_config
    from flakeseg.optics.calibration import SHIPPED_DIR
    from flakeseg.utils.config_files import CONFIG_DIR

    name = str(data_cfg.get("name"))
    if not (SHIPPED_DIR / f"paper_{name}.yaml").is_file():
        return None
    shipped_config = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml"))
    return list(split_from_config(shipped_config)["train"])


def card_setup(data_cfg: Mapping[str, Any], ids: Iterable[str]) -> dict[str, Any] | None:
    """The microscope setup a model trained on ``ids`` carries in its card: calibrated
    (:func:`~flakeseg.optics.calibration.calibrate`) on those images and labels when ``data.material``
    names the crystal; else ``None``. Also ``None`` when ``ids`` are the training split of a data set
    whose setup ships (``paper_<data>``, calibrated on that split): the shipped setup serves. A run on
    other images of such a data set (a few-shot draw) gets its own, so the setup its flakes are
    checked against has read no label of the images it is scored on; where the drawn images'
    substrates are too clipped to fix the oxide, the substrate colours of the split's other images
    (their pixels, no label) fix it. ``None`` with a warning when nothing can: a model still trains.
    ``predict`` checks new images against the setup, moves flakes whose colour fits the other layer
    class there and lists those whose colour fits none as unknown."""
    from flakeseg.optics.calibration import calibrate
    from flakeseg.optics.substrate import estimate_background

    material = data_cfg.get("material")
    if not material:
        return None
    ids = list(ids)
    split = shipped_split(data_cfg)
    if split is not None and sorted(ids) == sorted(split):
        return None
    others = [i for i in split or [] if i not in ids]
    labelled = measure_labelled(data_cfg, ids)
    try:
        setup = calibrate(np.zeros((0, 3)), str(material), labelled)
    except DataError as exc:
        if not others:
            log.warning("no setup calibrated on these training images: %s", exc)
            return None
        pictures = load_dataset({**data_cfg, **AS_STORED}, ids=others, progress=False).images
        substrates = np.stack([estimate_background(image) for image in pictures])
        try:
            setup = calibrate(substrates, str(material), labelled)
        except DataError as again:
            log.warning("no setup calibrated on these training images: %s", again)
            return None
    return setup.to_dict()
