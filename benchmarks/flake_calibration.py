"""Why a CV run's held-out flake ECE stays high, and what a flake-level recalibration would buy.

The flake ECE of ``flakeseg evaluate`` (``cv/flake_ece``) bins the flakes ``predict`` lists (>= 100 px
and the run's chosen minimum area and confidence) by their confidence, the mean class probability over
the flake, against whether each is matched one-to-one to a labelled flake at IoU >= 0.5. This takes a
complete CV run's fold models, predicts their held-out images again (as the evaluation does) and says:

- per fold, how many flakes are listed and how many of them are right (the folds' precisions differ);
- what the wrong listed flakes are: a flake of the same class drawn with IoU 0.1-0.5 (split, merged or
  loosely outlined), a flake of the other flake class (IoU >= 0.25 with it, more than with its own
  class), or no labelled flake (IoU < 0.1 with every flake);
- the held-out ECE of a recalibrated confidence: logistic regression on the logit of the confidence and
  the log of the area, fitted on the *other* folds' flakes (cross-fitted, so the score stays held
  out), either on every candidate >= 100 px or on the listed flakes only; beside it the constant "the
  other folds' precision".

Every listed flake's confidence and match are checked against ``FlakeScores.calibration`` (the
evaluation's own matching) before anything is reported.

Run: ``FLAKESEG_DATA=... python benchmarks/flake_calibration.py outputs/leaderboard/mos2/paper/best_network
outputs/leaderboard/graphene/paper/best_network --out docs/results/flakes_cpu/calibration``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import machine
from scipy import ndimage
from sklearn.linear_model import LogisticRegression

from flakeseg.data.preprocess import resize_probabilities
from flakeseg.evaluation.calibration import reliability_bins
from flakeseg.evaluation.flake_scores import FlakeScores, ImageFlakes, clean_labels
from flakeseg.evaluation.flakes import class_regions
from flakeseg.stages.fold_evaluation import collect_predictions

FLOOR = 100  # px: the flakes the flake ECE counts
KINDS = ("right", "same class, IoU 0.1-0.5", "other flake class", "no labelled flake")


def _ece(confidence: np.ndarray, right: np.ndarray) -> float:
    bins = reliability_bins(confidence, right)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def candidate_flakes(run: Path) -> tuple[dict, list[dict]]:
    """The run's chosen post-processing and every held-out candidate flake >= ``FLOOR`` px: fold,
    class, confidence, area, listed (kept by the post-processing), right (matched as COCO matches,
    in descending confidence among the listed flakes) and what it overlaps."""
    metrics = json.loads((run / "metrics.json").read_text())
    chosen = json.loads((run / "evaluation.json").read_text())["postprocess"]
    preds = collect_predictions(metrics, device="cpu")
    names, flake_classes = preds.class_names, preds.flake_classes
    rows: list[dict] = []
    reference = FlakeScores(names, flake_classes, chosen["min_area"], chosen["min_confidence"])
    for fold, (probs, masks) in enumerate(zip(preds.val_probs, preds.val_stored_masks, strict=True)):
        for prob_small, mask in zip(probs, masks, strict=True):
            prob = resize_probabilities(prob_small, *mask.shape)
            reference.update_image(ImageFlakes.of(prob, mask, names, flake_classes))
            truth = clean_labels(mask, flake_classes)
            true_regions = {c: ndimage.label(truth == c) for c in flake_classes}
            for c, found in class_regions(prob, names, flake_classes).items():
                own, n_own = true_regions[c]
                own_areas = np.bincount(own.ravel(), minlength=n_own + 1)
                candidates = []
                for r in found.order:
                    area, conf = int(found.areas[r]), float(found.confidence[r])
                    if area < FLOOR:
                        continue
                    inside = found.regions == r
                    inter = np.bincount(own[inside], minlength=n_own + 1)[1:]
                    iou_own = inter / (area + own_areas[1:] - inter) if n_own else np.zeros(0)
                    other_iou = 0.0
                    for c2, (lab, n) in true_regions.items():
                        if c2 != c and n:
                            inter2 = np.bincount(lab[inside], minlength=n + 1)[1:]
                            areas2 = np.bincount(lab.ravel(), minlength=n + 1)[1:]
                            other_iou = max(other_iou, float((inter2 / (area + areas2 - inter2)).max()))
                    listed = area >= chosen["min_area"] and conf >= chosen["min_confidence"]
                    candidates.append((round(conf, 4), area, listed, iou_own, other_iou))
                # one-to-one, by descending confidence: among all candidates and, separately, the listed
                for subset in ("all", "listed"):
                    taken = np.zeros(n_own, bool)
                    for conf, area, listed, iou_own, other_iou in sorted(candidates, key=lambda x: -x[0]):
                        if subset == "listed" and not listed:
                            continue
                        free = np.where(taken, -1.0, iou_own)
                        best = int(np.argmax(free)) if free.size else -1
                        right = best >= 0 and free[best] >= 0.5
                        if right:
                            taken[best] = True
                            if own_areas[best + 1] < FLOOR:
                                continue  # matched a labelled speck: COCO ignores it
                        best_own = float(iou_own.max()) if iou_own.size else 0.0
                        kind = (
                            KINDS[0]
                            if right
                            else KINDS[2]
                            if other_iou >= 0.25 and other_iou > best_own
                            else KINDS[1]
                            if best_own >= 0.1
                            else KINDS[3]
                        )
                        rows.append(
                            {
                                "subset": subset,
                                "fold": fold,
                                "class": names[c],
                                "confidence": conf,
                                "area": area,
                                "right": bool(right),
                                "kind": kind,
                            }
                        )
    listed = [r for r in rows if r["subset"] == "listed"]
    ref_conf, ref_right = reference.calibration()
    if sorted(r["confidence"] for r in listed) != sorted(ref_conf.tolist()) or sum(
        r["right"] for r in listed
    ) != int(ref_right.sum()):
        raise SystemExit(f"error: {run}: this script's matching disagrees with FlakeScores.calibration")
    return chosen, rows


def sampling_floor(confidence: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Median and 90th percentile of the ECE of flakes that are right exactly as often as their
    confidence says (each drawn right with probability ``confidence``): ECE's noise at this count."""
    rng = np.random.default_rng(seed)
    eces = [_ece(confidence, rng.random(confidence.size) < confidence) for _ in range(draws)]
    return float(np.median(eces)), float(np.percentile(eces, 90))


