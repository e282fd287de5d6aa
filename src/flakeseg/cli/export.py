"""``flakeseg export``: a training checkpoint as an ONNX model (:mod:`flakeseg.inference.onnx`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flakeseg.errors import ConfigError, DataError, FlakesegError
from flakeseg.inference.model_files import checkpoint_problem
from flakeseg.utils.command_line import ArgumentParser, output_file_problem

__all__ = ["build_parser", "main"]

FORMATS = ("onnx",)
#: the opsets ``--opset`` may ask for: ONNX Runtime's oldest supported, and the newest ONNX defines
#: (within them the exporter converts from its own, 18; a conversion it cannot do is one line)
MIN_OPSET, MAX_OPSET = 7, 28


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="flakeseg export",
        description=(
            "Export a training checkpoint for fast inference. The ONNX file carries the model card "
            "(classes, colours, normalisation, training scale): `flakeseg predict MODEL.onnx ...` "
            "runs it on ONNX Runtime."
        ),
    )
    parser.add_argument(
        "checkpoint", type=Path, help="a .ckpt written by train.py (e.g. final.ckpt), or mos2 / graphene"
    )
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default: onnx)")
    parser.add_argument(
        "--out", type=Path, help="output file (default: the checkpoint's name with .onnx, here)"
    )
    parser.add_argument(
        "--opset", type=int, default=None, help="ONNX opset, 17 to 20 tested (default: the exporter's)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.opset is not None and not MIN_OPSET <= args.opset <= MAX_OPSET:
        print(f"error: --opset: {MIN_OPSET} to {MAX_OPSET}, got {args.opset}", file=sys.stderr)
        return 2
    if args.checkpoint.suffix.lower() == ".onnx":
        print(f"error: {args.checkpoint}: already an ONNX model (predict runs it as it is)", file=sys.stderr)
        return 1
    target = args.out or args.checkpoint.with_suffix(".onnx")
    if (problem := output_file_problem(target, "--out", (".onnx",), "an ONNX model")) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        from flakeseg.inference.shipped import resolve_model

        try:  # a shipped model's name, or a file
            args.checkpoint = resolve_model(str(args.checkpoint), "")
        except ConfigError as exc:  # neither: a missing file, as predict answers it (exit 1)
            raise DataError(str(exc)) from None
        problem = checkpoint_problem(args.checkpoint)  # before torch loads: a wrong file answers at once
        if problem is not None:
            raise DataError(problem)
        from flakeseg.inference.checkpoint import load_torch_model
        from flakeseg.inference.onnx import export_onnx

        net, card = load_torch_model(args.checkpoint)
        export_onnx(net, card, target, args.opset)
    except FlakesegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1  # a usage mistake (--opset), or a bad file
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB; classes {', '.join(card.class_names)})")
    return 0
