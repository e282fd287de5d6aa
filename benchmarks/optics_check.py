"""Predicted against measured optical contrast of monolayer and bilayer MoS2 and graphene.

A first check of :mod:`flakeseg.optics` against the labelled images. Measured: per image, the substrate
colour ``b`` is the densest colour of the pixels labelled 0 (as
:func:`flakeseg.data.substrate.fit_substrate_prior` does), and each of monolayer and bilayer with at
least 50 labelled pixels gives the median ``I / b - 1`` of its pixels (8-bit values as stored); the
table shows the median over images, training and test images apart. Predicted, per camera model,
tone and oxide thickness:

- ``linear``: the contrast of the linear signal (no tone curve);
- ``gamma 2.2``: per training image, a power-law gamma 2.2 with per-channel gains that reproduce that
  image's substrate colour (the camera's exposure and white balance), clipped at 255; the median over
  the training images that hold the class (so clipped substrates count as they do in the measurement).

Oxide thickness: 300 nm (Saito et al. 2019), and fitted on the training images only, over
``--oxide-range``: ``fit: substrate`` from the substrate colour (median over training images) assuming
the camera is white-balanced on the lamp and only a common exposure is unknown; ``fit: contrast``
from the training images' measured contrasts (least squares over classes and channels). The test
images are measured and reported, never fitted on.

Run: ``FLAKESEG_DATA=... python benchmarks/optics_check.py [--out docs/results/optics_check]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time as time_module
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from flakeseg.data.io import read_image, read_mask
from flakeseg.data.substrate import colour_peaks
from flakeseg.optics.camera import GAMMA, Camera, Tone, layer_rgb, substrate_rgb

REPO = Path(__file__).resolve().parents[1]
MIN_PIXELS = 50
CLASSES = {1: "monolayer", 2: "bilayer"}
MATERIALS = {"mos2": "MoS2", "graphene": "graphene"}
KNOWN = {  # the medians quoted in the optics issue (all images), for reference
    ("mos2", 1): (-0.216, -0.050, 0.046),
    ("graphene", 1): (-0.008, -0.028, 0.000),
    ("graphene", 2): (-0.014, -0.063, -0.008),
}


@dataclass
class Measured:
    """Per image: substrate colour (0..255) and the median contrast of each class present."""

    image_id: str
    substrate: np.ndarray
    contrasts: dict[int, np.ndarray]


def dataset_config(name: str) -> dict:
    cfg = yaml.safe_load((REPO / "conf" / "data" / f"{name}.yaml").read_text())
    if name != "mos2":  # graphene.yaml only lists what differs from mos2.yaml
        base = yaml.safe_load((REPO / "conf" / "data" / "mos2.yaml").read_text())
        cfg = {**base, **cfg}
    return cfg


def measure(root: Path, name: str, ids: list[str]) -> list[Measured]:
    cfg = dataset_config(name)
    pattern = re.compile(cfg["image_pattern"])
    paths = {
        match["id"]: path
        for path in (root / cfg["image_dir"]).iterdir()
        if (match := pattern.fullmatch(path.name))
    }
    out = []
    for image_id in ids:
        image = read_image(paths[image_id])
        mask = read_mask(root / cfg["mask_dir"] / cfg["mask_template"].format(id=image_id))
        background = image[mask == 0]
        substrate = colour_peaks(background.reshape(-1, 1, 3), max_peaks=1)[0].colour
        contrasts = {
            cls: np.median(image[mask == cls].astype(np.float64), axis=0) / np.maximum(substrate, 1.0) - 1.0
            for cls in CLASSES
            if (mask == cls).sum() >= MIN_PIXELS
        }
        out.append(Measured(image_id, substrate, contrasts))
    return out


def median_contrast(measured: list[Measured], cls: int) -> tuple[np.ndarray, int]:
    rows = [m.contrasts[cls] for m in measured if cls in m.contrasts]
    return (np.median(rows, axis=0) if rows else np.full(3, np.nan)), len(rows)


def predicted(
    material: str, camera: Camera, oxide_nm: float, train: list[Measured], na: float
) -> dict[tuple[str, int], np.ndarray]:
    """Contrast per (tone, class): linear, and gamma 2.2 exposed on each training image's substrate."""
    substrate = substrate_rgb(oxide_nm, camera=camera, na=na)
    out = {}
    for cls in CLASSES:
        layer = layer_rgb(material, cls, oxide_nm, camera=camera, na=na)
        out[("linear", cls)] = layer / substrate - 1.0
        per_image = []
        for m in train:
            if cls in m.contrasts:
                tone = GAMMA.exposed_to(substrate, m.substrate / 255.0)
                per_image.append(tone.encode(layer) / np.maximum(tone.encode(substrate), 1e-9) - 1.0)
        out[("gamma 2.2", cls)] = np.median(per_image, axis=0) if per_image else np.full(3, np.nan)
    return out


