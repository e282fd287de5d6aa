"""Where a CV run's held-out predictions of each class come from, by the labels' raw values.

The scored classes fold raw label values together (MoS2: "other" is substrate 0 and thick 3); this
counts, over every held-out image of every fold, each raw value against each predicted class, with
the fold's own last model (the one its CV score is of) at the model's scale. Per image, the pixels
predicted as ``--class`` by raw value. It says, e.g., whether a bilayer false alarm is a thick flake
or a labelled monolayer.

Run: ``FLAKESEG_DATA=... python benchmarks/cv_confusion.py outputs/<cv run> [--class bilayer] [--out F]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np


def raw_confusion(run: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and, per held-out image, the ``raw value x predicted class`` pixel counts."""
    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.io import read_mask
    from flakeseg.inference.predictor import load_predictor

    metrics = json.loads((run / "metrics.json").read_text())
    data_cfg = metrics["config"]["data"]
    names = list(metrics["class_names"])
    data = load_dataset(data_cfg, ids=[i for f in metrics["folds"] for i in f["val_ids"]], progress=False)
    counts = {}
    for fold in metrics["folds"]:
        predictor = load_predictor(fold["last_checkpoint"])
        held_out = data.subset(fold["val_ids"]).mapped(predictor.prepare_loaded)
        for image_id, image, pair in zip(held_out.ids, held_out.images, held_out.pairs, strict=True):
            predicted = predictor.probabilities_at_model_scale(image).argmax(axis=0)
            raw = read_mask(pair.mask_path)
            raw = cv2.resize(raw, predicted.shape[::-1], interpolation=cv2.INTER_NEAREST)
            table = np.zeros((256, len(names)), np.int64)
            np.add.at(table, (raw.ravel(), predicted.ravel()), 1)
            counts[image_id] = counts.get(image_id, 0) + table  # summed over repeats (cv.repeats)
    return names, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a complete CV run folder (its metrics.json)")
    parser.add_argument("--class", dest="name", default="bilayer", help="predicted class to break down")
    parser.add_argument("--out", type=Path, help="also write the counts as JSON here")
    args = parser.parse_args()
    names, counts = raw_confusion(args.run)
    column = names.index(args.name)
    total = sum(counts.values())
    values = [v for v in range(256) if total[v].any()]
    print(f"{args.run}: held-out pixels, raw label value (rows) x predicted class (columns)")
    print("raw  " + "".join(f"{n:>12}" for n in names))
    for v in values:
        print(f"{v:>3}  " + "".join(f"{int(c):>12,}" for c in total[v, : len(names)]))
    predicted = total[:, column].sum()
    shares = ", ".join(f"raw {v}: {total[v, column] / predicted:.3f}" for v in values)
    print(f"predicted {args.name}: {predicted:,} px; by raw value: {shares}")
    for image_id, table in sorted(counts.items()):
        if table[:, column].sum() >= 500:
            parts = ", ".join(f"raw {v}: {int(table[v, column]):,}" for v in values if table[v, column])
            print(f"  {image_id}: {parts}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "class_names": names,
                    "raw_values": values,
                    "total": total[values].tolist(),
                    "per_image": {k: t[values].tolist() for k, t in counts.items()},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
