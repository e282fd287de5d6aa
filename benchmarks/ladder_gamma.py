"""The zero-label gamma fit (``flakeseg.optics.ladder``) against what each gamma would score.

For each data set (MoS2, graphene), with and without the flat field estimated from its own images
(``flakeseg calibrate IMAGES --material M [--flatfield-from-images]``, no label of any material), every
candidate gamma: the ladder's mean log-likelihood per pixel (what the fit maximises, labels unused)
and, for reading only, the zero-label optics' device-sized flake F1 over every image of the data set
at that gamma (labels used to score, never to choose). The gamma the fit keeps is marked; it must
beat the setup's default (2.2) in 95 % of bootstrap resamples of the images to replace it.

Run: ``FLAKESEG_DATA=... python benchmarks/ladder_gamma.py --out docs/results/optics_ladder``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

DATASETS = ("mos2", "graphene")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for README.md, ladder.json, ladder.png"
    )
    args = parser.parse_args(argv)
    if not os.environ.get("FLAKESEG_DATA"):
        parser.error("set FLAKESEG_DATA to the data root")
    import dataclasses

    from flakeseg.cli.calibrate import SETUP_FIELD_SIDE
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.evaluation.flake_scores import FlakeScores
    from flakeseg.models.classical.optics_layers import OpticsLayers
    from flakeseg.optics.calibration import GAMMAS, calibrate
    from flakeseg.optics.ladder import fit_gamma
    from flakeseg.optics.substrate import (
        apply_flat_field,
        compact_flat_field,
        estimate_flat_field,
        expand_flat_field,
        substrate_colour,
    )
    from flakeseg.utils.config_files import compose_data_config

    started = time.perf_counter()
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "routes": []}
    for name in DATASETS:
        cfg = {**compose_data_config(name, []), **AS_STORED}
        data = load_dataset(cfg, progress=False)
        material = cfg["material"]
        field = estimate_flat_field(data.images, names=data.ids)
        kept = expand_flat_field(compact_flat_field(field, SETUP_FIELD_SIDE))
        routes = {
            "images as they are": (data.images, data.images),
            "divided by their own flat field": (
                [apply_flat_field(image, field) for image in data.images],
                [apply_flat_field(image, kept, i) for i, image in zip(data.ids, data.images, strict=True)],
            ),
        }
        for route, (fitted_on, screened) in routes.items():
            colours = np.stack([substrate_colour(im, np.ones(im.shape[:2], bool)) for im in fitted_on])
            default = calibrate(colours, material)
            fit_started = time.perf_counter()
            fitted = fit_gamma(default, fitted_on, material)
            fit_seconds = time.perf_counter() - fit_started
            rows = []
            for gamma in GAMMAS:
                oxide = calibrate(colours, material, gammas=(gamma,)).oxide_nm
                setup = dataclasses.replace(default, gamma=float(gamma), oxide_nm=oxide)
                model = OpticsLayers(3, material=material, setup=setup.to_dict())
                scores = FlakeScores(list(data.scheme.names), [1, 2], min_area=100, min_confidence=0.5)
                for image, mask in zip(screened, data.masks, strict=True):
                    scores.update(model.predict_proba(image), mask)
                result = scores.compute("z")
                rows.append(
                    {
                        "gamma": float(gamma),
                        "log_likelihood": fitted.fitted_on["ladder_log_likelihood"][f"{gamma:g}"],
                        "f1_monolayer_device": round(result["z/flake_f1_monolayer_device"], 3),
                        "f1_bilayer_device": round(result["z/flake_f1_bilayer_device"], 3),
                    }
                )
            report["routes"].append(
                {
                    "data": name,
                    "route": route,
                    "images": len(data.images),
                    "fitted_gamma": fitted.gamma,
                    "bootstrap_share": fitted.fitted_on["ladder_bootstrap_share"],
                    "fit_seconds": round(fit_seconds, 1),
                    "gammas": rows,
                }
            )
            print(name, route, fitted.gamma, f"{fit_seconds:.1f} s", flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ladder.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "ladder.png")
    table = [
        "| data | images | fitted gamma (bootstrap share over 2.2) | fit s | "
        + " | ".join(f"{g:g}" for g in GAMMAS)
        + " |",
        "|---|---|---|---|" + "---|" * len(GAMMAS),
    ]
    for entry in report["routes"]:
        cells = []
        for row in entry["gammas"]:
            f1 = f"{row['f1_monolayer_device']:.2f} / {row['f1_bilayer_device']:.2f}"
            cell = f"{row['log_likelihood']:.3f}: {f1}"
            cells.append(f"**{cell}**" if row["gamma"] == entry["fitted_gamma"] else cell)
        table.append(
            f"| {entry['data']}, {entry['route']} | {entry['images']} | {entry['fitted_gamma']:g} "
            f"({entry['bootstrap_share']:.2f}) | {entry['fit_seconds']:.0f} | " + " | ".join(cells) + " |"
        )
    (args.out / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        2, len(report["routes"]), figsize=(3.2 * len(report["routes"]), 5.2), sharex=True
    )
    for column, entry in enumerate(report["routes"]):
        gammas = [row["gamma"] for row in entry["gammas"]]
        top, bottom = axes[0, column], axes[1, column]
        top.plot(gammas, [row["log_likelihood"] for row in entry["gammas"]], "o-", color="black")
        top.axvline(entry["fitted_gamma"], color="tab:red", lw=1)
        top.set_title(f"{entry['data']}, {entry['route']}", fontsize=8)
        bottom.plot(gammas, [row["f1_monolayer_device"] for row in entry["gammas"]], "o-", label="monolayer")
        bottom.plot(gammas, [row["f1_bilayer_device"] for row in entry["gammas"]], "s-", label="bilayer")
        bottom.axvline(entry["fitted_gamma"], color="tab:red", lw=1)
        bottom.set_ylim(0, 1)
        bottom.set_xlabel("gamma")
    axes[0, 0].set_ylabel("ladder log-likelihood per pixel\n(no labels: what the fit maximises)", fontsize=8)
    axes[1, 0].set_ylabel("zero-label flake F1, device-sized\n(labels: for reading only)", fontsize=8)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle("flakeseg.optics.ladder: the gamma fitted on the flakes' colours (red line)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
