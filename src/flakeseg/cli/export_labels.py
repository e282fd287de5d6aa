"""``flakeseg export-labels``: a data set's masks as a COCO instance file, for labelling tools (CVAT,
Label Studio) to show and correct, and for ``flakeseg import-labels coco`` to read back.

Examples:
    flakeseg export-labels --data mos2 --out mos2_labels.json
    flakeseg export-labels --data graphene --split train --out graphene_train.json
    flakeseg export-labels --data mos2 --ids 00001,00006 --out to_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.utils.command_line import SET_HELP, ArgumentParser, data_overrides, output_file_problem


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="flakeseg export-labels",
        description=(
            "Write the masks of a data config (conf/data/<name>.yaml) as COCO instances: one RLE instance "
            "per connected region of each flake class; file_name relative to the data's image folder "
            "(info.image_root)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--data",
        required=True,
        help="data config: a name (mos2, graphene, an imported one) or the path of its .yaml",
    )
    parser.add_argument("--out", type=Path, required=True, help="the COCO .json to write")
    parser.add_argument(
        "--split", choices=("all", "train", "test"), default=None, help="which images (default: all pairs)"
    )
    parser.add_argument(
        "--ids", default=None, help="only these image ids, comma-separated (instead of --split)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help=SET_HELP,
    )
    args = parser.parse_args(argv)
    if (problem := output_file_problem(args.out, "--out", (".json",), "a COCO file")) is not None:
        parser.error(problem)
    if args.ids is not None and args.split is not None:
        parser.error("--ids and --split: give one")
    ids_given = None
    if args.ids is not None:
        ids_given = list(dict.fromkeys(i.strip() for i in args.ids.split(",") if i.strip()))  # no repeats
        if not ids_given:
            parser.error("--ids: no image id given")
    try:
        from flakeseg.data.importing import export_coco
        from flakeseg.data.splits import split_from_config
        from flakeseg.utils.config_files import compose_data_config
        from flakeseg.utils.files import write_text_atomic

        data_cfg = compose_data_config(args.data, data_overrides(args.set))
        if ids_given is not None:
            ids = ids_given
        else:
            ids = None if args.split in (None, "all") else split_from_config(data_cfg)[args.split]
        document = export_coco(data_cfg, ids)
        write_text_atomic(args.out, json.dumps(document))
    except FlakesegError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) and str(exc).startswith("--set") else 1
    print(
        f"{len(document['images'])} images, {len(document['annotations'])} instances of "
        f"{', '.join(c['name'] for c in document['categories'])} -> {args.out} "
        f"(images in {document['info']['image_root']})"
    )
    return 0
