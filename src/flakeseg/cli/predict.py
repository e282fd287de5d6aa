"""``flakeseg predict``: the command line of :mod:`flakeseg.screening.screen`. Parsing needs no torch,
so ``--help`` and option errors answer at once."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from flakeseg.errors import FlakesegError
from flakeseg.inference import BACKENDS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flakeseg predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Find monolayer and bilayer flakes in new optical-microscope images with a trained model.\n"
            "Writes to --out: flakes.csv (one row per flake of every image), overlays/<image>.png\n"
            "(flakes tinted in their class colour and numbered), report.html (images ranked by their\n"
            "candidates, a gallery of every flake by confidence; opens offline), run.json, records/\n"
            "(rerun skips done images) and, with --coco, the flakes as COCO instances."
        ),
        epilog=(
            "examples:\n"
            "  flakeseg predict --model mos2 new_images/ --out s0        (the shipped MoS2 model)\n"
            "  flakeseg predict outputs/train/runs/<time>/checkpoints/final.ckpt new_images/ --out s1\n"
            "  flakeseg predict model.onnx 'scans/**/*.tif' --out s2 --min-area 300 --min-confidence 0.8\n"
            "  flakeseg predict final.ckpt img.jpg --out s3 --pixel-size 0.1 --model-pixel-size 0.05\n"
            "  flakeseg predict --model hbn.ckpt new/ --out s4 --coco s4/flakes.json   (correct in CVAT)\n\n"
            "Exit status: 0 when every input was screened, 1 when an input was skipped (each named in\n"
            "one line) or nothing could be screened."
        ),
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a .ckpt from train.py, or a .onnx from `flakeseg export` (with --model: the first input)",
    )
    parser.add_argument(
        "inputs", nargs="*", help="image files, folders or glob patterns (PNG, JPEG, TIFF, BMP)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a model shipped in the package (mos2, graphene) or a model file, instead of CHECKPOINT",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; reruns continue it)")
    parser.add_argument("--min-area", type=int, default=100, help="smallest flake kept, in pixels (100)")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="smallest mean class probability of a kept flake (0.5); higher: fewer, surer candidates",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resize factor that brings these images to the training magnification (2: features "
        "look half as large here as in the training images); default from the pixel sizes, else 1",
    )
    parser.add_argument(
        "--pixel-size", type=float, default=None, help="um per pixel of these images: areas in um^2"
    )
    parser.add_argument(
        "--model-pixel-size",
        type=float,
        default=None,
        help="um per pixel of the training images (default: from the checkpoint, if it knows)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="torch (eager) or onnx")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile side at the model's scale (default: 2x the training crop, at least 512)",
    )
    parser.add_argument("--overlap", type=float, default=0.25, help="share of a tile overlapping the next")
    parser.add_argument(
        "--tta", action="store_true", help="average over the 8 flips/rotations (8x slower, steadier maps)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="divide the logits by T so confidences mean what they say (1); T: test_temperature in "
        "the evaluation.json of `train.py evaluate.temperature=true` (fitted for that run's fold "
        "models, with its evaluate.tta: use the same --tta)",
    )
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write probabilities/<image>.npy (C x H x W float32) and an 8-bit PNG per flake class",
    )
    parser.add_argument(
        "--coco",
        type=Path,
        default=None,
        help="also write the flakes as COCO instances (RLE mask, class, score, area) to this .json, for "
        "labelling tools to load and correct; file_name relative to the images' common folder",
    )
    parser.add_argument("--recursive", action="store_true", help="also take images in sub-folders")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument(
        "--device", default="auto", help="torch backend: auto (a GPU if visible), cpu or cuda[:N]"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model is None and not args.inputs:
        parser.error("the following arguments are required: inputs (or name the model with --model)")
    console = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width
    try:
        from flakeseg.screening.screen import run  # torch and the model code load after parsing

        if args.model is not None:  # every positional is an input
            from flakeseg.inference.shipped import resolve_model

            args.inputs = [str(args.checkpoint), *args.inputs]
            args.checkpoint = resolve_model(args.model)

        return run(args, console)
    except FlakesegError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
