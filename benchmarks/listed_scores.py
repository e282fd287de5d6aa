"""What a screening run shows, scored on CV: pixel scores of three maps of each held-out image, and
the substrate the colour check measures flakes against.

For each complete CV run (its fold models predict their held-out images again, as the evaluation
does), at the run's CV-chosen post-processing (``evaluation.json``):

- pooled pixel precision and accuracy of monolayer and bilayer on three maps: the arg-max map, the map
  with the flakes ``predict`` would not list (under the minimum area or confidence) as background, and
  the map ``predict`` shows (those, and the flakes its colour check lists as ``unknown``, against a
  setup calibrated on each fold's own training images and labels:
  :func:`flakeseg.stages.fold_evaluation.listed_scores`); beside each, the same without the images
  named by ``--leave-out`` (a diagnostic: which images the misses sit on, not a score);
- the colour check's flake scores (device-sized flake F1 with found / false / missed, unknown flakes)
  with each flake's contrast measured against the image's densest colour (the rule before 2026-12-05)
  and against the densest colour of the pixels the model calls background
  (:func:`flakeseg.evaluation.flakes.substrate_beside_flakes`, the rule since).

Run: ``FLAKESEG_DATA=... python benchmarks/listed_scores.py RUN... [--leave-out 00006] --out DIR``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import machine

import flakeseg.evaluation.flakes as flakes_module
from flakeseg.data.preprocess import resize_probabilities
from flakeseg.evaluation.postprocess import Postprocess
from flakeseg.evaluation.regions import pixel_scores
from flakeseg.evaluation.test_scores import colour_check_listing, shown_maps
from flakeseg.optics.substrate import estimate_background
from flakeseg.stages.fold_evaluation import collect_predictions, fold_setups, listed_scores

MAPS = ("arg-max", "listed by area and confidence", "shown by predict (unknown flakes out)")
CLASSES = ("monolayer", "bilayer")


def _densest(image, probabilities, class_names, flake_classes):  # the rule before 2026-12-05
    return estimate_background(image)


def summarize(run: Path, leave_out: set[str]) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    chosen = json.loads((run / "evaluation.json").read_text())["postprocess"]
    post = Postprocess(chosen["min_area"], chosen["min_confidence"])
    preds = collect_predictions(metrics, device="cpu")
    setups = fold_setups(preds)
    if isinstance(setups, str):
        raise SystemExit(f"error: {run}: {setups}")
    names, flakes = preds.class_names, preds.flake_classes
    maps: dict[str, list[np.ndarray]] = {m: [] for m in MAPS}
    masks, ids = [], []
    for k, (probs, stored, images) in enumerate(
        zip(preds.val_probs, preds.val_stored_masks, preds.val_sets, strict=True)
    ):
        checked, _ = colour_check_listing(
            probs, images, flakes, post, str(preds.data_config["name"]), setups[k]
        )
        maps[MAPS[0]] += [
            resize_probabilities(p, *m.shape).argmax(axis=0).astype(np.uint8)
            for p, m in zip(probs, stored, strict=True)
        ]
        maps[MAPS[1]] += shown_maps(probs, stored, names, flakes, post)
        maps[MAPS[2]] += shown_maps(probs, stored, names, flakes, post, checked)
        masks += stored
        ids += list(images.ids)
    kept = [i for i, image_id in enumerate(ids) if image_id not in leave_out]
    pixels = {}
    for name, shown in maps.items():
        every = pixel_scores(shown, masks, names, prefix="p")
        part = pixel_scores([shown[i] for i in kept], [masks[i] for i in kept], names, prefix="p")
        pixels[name] = {
            f"{metric}_{c}{suffix}": float(scores[f"p/{metric}_{c}"])
            for c in CLASSES
            for metric in ("precision", "acc")
            for suffix, scores in (("", every), ("_left_out", part))
        }
    substrates = {}
    rule = flakes_module.substrate_beside_flakes
    rules = (("densest colour of the image", _densest), ("densest colour beside the flakes", rule))
    for label, function in rules:
        flakes_module.substrate_beside_flakes = function
        try:
            scores = listed_scores(preds, preds.val_probs, post)
        finally:
            flakes_module.substrate_beside_flakes = rule
        substrates[label] = {
            "unknown": int(scores["cv_listed/flakes_unknown"]),
            **{
                f"flake_{s}_{c}_device": scores[f"cv_listed/flake_{s}_{c}_device"]
                for c in CLASSES
                for s in ("f1", "tp", "fp", "fn")
            },
        }
    return {
        "run": str(run),
        "postprocess": chosen,
        "images": len(set(ids)),
        "left_out": sorted(leave_out & set(ids)),
        "pixels": pixels,
        "substrates": substrates,
    }


def report(results: list[dict], took_s: float, info: dict, argv: str) -> str:
    lines = [
        "# What a screening run shows, scored on CV",
        "",
        f"`python benchmarks/listed_scores.py {argv}` on {info['cpu']} ({info['cores']} cores), "
        f"{time.strftime('%Y-%m-%d')}, {took_s:.0f} s. The method: the script's docstring. Pooled over "
        "every held-out image, at the images' stored resolution.",
        "",
        "| run | map | bilayer pixel precision / accuracy | monolayer pixel precision / accuracy "
        "| bilayer precision without the left-out images |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for name, p in r["pixels"].items():
            lines.append(
                f"| `{r['run']}` ({r['postprocess']['min_area']} px, {r['postprocess']['min_confidence']:g}) "
                f"| {name} | {p['precision_bilayer']:.3f} / {p['acc_bilayer']:.3f} "
                f"| {p['precision_monolayer']:.3f} / {p['acc_monolayer']:.3f} "
                f"| {p['precision_bilayer_left_out']:.3f} (without {', '.join(r['left_out']) or 'none'}) |"
            )
    lines += [
        "",
        "The colour check's substrate: device-sized flake F1 (found / false / missed) as `predict` lists",
        "",
        "| run | flakes measured against | unknown flakes | monolayer | bilayer |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for label, s in r["substrates"].items():
            cells = [
                f"{s[f'flake_f1_{c}_device']:.3f} ({s[f'flake_tp_{c}_device']}/{s[f'flake_fp_{c}_device']}"
                f"/{s[f'flake_fn_{c}_device']})"
                for c in CLASSES
            ]
            lines.append(f"| `{r['run']}` | {label} | {s['unknown']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="complete CV runs (metrics.json, evaluation.json)")
    parser.add_argument("--leave-out", default="", help="image ids to leave out of the diagnostic column")
    parser.add_argument("--out", type=Path, default=None, help="folder for listed.md and listed.json")
    args = parser.parse_args()
    leave_out = {i for i in args.leave_out.split(",") if i}
    start = time.perf_counter()
    results = [summarize(run, leave_out) for run in args.runs]
    took = time.perf_counter() - start
    info = machine()
    argv = " ".join(str(r) for r in args.runs) + (f" --leave-out {args.leave_out}" if leave_out else "")
    text = report(results, took, info, argv)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "listed.md").write_text(text)
        payload = {"runs": results, "seconds": round(took, 1), "machine": info}
        (args.out / "listed.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
