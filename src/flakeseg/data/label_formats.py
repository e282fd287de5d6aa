"""Labels from the tools labs use, read into class-index masks: COCO JSON (polygons and RLE),
Labelme JSON and colour-coded mask PNGs (``flakeseg import-labels``).

Every reader checks everything before it returns and raises one :class:`~flakeseg.errors.DataError`
with a ``file: problem`` line per problem: an annotation outside its image, annotations of different
classes on the same pixels (unless ``overlap="last"``: later ones paint over earlier ones, the order
Labelme draws in), a class or colour not in the class list, an image without annotations, an image
that is missing or of another size than its annotations say.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from flakeseg.data.coco import decode_rle, polygons_mask
from flakeseg.errors import ConfigError, DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "OVERLAP_RULES",
    "ImportedLabels",
    "LabelledImage",
    "parse_color_table",
    "read_coco",
    "read_color_masks",
    "read_labelme",
]

#: image files the importers take (and the imported layout's image pattern matches)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: what to do where annotations of different classes cover the same pixel
OVERLAP_RULES = ("error", "last")
#: display colours of imported classes in index order (background black; then the MoS2 configs')
DEFAULT_COLORS = ("#000000", "#1f5fff", "#20c020", "#d04040", "#e0a000", "#a040d0", "#00b0b0", "#808080")


@dataclass
class LabelledImage:
    """One annotated image: its id (the file's stem), file and ``H x W`` class-index mask."""

    id: str
    image_path: Path
    mask: np.ndarray


@dataclass
class ImportedLabels:
    """Annotations read into masks: class ``names`` in index order (0: background), their ``colors``,
    and the images."""

    names: list[str]
    colors: list[str]
    images: list[LabelledImage]


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` of an image file as stored (Pillow reads only its header), or ``None``."""
    try:
        with Image.open(path) as image:
            return tuple(ImageOps.exif_transpose(image).size[::-1])  # type: ignore[return-value]
    except (OSError, ValueError, SyntaxError):
        return None


class _Classes:
    """The class list being built: background first, then ``fixed`` (``--classes``) or the names in the
    order the annotations first use them."""

    def __init__(self, background: str, fixed: Sequence[str] | None):
        self.background = background
        self.fixed = list(fixed) if fixed else None
        if self.fixed is not None and (background in self.fixed or len(set(self.fixed)) != len(self.fixed)):
            raise ConfigError(
                f"--classes: {self.fixed}: names must be distinct and not the background {background!r}"
            )
        self.names = [background, *(self.fixed or [])]

    def index(self, name: str) -> int | None:
        """The class index of ``name``; ``None`` for a name outside ``--classes``."""
        if name in self.names:
            return self.names.index(name)
        if self.fixed is not None:
            return None
        self.names.append(name)
        return len(self.names) - 1

    def unknown(self, name: str) -> str:
        return f"unknown class {name!r} (known: {', '.join(self.names)}; --classes lists them)"


def _paint(
    source: str,
    size: tuple[int, int],
    shapes: Sequence[tuple[str, int, np.ndarray]],
    overlap: str,
    problems: list[str],
) -> np.ndarray:
    """The class-index mask of ``(label, class index, boolean mask)`` shapes painted in order."""
    mask = np.zeros(size, np.uint8)
    owner = np.zeros(size, np.int32)  # 1-based shape that painted each pixel (0: none)
    for number, (label, cls, binary) in enumerate(shapes, start=1):
        if overlap == "error":
            clash = binary & (owner > 0) & (mask != cls)
            if clash.any():
                other = int(np.bincount(owner[clash]).argmax())
                problems.append(
                    f"{source}: {label} overlaps {shapes[other - 1][0]} on {int(clash.sum())} pixels "
                    "(draw them apart, or --overlap last: later annotations paint over earlier ones)"
                )
                continue
        mask[binary] = cls
        owner[binary] = number
    return mask


def _check_overlap(overlap: str) -> None:
    if overlap not in OVERLAP_RULES:
        raise ConfigError(f"--overlap: must be one of {', '.join(OVERLAP_RULES)}, got {overlap!r}")


def _points_outside(points: Sequence[Sequence[float]], height: int, width: int) -> tuple[float, float] | None:
    for x, y in points:
        if not (0 <= x <= width and 0 <= y <= height) or not (math.isfinite(x) and math.isfinite(y)):
            return float(x), float(y)
    return None


def _finish(classes: _Classes, images: list[LabelledImage], problems: list[str], what: str) -> ImportedLabels:
    if problems:
        raise DataError(problems)
    if not images:
        raise DataError(f"{what}: no annotated images")
    ids = [im.id for im in images]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataError(f"{what}: two images share the file name stem(s) {duplicates}; rename them apart")
    colors = [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(classes.names))]
    return ImportedLabels(list(classes.names), colors, sorted(images, key=lambda im: im.id))


def _whole(value: Any) -> int | None:
    """``value`` as a whole number (COCO ids and sizes), else ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _image_entry_ok(entry: Any, index: int, source: str, problems: list[str]) -> bool:
    """Whether a COCO ``images`` entry has the file name and the whole-number id, height and width an
    import needs; else one line in ``problems``."""
    if not isinstance(entry, dict):
        problems.append(f"{source}: images[{index}]: not an object")
        return False
    missing = [key for key in ("id", "file_name", "height", "width") if key not in entry]
    if missing:
        problems.append(f"{source}: images[{index}]: no {', '.join(missing)}")
        return False
    bad = [key for key in ("id", "height", "width") if _whole(entry[key]) is None]
    if bad:
        problems.append(
            f"{source}: images[{index}] ({entry['file_name']}): "
            + "; ".join(f"{key} {entry[key]!r} is not a whole number" for key in bad)
        )
        return False
    return True


def read_coco(
    annotations: Path,
    image_dir: Path,
    classes: Sequence[str] | None = None,
    background: str = "substrate",
    overlap: str = "error",
    allow_empty: bool = False,
) -> ImportedLabels:
    """The masks of a COCO instance file (polygons, compressed or uncompressed RLE).

    Args:
        annotations: the COCO JSON file.
        image_dir: the folder its images' ``file_name`` are relative to.
        classes: the flake class names in index order (1, 2, ...); a category outside them is an error.
            Default: the categories in the file, by category id.
        background: the name of class 0, the pixels no annotation covers.
        overlap: ``"error"`` or ``"last"`` (see the module).
        allow_empty: an image without annotations is all background instead of an error.
    """
    _check_overlap(overlap)
    source = str(annotations)
    try:
        document = json.loads(Path(annotations).read_text())
        categories = {int(c["id"]): str(c["name"]) for c in document["categories"]}
        image_entries = list(document["images"])
        entries = list(document.get("annotations") or [])
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{source}: not a COCO instance file ({type(exc).__name__}: {exc})") from None
    if not categories:
        raise DataError(f"{source}: no categories (the classes its annotations name)")
    if not Path(image_dir).is_dir():
        what = "not a folder" if Path(image_dir).exists() else "no such folder"
        raise DataError(f"--images {image_dir}: {what} (the folder of {source}'s images)")
    known = _Classes(
        background, classes or [categories[i] for i in sorted(categories) if categories[i] != background]
    )
    problems: list[str] = []
    # every id the file lists, so a rejected image's annotations are not called orphans as well
    image_ids = {_whole(e.get("id")) for e in image_entries if isinstance(e, dict)} - {None}
    image_entries = [e for k, e in enumerate(image_entries) if _image_entry_ok(e, k, source, problems)]
    by_image: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        image_id = _whole(entry.get("image_id"))
        if image_id not in image_ids:
            problems.append(
                f"{source}: annotation {entry.get('id')}: image_id {entry.get('image_id')!r} is none of "
                "the file's images"
            )
            continue
        by_image.setdefault(image_id, []).append(entry)
    images: list[LabelledImage] = []
    for entry in image_entries:
        path = Path(image_dir) / str(entry["file_name"])
        where = f"{source}: image {entry['file_name']}"
        size = _image_size(path)
        if size is None:
            problems.append(
                f"{path}: image missing or unreadable (file_name of image id {entry['id']} in {source})"
            )
            continue
        if (_whole(entry["height"]), _whole(entry["width"])) != size:
            problems.append(
                f"{where}: the file is {size[1]}x{size[0]}, the annotations say "
                f"{entry['width']}x{entry['height']}"
            )
            continue
        found = by_image.get(_whole(entry["id"]), [])
        if not found and not allow_empty:
            problems.append(f"{where}: no annotations (bare substrate? pass --allow-empty)")
            continue
        shapes = []
        for item in found:
            label = f"annotation {item.get('id')}"
            name = categories.get(int(item.get("category_id", -1)))
            if name is None:
                problems.append(f"{where}: {label}: category id {item.get('category_id')} not in categories")
                continue
            cls = known.index(name)
            if cls is None:
                problems.append(f"{where}: {label}: {known.unknown(name)}")
                continue
            segmentation = item.get("segmentation")
            height, width = size
            if isinstance(segmentation, list):
                polygons = [p for p in segmentation if len(p) >= 6]
                if len(polygons) != len(segmentation) or not polygons:
                    problems.append(f"{where}: {label}: a polygon with fewer than 3 points")
                    continue
                outside = _points_outside(
                    [pt for p in polygons for pt in zip(p[::2], p[1::2], strict=True)], height, width
                )
                if outside is not None:
                    problems.append(
                        f"{where}: {label} ({name}): point {outside} outside the {width}x{height} image"
                    )
                    continue
                binary = polygons_mask(polygons, height, width)
            elif isinstance(segmentation, dict) and "counts" in segmentation:
                if [int(v) for v in segmentation.get("size", [])] != [height, width]:
                    problems.append(
                        f"{where}: {label} ({name}): RLE of size {segmentation.get('size')}, "
                        f"image {height}x{width}"
                    )
                    continue
                binary = decode_rle(segmentation, height, width)
            else:
                problems.append(f"{where}: {label}: no polygon or RLE segmentation")
                continue
            shapes.append((f"{label} ({name})", cls, binary))
        images.append(LabelledImage(path.stem, path, _paint(where, size, shapes, overlap, problems)))
    return _finish(known, images, problems, source)


def _labelme_shape(shape: Mapping[str, Any], height: int, width: int) -> tuple[np.ndarray | None, str | None]:
    """The boolean mask of one Labelme shape, or ``(None, why)``."""
    kind = shape.get("shape_type") or "polygon"
    points = [(float(x), float(y)) for x, y in shape.get("points") or []]
    if kind == "mask":  # Labelme 5.x: a PNG of the shape's bounding box
        (x0, y0), (x1, y1) = points[0], points[1]
        crop = np.array(Image.open(io.BytesIO(base64.b64decode(shape["mask"])))).astype(bool)
        binary = np.zeros((height, width), bool)
        top, left = round(y0), round(x0)
        if top < 0 or left < 0 or top + crop.shape[0] > height or left + crop.shape[1] > width:
            return None, f"mask at ({x0}, {y0})-({x1}, {y1}) outside the {width}x{height} image"
        binary[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
        return binary, None
    outside = _points_outside(points, height, width)
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif kind == "circle" and len(points) == 2:
        (cx, cy), (px, py) = points
        radius = math.hypot(px - cx, py - cy)
        steps = max(16, int(2 * math.pi * radius))
        points = [
            (cx + radius * math.cos(2 * math.pi * i / steps), cy + radius * math.sin(2 * math.pi * i / steps))
            for i in range(steps)
        ]
        outside = _points_outside(points, height, width)
    elif kind != "polygon":
        return None, f"shape type {kind!r} has no area (polygon, rectangle, circle or mask)"
    if len(points) < 3:
        return None, "a polygon with fewer than 3 points"
    if outside is not None:
        return None, f"point {outside} outside the {width}x{height} image"
    return polygons_mask([[c for pt in points for c in pt]], height, width), None


def read_labelme(
    folder: Path,
    classes: Sequence[str] | None = None,
    background: str = "substrate",
    overlap: str = "error",
    allow_empty: bool = False,
) -> ImportedLabels:
    """The masks of a folder of Labelme JSON files (one per image; its ``imagePath`` relative to it).

    Shapes (polygon, rectangle, circle, mask) are painted in file order; a shape labelled with the
    background name paints background. Arguments as :func:`read_coco`.
    """
    _check_overlap(overlap)
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: {'not a folder' if Path(folder).exists() else 'no such folder'}")
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise DataError(f"{folder}: no Labelme .json files")
    known = _Classes(background, classes)
    problems: list[str] = []
    images: list[LabelledImage] = []
    for file in files:
        try:
            document = json.loads(file.read_text())
            shapes = list(document["shapes"])
            path = file.parent / str(document["imagePath"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{file}: not a Labelme file ({type(exc).__name__}: {exc})")
            continue
        size = _image_size(path)
        if size is None:
            problems.append(f"{file}: its image {path} is missing or unreadable")
            continue
        declared = (document.get("imageHeight"), document.get("imageWidth"))
        if None not in declared and tuple(int(v) for v in declared) != size:
            problems.append(
                f"{file}: the image is {size[1]}x{size[0]}, the file says {declared[1]}x{declared[0]}"
            )
            continue
        if not shapes and not allow_empty:
            problems.append(f"{file}: no shapes (bare substrate? pass --allow-empty)")
            continue
        painted = []
        for number, shape in enumerate(shapes, start=1):
            name = str(shape.get("label", ""))
            label = f"shape {number} ({name})"
            cls = known.index(name)
            if cls is None:
                problems.append(f"{file}: {label}: {known.unknown(name)}")
                continue
            binary, why = _labelme_shape(shape, *size)
            if binary is None:
                problems.append(f"{file}: {label}: {why}")
                continue
            painted.append((label, cls, binary))
        images.append(LabelledImage(path.stem, path, _paint(str(file), size, painted, overlap, problems)))
    return _finish(known, images, problems, str(folder))


def parse_color_table(text: str) -> dict[tuple[int, int, int], str]:
    """``#rrggbb=name,...`` (or a YAML/JSON file of ``{"#rrggbb": name}``) as ``{(r, g, b): name}``."""
    path = Path(text)
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        import yaml

        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--colors: {path}: unreadable colour table ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"--colors: {path}: expected a mapping of '#rrggbb' to class names")
        pairs = [(str(k), str(v)) for k, v in raw.items()]
    else:
        pairs = []
        for item in filter(None, (p.strip() for p in text.split(","))):
            if "=" not in item:
                raise ConfigError(f"--colors: {item!r} is not '#rrggbb=name'")
            color, name = item.split("=", 1)
            pairs.append((color.strip(), name.strip()))
    table: dict[tuple[int, int, int], str] = {}
    for color, name in pairs:
        hex_digits = color.lstrip("#")
        if len(hex_digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in hex_digits):
            raise ConfigError(f"--colors: {color!r} is not a colour '#rrggbb'")
        rgb = tuple(int(hex_digits[i : i + 2], 16) for i in (0, 2, 4))
        if rgb in table:
            raise ConfigError(f"--colors: {color} is listed twice")
        table[rgb] = name  # type: ignore[index]
    if not table:
        raise ConfigError("--colors: empty colour table")
    return table


def read_color_masks(
    image_dir: Path,
    mask_dir: Path,
    color_table: Mapping[tuple[int, int, int], str],
    classes: Sequence[str] | None = None,
    background: str = "substrate",
) -> ImportedLabels:
    """Masks painted in colours (one PNG per image, the same file stem), read with a colour-to-class
    table. Every image needs a mask and every mask pixel a colour of the table."""
    if background not in color_table.values():
        raise ConfigError(f"--colors: no colour for the background class {background!r} (--background)")
    names = classes or list(dict.fromkeys(n for n in color_table.values() if n != background))
    known = _Classes(background, names)
    lookup = {}
    for rgb, name in color_table.items():
        cls = known.index(name)
        if cls is None:
            raise ConfigError(f"--colors: {known.unknown(name)}")
        lookup[rgb] = cls
    for folder, option in ((image_dir, "--images"), (mask_dir, "--masks")):
        if not Path(folder).is_dir():
            what = "not a folder" if Path(folder).exists() else "no such folder"
            raise DataError(f"{option} {folder}: {what}")
    images_by_stem = {
        p.stem: p for p in sorted(Path(image_dir).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES
    }
    masks_by_stem = {p.stem: p for p in sorted(Path(mask_dir).iterdir()) if p.suffix.lower() == ".png"}
    if not images_by_stem:
        raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    problems = [
        f"{path}: no mask {Path(mask_dir) / (stem + '.png')}"
        for stem, path in images_by_stem.items()
        if stem not in masks_by_stem
    ]
    problems += [
        f"{path}: mask without an image in {image_dir}"
        for stem, path in masks_by_stem.items()
        if stem not in images_by_stem
    ]
    images: list[LabelledImage] = []
    codes = np.full(256**3, 255, np.uint8)  # colour code r*65536 + g*256 + b -> class (255: unknown)
    for (r, g, b), cls in lookup.items():
        codes[r * 65536 + g * 256 + b] = cls
    for stem, image_path in images_by_stem.items():
        if stem not in masks_by_stem:
            continue
        mask_path = masks_by_stem[stem]
        size = _image_size(image_path)
        try:
            with Image.open(mask_path) as opened:
                rgb = np.asarray(opened.convert("RGB")).astype(np.int64)
        except (OSError, ValueError, SyntaxError) as exc:
            problems.append(f"{mask_path}: cannot decode ({type(exc).__name__}: {exc})")
            continue
        if size is None:
            problems.append(f"{image_path}: image unreadable")
            continue
        if rgb.shape[:2] != size:
            problems.append(
                f"{mask_path}: size {rgb.shape[1]}x{rgb.shape[0]} does not match image "
                f"{image_path.name} ({size[1]}x{size[0]})"
            )
            continue
        mask = codes[rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]]
        unknown = mask == 255
        if unknown.any():
            y, x = np.argwhere(unknown)[0]
            color = "#{:02x}{:02x}{:02x}".format(*rgb[y, x])
            problems.append(
                f"{mask_path}: {int(unknown.sum())} pixels of colours not in --colors "
                f"(first {color} at x={x}, y={y})"
            )
            continue
        images.append(LabelledImage(stem, image_path, mask))
    return _finish(known, images, problems, str(mask_dir))
