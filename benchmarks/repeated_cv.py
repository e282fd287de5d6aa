"""One fold assignment against several: the flake scores of each repeat of a repeated CV, and pooled.

For each complete CV run (``python train.py cv.repeats=R ...``; a run of one repeat works too):

- per repeat, the held-out flake scores at ``predict``'s default post-processing (the matches each fold
  stored in ``metrics.json``, pooled over that repeat's folds): device-sized (>= 600 px) and >= 100 px
  flake F1 with found / false / missed, monolayer and bilayer;
- the same pooled over every repeat (what ``metrics.json``'s ``cv/flake_*`` hold);
- from ``evaluation.json``: the post-processing chosen on the matches of every repeat and the pooled
  scores there, as listed (``cv/``) and as ``predict`` shows them (``cv_listed/``, unknown flakes out);
  and each fold listed at the post-processing chosen on the other folds of its repeat
  (``cv_crossfit/``: no fold's own images in its choice).

Reads only JSON: no model runs. Run:
``python benchmarks/repeated_cv.py RUN... --out DIR`` (writes ``repeated_cv.md`` and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from flakeseg.evaluation.flake_scores import FlakeScores

CLASSES = ("monolayer", "bilayer")
FLOORS = (("_device", ">= 600 px"), ("", ">= 100 px"))


def _counts(scores: dict, prefix: str, name: str, floor: str) -> dict:
    tail = f"{name}{floor}"
    return {
        "f1": scores[f"{prefix}/flake_f1_{tail}"],
        "found": scores[f"{prefix}/flake_tp_{tail}"],
        "false": scores[f"{prefix}/flake_fp_{tail}"],
        "missed": scores[f"{prefix}/flake_fn_{tail}"],
    }


def summarize(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    if not metrics.get("complete"):
        raise SystemExit(f"error: {run}: the CV run is not complete")
    if not all(f.get("val/flake_matches") for f in metrics["folds"]):
        raise SystemExit(f"error: {run}: folds without flake matches (trained before the flake scores)")
    names = list(metrics["class_names"])
    flakes = [names.index(c) for c in CLASSES if c in names]
    repeats = sorted({int(f.get("repeat", 0)) for f in metrics["folds"]})
    seed = int(metrics["config"]["cv"].get("seed", 0))

    def pooled(folds: list[dict]) -> dict:
        scores = FlakeScores.pooled([f["val/flake_matches"] for f in folds], names, flakes).compute("cv")
        return {f"{n}{fl}": _counts(scores, "cv", n, fl) for n in CLASSES for fl, _ in FLOORS}

    rows = {
        f"cv.seed={seed + r}": pooled([f for f in metrics["folds"] if int(f.get("repeat", 0)) == r])
        for r in repeats
    }
    rows["pooled"] = pooled(metrics["folds"])
    out: dict = {"data": metrics["config"]["data"]["name"], "repeats": len(repeats), "default": rows}
    evaluation = run / "evaluation.json"
    if evaluation.is_file():
        scores = json.loads(evaluation.read_text())
        out["chosen"] = scores["postprocess"]
        out["at_chosen"] = {
            prefix: {f"{n}{fl}": _counts(scores, prefix, n, fl) for n in CLASSES for fl, _ in FLOORS}
            for prefix in ("cv", "cv_crossfit", "cv_listed")
            if f"{prefix}/flake_f1_monolayer_device" in scores
        }
        out["flakes_unknown"] = scores.get("cv_listed/flakes_unknown")
    return out


def _cell(c: dict) -> str:
    return f"{c['f1']:.3f} ({c['found']}/{c['false']}/{c['missed']})"


def report(results: dict[str, dict]) -> str:
    lines = [
        "# Repeated CV: flake F1 of each fold assignment and pooled",
        "",
        f"`python benchmarks/repeated_cv.py {' '.join(results)}` ({platform.machine()}; reads JSON only).",
        "F1 (found / false / missed), held-out folds pooled; IoU >= 0.5.",
        "",
    ]
    for run, r in results.items():
        lines += [
            f"## {r['data']}: `{run}` ({r['repeats']} repeat(s))",
            "",
            "| fold assignment | post-processing | "
            + " | ".join(f"{n} {label}" for fl, label in FLOORS for n in CLASSES)
            + " |",
            "| --- | --- |" + " --- |" * (len(FLOORS) * len(CLASSES)),
        ]
        for name, row in r["default"].items():
            cells = " | ".join(_cell(row[f"{n}{fl}"]) for fl, _ in FLOORS for n in CLASSES)
            lines.append(f"| {name} | default (100 px, 0.5) | {cells} |")
        if "chosen" in r:
            chosen = f"chosen on CV ({r['chosen']['min_area']} px, {r['chosen']['min_confidence']:g})"
            for prefix, row in r["at_chosen"].items():
                what = {
                    "cv": ("pooled, as listed", chosen),
                    "cv_crossfit": ("pooled, as listed", "chosen on the other folds of the repeat"),
                    "cv_listed": ("pooled, as shown (unknown out)", chosen),
                }[prefix]
                cells = " | ".join(_cell(row[f"{n}{fl}"]) for fl, _ in FLOORS for n in CLASSES)
                lines.append(f"| {what[0]} | {what[1]} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="complete CV run folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for repeated_cv.md and .json")
    args = parser.parse_args()
    results = {str(run): summarize(run) for run in args.runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "repeated_cv.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "repeated_cv.md").write_text(report(results) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
