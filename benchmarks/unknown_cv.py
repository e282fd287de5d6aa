"""A flake whose colour is off its class: ``unknown`` (today) or the class its colour fits? Measured on
the held-out images of 9-fold CV runs (docs/results/unknown_cv/README.md holds the plan and the rule).

Each fold's last model lists the flakes of its held-out images as ``predict`` does by default (>= 100
px, confidence >= 0.5); each flake's median contrast is compared with the optics' prediction for its
class's layer count, through a setup calibrated on that fold's own training images and labels
(``data.contrasts.card_setup``). Three listings are scored, pooled over every held-out image of every
fold, by device-sized flake F1 (unknown flakes are no prediction):

- ``no check``: the network's classes;
- ``unknown``: a flake more than ``CONTRAST_TOLERANCE`` off its class is unknown;
- ``reclass``: such a flake takes the model's other layer class whose contrast it fits within that
  tolerance (the nearest), unknown only when it fits none.

Run: ``FLAKESEG_DATA=... python benchmarks/unknown_cv.py [--out docs/results/unknown_cv]`` (x86_64, 2
CPUs: a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RUNS = {"mos2": "outputs/repeated_cv/mos2_exclude", "graphene": "outputs/repeated_cv/graphene"}
VARIANTS = ("no check", "unknown", "reclass")


def relisted(image, prob, names, flake_classes, setup, material, postprocess):
    """``prob`` (at ``image``'s size) as each variant lists it, and per variant how many flakes are
    unknown and how many changed class; the flakes' class under the labels is the caller's."""
    from flakeseg.data.contrasts import LAYER_COUNTS
    from flakeseg.evaluation.flakes import background_class, find_flakes, substrate_beside_flakes
    from flakeseg.optics.calibration import CLIP
    from flakeseg.optics.drift import CONTRAST_TOLERANCE, contrast_error

    ids, flakes = find_flakes(prob, names, flake_classes, postprocess.min_area, postprocess.min_confidence)
    substrate = substrate_beside_flakes(image, prob, names, flake_classes)
    usable = np.asarray(substrate) < CLIP
    background = background_class(names, flake_classes)
    layer_classes = {LAYER_COUNTS[names[c]]: c for c in flake_classes if names[c] in LAYER_COUNTS}
    out = {v: prob for v in VARIANTS}
    out["unknown"], out["reclass"] = prob.copy(), prob.copy()
    counts = {v: {"unknown": 0, "reclassed": 0} for v in VARIANTS}
    for flake in flakes:
        own = names.index(flake.class_name)
        if own not in layer_classes.values():
            continue
        pixels = ids == flake.flake_id
        median = np.median(image[pixels].astype(np.float64), axis=0)
        contrast = np.where(usable, median / np.maximum(substrate, 1.0) - 1.0, np.nan)
        errors = {
            c: contrast_error(setup, material, n, contrast, substrate) for n, c in layer_classes.items()
        }
        if not errors[own] > CONTRAST_TOLERANCE:
            continue
        for variant in ("unknown", "reclass"):
            target = out[variant]
            fits = {c: e for c, e in errors.items() if c != own and e <= CONTRAST_TOLERANCE}
            if variant == "reclass" and fits:
                new = min(fits, key=fits.get)
                target[new, pixels], target[own, pixels] = target[own, pixels], target[new, pixels]
                counts[variant]["reclassed"] += 1
            else:
                target[:, pixels] = 0.0
                target[background, pixels] = 1.0
                counts[variant]["unknown"] += 1
    return out, counts, len(flakes)


def run(name: str, run_dir: Path) -> dict:
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.classes import region_class_indices
    from flakeseg.data.contrasts import card_setup
    from flakeseg.data.io import read_dataset_image
    from flakeseg.evaluation.postprocess import PREDICT_DEFAULTS
    from flakeseg.evaluation.test_scores import flake_scores
    from flakeseg.inference.predictor import load_predictor
    from flakeseg.optics.calibration import Setup

    metrics = json.loads((run_dir / "metrics.json").read_text())
    data_cfg = metrics["config"]["data"]
    names = list(metrics["class_names"])
    flake_classes = region_class_indices(data_cfg["classes"], names)
    material = str(data_cfg["material"])
    listed = {v: [] for v in VARIANTS}
    masks, totals, flakes = [], {v: {"unknown": 0, "reclassed": 0} for v in VARIANTS}, 0
    for fold in metrics["folds"]:
        setup = Setup.from_dict(card_setup(data_cfg, fold["train_ids"]), "fold setup")
        predictor = load_predictor(fold["last_checkpoint"])
        stored = load_dataset({**data_cfg, **AS_STORED}, ids=fold["val_ids"], progress=False)
        for pair, mask in zip(stored.pairs, stored.masks, strict=True):
            image = read_dataset_image(pair.image_path)  # as predict reads it, and predicts it
            prob = predictor.probabilities(image)
            shown, counts, found = relisted(
                image, prob, names, flake_classes, setup, material, PREDICT_DEFAULTS
            )
            for v in VARIANTS:
                listed[v].append(shown[v])
                for key in ("unknown", "reclassed"):
                    totals[v][key] += counts[v][key]
            masks.append(mask)
            flakes += found
        print(f"  {name} fold {fold['repeat']}/{fold['fold']}: {len(fold['val_ids'])} images", flush=True)
    result = {"flakes_listed": flakes, "folds": len(metrics["folds"]), "images": len(masks), "variants": {}}
    for v in VARIANTS:
        scores = flake_scores(listed[v], masks, names, flake_classes, PREDICT_DEFAULTS).compute("cv")
        result["variants"][v] = {
            **totals[v],
            **{
                f"{names[c]}_{k}": scores[f"cv/flake_{k}_{names[c]}_device"]
                for c in flake_classes
                for k in ("f1", "tp", "fp", "fn")
            },
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for unknown_cv.json and results.md")
    args = parser.parse_args(argv)
    if not os.environ.get("FLAKESEG_DATA"):
        parser.error("set FLAKESEG_DATA to the data root")
    started = time.perf_counter()
    results = {name: run(name, Path(path)) for name, path in RUNS.items()}
    elapsed = time.perf_counter() - started
    lines = [
        "| data | variant | monolayer F1 (tp/fp/fn) | bilayer F1 (tp/fp/fn) | unknown | reclassed |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for v, row in result["variants"].items():
            cells = [
                f"{row[f'{c}_f1']:.3f} ({row[f'{c}_tp']}/{row[f'{c}_fp']}/{row[f'{c}_fn']})"
                for c in ("monolayer", "bilayer")
            ]
            listed = result["flakes_listed"]
            share = f"{row['unknown']} of {listed} ({row['unknown'] / max(listed, 1):.1%})"
            lines.append(f"| {name} | {v} | {' | '.join(cells)} | {share} | {row['reclassed']} |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    header = f"`python benchmarks/unknown_cv.py` ({time.strftime('%Y-%m-%d')}, {machine}, {elapsed:.0f} s)"
    print("\n".join([header, "", *lines]))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "unknown_cv.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / "results.md").write_text("\n".join([header, "", *lines, ""]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
