"""How far one final model's test scores move with the training seed alone.

The shipped models are one `stage=test` training each; their test-split flake F1 is one draw. This
reads the ``test_metrics.json`` of test-stage runs that differ only in ``seed`` (trained by the
command in the docstring's example) and tabulates their flake and pixel scores, as the test stage
scored them (flakes as ``predict`` lists them by default: >= 100 px, confidence >= 0.5). It chooses
nothing: a seed is never picked by these numbers.

Run::

    for s in 42 1 2; do python train.py experiment=best_cpu stage=test data=mos2 seed=$s \\
        hydra.run.dir=outputs/seeds/mos2_s$s; done
    python benchmarks/seed_spread.py outputs/seeds/mos2_s* --out docs/results/seed_spread_cpu/mos2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from machine import machine

KEYS = (
    "test/flake_f1_monolayer_device",
    "test/flake_f1_bilayer_device",
    "test/flake_f1_monolayer",
    "test/flake_f1_bilayer",
    "test/precision_bilayer",
    "test/mean_class_acc",
    "test/region_accuracy",
)


def spread(runs: list[Path]) -> dict:
    rows = []
    for run in runs:
        metrics = json.loads((run / "test_metrics.json").read_text())
        config = metrics.get("config") or {}
        row = {"run": str(run), "seed": config.get("seed"), "data": (config.get("data") or {}).get("name")}
        row.update({key: metrics.get(key) for key in KEYS})
        for name in ("monolayer", "bilayer"):
            row[f"found/false/missed {name} device"] = [
                metrics.get(f"test/flake_{part}_{name}_device") for part in ("tp", "fp", "fn")
            ]
        rows.append(row)
    summary = {}
    for key in KEYS:
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            summary[key] = {
                "min": float(np.min(values)),
                "max": float(np.max(values)),
                "mean": float(np.mean(values)),
            }
    return {"machine": machine(), "runs": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="test-stage run folders (test_metrics.json)")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    result = spread(args.runs)
    print("| seed | " + " | ".join(k.removeprefix("test/") for k in KEYS) + " |")
    for row in result["runs"]:
        print(
            f"| {row['seed']} | "
            + " | ".join("-" if row[k] is None else f"{row[k]:.3f}" for k in KEYS)
            + " |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
