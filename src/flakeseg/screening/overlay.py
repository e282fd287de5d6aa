"""Pictures for people at the microscope: flakes drawn over the image, thumbnails, probability maps."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from flakeseg.evaluation.flakes import Flake
from flakeseg.utils.colors import hex_to_rgb

__all__ = ["draw_overlay", "flake_crop_uri", "label_anchors", "probability_map", "thumbnail_data_uri"]


def label_anchors(flake_ids: np.ndarray, flakes: Sequence[Flake]) -> dict[int, tuple[int, int]]:
    """Where each flake's number goes: ``(x, y)`` of a pixel of the flake itself, so the number sits on
    its flake whatever its shape (the corner of the box of a diagonal or L-shaped flake is off it).

    The centroid when it lies well inside the flake (at least half as far from the flake's edge as its
    innermost pixel: a compact flake's number sits in its middle), else the innermost pixel (the
    farthest from the edge, by a distance transform where touching flakes' borders count as edges).
    """
    if not flakes:
        return {}
    inside = flake_ids > 0
    core = inside & (ndimage.grey_erosion(flake_ids, size=3) == ndimage.grey_dilation(flake_ids, size=3))
    depth = ndimage.distance_transform_edt(np.pad(core, 1))[1:-1, 1:-1]  # the picture's frame is an edge
    ids = [f.flake_id for f in flakes]
    deepest = ndimage.maximum_position(depth, labels=flake_ids, index=ids)
    height, width = flake_ids.shape
    anchors = {}
    for flake, (row, col) in zip(flakes, deepest, strict=True):
        cx = min(max(round(flake.centroid_x), 0), width - 1)
        cy = min(max(round(flake.centroid_y), 0), height - 1)
        central = flake_ids[cy, cx] == flake.flake_id and depth[cy, cx] >= 0.5 * depth[row, col]
        anchors[flake.flake_id] = (cx, cy) if central else (int(col), int(row))
    return anchors


def draw_overlay(
    image: np.ndarray,
    flake_ids: np.ndarray,
    flakes: Sequence[Flake],
    class_colors: dict[str, str],
    alpha: float = 0.45,
) -> Image.Image:
    """The image with each flake tinted in its class colour, outlined, and numbered by its id (the number
    on the flake, :func:`label_anchors`, moved only as far as it takes to stay in the picture).

    Args:
        image: ``H x W x 3`` uint8.
        flake_ids: ``H x W`` map of flake ids (0: no flake), from
            :func:`flakeseg.evaluation.flakes.find_flakes`.
        flakes: the flakes whose ids appear in ``flake_ids``.
        class_colors: ``#rrggbb`` per class name.
        alpha: opacity of the tint (the outline is opaque).
    """
    out = image.astype(np.float32).copy()
    lookup = np.zeros((len(flakes) + 1, 3), np.float32)
    for flake in flakes:
        lookup[flake.flake_id] = hex_to_rgb(class_colors[flake.class_name])
    inside = flake_ids > 0
    tint = lookup[flake_ids]
    out[inside] = (1 - alpha) * out[inside] + alpha * tint[inside]
    # Outline: flake pixels with a neighbour outside the same flake.
    edge = inside & (ndimage.grey_erosion(flake_ids, size=3) != ndimage.grey_dilation(flake_ids, size=3))
    out[edge] = tint[edge]
    picture = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    size = max(12, min(image.shape[:2]) // 30)
    font = ImageFont.load_default(size=size)
    anchors = label_anchors(flake_ids, flakes)
    stroke = max(1, size // 8)
    height, width = image.shape[:2]
    for flake in flakes:
        text = str(flake.flake_id)
        x, y = anchors[flake.flake_id]
        left, top, right, bottom = draw.textbbox((x, y), text, font=font, anchor="mm", stroke_width=stroke)
        x += max(0, -left) - max(0, right - width)  # clamped into the picture
        y += max(0, -top) - max(0, bottom - height)
        draw.text(
            (x, y),
            text,
            fill=(255, 255, 255),
            font=font,
            anchor="mm",
            stroke_width=stroke,
            stroke_fill=(0, 0, 0),
        )
    return picture


def probability_map(probabilities: np.ndarray) -> Image.Image:
    """One class's probabilities (``H x W`` in [0, 1]) as an 8-bit grayscale image (255 = 1.0)."""
    return Image.fromarray(np.clip(np.round(probabilities * 255.0), 0, 255).astype(np.uint8), mode="L")


def thumbnail_data_uri(picture: Image.Image, width: int = 320, quality: int = 82) -> str:
    """A JPEG thumbnail as a ``data:`` URI, so an HTML page holds its pictures itself."""
    small = picture.copy()
    small.thumbnail((width, width * 4))
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def flake_crop_uri(overlay: Image.Image, flake: Flake, side: int = 112, margin: float = 0.3) -> str:
    """A square crop of the overlay around one flake (its box and ``margin`` of its size on each side,
    at least 24 px) as a ``side``-px JPEG data URI: the report's gallery of candidates."""
    width, height = overlay.size
    box_w, box_h = flake.bbox_x1 - flake.bbox_x0, flake.bbox_y1 - flake.bbox_y0
    half = max(box_w, box_h) * (0.5 + margin)
    half = max(half, 12.0)
    cx, cy = (flake.bbox_x0 + flake.bbox_x1) / 2, (flake.bbox_y0 + flake.bbox_y1) / 2
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    right, bottom = min(width, round(cx + half)), min(height, round(cy + half))
    crop = overlay.crop((left, top, right, bottom)).resize((side, side), Image.Resampling.LANCZOS)
    return thumbnail_data_uri(crop, width=side)
