"""Flake matching speed: choosing the post-processing on a grid of settings.

The fold evaluation scores every ``(min_area, min_confidence)`` of a grid on the held-out predictions
to choose what ``predict`` applies (``evaluate.postprocess``). Matching image by image and setting by
setting (``FlakeScores.update``) labels the arg-max map and overlaps its regions with the true flakes
once per setting; ``ImageFlakes`` labels and overlaps them once per image and makes each setting a
choice of rows. This times both on a shipped model's probabilities for a data set's images (at their
stored resolution, as the fold evaluation scores them) and checks that every setting's scores agree.

Run: ``FLAKESEG_DATA=... python benchmarks/flake_matching.py --model mos2 --data mos2 --split train
--out docs/results/flakes_cpu/matching_speed``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from machine import machine

from flakeseg.data.catalog import AS_STORED, load_dataset
from flakeseg.evaluation.flake_scores import FlakeScores, ImageFlakes
from flakeseg.evaluation.postprocess import DEFAULT_MIN_AREAS, DEFAULT_MIN_CONFIDENCES
from flakeseg.inference.predictor import load_predictor
from flakeseg.inference.shipped import resolve_model
from flakeseg.utils.config_files import compose_data_config


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mos2", help="a shipped model's name or a checkpoint")
    parser.add_argument("--data", default="mos2", help="a data config")
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--out", type=Path, default=None, help="folder for matching_speed.md and .json")
    args = parser.parse_args()

    data_cfg = compose_data_config(args.data)
    ids = list(data_cfg["split"][args.split])
    data = load_dataset({**dict(data_cfg), **AS_STORED}, ids, progress=False)
    predictor = load_predictor(resolve_model(args.model))
    names = list(predictor.card.class_names)
    flakes = [names.index(n) for n in predictor.card.flake_classes]
    start = time.perf_counter()
    probs = [predictor.probabilities(image) for image in data.images]
    predict_s = time.perf_counter() - start
    grid = [(a, c) for a in DEFAULT_MIN_AREAS for c in DEFAULT_MIN_CONFIDENCES]

    start = time.perf_counter()
    per_setting = {}
    for area, confidence in grid:
        scores = FlakeScores(names, flakes, area, confidence)
        for prob, mask in zip(probs, data.masks, strict=True):
            scores.update(prob, mask)
        per_setting[(area, confidence)] = scores.compute("cv")
    per_setting_s = time.perf_counter() - start

    start = time.perf_counter()
    images = [ImageFlakes.of(prob, mask, names, flakes) for prob, mask in zip(probs, data.masks, strict=True)]
    once = {}
    for area, confidence in grid:
        scores = FlakeScores(names, flakes, area, confidence)
        for image in images:
            scores.update_image(image)
        once[(area, confidence)] = scores.compute("cv")
    once_s = time.perf_counter() - start

    agree = all(_same(per_setting[s], once[s]) for s in grid)
    result = {
        "model": args.model,
        "data": f"{args.data} {args.split} ({len(ids)} images)",
        "settings": len(grid),
        "predict_s": round(predict_s, 2),
        "per_setting_s": round(per_setting_s, 2),
        "overlapped_once_s": round(once_s, 2),
        "same_scores": agree,
        "machine": machine(),
    }
    table = (
        f"# Flake matching speed\n\n`python benchmarks/flake_matching.py --model {args.model} --data "
        f"{args.data} --split {args.split}` on {result['machine']['cpu']} ({result['machine']['cores']} "
        f"cores), {time.strftime('%Y-%m-%d')}.\n\n"
        f"Choosing the post-processing among {len(grid)} settings on the {result['data']}, with the "
        f"probabilities of the shipped `{args.model}` model ({predict_s:.1f} s to compute, not counted):\n\n"
        "| matching | seconds |\n| --- | --- |\n"
        f"| every image again for every setting (`FlakeScores.update`) | {per_setting_s:.2f} |\n"
        f"| each image overlapped once (`ImageFlakes`), each setting a choice of rows | {once_s:.2f} |\n\n"
        f"Every setting's scores identical: {'yes' if agree else 'NO'}.\n"
    )
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "matching_speed.md").write_text(table)
        (args.out / "matching_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    if not agree:
        raise SystemExit("error: the two ways of matching disagree")


if __name__ == "__main__":
    main()
