"""Should the test split be scored by the fold models' average (``evaluate.ensemble``)? Nested CV decides.

A CV run's test numbers are either the mean over its fold models, each scoring the test split alone,
or the score of their averaged probabilities (the fold ensemble). Comparing the two on the test split
would choose on the test split; this compares them on images no model of the comparison has seen:

- the outer folds are the recipe's own CV folds of the training split (``cv.folds``, ``cv.seed``);
- for each outer fold k the recipe runs its whole CV, post-processing choice included, on the other
  outer folds' images (``data.split.train``), with outer fold k as its test split (``data.split.test``:
  training images, never the data set's test split);
- its fold models then score outer fold k alone (mean over the models) and averaged (the ensemble),
  both with the post-processing that inner CV chose, as ``flakeseg evaluate`` scores a test split.

Outer folds are pooled: found / false / missed flakes summed over the outer folds (for single models,
the mean over the inner models of each outer fold). Whether a difference is beyond noise: a paired
bootstrap over the held-out images of all outer folds (images drawn with replacement, both arms' flake
counts of the same images summed) gives a 95 % interval of ensemble minus single flake F1. AP50 (the
threshold-free ranking score, mean over outer folds) shows whether the averaged probabilities rank
flakes better even where the inner CV's confidence threshold, chosen for single models, does not fit
them. Each inner CV is a ``train.py`` run kept under ``--runs`` and resumed when complete (the
command of each is in the report).

Run: ``FLAKESEG_DATA=... python benchmarks/nested_ensemble.py --data mos2 --runs outputs/nested
--out docs/results/nested_ensemble_cpu`` (about 40 min per data set on 2 cores: three CVs).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from machine import machine

from flakeseg.data.preprocess import resize_probabilities
from flakeseg.data.splits import make_folds
from flakeseg.evaluation.flake_scores import FlakeScores
from flakeseg.stages.evaluation_options import EvalOptions
from flakeseg.stages.fold_evaluation import collect_predictions, evaluate_predictions
from flakeseg.stages.task import run_task
from flakeseg.studies.compare import compose, train_command

CLASSES = ("monolayer", "bilayer")
FLOORS = {"_device": ">= 600 px", "": ">= 100 px"}
DEFAULT_RECIPE = ["experiment=best_cpu"]
RESAMPLES = 2000


def _ids(ids: list[str]) -> str:
    return json.dumps(ids, separators=(",", ":"))  # quoted: ids like 007 stay strings


def outer_runs(data: str, recipe: list[str], runs: Path) -> list[dict]:
    """Run (or resume) the inner CV of every outer fold; its test split is the outer fold."""
    base = compose([f"data={data}", *recipe])
    train_ids = list(base.data.split.train)
    folds = make_folds(train_ids, int(base.cv.folds), int(base.cv.seed))
    out = []
    for k, held_out in enumerate(folds):
        inner = [i for i in train_ids if i not in held_out]
        run_dir = runs / data / f"outer{k}"
        overrides = [
            f"data={data}",
            *recipe,
            f"data.split.train={_ids(inner)}",
            f"data.split.test={_ids(held_out)}",
            "task_name=nested",
            f"paths.output_dir={run_dir.resolve()}",
        ]
        cfg = compose(overrides)
        start = time.perf_counter()
        run_task(cfg)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if not metrics.get("complete"):
            raise SystemExit(f"error: {run_dir}: the inner CV did not finish")
        out.append(
            {
                "outer_fold": k,
                "held_out": held_out,
                "command": train_command(overrides, run_dir),
                "options": EvalOptions.from_config(cfg.get("evaluate")),
                "metrics": metrics,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    return out


def image_counts(preds, postprocess: dict, members: list[int]) -> list[dict]:
    """Per held-out image, (found, false, missed) per flake class and floor of the average of the
    ``members`` fold models' probabilities (one member: that model alone), as ``evaluate`` counts them."""
    scores = FlakeScores(
        preds.class_names, preds.flake_classes, postprocess["min_area"], postprocess["min_confidence"]
    )
    for i, mask in enumerate(preds.test_stored_masks):
        prob = np.mean([preds.test_probs[k][i] for k in members], axis=0)
        scores.update(resize_probabilities(prob, *mask.shape), mask)
    return scores.image_counts