def fit_oxide_from_substrate(
    camera: Camera, substrate_255: np.ndarray, oxides: np.ndarray, tone: Tone
) -> float:
    """The oxide whose substrate colour, up to one common exposure, best matches (log of the decoded
    signal, unclipped channels only)."""
    keep = substrate_255 < 254.5
    target = np.log(np.maximum(tone.decode(substrate_255 / 255.0), 1e-9))[keep]
    costs = []
    for oxide in oxides:
        model = np.log(substrate_rgb(float(oxide), camera=camera))[keep]
        residual = target - model
        costs.append(float(((residual - residual.mean()) ** 2).sum()))
    return float(oxides[int(np.argmin(costs))])


def fit_oxide_from_contrast(
    material: str, camera: Camera, train: list[Measured], oxides: np.ndarray, na: float
) -> float:
    targets = {cls: median_contrast(train, cls)[0] for cls in CLASSES}
    costs = []
    for oxide in oxides:
        pred = predicted(material, camera, float(oxide), train, na)
        cost = sum(
            float(np.nansum((pred[("gamma 2.2", cls)] - target) ** 2))
            for cls, target in targets.items()
            if np.isfinite(target).all()
        )
        costs.append(cost)
    return float(oxides[int(np.argmin(costs))])


def fmt(values: np.ndarray) -> str:
    return "(" + ", ".join("  nan " if not np.isfinite(v) else f"{v:+.3f}" for v in values) + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=os.environ.get("FLAKESEG_DATA"), help="the data root (FLAKESEG_DATA)"
    )
    parser.add_argument(
        "--oxide-range", nargs=3, type=float, default=(250.0, 320.0, 1.0), help="from to step, nm"
    )
    parser.add_argument("--na", type=float, default=0.0, help="numerical aperture of the illumination")
    parser.add_argument("--out", type=Path, default=None, help="folder for optics_check.md")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("give --data or set FLAKESEG_DATA")
    root = Path(args.data)
    started = time_module.perf_counter()
    lo, hi, step = args.oxide_range
    oxides = np.arange(lo, hi + step / 2, step)
    cameras = [Camera.measured(), Camera.cie_srgb()]
    lines = [
        "| data | class | source | camera | oxide (nm) | tone | contrast (R, G, B) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, material in MATERIALS.items():
        split = dataset_config(name)["split"]
        train, test = measure(root, name, split["train"]), measure(root, name, split["test"])
        subs = np.median([m.substrate for m in train], axis=0)
        clipped = np.mean([m.substrate >= 254.5 for m in train + test], axis=0)
        print(
            f"{name}: training substrate median {np.round(subs)}; share of images with the substrate "
            f"at 255 per channel {np.round(clipped, 2)}",
            file=sys.stderr,
        )
        for cls, label in CLASSES.items():
            for part, images in (("train", train), ("test", test)):
                value, count = median_contrast(images, cls)
                lines.append(f"| {name} | {label} | measured, {part} ({count} images) | | | | {fmt(value)} |")
            if (name, cls) in KNOWN:
                lines.append(
                    f"| {name} | {label} | quoted in the issue | | | | {fmt(np.array(KNOWN[(name, cls)]))} |"
                )
        for camera in cameras:
            fits = {
                "paper": 300.0,
                "fit: substrate": fit_oxide_from_substrate(camera, subs, oxides, GAMMA),
                "fit: contrast": fit_oxide_from_contrast(material, camera, train, oxides, args.na),
            }
            for how, oxide in fits.items():
                pred = predicted(material, camera, oxide, train, args.na)
                for (tone, cls), value in pred.items():
                    lines.append(
                        f"| {name} | {CLASSES[cls]} | predicted | {camera.name} | {oxide:g} ({how}) | {tone} "
                        f"| {fmt(value)} |"
                    )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        import platform

        header = (
            "# Optics check: predicted against measured flake contrast\n\n"
            "`FLAKESEG_DATA=... python benchmarks/optics_check.py --out docs/results/optics_check` "
            f"({time_module.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{time_module.perf_counter() - started:.0f} s). What is measured and predicted, and how the "
            "oxide is fitted (training images only): the docstring of `benchmarks/optics_check.py`. "
            "Contrast is I/b - 1 of the 8-bit values, median over images.\n\n"
        )
        (args.out / "optics_check.md").write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
