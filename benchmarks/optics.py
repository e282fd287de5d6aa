"""Optics validation: predicted against measured flake contrast, within a material and across materials.

For each data set (MoS2, graphene), a setup is calibrated (``flakeseg.optics.calibration.calibrate``)
on its training images and labels only. Each setup then predicts the monolayer and bilayer contrast
of the test images of its own material and, the test that matters, of the *other* material, with zero
labels of it: the camera and tone curve come from the source material's labels; the oxide thickness
either is refitted on the target's own substrate colours (every image of the target data set, the
densest colour of the whole image, no labels: what ``flakeseg calibrate IMAGES`` does on a new folder)
or is carried over from the source (the paper states 300 nm for both), or the oxide and the gamma are
both refitted on the target's images, the gamma on its flakes' colours
(:func:`flakeseg.optics.ladder.fit_gamma`; still no label of the target).

Measured, per test image: the median ``I / b - 1`` over each layer class's labelled pixels against
the densest colour of the substrate pixels, channels whose substrate is clipped left out; predicted,
per test image from its own substrate colour; the table shows medians over the test images. Baseline:
the source material's measured median contrast (its training images), which the physics must beat.
Also shown: the uncalibrated model (Nikon D5100, gamma 2.2, 300 nm).

Targets (optics issue): graphene from the MoS2 setup within 25 % in green for monolayer and bilayer,
the sign right in every channel whose measured |contrast| > 0.02, closer than the baseline; MoS2 from
the graphene setup within 35 % in red.

Run: ``FLAKESEG_DATA=... python benchmarks/optics.py --out docs/results/optics`` (``make optics``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from flakeseg.data.contrasts import measure_labelled
from flakeseg.data.io import read_image
from flakeseg.optics.calibration import Setup, calibrate, fit_oxide
from flakeseg.optics.camera import Tone
from flakeseg.optics.ladder import fit_gamma
from flakeseg.optics.substrate import substrate_colour
from flakeseg.utils.config_files import compose_data_config

DATASETS = ("mos2", "graphene")
LAYERS = {1: "monolayer", 2: "bilayer"}
CHANNELS = "RGB"
#: the channel the targets are set in, per target material
DOMINANT = {"graphene": 1, "mos2": 0}
TOLERANCE = {"graphene": 0.25, "mos2": 0.35}
SIGN_FLOOR = 0.02
NAIVE = Setup(oxide_nm=300.0)
#: the zero-label route that uses no label of any material: ``flakeseg calibrate IMAGES``
NO_LABELS = "none"


def folder_images(cfg: dict) -> list[np.ndarray]:
    """Every image of a data set as stored, labels unused (a new folder's view)."""
    from flakeseg.data.catalog import discover_pairs

    pairs, _ = discover_pairs(cfg)
    return [read_image(pair.image_path) for pair in pairs]


def densest_colours(images) -> np.ndarray:
    """Each image's densest colour (``N x 3``): what ``flakeseg calibrate IMAGES`` fits the oxide on."""
    return np.stack([substrate_colour(image, np.ones(image.shape[:2], bool)) for image in images])


def medians(setup: Setup, material: str, measured: list, count: int) -> tuple[np.ndarray, np.ndarray, list]:
    images = [m for m in measured if count in m.layers]
    predicted = setup.contrast(material, count, np.stack([m.substrate for m in images]))
    values = np.stack([m.layers[count] for m in images])
    return np.nanmedian(predicted, axis=0), np.nanmedian(values, axis=0), [predicted, values]


def fmt(values) -> str:
    return "(" + ", ".join("nan" if not np.isfinite(v) else f"{v:+.3f}" for v in values) + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for optics.md, optics.json, plots")
    args = parser.parse_args(argv)
    if not os.environ.get("FLAKESEG_DATA"):
        parser.error("set FLAKESEG_DATA to the data root")
    started = time.perf_counter()
    cfgs = {name: compose_data_config(name, []) for name in DATASETS}
    material = {name: cfgs[name]["material"] for name in DATASETS}
    train = {n: measure_labelled(cfgs[n], cfgs[n]["split"]["train"]) for n in DATASETS}
    test = {n: measure_labelled(cfgs[n], cfgs[n]["split"]["test"]) for n in DATASETS}
    images = {n: folder_images(cfgs[n]) for n in DATASETS}
    folder = {n: densest_colours(images[n]) for n in DATASETS}
    setups = {n: calibrate(np.empty((0, 3)), material[n], train[n]) for n in DATASETS}
    for name, setup in setups.items():
        print(f"{name}: {setup}", file=sys.stderr)

    rows, scatter, report = [], {}, {"setups": {n: s.to_dict() for n, s in setups.items()}, "predictions": []}
    # the other material's camera, this folder's oxide and gamma (zero labels of this material)
    cross_tuned: dict[tuple[str, str], Setup] = {}
    for source in DATASETS:
        for target in DATASETS:
            setup = setups[source]
            variants = {"calibrated on its own training labels": setup} if source == target else {}
            if source != target:
                refit = fit_oxide(folder[target], setup.camera, setup.tone())
                variants[f"oxide refitted on {target}'s substrate colours ({refit:g} nm)"] = (
                    dataclasses.replace(setup, oxide_nm=refit)
                )
                variants[f"oxide carried over ({setup.oxide_nm:g} nm)"] = setup
                tuned = cross_tuned[(source, target)] = fit_gamma(
                    dataclasses.replace(setup, oxide_nm=refit, substrates=tuple(map(tuple, folder[target]))),
                    images[target],
                    material[target],
                )
                variants[
                    f"oxide and gamma refitted on {target}'s images (gamma {tuned.gamma:g}: its flakes' "
                    f"ladder; {tuned.oxide_nm:g} nm)"
                ] = tuned
            if source == target:
                variants["uncalibrated: Nikon D5100, gamma 2.2, 300 nm"] = NAIVE
            for how, used in variants.items():
                for count, layer in LAYERS.items():
                    predicted, measured, per_image = medians(used, material[target], test[target], count)
                    baseline = np.nanmedian(
                        np.stack([m.layers[count] for m in train[source] if count in m.layers]), axis=0
                    )
                    channel = DOMINANT[target]
                    relative = abs(predicted[channel] - measured[channel]) / abs(measured[channel])
                    checked = np.isfinite(measured) & (np.abs(measured) > SIGN_FLOOR)
                    signs_ok = bool(np.all(np.sign(predicted[checked]) == np.sign(measured[checked])))
                    finite = np.isfinite(measured)
                    distance = float(np.mean(np.abs(predicted - measured)[finite]))
                    baseline_distance = float(np.mean(np.abs(baseline - measured)[finite]))
                    entry = {
                        "source": source,
                        "target": target,
                        "setup": how,
                        "oxide_nm": used.oxide_nm,
                        "layers": count,
                        "predicted": predicted.round(4).tolist(),
                        "measured": measured.round(4).tolist(),
                        "baseline": baseline.round(4).tolist() if source != target else None,
                        "relative_error_dominant": round(float(relative), 3),
                        "signs_ok": signs_ok,
                        "mean_abs_error": round(distance, 4),
                        "baseline_mean_abs_error": round(baseline_distance, 4) if source != target else None,
                    }
                    report["predictions"].append(entry)
                    if source != target and how.startswith("oxide refitted"):
                        scatter[(source, target, count)] = per_image
                    beats = "" if source == target else ("yes" if distance < baseline_distance else "no")
                    rows.append(
                        f"| {source} | {target} | {how} | {layer} | {fmt(predicted)} | {fmt(measured)} | "
                        f"{fmt(baseline) if source != target else ''} | {CHANNELS[channel]} "
                        f"{100 * relative:.0f} % | {'yes' if signs_ok else 'no'} | {distance:.3f} | {beats} |"
                    )
    checks = []
    for source, target in (("mos2", "graphene"), ("graphene", "mos2")):
        for entry in report["predictions"]:
            if entry["source"] == source and entry["target"] == target:
                tolerance = TOLERANCE[target]
                met = entry["relative_error_dominant"] <= tolerance and (
                    target == "mos2"
                    or (entry["signs_ok"] and entry["mean_abs_error"] < entry["baseline_mean_abs_error"])
                )
                signs = "right" if entry["signs_ok"] else "wrong"
                beats = (
                    "beats" if entry["mean_abs_error"] < entry["baseline_mean_abs_error"] else "does not beat"
                )
                checks.append(
                    f"- {source} setup -> {target} {LAYERS[entry['layers']]}, {entry['setup']}: "
                    f"{CHANNELS[DOMINANT[target]]} off by {100 * entry['relative_error_dominant']:.0f} % "
                    f"(target <= {100 * tolerance:.0f} %), signs {signs}, {beats} the baseline: "
                    f"**{'met' if met else 'missed'}**"
                )
                entry["target_met"] = met
    label_free = {n: calibrate(folder[n], material[n]) for n in DATASETS}
    zero_rows, report["zero_labels"] = zero_label_screening(cfgs, material, setups, label_free, cross_tuned)
    drift_rows, report["setup_check"] = setup_check_rates(cfgs, material)
    unknown_rows, report["unknown_flakes"] = unknown_rates(cfgs)
    elapsed = time.perf_counter() - started
    table = "\n".join(
        [
            "| setup from | predicts | setup | layers | predicted (R, G, B) | measured, test | baseline | "
            "dominant off by | signs | mean abs error | beats baseline |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    setups_text = "\n".join(
        f"- **{n}** (from its {len(train[n])} training images and labels): oxide {s.oxide_nm:g} nm, camera "
        f"`{s.camera}`, gamma {s.gamma:g}, shoulder {s.shoulder if s.shoulder is not None else 'none'}; "
        f"mean |error| on its training contrasts {s.fitted_on['mean_abs_contrast_error']:.3f} "
        f"(relative {s.fitted_on['mean_relative_contrast_error']:.2f})"
        for n, s in setups.items()
    )
    print(setups_text + "\n\n" + table + "\n\n" + "\n".join(checks))
    if args.out is None:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    plots(args.out, setups, material, train, scatter)
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs"
    report["seconds"] = round(elapsed, 1)
    (args.out / "optics.json").write_text(json.dumps(report, indent=1) + "\n")
    page = [
        "# Optics: predicted against measured flake contrast",
        "",
        f"`make optics` (= `FLAKESEG_DATA=... python benchmarks/optics.py --out docs/results/optics`), "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, {elapsed:.0f} s. "
        "What is fitted, measured and predicted: the docstring of `benchmarks/optics.py`; the fit: "
        "`flakeseg.optics.calibration`. Contrast is I/b - 1 of the 8-bit values, median over the test "
        "images.",
        "",
        "## Setups (training images only)",
        "",
        setups_text,
        "",
        "## Targets",
        "",
        *checks,
        "",
        "## Every prediction",
        "",
        table,
        "",
        "## Zero labels: `flakeseg predict --material`",
        "",
        "Every image of each data set screened by the optics alone (`model=optics`, its defaults; the "
        "oxide fitted on each image's substrate colour within 40 nm of the setup's), scored like any model "
        "(flakes as `predict` lists them, >= 100 px and confidence >= 0.5; matched at IoU >= 0.5; "
        "device-sized: >= 600 px). Zero labels, two routes: the setup calibrated on the *other* material's "
        "training labels, and the setup `flakeseg calibrate IMAGES --material M` fits on the screened data "
        "set's own images with no label of any material (camera Nikon D5100, no shoulder; the oxide from "
        "the substrate colours, the gamma from the flakes' own colours: `flakeseg.optics.ladder`; beside "
        "it the default gamma 2.2 that `calibrate IMAGES` without `--material` keeps); each also on the "
        "images divided by the flat field estimated from the data set's own images (`flakeseg calibrate "
        "IMAGES --flatfield-from-images`, no label; the no-label setup then fitted on the divided images). "
        "The same-material rows (training images, own setup) "
        "are where the model's defaults were chosen. Beside them, the contrast GMM fitted on every "
        "training label (`make leaderboard`, CV, protocol paper).",
        "",
        "| screened | setup from | images | monolayer P / R / F1 (device) | bilayer P / R / F1 (device) | "
        "monolayer F1 (>= 100 px) | s per image |",
        "|---|---|---|---|---|---|---|",
        *zero_rows,
        "",
        "## The setup check of `predict`",
        "",
        "Each model's images checked against its shipped setup (`paper_mos2`, `paper_graphene`: the "
        "substrate colours of its training images; `flakeseg.optics.drift`, tolerance 0.05 in log "
        "chromaticity): the test images as they are and at another exposure (linear x0.8 and x1.2 "
        "through a gamma of 2.2, clipped at 255), every image re-rendered by the optics at 90 nm of "
        "oxide (labels kept; `drift.rerender`), and the other data set's images. Flagged one by one: images "
        "whose substrate colour is unlike every training image's; not checked: substrate clipped in two "
        "channels. As one folder: each case's images screened together, as `predict` judges a folder "
        "(`drift.check_folder`: all of them flagged when their flags are too many for images of the "
        "training setup, binomial chance below 0.01 at a 5 % flag rate; docs/results/folder_check_cpu).",
        "",
        "| model's setup | images | flagged one by one | not checked | flagged as one folder | target |",
        "|---|---|---|---|---|---|",
        *drift_rows,
        "",
        "## Flakes whose colour fits no layer class: `unknown`",
        "",
        "The shipped models on their test images, as `flakeseg predict --model NAME` lists flakes (the "
        "card's post-processing, else >= 100 px, confidence >= 0.5): a flake whose median contrast is "
        "more than 50 % off the contrast the shipped setup predicts for its class's layer count "
        "(`flakeseg.optics.drift.contrast_error`) takes the model's other layer class if its colour fits "
        "that within 50 % (moved), else it is `unknown` (`evaluation.flakes.colour_checked_flakes`, since "
        "2026-12-06; docs/results/unknown_cv). Target: at most 5 % of test-split flakes unknown. After each "
        "unknown or moved flake, the labels under most of its pixels (read after the fact, not used by the "
        "check): a flake the model lists where the labels hold no flake of its class is a model error the "
        "check caught.",
        "",
        "| model | test images | flakes | unknown | unknown flakes (image: area px, the model's class -> "
        "the labels under it) | moved (image: area px, the model's class -> the colour's, the labels "
        "under it) |",
        "|---|---|---|---|---|---|",
        *unknown_rows,
        "",
        "![substrate colour against oxide thickness](substrate_vs_oxide.png)",
        "",
        "![colour against layer count](layers.png)",
        "",
        "![cross-material: predicted against measured contrast per test image](cross_material.png)",
        "",
    ]
    (args.out / "optics.md").write_text("\n".join(page))
    return 0


def zero_label_screening(
    cfgs: dict, material: dict, setups: dict, label_free: dict, cross_tuned: dict
) -> tuple[list[str], list[dict]]:
    """Flake scores of the optics model on every image of each data set, with the other material's
    setup (zero labels of this one; as calibrated, and with the oxide and gamma refitted on this
    folder's images, ``cross_tuned``), with the setup ``flakeseg calibrate IMAGES`` fits on the data set's
    own images (``label_free``: the oxide, and with ``--material`` the gamma fitted on the flakes' own
    colours, :func:`flakeseg.optics.ladder.fit_gamma`; no label of any material; the default tone curve
    beside it), both again on the images divided by the flat field estimated from the data set's own
    images (``calibrate --flatfield-from-images``, no label) and, for reference, its own setup on its
    training images."""
    from flakeseg.cli.calibrate import SETUP_FIELD_SIDE
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.evaluation.flake_scores import FlakeScores
    from flakeseg.models.classical.optics_layers import OpticsLayers
    from flakeseg.optics.substrate import (
        apply_flat_field,
        compact_flat_field,
        estimate_flat_field,
        expand_flat_field,
    )

    rows, entries = [], []
    gmm = leaderboard_gmm()
    for name in DATASETS:
        cfg = {**cfgs[name], **AS_STORED}
        data = load_dataset(cfg, progress=False)
        other = next(n for n in DATASETS if n != name)
        # as `calibrate --flatfield-from-images` then `predict --setup`: the oxide is fitted on images
        # divided by the estimated field, the screened images are divided by the field the setup keeps
        field = estimate_flat_field(data.images, names=data.ids)
        divided = [apply_flat_field(image, field) for image in data.images]
        flat_default = calibrate(densest_colours(divided), material[name])
        kept = expand_flat_field(compact_flat_field(field, SETUP_FIELD_SIDE))
        flat = [
            apply_flat_field(image, kept, image_id)
            for image_id, image in zip(data.ids, data.images, strict=True)
        ]
        # as `calibrate IMAGES --material M` (the gamma from the flakes' colours): what a lab runs
        default = label_free[name]
        free = fit_gamma(default, data.images, material[name])
        flat_free = fit_gamma(flat_default, divided, material[name])
        # the other material's camera, the oxide and gamma of this folder (zero labels of it)
        cross = cross_tuned[(other, name)]
        divided_colours = densest_colours(divided)
        flat_cross = fit_gamma(
            dataclasses.replace(
                setups[other],
                oxide_nm=fit_oxide(divided_colours, setups[other].camera, setups[other].tone()),
                substrates=tuple(map(tuple, divided_colours)),
            ),
            divided,
            material[name],
        )
        # (setup from, setup, images scored, images, oxide fixed (None: fitted per image), what it is)
        routes = (
            (other, setups[other], data.ids, data.images, None, f"{other}'s labels (zero {name} labels)"),
            (other, cross, data.ids, data.images, None,
             f"{other}'s labels, oxide and gamma refitted on this folder (gamma {cross.gamma:g})"),
            (NO_LABELS, free, data.ids, data.images, None,
             f"no labels: its own images, gamma {free.gamma:g} from its flakes ({free.oxide_nm:g} nm)"),
            (NO_LABELS, default, data.ids, data.images, None,
             f"no labels, the default tone curve (gamma {default.gamma:g}, {default.oxide_nm:g} nm)"),
            (NO_LABELS, free, data.ids, data.images, free.oxide_nm,
             f"no labels, the folder's oxide fixed ({free.oxide_nm:g} nm: no `--oxide fit`)"),
            (other, setups[other], data.ids, flat, None, f"{other}'s labels, + the images' own flat field"),
            (other, flat_cross, data.ids, flat, None,
             f"{other}'s labels, + the flat field, oxide and gamma refitted (gamma {flat_cross.gamma:g})"),
            (NO_LABELS, flat_free, data.ids, flat, None,
             f"no labels, + the images' own flat field (gamma {flat_free.gamma:g} from its flakes, "
             f"{flat_free.oxide_nm:g} nm)"),
            (NO_LABELS, flat_default, data.ids, flat, None,
             f"no labels, + the flat field, the default tone curve (gamma {flat_default.gamma:g})"),
            (name, setups[name], list(cfgs[name]["split"]["train"]), data.images, None, f"{name}'s labels"),
        )  # fmt: skip
        for setup_from, setup, ids, images, oxide_nm, source in routes:
            model = OpticsLayers(
                len(data.scheme.names), material=material[name], setup=setup.to_dict(), oxide_nm=oxide_nm
            )
            flake = [i for i, n in enumerate(data.scheme.names) if n in LAYERS.values()]
            scores = FlakeScores(list(data.scheme.names), flake, min_area=100, min_confidence=0.5)
            started = time.perf_counter()
            chosen = set(ids)
            count = 0
            for image_id, image, mask in zip(data.ids, images, data.masks, strict=True):
                if image_id in chosen:
                    scores.update(model.predict_proba(image), mask)
                    count += 1
            seconds = (time.perf_counter() - started) / max(count, 1)
            result = scores.compute("zero")
            cell = {
                layer: tuple(result[f"zero/flake_{k}_{layer}_device"] for k in ("precision", "recall", "f1"))
                for layer in LAYERS.values()
            }
            what = "training" if setup_from == name else "all"
            rows.append(
                f"| {name} | {source} | {what} ({count}) | "
                + " | ".join("{:.2f} / {:.2f} / {:.2f}".format(*cell[layer]) for layer in LAYERS.values())
                + f" | {result['zero/flake_f1_monolayer']:.2f} | {seconds:.2f} |"
            )
            entries.append(
                {
                    "screened": name,
                    "setup_from": setup_from,
                    "flat_field": images is flat,
                    "gamma": setup.gamma,
                    "gamma_from_flakes": "ladder_log_likelihood" in setup.fitted_on,
                    "ladder_log_likelihood": setup.fitted_on.get("ladder_log_likelihood"),
                    "ladder_bootstrap_share": setup.fitted_on.get("ladder_bootstrap_share"),
                    "oxide_fixed_nm": oxide_nm,
                    "images": what,
                    "count": count,
                    "seconds_per_image": round(seconds, 3),
                    **{k.removeprefix("zero/"): v for k, v in result.items() if "_iou25" not in k},
                }
            )
        if gmm.get(name):
            mono, bi = gmm[name]
            rows.append(
                f"| {name} | contrast GMM, every training label (CV) | training | - / - / {mono:.2f} | "
                f"- / - / {bi:.2f} | | |"
            )
    return rows, entries


def setup_check_rates(cfgs: dict, material: dict) -> tuple[list[str], list[dict]]:
    """How often the setup check flags images it should pass (test images, other exposures) and
    images it should flag (another oxide, another material's microscope)."""
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.contrasts import substrate_masks
    from flakeseg.optics.calibration import shipped_setup
    from flakeseg.optics.drift import SetupCheck, check_folder, rerender
    from flakeseg.optics.substrate import estimate_background

    data = {}
    for name in DATASETS:
        data[name] = load_dataset({**cfgs[name], **AS_STORED}, progress=False)
    rows, entries = [], []
    for name in DATASETS:
        setup = shipped_setup(f"paper_{name}")
        check = SetupCheck(setup.substrates)
        d = data[name]
        test = set(cfgs[name]["split"]["test"])
        bare = substrate_masks(d)

        def exposed(image: np.ndarray, gain: float) -> np.ndarray:
            linear = (image.astype(np.float64) / 255.0) ** 2.2 * gain
            return np.clip(np.round(255.0 * linear ** (1 / 2.2)), 0, 255).astype(np.uint8)

        def layers(mask: np.ndarray, substrate: np.ndarray) -> np.ndarray:
            out = np.where(mask > 0, mask.astype(np.int64), -1)
            out[substrate] = 0
            return out

        thin = dataclasses.replace(setup, oxide_nm=90.0)
        cases = {
            "test images": (
                [im for i, im in zip(d.ids, d.images, strict=True) if i in test],
                "pass: at most 1 flag over both",
            ),
            "test images, exposure x0.8": (
                [exposed(im, 0.8) for i, im in zip(d.ids, d.images, strict=True) if i in test],
                "pass: at most 1 flag",
            ),
            "test images, exposure x1.2": (
                [exposed(im, 1.2) for i, im in zip(d.ids, d.images, strict=True) if i in test],
                "pass: at most 1 flag",
            ),
            "every image re-rendered at 90 nm oxide": (
                [
                    rerender(im, layers(m, b), material[name], setup, thin)
                    for im, m, b in zip(d.images, d.masks, bare, strict=True)
                ],
                "flag >= 90 %",
            ),
        }
        other = next(n for n in DATASETS if n != name)
        cases[f"every {other} image"] = (data[other].images, "flag (the other microscope)")
        for case, (images, target) in cases.items():
            verdicts = [check(estimate_background(im)) for im in images]
            flagged = sum(not v.setup_ok for v in verdicts)
            unchecked = sum(not v.checked for v in verdicts)
            folder = sum(not v.setup_ok for v in check_folder(verdicts)[0])
            count = len(images)
            rows.append(f"| {name} | {case} | {flagged} of {count} | {unchecked} | {folder} | {target} |")
            entries.append({"setup": f"paper_{name}", "images": case, "count": count, "flagged": flagged,
                            "not_checked": unchecked, "flagged_as_folder": folder})  # fmt: skip
    return rows, entries


def labels_under(labels: np.ndarray, names) -> str:
    """The class most of ``labels`` hold, and its share (``IGNORE_INDEX`` and the like left out)."""
    counts = np.bincount(labels[labels < len(names)].astype(np.int64), minlength=len(names))
    return f"{names[int(counts.argmax())]} {counts.max() / max(counts.sum(), 1):.0%}"


def unknown_rates(cfgs: dict) -> tuple[list[str], list[dict]]:
    """How many of the shipped models' test-split flakes the optics calls ``unknown``."""
    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.evaluation.flakes import (
        UNKNOWN,
        colour_checked_flakes,
        find_flakes,
        substrate_beside_flakes,
    )
    from flakeseg.evaluation.postprocess import Postprocess
    from flakeseg.inference.predictor import class_indices, load_predictor
    from flakeseg.inference.shipped import resolve_model
    from flakeseg.optics.calibration import shipped_setup

    rows, entries = [], []
    for name in DATASETS:
        predictor = load_predictor(resolve_model(name))
        card = predictor.card
        post = Postprocess.from_card(card.postprocess)
        setup = shipped_setup(f"paper_{name}")
        test = list(cfgs[name]["split"]["test"])
        data = load_dataset({**cfgs[name], **AS_STORED}, ids=test, progress=False)
        total, unknown, moved = 0, [], []
        for image_id, image, mask in zip(data.ids, data.images, data.masks, strict=True):
            probs = predictor.probabilities(image)
            ids, flakes = find_flakes(
                probs,
                card.class_names,
                class_indices(card, card.flake_classes),
                post.min_area,
                post.min_confidence,
            )
            substrate = substrate_beside_flakes(
                image, probs, card.class_names, class_indices(card, card.flake_classes)
            )
            named = colour_checked_flakes(
                image, ids, flakes, setup, cfgs[name]["material"], substrate, card.flake_classes
            )
            total += len(named)
            unknown += [
                f"{image_id}: {f.area_px} {old.class_name} -> "
                + labels_under(mask[ids == old.flake_id], data.scheme.names)
                for f, old in zip(named, flakes, strict=True)
                if f.class_name == UNKNOWN
            ]
            moved += [
                f"{image_id}: {f.area_px} {old.class_name} -> {f.class_name} (labels: "
                + labels_under(mask[ids == old.flake_id], data.scheme.names)
                + ")"
                for f, old in zip(named, flakes, strict=True)
                if f.class_name not in (UNKNOWN, old.class_name)
            ]
        share = len(unknown) / max(total, 1)
        rows.append(
            f"| {name} | {len(data.ids)} | {total} | {len(unknown)} ({100 * share:.0f} %) | "
            + "; ".join(unknown)
            + f" | {len(moved)}"
            + "".join(f"; {m}" if i else f": {m}" for i, m in enumerate(moved))
            + " |"
        )
        entries.append({"model": name, "flakes": total, "unknown": len(unknown), "which": unknown,
                        "moved": len(moved), "moved_which": moved})  # fmt: skip
    return rows, entries


def leaderboard_gmm() -> dict[str, tuple[float, float]]:
    """The fitted contrast GMM's CV device-sized flake F1 (monolayer, bilayer) from the committed
    leaderboard (protocol paper), where it is there."""
    path = Path(__file__).resolve().parents[1] / "docs" / "results" / "leaderboard_cpu" / "leaderboard.json"
    if not path.is_file():
        return {}
    board = json.loads(path.read_text())
    out = {}
    for name in DATASETS:
        row = board.get(name, {}).get("paper", {}).get("contrast_gmm", {})
        if "cv/flake_f1_monolayer_device" in row:
            out[name] = (row["cv/flake_f1_monolayer_device"], row["cv/flake_f1_bilayer_device"])
    return out


def plots(out: Path, setups: dict, material: dict, train: dict, scatter: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # substrate colour against oxide thickness: each setup's camera and tone, one exposure for all
    oxides = np.arange(0.0, 351.0, 2.0)
    fig, axes = plt.subplots(len(setups), 1, figsize=(8, 2.6 * len(setups)), sharex=True)
    for ax, (name, setup) in zip(np.atleast_1d(axes), setups.items(), strict=True):
        signals = np.stack([dataclasses.replace(setup, oxide_nm=o).linear(None, 0) for o in oxides])
        tone = Tone(gamma=setup.gamma, shoulder=setup.shoulder, exposure=0.9 / signals.max())
        colours = tone.encode(signals)
        for c, colour in enumerate(("tab:red", "tab:green", "tab:blue")):
            ax.plot(oxides, colours[:, c], color=colour)
        ax.imshow(
            colours[None],
            extent=(oxides[0], oxides[-1], -0.18, -0.04),
            aspect="auto",
            interpolation="nearest",
        )
        ax.axvline(setup.oxide_nm, color="k", ls="--", lw=1)
        ax.set_ylim(-0.2, 1.02)
        ax.set_ylabel("encoded value")
        ax.set_title(f"bare SiO2/Si through the {name} setup (fitted oxide {setup.oxide_nm:g} nm dashed)")
    np.atleast_1d(axes)[-1].set_xlabel("oxide thickness (nm)")
    fig.tight_layout()
    fig.savefig(out / "substrate_vs_oxide.png", dpi=110)
    plt.close(fig)

    # colour against layer count at each fitted setup, on the data set's median substrate colour
    counts = list(range(0, 9))
    fig, axes = plt.subplots(len(setups), 1, figsize=(8, 1.8 * len(setups)))
    for ax, (name, setup) in zip(np.atleast_1d(axes), setups.items(), strict=True):
        substrate = np.median([m.substrate for m in train[name]], axis=0)
        predicted = setup.colours(material[name], counts, substrate)[0] / 255.0
        measured = [substrate / 255.0]
        for count in (1, 2):
            values = [m.layers[count] for m in train[name] if count in m.layers]
            measured.append(np.clip(substrate * (1 + np.nanmedian(values, axis=0)), 0, 255) / 255.0)
        strip = np.ones((2, len(counts), 3))
        strip[0] = np.clip(predicted, 0, 1)
        strip[1, : len(measured)] = measured
        ax.imshow(strip, aspect="auto", interpolation="nearest")
        ax.set_yticks([0, 1], ["predicted", "measured"])
        ax.set_xticks(range(len(counts)), [str(c) for c in counts])
        ax.set_title(f"{material[name]} on the {name} setup: 0 (substrate) to {counts[-1]} layers")
    np.atleast_1d(axes)[-1].set_xlabel("layers")
    fig.tight_layout()
    fig.savefig(out / "layers.png", dpi=110)
    plt.close(fig)

    # cross-material scatter: every test image, every unclipped channel
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, (source, target) in zip(axes, (("mos2", "graphene"), ("graphene", "mos2")), strict=True):
        lo, hi = 0.0, 0.0
        for count, marker in ((1, "o"), (2, "s")):
            if (source, target, count) not in scatter:
                continue
            predicted, measured = scatter[(source, target, count)]
            for c, colour in enumerate(("tab:red", "tab:green", "tab:blue")):
                ax.scatter(measured[:, c], predicted[:, c], color=colour, marker=marker, s=18, alpha=0.7)
            lo = min(lo, np.nanmin(measured), np.nanmin(predicted))
            hi = max(hi, np.nanmax(measured), np.nanmax(predicted))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlabel(f"measured {target} contrast")
        ax.set_ylabel("predicted")
        ax.set_title(f"{target} from the {source} setup (o 1 layer, s 2)")
    fig.tight_layout()
    fig.savefig(out / "cross_material.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
