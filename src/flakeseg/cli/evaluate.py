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
from flakeseg.utils.command_line import SET_HELP, ArgumentParser, data_overrides, output_file_problem

__all__ = ["build_parser", "main"]

HEADLINE = (
    ("test/mean_class_acc", "mean per-class accuracy"),
    ("test/macro_precision", "macro precision"),
    ("test/mean_iou", "mean IoU"),
    ("test/region_accuracy", "region accuracy (the paper's measure)"),
)


LISTED = {"acc": "accuracy", "precision": "precision"}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def flake_table(metrics: dict, title: str) -> Table:
    """Flake precision / recall / F1 (with TP, FP, misses) and AP50 per flake class and size floor."""
    table = Table(title=title, title_justify="left")
    for column in (
        "class",
        "flakes",
        "precision",
        "recall",
        "F1",
        "F1 95 % interval",
        "found / false / missed",
        "AP50",
    ):
        table.add_column(column, justify="left" if column in ("class", "flakes") else "right")
    names = [n for n in metrics["class_names"] if f"test/flake_f1_{n}" in metrics]
    for suffix, label in (("_device", ">= 600 px"), ("", ">= 100 px")):
        for name in names:
            tail = f"{name}{suffix}"
            table.add_row(
                name,
                label,
                *(_cell(metrics[f"test/flake_{k}_{tail}"]) for k in ("precision", "recall", "f1")),
                "{} - {}".format(
                    *(_cell(v) for v in metrics.get(f"test/flake_f1_{tail}_ci95", [math.nan] * 2))
                ),
                " / ".join(str(metrics[f"test/flake_{k}_{tail}"]) for k in ("tp", "fp", "fn")),
                _cell(metrics[f"test/flake_ap50_{tail}"]),
            )
    if metrics.get("test/flakes_unknown_setup"):
        table.caption = (
            f"{metrics['test/flakes_unknown']} listed flakes unknown (colour fits no layer class of "
            f"{metrics['test/flakes_unknown_setup']}, as predict lists them): no listing, so a true flake "
            f"only they cover is missed; {metrics.get('test/flakes_reclassed', 0)} moved to the layer class "
            "their colour fits"
        )
        table.caption_justify = "left"
    return table


def pixel_table(metrics: dict, title: str) -> Table:
    """Per-class pixel accuracy (recall), precision and IoU, then the headline means."""
    table = Table(title=title, title_justify="left")
    # as listed: the map predict shows (listed flakes only; unknown ones and the dropped ones out)
    listed = [k for k in ("acc", "precision") if f"test_listed/{k}_{metrics['class_names'][0]}" in metrics]
    columns = ["accuracy", "precision", "IoU", *(f"{LISTED[k]}, as listed" for k in listed)]
    for column in ("class", *columns):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in metrics["class_names"]:
        table.add_row(
            name,
            *(_cell(metrics[f"test/{k}_{name}"]) for k in ("acc", "precision", "iou")),
            *(_cell(metrics[f"test_listed/{k}_{name}"]) for k in listed),
        )
    table.add_section()
    for key, label in HEADLINE:
        table.add_row(label, _cell(metrics[key]), *[""] * (len(columns) - 1))
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="flakeseg evaluate",
        description=(
            "Score a trained model on a data set's split: flake precision, recall, F1 and AP50 (one-to-one "
            "IoU matching), per-class pixel scores and region accuracy, printed as tables; --out also "
            "writes the ROC/PR summaries (AUC, average precision, recall at precision 0.9) and the "
            "confusion matrix. A bar on stderr follows the images while they are predicted."
        ),
        epilog=(
            "examples:\n"
            "  flakeseg evaluate mos2 --data mos2 --split test\n"
            "  flakeseg evaluate outputs/train/runs/<time>/checkpoints/final.ckpt --data graphene "
            "--out metrics.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a shipped model's name (mos2, graphene), a .ckpt or a .onnx")
    parser.add_argument(
        "--data",
        required=True,
        help="data config: a name (conf/data/<name>.yaml: mos2, graphene) or the path of its .yaml",
    )
    parser.add_argument("--split", default="test", choices=("test", "train", "all"), help="(default: test)")
    parser.add_argument("--out", type=Path, default=None, help="write the metrics as JSON here")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help=SET_HELP,
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default: cpu)")
    parser.add_argument("--tta", action="store_true", help="average over the 8 flips/rotations")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)
    from flakeseg.errors import ConfigError, DataError
    from flakeseg.inference.model_files import checkpoint_problem
    from flakeseg.inference.shipped import resolve_model

    try:  # the quick checks first: a wrong name or file answers before torch and Lightning load
        data_overrides(args.overrides)
        model = resolve_model(args.model, "")
        problem = checkpoint_problem(model)
        if problem:
            raise DataError(problem)
        if args.out is not None and (
            problem := output_file_problem(args.out, "--out", (".json",), "the metrics file")
        ):
            raise ConfigError(problem)
    except FlakesegError as exc:
        console.print(f"error: {exc}", highlight=False, markup=False)
        return 2 if isinstance(exc, ConfigError) else 1
    try:
        from flakeseg.stages.model_evaluation import evaluate_model
        from flakeseg.utils.files import write_json_atomic

        metrics = evaluate_model(
            args.model, args.data, args.split, args.overrides, device=args.device, tta=args.tta
        )
        if args.out is not None:
            write_json_atomic(args.out, metrics)
    except FlakesegError as exc:
        console.print(f"error: {str(exc).splitlines()[0]}", highlight=False, markup=False)
        return 1
    model = Path(metrics["model"]).name
    where = f"{model} on {metrics['data']} {metrics['split']} ({len(metrics['ids'])} images)"
    post = metrics["test/flake_postprocess"]
    out = Console()
    if not out.is_terminal:  # logs and pipes: wide enough that no column is cut
        out.width = max(out.width, 120)
    out.print(
        flake_table(
            metrics,
            f"{where}: flakes matched one-to-one at IoU >= 0.5 (predicted flakes from "
            f"{post['min_area']} px, confidence >= {post['min_confidence']})",
        )
    )
    out.print(pixel_table(metrics, f"{where}: pixels ({metrics['test/regions']} regions counted)"))
    if args.out is not None:
        console.print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