def paired_bootstrap(single: list[dict], ensemble: list[dict], seed: int = 0) -> dict[str, list[float]]:
    """95 % interval of ensemble minus single flake F1 (IoU 0.5) per class and floor, the held-out
    images resampled with replacement, the same draw for both arms."""
    keys = [k for k in single[0] if k[2] == "" and k[0] in CLASSES]
    arms = [np.array([[image[k] for k in keys] for image in arm], np.float64) for arm in (single, ensemble)]
    draws = np.random.default_rng(seed).integers(0, len(single), size=(RESAMPLES, len(single)))
    f1 = []
    for counts in arms:
        summed = counts[draws].sum(axis=1)
        tp, fp, fn = summed[..., 0], summed[..., 1], summed[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1.append(2 * tp / (2 * tp + fp + fn))
    diff = f1[1] - f1[0]
    out = {}
    for j, (name, floor, _) in enumerate(keys):
        finite = diff[:, j][np.isfinite(diff[:, j])]
        out[f"{name}{floor}"] = [float(v) for v in np.percentile(finite, [2.5, 97.5])] if finite.size else []
    return out


def score(outer: list[dict]) -> dict:
    """Per outer fold and pooled: the single fold models' and the ensemble's held-out flake scores."""
    rows, single_images, ensemble_images = [], [], []
    for run in outer:
        preds = collect_predictions(run["metrics"])
        if len(preds.repeats()) > 1:  # the ensemble would be one per repeat, the counts below one in all
            raise SystemExit(
                "error: nested_ensemble.py compares one set of fold models; the recipe has cv.repeats > 1"
            )
        if run["options"].temperature:
            raise SystemExit(
                "error: nested_ensemble.py compares untempered probabilities; the recipe "
                "has evaluate.temperature=true"
            )
        row = {"outer_fold": run["outer_fold"], "images": len(run["held_out"])}
        for arm, ensemble in (("single", False), ("ensemble", True)):
            result = evaluate_predictions(preds, replace(run["options"], ensemble=ensemble))
            kept = [k for k in result if k.startswith("test/flake_") and not k.endswith("_std")]
            row[arm] = {k.removeprefix("test/"): result[k] for k in [*kept, "test/mean_class_acc"]}
            row["postprocess"] = result["postprocess"]
        models = range(len(preds.test_probs))
        per_model = [image_counts(preds, row["postprocess"], [k]) for k in models]
        single_images += [
            {key: tuple(np.mean([m[i][key] for m in per_model], axis=0)) for key in per_model[0][i]}
            for i in range(len(per_model[0]))
        ]
        together = image_counts(preds, row["postprocess"], list(models))
        # the per-image counts add up to what evaluate scored (a check on the bootstrap's input)
        for c in CLASSES:
            found = sum(image[(c, "_device", "")][0] for image in together)
            if found != row["ensemble"][f"flake_tp_{c}_device"]:
                raise SystemExit(f"error: outer fold {row['outer_fold']}: {c} counts differ from evaluate's")
        ensemble_images += together
        rows.append(row)
    pooled = {}
    for arm in ("single", "ensemble"):
        for c in CLASSES:
            for floor in FLOORS:
                tp, fp, fn = (sum(r[arm][f"flake_{n}_{c}{floor}"] for r in rows) for n in ("tp", "fp", "fn"))
                f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
                pooled[f"{arm}/flake_f1_{c}{floor}"] = f1
                pooled[f"{arm}/counts_{c}{floor}"] = [round(tp, 2), round(fp, 2), round(fn, 2)]
            pooled[f"{arm}/ap50_{c}_device"] = float(
                np.nanmean([r[arm][f"flake_ap50_{c}_device"] for r in rows])
            )
    intervals = paired_bootstrap(single_images, ensemble_images)
    return {"outer": rows, "pooled": pooled, "ensemble_minus_single_f1_ci95": intervals}


def report(data: str, recipe: list[str], outer: list[dict], scores: dict, took: float, info: dict) -> str:
    p = scores["pooled"]
    invocation = f"--data {data}" + ("" if recipe == DEFAULT_RECIPE else " --recipe " + " ".join(recipe))
    lines = [
        f"# Fold ensemble or single fold models: nested CV on {data}",
        "",
        f"`python benchmarks/nested_ensemble.py {invocation}` on {info['cpu']} ({info['cores']} cores), "
        f"{time.strftime('%Y-%m-%d')}, {took:.0f} s of this invocation (inner CV runs resumed when "
        "complete). The method: the script's docstring. Flake F1 pooled over the outer folds, found / "
        "false / missed in brackets (single models: the mean over each outer fold's inner models):",
        "",
        "| flakes | single fold model: monolayer | ensemble: monolayer | single: bilayer "
        "| ensemble: bilayer |",
        "| --- | --- | --- | --- | --- |",
    ]
    for floor, name in FLOORS.items():
        cells = []
        for c in CLASSES:
            for arm in ("single", "ensemble"):
                tp, fp, fn = p[f"{arm}/counts_{c}{floor}"]
                cells.append(f"{p[f'{arm}/flake_f1_{c}{floor}']:.3f} ({tp:g} / {fp:g} / {fn:g})")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    aps = [f"{p[f'{arm}/ap50_{c}_device']:.3f}" for c in CLASSES for arm in ("single", "ensemble")]
    lines.append(f"| AP50, >= 600 px (mean over outer folds) | {' | '.join(aps)} |")
    intervals = scores["ensemble_minus_single_f1_ci95"]
    lines += [
        "",
        "Ensemble minus single flake F1, 95 % paired bootstrap interval over the "
        f"{sum(r['images'] for r in scores['outer'])} held-out images ({RESAMPLES} resamples): "
        + "; ".join(
            f"{c} {name} [{intervals[c + floor][0]:+.3f}, {intervals[c + floor][1]:+.3f}]"
            for c in CLASSES
            for floor, name in FLOORS.items()
            if intervals.get(c + floor)
        )
        + ".",
        "",
        "Per outer fold (device-sized flake F1 monolayer / bilayer; AP50 monolayer / bilayer; mean "
        "per-class accuracy):",
        "",
        "| outer fold | held-out images | post-processing chosen by its inner CV | single | ensemble |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in scores["outer"]:
        pp = r["postprocess"]
        arms = [
            f"{r[a]['flake_f1_monolayer_device']:.3f} / {r[a]['flake_f1_bilayer_device']:.3f}; "
            f"{r[a]['flake_ap50_monolayer_device']:.3f} / {r[a]['flake_ap50_bilayer_device']:.3f}; "
            f"{r[a]['mean_class_acc']:.3f}"
            for a in ("single", "ensemble")
        ]
        lines.append(
            f"| {r['outer_fold']} | {r['images']} | {pp['min_area']} px, {pp['min_confidence']:g} "
            f"| {arms[0]} | {arms[1]} |"
        )
    lines += ["", "## Commands (one inner CV per outer fold)", ""]
    lines += [
        f"- outer fold {r['outer_fold']} (training {r['metrics'].get('wall_seconds', float('nan')):.0f} s, "
        f"{r['seconds']:.0f} s this invocation): `{r['command']}`"
        for r in outer
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mos2", help="a data config name")
    parser.add_argument(
        "--recipe",
        nargs="*",
        default=DEFAULT_RECIPE,
        help="train.py overrides of the recipe (default: experiment=best_cpu)",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path("outputs/nested"),
        help="folder for the inner CVs (one per recipe: a folder holding another recipe's runs is refused)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for DATA.md and DATA.json (the report)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    outer = outer_runs(args.data, list(args.recipe), args.runs)
    scores = score(outer)
    took = time.perf_counter() - start
    info = machine()
    text = report(args.data, list(args.recipe), outer, scores, took, info)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.data}.md").write_text(text)
        payload = {
            "data": args.data,
            "recipe": args.recipe,
            "commands": [r["command"] for r in outer],
            "seconds": round(took, 1),
            "machine": info,
            **scores,
        }
        (args.out / f"{args.data}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