def cross_fitted(rows: list[dict], fit_on: list[dict]) -> np.ndarray:
    """Each row's recalibrated confidence from a logistic regression on (logit confidence, log area)
    fitted on ``fit_on``'s rows of the other folds."""

    def features(rs: list[dict]) -> np.ndarray:
        conf = np.clip([r["confidence"] for r in rs], 1e-4, 1 - 1e-4)
        return np.c_[np.log(conf / (1 - conf)), np.log([r["area"] for r in rs])]

    out = np.zeros(len(rows))
    for fold in {r["fold"] for r in rows}:
        train = [r for r in fit_on if r["fold"] != fold]
        at = [i for i, r in enumerate(rows) if r["fold"] == fold]
        y = np.array([r["right"] for r in train])
        if y.all() or not y.any():
            out[at] = float(y.mean())
            continue
        model = LogisticRegression().fit(features(train), y)
        out[at] = model.predict_proba(features([rows[i] for i in at]))[:, 1]
    return out


def summarize(run: Path) -> dict:
    chosen, rows = candidate_flakes(run)
    listed = [r for r in rows if r["subset"] == "listed"]
    every = [r for r in rows if r["subset"] == "all"]
    right = np.array([r["right"] for r in listed])
    conf = np.array([r["confidence"] for r in listed])
    every_right = np.array([r["right"] for r in every])
    folds = sorted({r["fold"] for r in rows})
    other_precision = np.array(
        [np.mean([s["right"] for s in listed if s["fold"] != r["fold"]]) for r in listed]
    )
    return {
        "run": str(run),
        "postprocess": chosen,
        "listed": len(listed),
        "listed_precision": float(right.mean()),
        "listed_mean_confidence": float(conf.mean()),
        "listed_ece": _ece(conf, right),
        "listed_ece_sampling_floor": sampling_floor(conf),
        "per_fold": [
            {
                "fold": k,
                "listed": sum(r["fold"] == k for r in listed),
                "precision": float(np.mean([r["right"] for r in listed if r["fold"] == k])),
                "mean_confidence": float(np.mean([r["confidence"] for r in listed if r["fold"] == k])),
            }
            for k in folds
        ],
        "wrong_listed": {kind: sum(r["kind"] == kind for r in listed) for kind in KINDS[1:]},
        "candidates": len(every),
        "candidates_precision": float(every_right.mean()),
        "candidates_ece": _ece(np.array([r["confidence"] for r in every]), every_right),
        "recalibrated_on_candidates": {
            "candidates_ece": _ece(cross_fitted(every, every), every_right),
            "listed_ece": _ece(cross_fitted(listed, every), right),
        },
        "recalibrated_on_listed": {"listed_ece": _ece(cross_fitted(listed, listed), right)},
        "other_folds_precision": {"listed_ece": _ece(other_precision, right)},
    }


