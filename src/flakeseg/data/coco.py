"""COCO instance annotations (https://cocodataset.org/#format-data), the format labelling tools (CVAT,
Label Studio, Labelme's converters, pycocotools) exchange: class-index masks to instances and back.

Masks travel as run-length encodings (RLE, pycocotools' compressed ``counts`` string), which are exact:
:func:`mask_instances` followed by :func:`paint_instances` gives back the same mask, pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask
from scipy import ndimage

__all__ = ["CocoImage", "coco_document", "decode_rle", "encode_rle", "mask_instances"]


def encode_rle(binary: np.ndarray) -> dict[str, Any]:
    """The compressed RLE of an ``H x W`` boolean mask, JSON-ready (``{"size": [H, W], "counts": str}``)."""
    rle = coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(segmentation: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """An ``H x W`` boolean mask from a COCO RLE, compressed (``counts`` a string) or not (a list)."""
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed (iscrowd) RLE
        rle = coco_mask.frPyObjects(dict(segmentation), height, width)
    else:
        rle = {
            "size": list(segmentation["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    return coco_mask.decode(rle).astype(bool)


def polygons_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """An ``H x W`` boolean mask of COCO polygons (``[x0, y0, x1, y1, ...]`` each), rasterised as
    pycocotools does, so a polygon means the same pixels here as in every COCO tool."""
    rles = coco_mask.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO document: its ``file_name`` and size."""

    file_name: str
    height: int
    width: int


def mask_instances(
    mask: np.ndarray,
    classes: Iterable[int],
    scores: Mapping[int, float] | None = None,
    instance_ids: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """COCO instances (without ``id``/``image_id``) of a class-index mask: one per connected region
    (4-connectivity) of each class in ``classes``, or per id of ``instance_ids`` when given.

    Args:
        mask: ``H x W`` class indices.
        classes: the class indices that are instances (the flake classes; background is not one).
        scores: per instance id of ``instance_ids``, its confidence (predictions carry ``score``).
        instance_ids: ``H x W`` instance ids (0: none) that say which pixels make one instance, e.g.
            :func:`flakeseg.evaluation.flakes.find_flakes`'s map (each instance then carries
            ``attributes.flake_id``); default: the connected regions.
    """
    instances = []
    for cls in classes:
        if instance_ids is None:
            regions, count = ndimage.label(mask == cls)
            pieces = [(regions == r, None) for r in range(1, count + 1)]
        else:
            chosen = np.unique(instance_ids[(mask == cls) & (instance_ids > 0)])
            pieces = [(instance_ids == i, int(i)) for i in chosen]
        for binary, instance in pieces:
            rle = encode_rle(binary)
            x, y, w, h = coco_mask.toBbox({**rle, "counts": rle["counts"].encode("ascii")}).tolist()
            item: dict[str, Any] = {
                "category_id": int(cls),
                "segmentation": rle,
                "area": int(binary.sum()),
                "bbox": [float(x), float(y), float(w), float(h)],
                "iscrowd": 0,
            }
            if instance is not None:  # which of the given instances (CVAT reads attributes)
                item["attributes"] = {"flake_id": instance}
                if scores is not None:
                    item["score"] = round(float(scores[instance]), 4)
            instances.append(item)
    return instances


def coco_document(
    images: Sequence[CocoImage],
    instances: Sequence[Sequence[dict[str, Any]]],
    class_names: Sequence[str],
    instance_classes: Sequence[int],
    description: str,
) -> dict[str, Any]:
    """A COCO document: ``images`` (ids from 1), their ``instances`` (numbered from 1) and the
    categories ``instance_classes`` (their class index is their category id)."""
    annotations = []
    for image_id, found in enumerate(instances, start=1):
        for item in found:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **item})
    return {
        "info": {"description": description},
        "images": [
            {"id": i, "file_name": im.file_name, "height": im.height, "width": im.width}
            for i, im in enumerate(images, start=1)
        ],
        "annotations": annotations,
        "categories": [
            {"id": int(c), "name": class_names[c], "supercategory": "flake"} for c in instance_classes
        ],
    }
