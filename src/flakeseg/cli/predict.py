"""``flakeseg predict``: the command line of :mod:`flakeseg.screening.screen`. Parsing and the checks of
the model file and the inputs need no torch, so ``--help`` and a mistake are answered at once, in one
line (exit status 2 for a usage mistake, 1 for a bad file)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from flakeseg.errors import ConfigError, DataError, FlakesegError, UsageError
from flakeseg.inference import BACKENDS, OXIDE_FIT
from flakeseg.screening.html_report import DEFAULT_TOP
from flakeseg.utils.command_line import ArgumentParser, output_file_problem, output_folder_problem

__all__ = ["build_parser", "main"]


def build_parser(
    prog: str = "flakeseg predict",
    description: str | None = None,
    epilog: str | None = None,
    inputs: tuple[str, str] | None = None,
) -> argparse.ArgumentParser:
    """``flakeseg predict``'s parser; ``flakeseg watch`` takes its options with its own ``prog``,
    ``description``, ``epilog`` and ``inputs`` (the positionals' metavar and help)."""
    parser = ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=description
        or (
            "Find monolayer and bilayer flakes in new optical-microscope images with a trained model.\n"
            "Writes to --out: flakes.csv (one row per flake of every image), overlays/<image>.png\n"
            "(flakes tinted in their class colour and numbered), report.html (the best candidates of\n"
            "each class across all images, images ranked by their candidates, a gallery of every flake\n"
            "by confidence; opens offline), run.json, records/ (rerun skips done images) and, with\n"
            "--coco, the flakes as COCO instances. Areas are in um^2 when the pixel size is known\n"
            "(--pixel-size, or the model card's at the model's magnification), else in pixels."
        ),
        epilog=epilog
        or (
            "examples:\n"
            "  flakeseg predict --model mos2 new_images/ --out s0        (the shipped MoS2 model)\n"
            "  flakeseg predict outputs/train/runs/<time>/checkpoints/final.ckpt new_images/ --out s1\n"
            "  flakeseg predict model.onnx 'scans/**/*.tif' --out s2 --min-area 300 --min-confidence 0.8\n"
            "  flakeseg predict final.ckpt img.jpg --out s3 --pixel-size 0.1 --model-pixel-size 0.05\n"
            "  flakeseg predict --model hbn.ckpt new/ --out s4 --coco s4/flakes.json   (correct in CVAT)\n"
            "  flakeseg predict --model graphene new/ --out s5 --top 10 --min-area-um2 50\n"
            "  flakeseg predict --material WSe2 --setup setup.yaml new/ --out s6   (zero labels: optics)\n\n"
            "Exit status: 0 when every input was screened, 1 when an input was skipped (each named in\n"
            "one line) or nothing could be screened."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar=inputs[0] if inputs else "[CHECKPOINT] INPUT",
        help=inputs[1]
        if inputs
        else "a .ckpt from train.py or a .onnx from `flakeseg export` (unless --model names the model), "
        "then image files, folders or glob patterns (PNG, JPEG, TIFF, BMP)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="a model shipped in the package (mos2, graphene) or a model file, instead of CHECKPOINT",
    )
    parser.add_argument(
        "--material",
        default=None,
        help="no trained model: layer counts of this crystal from thin-film optics (MoS2, graphene, WSe2, "
        "hBN...; docs/optics.md), zero labels; instead of CHECKPOINT or --model",
    )
    parser.add_argument(
        "--setup",
        type=Path,
        default=None,
        help="the microscope's setup from `flakeseg calibrate`: with --material the optics runs on it "
        "(default: the paper's microscope, calibrated on its MoS2 training labels, the oxide fitted on "
        "each image); with a model, the setup check compares each image's substrate colour with its "
        "images (default: the model card's setup, else the shipped paper_<data> of its training data, "
        "if any); a setup calibrated with a flat field divides every image by it",
    )
    parser.add_argument(
        "--flatfield",
        type=Path,
        default=None,
        metavar="BLANK",
        help="a blank image (bare substrate, same objective and camera, same size): every image is divided "
        "by its smoothed brightness first, undoing vignetting (default: the --setup's flat field, else "
        "the model card's, if any, for images of its training images' size)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="withhold the candidates of images the setup check flags, alone or with a folder it judges "
        "foreign as a whole (they still get a line and an overlay)",
    )
    parser.add_argument(
        "--oxide",
        type=oxide_choice,
        default=None,
        metavar="NM|fit",
        help="with --material: the SiO2 thickness in nm (fixes it), or 'fit': fitted on each image's "
        "substrate colour within 40 nm of the setup's (the default without --setup; with --setup its "
        "oxide is used as it is)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; reruns continue it)")
    parser.add_argument(
        "--min-area",
        type=int,
        default=None,
        help="smallest flake kept, in pixels (default: the model card's, chosen on CV; else 100)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="smallest mean class probability of a kept flake (default: the model card's, chosen on CV; "
        "else 0.5); higher: fewer, surer candidates",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="resize factor that brings these images to the training magnification (2: features "
        "look half as large here as in the training images), 1/16 to 8; default from the pixel sizes, else 1",
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="um per pixel of these images: areas in um^2 (default: the model card's when the images "
        "are at the model's magnification, i.e. no --scale; the graphene model's card has 0.204)",
    )
    parser.add_argument(
        "--model-pixel-size",
        type=float,
        default=None,
        help="um per pixel of the training images (default: from the checkpoint, if it knows)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        metavar="N",
        help="report.html opens with the N best candidates of each flake class across all images, by "
        "area x confidence (default %(default)s; 0: no such table); changes only the page",
    )
    parser.add_argument(
        "--min-area-um2",
        type=float,
        default=None,
        metavar="A",
        help="only flakes of at least A um^2 enter the best-candidates tables (needs the pixel size); "
        "flakes.csv and the rest of the page keep every flake",
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


def _model_hint() -> str:
    """``--model mos2 (or graphene)``: the shipped models, MoS2's (the default data set's) first."""
    from flakeseg.inference.shipped import shipped_names

    names = sorted(shipped_names(), key=lambda name: name != "mos2")
    if not names:
        return "--model MODEL"
    return f"--model {names[0]}" + (f" (or {', '.join(names[1:])})" if names[1:] else "")


#: what a file named as the model ends with (a model given together with --material is refused)
MODEL_SUFFIXES = (".ckpt", ".onnx", ".pt", ".pth")


def oxide_choice(value: str) -> float | str:
    """``--oxide``: a thickness in nm, or ``fit`` (per image)."""
    if value.strip().lower() == OXIDE_FIT:
        return OXIDE_FIT
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a SiO2 thickness in nm or '{OXIDE_FIT}', got {value!r}") from None


def choose_model(
    args: argparse.Namespace, parser: argparse.ArgumentParser, inputs: str, example: str
) -> list[str]:
    """Which model screens: ``args.checkpoint`` (a file, a shipped model's file, or ``None`` with
    ``--material``) and the positionals that are inputs, which it returns. Exactly one of the
    CHECKPOINT positional, ``--model`` and ``--material``; every mistake is one line (``inputs``: what
    the positionals hold, for the messages; ``example``: a command line that works)."""
    from flakeseg.inference.model_files import checkpoint_problem
    from flakeseg.inference.shipped import resolve_model

    on_gpu = str(getattr(args, "device", "auto")).startswith("cuda")
    if getattr(args, "backend", "torch") == "onnx" and on_gpu:
        parser.error(f"--device {args.device}: the onnx backend runs on the CPU (--backend torch for a GPU)")
    if args.material is None and args.oxide is not None:
        parser.error("--oxide goes with --material (a trained model knows its colours)")
    if args.setup is not None and not args.setup.is_file():
        raise DataError(f"{args.setup}: setup file not found (flakeseg calibrate writes one)")
    if args.flatfield is not None:
        from flakeseg.data.io import image_problem

        if (problem := image_problem(args.flatfield)) is not None:
            raise DataError(f"--flatfield {problem}")
    if args.material is not None:
        if args.model is not None:
            parser.error("--model and --material: give one (a trained model, or the optics with zero labels)")
        if args.paths and Path(args.paths[0]).suffix.lower() in MODEL_SUFFIXES:
            parser.error(f"{args.paths[0]} and --material: give one (a trained model, or the optics)")
        if args.tta or args.temperature != 1.0:
            parser.error("--tta and --temperature are for trained networks, not --material")
        if isinstance(args.oxide, float) and not 0 < args.oxide <= 2000:
            parser.error(f"--oxide: a SiO2 thickness in nm, in (0, 2000], got {args.oxide:g}")
        from flakeseg.optics.materials import material

        try:
            material(args.material)  # an unknown material: one line naming close ones
        except ConfigError as exc:
            parser.error(str(exc))
        args.checkpoint = None
        return list(args.paths)
    if args.model is not None:  # every positional is an input
        try:
            args.checkpoint = resolve_model(args.model)
        except ConfigError as exc:  # no such shipped model nor file: a usage mistake
            parser.error(str(exc))
        found = list(args.paths)
        extra = next((p for p in found if Path(p).suffix.lower() in MODEL_SUFFIXES), None)
        if extra is not None:
            parser.error(f"{extra}: a model file among the {inputs}; --model {args.model} names the model")
    elif not args.paths:
        parser.error(f"no model and no {inputs} given; e.g. {example}")
    else:
        args.checkpoint, found = Path(args.paths[0]), list(args.paths[1:])
    problem = checkpoint_problem(args.checkpoint)
    if problem is not None and args.model is None and problem.endswith("an image, not a model"):
        parser.error(f"{problem}; did you mean {_model_hint()}?")  # the model was forgotten
    if problem is not None:
        raise DataError(problem)
    return found


#: what a screening run writes into --out itself (--coco must be another file)
RUN_FILES = ("flakes.csv", "report.html", "run.json")


def check_outputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--out`` must be a folder that can be made, and ``--coco`` a .json file other than the run's own
    ``run.json`` (inputs and models are never .json): one line, before anything is read or written."""
    if (problem := output_folder_problem(args.out, "--out")) is not None:
        parser.error(problem)
    if args.coco is None:
        return
    taken = {args.out / name: f"the run's own {name}" for name in RUN_FILES}
    if (problem := output_file_problem(args.coco, "--coco", (".json",), "a COCO file", taken)) is not None:
        parser.error(problem)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width
    try:
        # the model file and the inputs are checked before torch loads: a slip is answered at once
        from flakeseg.data.io import image_problem
        from flakeseg.screening.inputs import collect_inputs

        example = f"flakeseg predict {_model_hint()} IMAGES --out DIR"
        args.inputs = choose_model(args, parser, "images", example)
        if not args.inputs:
            parser.error("no images given: name image files, folders or glob patterns after the model")
        paths, problems = collect_inputs(args.inputs, exclude=args.out, recursive=args.recursive)
        check_outputs(args, parser)
        unreadable = {p: line for p in paths if (line := image_problem(p))}
        paths = [p for p in paths if p not in unreadable]
        problems = [*problems, *unreadable.values()]
        if not paths and not problems:  # every image lies in --out, whose files are never screened
            raise DataError(
                f"no images to screen in {', '.join(args.inputs)}: --out {args.out} is never screened"
            )
        if not paths:  # nothing to screen: each input that named nothing is its own line
            raise DataError(problems)
        for line in problems:
            console.print(f"[red]skipped[/red] {line}", highlight=False)

        from flakeseg.screening.screen import run  # torch and the model code load from here on

        return run(args, paths, problems, console)
    except UsageError as exc:  # options that do not fit the model, found once it is read
        parser.error(str(exc))
    except FlakesegError as exc:
        for line in str(exc).splitlines():
            console.print(f"[red]error:[/red] {line}", highlight=False)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
