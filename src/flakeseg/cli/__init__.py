"""The ``flakeseg`` command, one subcommand per kind of work; each imports its code only when chosen,
so ``flakeseg predict --help`` starts in about a second.

``flakeseg train`` is ``python train.py`` (Hydra: overrides, ``-m`` sweeps, ``--help``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from flakeseg.utils.command_line import ArgumentParser, fail

#: subcommand -> (where its ``main(argv) -> int`` is, what it does)
COMMANDS = {
    "train": (
        "flakeseg.cli.train:main_argv",
        "cross-validate or train a model (= python train.py; train --help)",
    ),
    "predict": (
        "flakeseg.cli.predict:main",
        "screen new images for flakes: flakes.csv, overlays, report.html",
    ),
    "watch": (
        "flakeseg.cli.watch:main",
        "screen a folder live as the microscope writes images into it (predict's outputs, kept current)",
    ),
    "evaluate": (
        "flakeseg.cli.evaluate:main",
        "score a checkpoint or shipped model on a data set's test split",
    ),
    "import-labels": (
        "flakeseg.cli.import_labels:main",
        "annotations (COCO, Labelme, colour masks) to a data set: train.py data=<name>",
    ),
    "export-labels": (
        "flakeseg.cli.export_labels:main",
        "a data set's masks as COCO instances, for labelling tools to show and correct",
    ),
    "audit-labels": (
        "flakeseg.cli.audit_labels:main",
        "labelled regions whose colour contrast contradicts their class (no label is changed)",
    ),
    "calibrate": (
        "flakeseg.cli.calibrate:main",
        "fit a microscope's oxide thickness, camera and tone curve from its images -> setup.yaml",
    ),
    "export": (
        "flakeseg.cli.export:main",
        "export a checkpoint to ONNX for fast inference (predict --backend onnx)",
    ),
    "compare": (
        "flakeseg.cli.studies:compare_main",
        "every model family side by side by 3-fold CV (make compare)",
    ),
    "ablation": (
        "flakeseg.cli.studies:ablation_main",
        "the training recipe one step at a time by 3-fold CV",
    ),
    "leaderboard": (
        "flakeseg.cli.studies:leaderboard_main",
        "every model family on every protocol, one table (make leaderboard)",
    ),
    "fewshot": (
        "flakeseg.cli.studies:fewshot_main",
        "how many labelled images a new material needs: fine-tuned vs scratch (make fewshot)",
    ),
    "robustness": (
        "flakeseg.studies.robustness:main",
        "flake scores under shifts of the microscope: exposure, lamp, blur, oxide... (make robustness)",
    ),
    "reproduce": (
        "flakeseg.studies.reproduce:main",
        "the paper's protocol: Table-1 grid, selection, test report",
    ),
    "sweep-local": (
        "flakeseg.studies.sweep_local:main",
        "run a W&B sweep file with W&B's engine, no W&B server",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="flakeseg",
        description="Find monolayer and bilayer flakes of 2D crystals in optical-microscope images.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    module, function = COMMANDS[args.command][0].split(":")
    try:
        return getattr(importlib.import_module(module), function)(rest)
    except OSError as exc:
        if exc.filename is None:  # no file named: a bug's, and its traceback says more
            raise
        # the system refused a file: a folder it will not make, no permission; a full disk too, as
        # write_bytes_atomic (every output file) names the file it was writing
        fail(f"{exc.filename}: {exc.strerror or exc}")