def report(results: list[dict], took_s: float, info: dict) -> str:
    lines = [
        "# Why the held-out flake ECE stays high",
        "",
        "`python benchmarks/flake_calibration.py " + " ".join(r["run"] for r in results) + "` on "
        f"{info['cpu']} ({info['cores']} cores), {time.strftime('%Y-%m-%d')}, {took_s:.0f} s. The method: "
        "the script's docstring. Flakes >= 100 px, right = matched one-to-one at IoU >= 0.5, 10 equal-width "
        "bins, every fold's held-out images with that fold's model.",
        "",
        "| run | post-processing | listed flakes | right | mean confidence | flake ECE "
        "| ECE if perfectly calibrated: median (90 %) | per fold: listed, right, mean confidence |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        floor = r["listed_ece_sampling_floor"]
        folds = "; ".join(
            f"{f['listed']}, {f['precision']:.2f}, {f['mean_confidence']:.2f}" for f in r["per_fold"]
        )
        lines.append(
            f"| `{r['run']}` | {r['postprocess']['min_area']} px, {r['postprocess']['min_confidence']:g} "
            f"| {r['listed']} | {r['listed_precision']:.3f} | {r['listed_mean_confidence']:.3f} "
            f"| {r['listed_ece']:.3f} | {floor[0]:.3f} ({floor[1]:.3f}) | {folds} |"
        )
    lines += [
        "",
        "What the wrong listed flakes are:",
        "",
        "| run | " + " | ".join(KINDS[1:]) + " |",
        "| --- |" + " --- |" * (len(KINDS) - 1),
    ]
    for r in results:
        lines.append(f"| `{r['run']}` | " + " | ".join(str(r["wrong_listed"][k]) for k in KINDS[1:]) + " |")
    lines += [
        "",
        "Held-out ECE of a recalibrated confidence (fitted on the other folds' flakes):",
        "",
        "| run | every candidate >= 100 px: raw (right) | recalibrated on candidates | listed: raw | "
        "recalibrated on candidates | recalibrated on listed | the other folds' precision |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| `{r['run']}` | {r['candidates_ece']:.3f} ({r['candidates']}, "
            f"{r['candidates_precision']:.2f}) | {r['recalibrated_on_candidates']['candidates_ece']:.3f} "
            f"| {r['listed_ece']:.3f} | {r['recalibrated_on_candidates']['listed_ece']:.3f} "
            f"| {r['recalibrated_on_listed']['listed_ece']:.3f} "
            f"| {r['other_folds_precision']['listed_ece']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="complete CV runs (metrics.json, evaluation.json)")
    parser.add_argument("--out", type=Path, default=None, help="folder for calibration.md and .json")
    args = parser.parse_args()
    start = time.perf_counter()
    results = [summarize(run) for run in args.runs]
    took = time.perf_counter() - start
    info = machine()
    text = report(results, took, info)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "calibration.md").write_text(text)
        payload = {"runs": results, "seconds": round(took, 1), "machine": info}
        (args.out / "calibration.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
