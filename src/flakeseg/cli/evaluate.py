"""``flakeseg evaluate``: the test metrics of a checkpoint, an ONNX export or a shipped model, printed
and (``--out``) written as JSON with the keys of ``test_metrics.json``, so anyone can check a claimed
number. Parsing needs no torch."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from flakeseg.errors import FlakesegError

__all__ = ["build_parser", "main"]

HEADLINE = (
    ("test/region_accuracy", "region accuracy"),
    ("test/mean_class_acc", "mean per-class accuracy"),
    ("test/macro_precision", "macro precision"),
    ("test/mean_iou", "mean IoU"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flakeseg evaluate",
        description="Score a trained model on a data set's split (region accuracy, pixel scores, ROC/PR).",
        epilog=(
            "examples:\n"
            "  flakeseg evaluate mos2 --data mos2 --split test\n"
            "  flakeseg evaluate outputs/train/runs/<time>/checkpoints/final.ckpt --data graphene "
            "--out metrics.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a shipped model's name (mos2, graphene), a .ckpt or a .onnx")
    parser.add_argument("--data", required=True, help="data set: conf/data/<name>.yaml (mos2, graphene)")
    parser.add_argument("--split", default="test", choices=("test", "train", "all"), help="(default: test)")
    parser.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help="override the data config, e.g. --set data.root=/data/mos2_segmentation",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default: cpu)")
    parser.add_argument("--tta", action="store_true", help="average over the 8 flips/rotations")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    try:
        from flakeseg.stages.model_evaluation import evaluate_model
        from flakeseg.utils.files import write_json_atomic

        bad = [o for o in args.overrides if not o.startswith("data.")]
        if bad:
            raise FlakesegError(f"--set {bad[0]}: only data.* keys can be set")
        metrics = evaluate_model(
            args.model, args.data, args.split, args.overrides, device=args.device, tta=args.tta
        )
        if args.out is not None:
            write_json_atomic(args.out, metrics)
    except FlakesegError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    model = Path(metrics["model"]).name
    table = Table(title=f"{model} on {metrics['data']} {metrics['split']} ({len(metrics['ids'])} images)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in HEADLINE:
        value = metrics[key]
        table.add_row(label, "—" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}")
    table.add_row("regions counted", str(metrics["test/regions"]))
    Console().print(table)
    if args.out is not None:
        console.print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
