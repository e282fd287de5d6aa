"""Shipping a trained model into the package (``make models``): a test-stage run's model becomes
``flakeseg/inference/shipped/<name>.ckpt`` (weights and model card) with ``<name>.json`` (its training
config and test scores, what ``flakeseg evaluate <name>`` must reproduce):

    python train.py experiment=best_cpu data=mos2 hydra.run.dir=outputs/models/mos2_cv
    python train.py experiment=best_cpu stage=test data=mos2 hydra.run.dir=outputs/models/mos2
    python -m flakeseg.stages.shipping outputs/models/mos2 mos2 \
        --postprocess-from outputs/models/mos2_cv/evaluation.json

The CV run chooses the post-processing (which predicted regions are listed as flakes: min area and
min confidence) on its folds by flake F1; the card carries it, and the test scores are those of the
flakes it lists. When only the scoring changes, ``python -m flakeseg.stages.shipping --rescore mos2``
scores the shipped model again into its card.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flakeseg.errors import DataError, FlakesegError
from flakeseg.inference.shipped import SHIPPED_DIR
from flakeseg.stages.model_evaluation import evaluate_model

__all__ = ["chosen_postprocess", "packed_flatfield", "rescore", "ship"]

#: the card keeps the test scores: of the arg-max map and flakes (``test/``) and of the map ``predict``
#: shows (``test_listed/``)
TEST_KEYS = ("test/", "test_listed/")


def chosen_postprocess(evaluation_path: Path) -> dict[str, Any]:
    """The post-processing a CV run chose on its folds (its ``evaluation.json`` with
    ``evaluate.postprocess=true``), for a model card."""
    try:
        evaluation = json.loads(Path(evaluation_path).read_text())
        chosen = evaluation["postprocess"]
        options = evaluation["options"]
        chosen_on = bool(options["postprocess"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{evaluation_path}: not a CV run's evaluation.json ({type(exc).__name__}: {exc})"
        ) from None
    if not chosen_on:
        raise DataError(
            f"{evaluation_path}: chosen with evaluate.postprocess=false (nothing was chosen on CV)"
        )
    # `predict` computes a single model's plain probabilities: a confidence threshold chosen on
    # flip-averaged, ensemble-averaged or temperature-scaled ones would mean something else there
    other = [k for k in ("tta", "ensemble", "temperature") if options.get(k)]
    if other:
        raise DataError(
            f"{evaluation_path}: chosen with evaluate.{other[0]}=true, on probabilities `predict` does "
            "not compute; choose with evaluate.tta, ensemble and temperature off"
        )
    return {
        "min_area": int(chosen["min_area"]),
        "min_confidence": float(chosen["min_confidence"]),
        "chosen_on": f"CV folds, pooled out-of-fold flake F1 ({evaluation_path})",
    }


def packed_flatfield(hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` with the card's flat field held as one float32 tensor instead of nested Python
    floats: a third of the bytes (95 kB as floats kept a shipped model over 2 MiB);
    :func:`~flakeseg.inference.checkpoint.card_from_hparams` reads it back as the same numbers."""
    import torch

    inference = dict(hparams.get("inference") or {})
    field = inference.get("flatfield")
    if not field or isinstance(field["field"], torch.Tensor):
        return hparams
    packed = {**field, "field": torch.tensor(field["field"], dtype=torch.float32)}
    return {**hparams, "inference": {**inference, "flatfield": packed}}


def ship(
    run_dir: Path, name: str, dest: Path = SHIPPED_DIR, postprocess: dict[str, Any] | None = None
) -> Path:
    """Write the model of a test-stage run (``run_dir/test_metrics.json``) as ``dest/<name>.ckpt``
    (weights and hyperparameters only) and its test metrics as ``dest/<name>.json``; ``postprocess``
    (:func:`chosen_postprocess`) goes into its card, so ``predict`` and ``evaluate`` list the flakes it
    chose."""
    import torch

    from flakeseg.inference.checkpoint import load_checkpoint
    from flakeseg.utils.files import write_bytes_atomic, write_json_atomic

    metrics_path = Path(run_dir) / "test_metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{metrics_path}: not a finished test-stage run ({exc})") from None
    source = Path(metrics["checkpoint"])
    checkpoint = load_checkpoint(source)
    hparams = dict(checkpoint["hyper_parameters"])
    if postprocess is not None:
        hparams["inference"] = {**dict(hparams.get("inference") or {}), "postprocess": dict(postprocess)}
    slim = {"state_dict": checkpoint["state_dict"], "hyper_parameters": packed_flatfield(hparams)}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    dest.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dest / f"{name}.ckpt", buffer.getvalue())
    card = {
        "name": name,
        "data": metrics["data"],
        "trained_on": metrics["train_ids"],
        "scored_on": metrics["test_ids"],
        "epochs": metrics["epochs"],
        "train_seconds": metrics["train_seconds"],
        "device": metrics["device"],
        "config": {k: metrics["config"][k] for k in ("data", "model", "loss", "optim", "augment", "trainer")},
        "postprocess": postprocess,
        **{k: v for k, v in metrics.items() if k.startswith(TEST_KEYS)},
    }
    if postprocess is not None:
        # the test stage listed flakes at predict's defaults: score them as the card says, so
        # `flakeseg evaluate <name>` reproduces the card
        rescored = evaluate_model(str(dest / f"{name}.ckpt"), str(metrics["data"]), "test")
        card.update({k: v for k, v in rescored.items() if k.startswith(TEST_KEYS)})
    write_json_atomic(dest / f"{name}.json", card)
    return dest / f"{name}.ckpt"


def rescore(name: str, dest: Path = SHIPPED_DIR) -> Path:
    """Score a shipped model's test split again, as ``flakeseg evaluate <name>`` does now, into its
    ``<name>.json`` (same weights and card; for when the scoring, not the model, changed)."""
    from flakeseg.utils.files import write_json_atomic

    path = dest / f"{name}.json"
    try:
        card = json.loads(path.read_text())
        data = str(card["data"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a shipped model's card ({type(exc).__name__}: {exc})") from None
    rescored = evaluate_model(str(dest / f"{name}.ckpt"), data, "test")
    card.update({k: v for k, v in rescored.items() if k.startswith(TEST_KEYS)})
    write_json_atomic(path, card)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flakeseg.stages.shipping",
        description="Write a test-stage run's model into the package as a shipped model.",
    )
    parser.add_argument("run_dir", type=Path, nargs="?", help="folder of a `train.py stage=test` run")
    parser.add_argument("name", nargs="?", help="the shipped model's name (mos2, graphene, ...)")
    parser.add_argument(
        "--rescore",
        metavar="NAME",
        help="instead: score shipped model NAME's test split again into its NAME.json (the scoring "
        "changed, not the model)",
    )
    parser.add_argument(
        "--postprocess-from",
        type=Path,
        default=None,
        metavar="EVALUATION_JSON",
        help="a CV run's evaluation.json (evaluate.postprocess=true): its chosen min area and "
        "min confidence go into the card",
    )
    args = parser.parse_args(argv)
    if args.rescore is not None:
        if args.run_dir is not None or args.postprocess_from is not None:
            parser.error("--rescore NAME takes no run folder and no --postprocess-from")
    elif args.run_dir is None or args.name is None:
        parser.error("give a run folder and a name (or --rescore NAME)")
    try:
        if args.rescore is not None:
            print(rescore(args.rescore))
            return 0
        postprocess = chosen_postprocess(args.postprocess_from) if args.postprocess_from else None
        print(ship(args.run_dir, args.name, postprocess=postprocess))
    except FlakesegError as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
