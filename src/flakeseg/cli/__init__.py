"""The ``flakeseg`` command, one subcommand per kind of work; each imports its code only when chosen,
so ``flakeseg predict --help`` starts in about a second.

``flakeseg train`` is ``python train.py`` (Hydra: overrides, ``-m`` sweeps, ``--help``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

COMMANDS = {
    "train": "cross-validate or train a model: Hydra overrides, -m sweeps (= python train.py; train --help)",
    "predict": "screen new images for flakes: flakes.csv, overlays, report.html (see predict --help)",
    "export": "export a checkpoint to ONNX for fast inference (predict --backend onnx)",
    "compare": "every model family side by side by 3-fold CV: compare.md/.csv and plots (make compare)",
    "ablation": "the training recipe one step at a time by 3-fold CV: ablation.md/.csv and plots",
    "reproduce": "the paper's protocol: Table-1 grid by CV, selection, test-set report (make reproduce)",
    "sweep-local": "run a W&B sweep file (sweeps/*.yaml) with W&B's engine, no W&B server needed",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flakeseg",
        description="Find monolayer and bilayer flakes of 2D crystals in optical-microscope images.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        import sys

        from flakeseg.cli.train import main as train_main

        sys.argv = ["flakeseg train", *rest]  # Hydra reads its overrides from sys.argv
        train_main()
        return 0
    if args.command == "predict":
        from flakeseg.screening.screen import main as predict_main

        return predict_main(rest)
    if args.command == "export":
        from flakeseg.inference.onnx import main as export_main

        return export_main(rest)
    if args.command == "compare":
        from flakeseg.studies.compare import main as compare_main

        return compare_main(rest)
    if args.command == "ablation":
        from flakeseg.studies.ablation import main as ablation_main

        return ablation_main(rest)
    if args.command == "reproduce":
        from flakeseg.studies.reproduce import main as reproduce_main

        return reproduce_main(rest)
    if args.command == "sweep-local":
        from flakeseg.studies.sweep_local import main as sweep_local_main

        return sweep_local_main(rest)
    parser.error(f"unknown command {args.command}")
    return 2
