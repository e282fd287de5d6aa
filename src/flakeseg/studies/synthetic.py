"""``python -m flakeseg.studies.synthetic``: a training set of synthetic flakes for a material with no
labels (:mod:`flakeseg.data.synthetic`), written as an imported data set ``python train.py
data=<name>`` trains on. Its config names ``--material``, so a model trained on it with ``stage=test``
carries a setup calibrated on the renders, and ``predict`` lists its flakes whose colour fits no layer
count as unknown.

The substrate images are the training split of ``--images`` (a data config: its images only, never
its masks); the flake outlines are the flake regions of ``--shapes``' training masks (another
material's) plus random polygons; colours come from the optics through a zero-label setup (``--setup``,
default the shipped ``paper_mos2``: another material's camera and tone curve, the oxide refitted on
each image).

Example (graphene with no graphene label, outlines from MoS2):
    python -m flakeseg.studies.synthetic --material graphene --images graphene --shapes mos2 \\
        --per-image 3 --name synthetic_graphene --out outputs/synthetic_graphene
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from flakeseg.utils.command_line import ArgumentParser


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m flakeseg.studies.synthetic",
        description=__doc__.split("\n\n", 1)[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example" + __doc__.split("Example", 1)[1],
    )
    parser.add_argument("--material", required=True, help="the crystal to render (graphene, WSe2, ...)")
    parser.add_argument("--images", required=True, help="data config whose training images are the substrate")
    parser.add_argument("--shapes", required=True, help="data config whose training masks give outlines")
    parser.add_argument("--setup", default="paper_mos2", help="zero-label setup (shipped name or file)")
    parser.add_argument("--per-image", type=int, default=3, help="renders of each substrate image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True, help="the data set's name: python train.py data=<name>")
    parser.add_argument("--out", type=Path, required=True, help="folder of the written data set")
    parser.add_argument("--conf-dir", type=Path, default=None, help="where data/<name>.yaml goes (conf/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing data set and config")
    args = parser.parse_args(argv)
    if args.per_image < 1:
        parser.error(f"--per-image: must be >= 1, got {args.per_image}")

    from flakeseg.errors import FlakesegError

    try:
        return run(args)
    except FlakesegError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from rich.progress import track

    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.contrasts import layer_classes
    from flakeseg.data.importing import write_dataset
    from flakeseg.data.label_formats import ImportedLabels, LabelledImage
    from flakeseg.data.synthetic import FlakeRenderer, shapes_from_masks
    from flakeseg.optics.calibration import resolve_setup
    from flakeseg.optics.materials import material
    from flakeseg.utils.config_files import CONFIG_DIR, compose_data_config

    material(args.material)  # an unknown material: one line before any image is read
    image_cfg = {**compose_data_config(args.images, []), **AS_STORED}
    shape_cfg = {**compose_data_config(args.shapes, []), **AS_STORED}
    substrates = load_dataset(image_cfg, ids=list(image_cfg["split"]["train"]), progress=False)
    outlines = load_dataset(shape_cfg, ids=list(shape_cfg["split"]["train"]), progress=False)
    shapes = shapes_from_masks(outlines.masks, list(layer_classes(outlines.scheme.names)))
    renderer = FlakeRenderer(args.material, resolve_setup(args.setup), shapes)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        rendered = []
        jobs = [(i, k) for i in range(len(substrates.images)) for k in range(args.per_image)]
        for index, copy in track(jobs, description="rendering", disable=not sys.stderr.isatty()):
            image, mask = renderer(substrates.images[index], rng)
            image_id = f"{substrates.ids[index]}_{copy}"
            path = Path(scratch) / f"{image_id}.png"
            Image.fromarray(image).save(path)
            rendered.append(LabelledImage(image_id, path, mask))
        labels = ImportedLabels(
            ["other", "monolayer", "bilayer"], ["#000000", "#1f5fff", "#20c020"], rendered
        )
        out, config = write_dataset(
            labels,
            args.name,
            args.out,
            args.conf_dir or CONFIG_DIR,
            test_fraction=0.1,
            seed=args.seed,
            overwrite=args.overwrite,
            command="python -m flakeseg.studies.synthetic " + " ".join(sys.argv[1:]),
            material=args.material,  # so a model trained on the renders carries a setup in its card
        )
    counts = np.bincount(np.concatenate([im.mask.ravel() for im in rendered]), minlength=3)
    print(
        f"{len(rendered)} images, {counts[1]:,} monolayer and {counts[2]:,} bilayer px "
        f"({len(shapes)} outlines from {args.shapes}) -> {out}, {config}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
