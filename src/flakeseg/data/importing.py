"""Writing imported labels as a data set of this project's layout (``flakeseg import-labels``):

    <out>/images/<id>.<ext>     the images, copied byte for byte
    <out>/masks/<id>.png        palette PNGs whose pixel values are the class indices
    <out>/annotations.json      the same masks as COCO instances (RLE), for labelling tools
    <conf>/data/<name>.yaml     the data config: folders, class scheme, a drawn train/test split

so that ``python train.py data=<name>`` trains on it. Everything is written into a temporary folder
beside ``<out>`` and moved into place at the end: an error leaves nothing half-written, and an existing
data set or config is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from flakeseg.data.coco import CocoImage, coco_document, mask_instances
from flakeseg.data.label_formats import IMAGE_SUFFIXES, ImportedLabels
from flakeseg.data.splits import make_split
from flakeseg.errors import ConfigError
from flakeseg.utils.config_files import train_hint
from flakeseg.utils.files import write_text_atomic

__all__ = ["IMAGE_PATTERN", "check_name", "dataset_coco", "draw_split", "export_coco", "write_dataset"]

#: the imported layout's ``data.image_pattern``: any id, the importers' image suffixes
IMAGE_PATTERN = r"(?P<id>.+)\.(?i:" + "|".join(s.lstrip(".") for s in IMAGE_SUFFIXES) + ")"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def draw_split(ids: Sequence[str], test_fraction: float, seed: int) -> dict[str, list[str]]:
    """A train/test split with ``round(test_fraction * n)`` test images (at least one and at most
    ``n - 1`` when the fraction is above 0 and there are two images or more; none at 0)."""
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"--test-fraction: must be in [0, 1), got {test_fraction}")
    ordered = sorted(ids)
    n_test = (
        0
        if test_fraction == 0 or len(ordered) < 2
        else min(max(1, round(test_fraction * len(ordered))), len(ordered) - 1)
    )
    if n_test == 0:
        return {"train": ordered, "test": []}
    return make_split(ordered, n_test, seed)


def _palette_png(mask: np.ndarray, colors: Sequence[str], path: Path) -> None:
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette = [int(c.lstrip("#")[i : i + 2], 16) for c in colors for i in (0, 2, 4)]
    image.putpalette(palette + [0] * (768 - len(palette)))
    image.save(path)


def dataset_coco(labels: ImportedLabels, file_names: Sequence[str], description: str) -> dict:
    """The COCO document of imported masks (one instance per connected region of a flake class)."""
    flake_classes = list(range(1, len(labels.names)))
    return coco_document(
        [CocoImage(name, *im.mask.shape) for name, im in zip(file_names, labels.images, strict=True)],
        [mask_instances(im.mask, flake_classes) for im in labels.images],
        labels.names,
        flake_classes,
        description,
    )


def _config_text(
    labels: ImportedLabels,
    name: str,
    root: Path,
    split: dict,
    command: str,
    conf_dir: Path,
    material: str | None = None,
) -> str:
    body = {
        "name": name,
        "root": str(root),
        "image_dir": "images",
        "mask_dir": "masks",
        "image_pattern": IMAGE_PATTERN,
        "mask_template": "{id}.png",
        "classes": {
            "names": list(labels.names),
            "label_values": [[i] for i in range(len(labels.names))],
            "colors": list(labels.colors),
            "region_classes": list(labels.names[1:]),
        },
        "split": {"seed": split["seed"], "train": split["train"], "test": split["test"]},
        # the crystal (e.g. WSe2): `flakeseg calibrate --data` reads it, and a model trained with
        # stage=test carries a setup calibrated on these images and labels in its card (None: no setup)
        "material": material,
    }
    header = [
        f"# {name}: {len(labels.images)} images imported by `{command}`.",
        f"# Masks: {root}/masks, class index = pixel value ({', '.join(labels.names)}).",
        "# Loader settings (scale, crops, substrate handling) are MoS2's; what differs is below.",
        f"# Train: {train_hint(name, conf_dir)}   (fine-tune the shipped MoS2 model)",
    ]
    if not split["test"]:
        header.append("# No test split (too few images, or --test-fraction 0): stage=test cannot score.")
    defaults = yaml.safe_dump({"defaults": ["mos2", "_self_"]}, sort_keys=False)
    return (
        "\n".join(header)
        + "\n"
        + defaults
        + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=110)
    )


#: data sets the project ships configs for (conf/data/): an import never takes their names
SHIPPED_DATA = ("mos2", "graphene")


def check_name(name: str) -> None:
    """An imported data set's name: a Hydra option name (letters, digits, _), not a shipped one's.

    Raises:
        ConfigError: one line naming what is wrong with it.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--name: {name!r}: letters, digits and _ only, starting with a letter")
    if name in SHIPPED_DATA:  # an imported config inherits mos2's: replacing a shipped one breaks train.py
        raise ConfigError(f"--name {name}: the name of a data set the project ships; choose another")


