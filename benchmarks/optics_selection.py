"""The zero-label optics model's selection rows: what its defaults are chosen on.

Each calibration material's training images, screened by ``model=optics`` with the setup calibrated on
that material's own training labels (MoS2's on MoS2, graphene's on graphene), scored by device-sized
flake precision / recall / F1 of monolayers and bilayers; the mean of the four F1s decides
(``flakeseg.models.classical.optics_layers``'s docstring). No test image and no zero-label route.

Run: ``FLAKESEG_DATA=... python benchmarks/optics_selection.py [level_share=0.7 edge_share=0.3 ...]``
(each argument an ``OpticsLayers`` option; none: its defaults).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

DATASETS = ("mos2", "graphene")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("options", nargs="*", metavar="KEY=VALUE", help="OpticsLayers options (numbers)")
    args = parser.parse_args(argv)
    if not os.environ.get("FLAKESEG_DATA"):
        parser.error("set FLAKESEG_DATA to the data root")
    options = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{item}: give KEY=VALUE, e.g. level_share=0.7")
        options[key] = float(value)
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.contrasts import measure_labelled
    from flakeseg.evaluation.flake_scores import FlakeScores
    from flakeseg.models.classical.optics_layers import OpticsLayers
    from flakeseg.optics.calibration import calibrate
    from flakeseg.utils.config_files import compose_data_config

    f1s = []
    print("| data | monolayer P / R / F1 | bilayer P / R / F1 |")
    print("|---|---|---|")
    for name in DATASETS:
        cfg = compose_data_config(name, [])
        train = list(cfg["split"]["train"])
        setup = calibrate(np.empty((0, 3)), cfg["material"], measure_labelled(cfg, train))
        data = load_dataset({**cfg, **AS_STORED}, ids=train, progress=False)
        model = OpticsLayers(
            len(data.scheme.names), material=cfg["material"], setup=setup.to_dict(), **options
        )
        flake = [i for i, n in enumerate(data.scheme.names) if n in ("monolayer", "bilayer")]
        scores = FlakeScores(list(data.scheme.names), flake, min_area=100, min_confidence=0.5)
        for image, mask in zip(data.images, data.masks, strict=True):
            scores.update(model.predict_proba(image), mask)
        result = scores.compute("sel")
        cells = []
        for layer in ("monolayer", "bilayer"):
            values = [result[f"sel/flake_{k}_{layer}_device"] for k in ("precision", "recall", "f1")]
            f1s.append(values[2])
            cells.append(" / ".join(f"{v:.2f}" for v in values))
        print(f"| {name} training ({len(train)}) | " + " | ".join(cells) + " |", flush=True)
    print(f"options {options or 'defaults'}: mean device-sized flake F1 {np.mean(f1s):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
