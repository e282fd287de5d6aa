"""``flakeseg import-labels``: annotations from a labelling tool to a data set ``train.py`` trains on.

Examples:
    flakeseg import-labels coco labels.json --images photos/ --name hbn
    flakeseg import-labels labelme photos/ --name hbn --classes monolayer,bilayer
    flakeseg import-labels masks --images photos/ --masks painted/ --name hbn \\
        --colors '#000000=substrate,#ff0000=monolayer,#00ff00=bilayer'

Then `python train.py data=hbn model.init_from=mos2` fine-tunes the shipped MoS2 model on it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from flakeseg.errors import FlakesegError
from flakeseg.utils.command_line import ArgumentParser
from flakeseg.utils.config_files import CONFIG_DIR, train_hint


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="flakeseg import-labels",
        description=(
            "Turn annotations (COCO JSON, Labelme JSON or colour-coded mask PNGs) into an image folder, "
            "an index-mask folder, a COCO file of the masks and a data config conf/data/<name>.yaml with "
            "the class scheme and a drawn train/test split. Every problem (an annotation outside its "
            "image, overlapping annotations of different classes, an unknown class or colour, an image "
            "without annotations) is one line; nothing is written unless all is well."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    coco = formats.add_parser("coco", help="a COCO instance file (polygons or RLE)")
    coco.add_argument("annotations", type=Path, help="the COCO .json file")
    coco.add_argument("--images", type=Path, required=True, help="the folder its file_name entries are in")
    labelme = formats.add_parser("labelme", help="a folder of Labelme .json files")
    labelme.add_argument(
        "folder", type=Path, help="the folder of .json files (imagePath is relative to each)"
    )
    masks = formats.add_parser("masks", help="colour-coded mask PNGs (same file stem as their image)")
    masks.add_argument("--images", type=Path, required=True, help="the folder of images")
    masks.add_argument("--masks", type=Path, required=True, help="the folder of colour mask PNGs")
    masks.add_argument(
        "--colors",
        required=True,
        help="colour-to-class table: '#000000=substrate,#ff0000=monolayer' or a YAML file of them",
    )
    for sub in (coco, labelme, masks):
        sub.add_argument("--name", required=True, help="the data set's name: python train.py data=<name>")
        sub.add_argument(
            "--out", type=Path, default=None, help="folder of the data set (default: data/<name>)"
        )
        sub.add_argument(
            "--conf-dir",
            type=Path,
            default=CONFIG_DIR,
            help=f"config folder the data config goes into, as data/<name>.yaml (default: {CONFIG_DIR}, "
            "train.py's; another folder needs hydra.searchpath=[file://<folder>])",
        )
        sub.add_argument(
            "--classes",
            default=None,
            help="flake class names in index order, e.g. monolayer,bilayer (default: as the labels "
            "first use them); a label outside the list is an error",
        )
        sub.add_argument(
            "--material",
            default=None,
            help="the crystal the labels are of (WSe2, hBN, graphene, a refractiveindex.info path or an "
            "n,k CSV), written into the data config: `flakeseg calibrate --data` reads it, and a model "
            "trained on the data set with stage=test carries that microscope's setup (default: unset)",
        )
        sub.add_argument("--background", default="substrate", help="name of class 0 (default: substrate)")
        sub.add_argument("--test-fraction", type=float, default=0.25, help="share of images held out (0.25)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the split (0)")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing data set and config")
        if sub is not masks:
            sub.add_argument(
                "--overlap",
                choices=("error", "last"),
                default="error",
                help="annotations of different classes on the same pixels: an error (default), or "
                "later ones paint over earlier ones (Labelme's drawing order)",
            )
            sub.add_argument(
                "--allow-empty", action="store_true", help="an image without annotations is all background"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from flakeseg.data import label_formats
    from flakeseg.data.importing import check_name, write_dataset

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    common = {"classes": classes, "background": args.background}
    try:
        check_name(args.name)  # before the labels are read: a wrong name answers at once
        if args.material:
            from flakeseg.optics.materials import material

            material(args.material)  # an unknown crystal answers at once too
            if Path(args.material).is_file():  # an n,k table: found from any folder train.py runs in
                args.material = str(Path(args.material).resolve())
        if args.format == "coco":
            labels = label_formats.read_coco(
                args.annotations, args.images, overlap=args.overlap, allow_empty=args.allow_empty, **common
            )
        elif args.format == "labelme":
            labels = label_formats.read_labelme(
                args.folder, overlap=args.overlap, allow_empty=args.allow_empty, **common
            )
        else:
            table = label_formats.parse_color_table(args.colors)
            labels = label_formats.read_color_masks(args.images, args.masks, table, **common)
        out, config = write_dataset(
            labels,
            args.name,
            args.out or Path("data") / args.name,
            args.conf_dir,
            test_fraction=args.test_fraction,
            seed=args.seed,
            overwrite=args.overwrite,
            material=args.material,
            command="flakeseg import-labels " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        )
    except FlakesegError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    counts = [int(sum((im.mask == c).any() for im in labels.images)) for c in range(len(labels.names))]
    print(f"{len(labels.images)} images, classes {', '.join(labels.names)}")
    print(
        "images with each class: " + ", ".join(f"{c} {n}" for n, c in zip(labels.names, counts, strict=True))
    )
    print(f"data set: {out} (images/, masks/, annotations.json)")
    print(f"config:   {config}")
    print(f"train:    {train_hint(args.name, args.conf_dir)}")
    return 0
