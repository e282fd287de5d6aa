"""``flakeseg watch``: the command line of :mod:`flakeseg.screening.watch`, with the options of
``flakeseg predict`` (its parser). Parsing and the checks of the model file and the folder need no torch,
so ``--help`` and a mistake are answered at once, in one line (exit status 2 for a usage mistake, 1 for
a missing folder or a bad model file)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from flakeseg.cli.predict import _model_hint, check_outputs, choose_model
from flakeseg.cli.predict import build_parser as predict_parser
from flakeseg.errors import DataError, FlakesegError, UsageError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = predict_parser(
        prog="flakeseg watch",
        description=(
            "Screen a folder live, as the microscope writes images into it: each new image is screened\n"
            "once it is completely written (size and time unchanged for --settle seconds, and readable),\n"
            "the images already there first. --out gets what `flakeseg predict` writes, kept current:\n"
            "flakes.csv, overlays/, report.html (reloads itself in the browser while watching), run.json\n"
            "and records/ (a restart on the same --out redoes no image). An unreadable file is one\n"
            "'skipped' line, and watching goes on. Ctrl-C or SIGTERM stops: the final report, one line."
        ),
        epilog=(
            "examples:\n"
            "  flakeseg watch --model mos2 /data/microscope/today --out screening/today\n"
            "  flakeseg watch --model mos2 /mnt/smb/scope --out s1 --poll      (SMB/NFS share: poll)\n"
            "  flakeseg watch final.ckpt incoming/ --out s2 --recursive --settle 5 --min-confidence 0.8\n"
            "  flakeseg watch --model mos2 incoming/ --out s3 --idle-exit 600   (stops after 10 idle min)\n\n"
            "Exit status: 0 when stopped (Ctrl-C, SIGTERM, --idle-exit), 1 when the folder or model is\n"
            "missing or the folder disappears, 2 for a usage mistake."
        ),
        inputs=(
            "[CHECKPOINT] FOLDER",
            "a .ckpt from train.py or a .onnx from `flakeseg export` (unless --model names the model), "
            "then the folder to watch",
        ),
    )
    parser.add_argument(
        "--poll",
        action="store_true",
        help="list the folder every second instead of waiting for file-system events: for network "
        "shares (SMB/NFS) written by another machine, where events do not arrive",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="an image counts as written when its size and time stay the same this long (default 2; "
        "more for a writer that pauses)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop (exit 0) after this long with no new file and none waiting to settle "
        "(default: watch until Ctrl-C or SIGTERM); for scripts and tests",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True, soft_wrap=True)  # one line per message, whatever the width
    if not args.settle > 0:
        parser.error(f"--settle: must be > 0, got {args.settle}")
    if args.idle_exit is not None and not args.idle_exit > 0:
        parser.error(f"--idle-exit: must be > 0, got {args.idle_exit}")
    try:
        # the model file and the folder are checked before torch loads: a slip is answered at once
        example = f"flakeseg watch {_model_hint()} FOLDER --out OUT"
        folders = choose_model(args, parser, "folder", example)
        if len(folders) != 1:
            parser.error(f"give one folder to watch, got {len(folders)}: {' '.join(folders) or 'none'}")
        folder = Path(folders[0])
        if not folder.exists():
            raise DataError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder; to screen single images: flakeseg predict")
        args.inputs = [str(folder)]
        check_outputs(args, parser)
        if folder.resolve().is_relative_to(args.out.resolve()):  # its files would never be screened
            parser.error(f"--out {args.out}: holds the watched folder {folder}; give another folder")

        from flakeseg.screening.watch import watch_folder  # torch and the model code load from here on

        return watch_folder(args, folder, console)
    except UsageError as exc:  # options that do not fit the model, found once it is read
        parser.error(str(exc))
    except FlakesegError as exc:
        for line in str(exc).splitlines():
            console.print(f"[red]error:[/red] {line}", highlight=False)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
