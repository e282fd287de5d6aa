"""``flakeseg audit-labels``: the labelled regions whose colour contrast contradicts their class, by
the data set's own contrast statistics and by the optics; no label is changed.

Per image the substrate colour is the densest colour of the pixels labelled 0; each region (a
connected region of a flake class, 1-px holes closed, >= 100 px) gets its median contrast I/b - 1
per channel (channels where b >= 250 are skipped). By the data: per class, the centre and spread are
the median and MAD-based sigma (floor 0.01) over the images (an image's contrast: the area-weighted
median of its regions'); z is a region's largest |contrast - centre| / sigma on the class's dominant
channel(s). By the optics (with a setup: --setup, or the shipped paper_<data>): how far the region's
contrast is from the one the setup predicts for its labelled layer count on its substrate, relative,
in the prediction's dominant channel(s); flagged beyond 50 %.

Examples:
    flakeseg audit-labels --data mos2
    flakeseg audit-labels --data graphene --threshold 4 --out audit_graphene
    flakeseg audit-labels --data hbn --setup setup.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.utils.command_line import SET_HELP, ArgumentParser, data_overrides, output_folder_problem

DEFAULT_THRESHOLD = 5.0  # = flakeseg.evaluation.label_audit.DEFAULT_THRESHOLD (not imported: --help)


def _fmt(values) -> str:
    return " ".join("  -   " if v != v else f"{v:+.3f}" for v in values)


def _setup(choice: str | None, data_name: str):
    """The setup of the optics' verdict: a file, a shipped name, ``none``, or by default the shipped
    ``paper_<data>`` when there is one (``None``: no optics)."""
    from flakeseg.optics.calibration import SHIPPED_DIR, resolve_setup, shipped_setup

    if choice is None:
        return (
            shipped_setup(f"paper_{data_name}")
            if (SHIPPED_DIR / f"paper_{data_name}.yaml").is_file()
            else None
        )
    if choice.lower() == "none":
        return None
    return resolve_setup(choice)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="flakeseg audit-labels",
        description=__doc__.split("\n\n", 1)[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--data",
        required=True,
        help="data config: a name (mos2, graphene, an imported one) or the path of its .yaml",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for audit.csv and audit.html")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"flag a region whose z exceeds this (default {DEFAULT_THRESHOLD:g})",
    )
    parser.add_argument(
        "--setup",
        default=None,
        help="the microscope's setup for the optics' verdict: a file from flakeseg calibrate or a shipped "
        "name (default: paper_<data> when shipped, e.g. paper_mos2; 'none': no optics)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help=SET_HELP,
    )
    args = parser.parse_args(argv)
    if not args.threshold > 0:
        parser.error(f"--threshold: must be > 0, got {args.threshold:g}")
    if args.out is not None and (problem := output_folder_problem(args.out, "--out")) is not None:
        parser.error(problem)
    try:
        from rich.console import Console
        from rich.table import Table

        from flakeseg.data.catalog import AS_STORED, load_dataset
        from flakeseg.data.classes import region_class_indices
        from flakeseg.data.contrasts import substrate_masks
        from flakeseg.evaluation.label_audit import audit_html, audit_labels, region_crop_jpeg
        from flakeseg.utils.config_files import compose_data_config
        from flakeseg.utils.files import write_csv_atomic, write_text_atomic

        data_cfg = compose_data_config(args.data, data_overrides(args.set))
        data_cfg.update(AS_STORED)  # contrasts of the images as stored
        data = load_dataset(data_cfg, progress=sys.stderr.isatty())
        flake = region_class_indices(data_cfg["classes"], data.scheme.names)
        class_names = {i: data.scheme.names[i] for i in flake}
        substrates = substrate_masks(data)
        regions, stats = audit_labels(
            data.ids,
            data.images,
            data.masks,
            class_names,
            substrates,
            threshold=args.threshold,
            substrate_name="substrate",
        )
        setup = _setup(args.setup, args.data)
        if setup is not None and data_cfg.get("material"):
            from flakeseg.data.contrasts import layer_classes
            from flakeseg.evaluation.label_audit import optics_verdicts

            optics_verdicts(regions, setup, data_cfg["material"], layer_classes(data.scheme.names))
    except FlakesegError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) and str(exc).startswith("--set") else 1

    flagged = [r for r in regions if r.flagged or r.optics_flagged]
    asked_optics = any(r.optics_layers is not None for r in regions)
    stats_lines = [
        f"{class_names[cls]}: centre ({_fmt(centre)}), sigma ({_fmt(sigma)}), "
        f"{sum(r.cls == cls for r in regions)} regions"
        for cls, (centre, sigma) in stats.items()
    ]
    console = Console(width=None if sys.stdout.isatty() else 150)
    rule = f"z > {args.threshold:g}" + (" or the optics off by > 50 %" if asked_optics else "")
    table = Table(
        title=f"{args.data}: {len(flagged)} of {len(regions)} labelled regions with {rule}",
        title_justify="left",
    )
    columns = ["image", "class", "region", "area px", "bbox x0,y0,x1,y1", "contrast R,G,B", "class centre",
               "z", "looks like"]  # fmt: skip
    columns += ["optics off by", "optics: layers", "flagged by"] if asked_optics else []
    for column in columns:
        table.add_column(column, justify="right" if column in ("region", "area px", "z") else "left")
    for r in flagged:
        optics = (
            [
                f"{100 * r.optics_error:.0f} %" if r.optics_error == r.optics_error else "-",
                str(r.optics_layers) if r.optics_layers is not None else "-",
                " and ".join(by for by, hit in (("data", r.flagged), ("optics", r.optics_flagged)) if hit),
            ]
            if asked_optics
            else []
        )
        table.add_row(
            r.image_id,
            r.class_name,
            str(r.region_id),
            str(r.area),
            ",".join(map(str, r.bbox)),
            _fmt(r.contrast),
            _fmt(r.centre),
            f"{r.z:.1f}",
            r.looks_like,
            *optics,
        )
    if flagged:
        console.print(table)
    else:
        console.print(f"{args.data}: none of {len(regions)} labelled regions has {rule}")
    for line in stats_lines:
        console.print(line, highlight=False)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        rows = [r.row() for r in regions]
        write_csv_atomic(args.out / "audit.csv", rows, list(rows[0]) if rows else ["image_id"])
        position = {image_id: i for i, image_id in enumerate(data.ids)}
        crops = {
            (r.image_id, r.class_name, r.region_id): region_crop_jpeg(
                data.images[position[r.image_id]], data.masks[position[r.image_id]], r
            )
            for r in flagged
        }
        page = audit_html(f"audit-labels {args.data}", flagged, crops, stats_lines)
        write_text_atomic(args.out / "audit.html", page)
        console.print(
            f"-> {args.out / 'audit.csv'} (every region), {args.out / 'audit.html'}", highlight=False
        )
    return 0
