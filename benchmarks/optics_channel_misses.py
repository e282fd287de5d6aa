"""Where a network fed the optics' layer posteriors (``data.optics_channels=true``) follows the optics.

Per image of a data set's split: each model's pixel accuracy on every labelled class (at the model's
scale, argmax, no post-processing), the labelled pixels' median contrast ``I/b - 1`` against the
substrate, the oxide the optics fits on the image, and the optics channel's mean posterior of each
layer class over that class's labelled pixels (the optics of the first model that has the channels),
and each model's seconds per image. It says whether a model's misses are where the physics misses.

Run: ``FLAKESEG_DATA=... python benchmarks/optics_channel_misses.py MODEL [MODEL ...] --data graphene
[--split test] [--out F]`` (models: shipped names, .ckpt files; e.g. the RGB-only graphene model of an
earlier commit, ``git show 004f970:src/flakeseg/inference/shipped/graphene.ckpt > rgb.ckpt``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import machine


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 3)


def misses(models: list[str], data: str, split: str) -> dict:
    import cv2

    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.preprocess import resize_image
    from flakeseg.data.splits import split_from_config
    from flakeseg.inference.inputs import InputFeatures
    from flakeseg.inference.predictor import load_predictor
    from flakeseg.inference.shipped import resolve_model
    from flakeseg.optics.substrate import estimate_background
    from flakeseg.utils.config_files import compose_data_config

    predictors = {name: load_predictor(resolve_model(name)) for name in models}
    with_optics = [
        (p, features.optics)
        for p in predictors.values()
        if (features := InputFeatures.from_dict(p.card.inputs)) is not None and features.optics is not None
    ]
    if not with_optics:
        raise SystemExit("optics_channel_misses: no model among them has data.optics_channels")
    optics_predictor, optics = with_optics[0]
    # the images as stored (what `predict` reads): each model resamples and prepares them itself
    data_cfg = compose_data_config(data, [])
    data_cfg.update(AS_STORED)
    splits = split_from_config(data_cfg)
    ids = [*splits["train"], *splits["test"]] if split == "all" else splits[split]
    dataset = load_dataset(data_cfg, ids=ids, progress=False)
    names = list(optics_predictor.card.class_names)
    rows = []
    seconds = dict.fromkeys(models, 0.0)
    for image_id, image, mask in zip(dataset.ids, dataset.images, dataset.masks, strict=True):
        background = estimate_background(image)
        contrast = image.astype(np.float64) / np.maximum(background, 1.0) - 1.0
        predicted = {}  # first: the optics below may reuse what a model's input computed
        for model, p in predictors.items():
            started = time.perf_counter()
            predicted[model] = p.probabilities(image).argmax(axis=0)
            seconds[model] += time.perf_counter() - started
        # the optics channel as the network saw it: at the model's scale
        small = resize_image(image, optics_predictor.resample)
        posterior = optics.predict_proba(small)
        small_mask = cv2.resize(mask, small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        row: dict = {
            "image": image_id,
            "oxide_nm": round(float(optics.setup_for(estimate_background(small)).oxide_nm), 1),
        }
        for cls, name in enumerate(names):
            labelled = mask == cls
            if not labelled.any():
                continue
            row[f"{name}_pixels"] = int(labelled.sum())
            row[f"{name}_contrast"] = np.median(contrast[labelled], axis=0).round(3).tolist()
            if cls < posterior.shape[0] and (small_mask == cls).any():
                row[f"{name}_optics_posterior"] = _rounded(posterior[cls][small_mask == cls].mean())
            for model, argmax in predicted.items():
                row[f"{name}_accuracy[{model}]"] = _rounded((argmax[labelled] == cls).mean())
        rows.append(row)
    return {
        "machine": machine(),
        "data": data,
        "split": split,
        "models": models,
        # one whole Predictor.probabilities call per image as stored: what `predict` spends on it
        "seconds_per_image": {m: round(t / max(len(rows), 1), 3) for m, t in seconds.items()},
        "images": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="shipped model names or .ckpt files")
    parser.add_argument("--data", required=True, help="data config name (mos2, graphene) or path")
    parser.add_argument("--split", default="test", choices=("test", "train", "all"))
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    result = misses(args.models, args.data, args.split)
    for row in result["images"]:
        print(json.dumps(row))
    print("seconds per image:", json.dumps(result["seconds_per_image"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