def write_dataset(
    labels: ImportedLabels,
    name: str,
    out: Path,
    conf_dir: Path,
    test_fraction: float = 0.25,
    seed: int = 0,
    overwrite: bool = False,
    command: str = "flakeseg import-labels",
    material: str | None = None,
) -> tuple[Path, Path]:
    """Write ``labels`` as the data set ``name`` in ``out`` and its config ``conf_dir/data/<name>.yaml``
    (``material``: the crystal the labels are of, written as ``material:``; ``None`` leaves it unset).

    Returns:
        the data folder and the config file.

    Raises:
        ConfigError: one line for a bad name, or an existing data set or config without ``overwrite``.
    """
    check_name(name)
    out = Path(out).resolve()
    config_path = Path(conf_dir) / "data" / f"{name}.yaml"
    if not overwrite:
        if config_path.exists():
            raise ConfigError(f"{config_path}: a data config of that name exists (--overwrite replaces it)")
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out}: folder exists and is not empty (--overwrite replaces it)")
    split = {"seed": seed, **draw_split([im.id for im in labels.images], test_fraction, seed)}
    config_text = _config_text(labels, name, out, split, command, conf_dir, material)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.importing-"))
    try:
        (building / "images").mkdir()
        (building / "masks").mkdir()
        file_names = []
        for image in labels.images:
            file_name = image.id + image.image_path.suffix.lower()
            shutil.copyfile(image.image_path, building / "images" / file_name)
            _palette_png(image.mask, labels.colors, building / "masks" / f"{image.id}.png")
            file_names.append(file_name)
        document = dataset_coco(labels, file_names, f"{name}, imported by flakeseg import-labels")
        (building / "annotations.json").write_text(json.dumps(document))
        retired = None
        if out.exists():
            retired = out.with_name(f".{out.name}.replaced-{building.name.rsplit('-', 1)[-1]}")
            out.rename(retired)
        building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    write_text_atomic(config_path, config_text)
    return out, config_path


def export_coco(data_cfg: Mapping[str, Any], ids: Sequence[str] | None = None) -> dict:
    """The masks of a data config (``ids``, default every pair) as a COCO document: ``file_name``
    relative to ``data.image_dir`` (``info.image_root``), one instance per connected region of each
    flake class (``region_classes``), categories by class index. ``flakeseg export-labels``."""
    from flakeseg.data.catalog import discover_pairs, resolve_root
    from flakeseg.data.classes import ClassScheme, region_class_indices
    from flakeseg.data.io import read_mask
    from flakeseg.errors import DataError

    scheme = ClassScheme.from_config(data_cfg["classes"])
    names = list(scheme.names)
    flakes = region_class_indices(data_cfg["classes"], names)
    pairs, problems = discover_pairs(data_cfg)
    by_id = {p.id: p for p in pairs}
    wanted = list(ids) if ids is not None else sorted(by_id)
    problems += [
        f"{data_cfg['name']}: id {i!r} has no complete image/mask pair" for i in wanted if i not in by_id
    ]
    if problems:
        raise DataError(problems)
    images, instances = [], []
    for image_id in wanted:
        pair = by_id[image_id]
        mask = scheme.encode(read_mask(pair.mask_path), str(pair.mask_path))
        images.append(CocoImage(pair.image_path.name, *mask.shape))
        instances.append(mask_instances(mask, flakes))
    document = coco_document(
        images, instances, names, flakes, f"{data_cfg['name']} labels, by flakeseg export-labels"
    )
    document["info"]["image_root"] = str(resolve_root(data_cfg.get("root")) / str(data_cfg["image_dir"]))
    return document
