"""``flakeseg robustness``: how a model's flake scores hold up when the microscope changes.

The test split of a data set under controlled shifts, two strengths each, every strength outside what
the training augmentation samples:

- ``exposure`` x0.7, x1.4: linear signal (through a gamma of 2.2) scaled, clipped at 255;
- ``white_balance`` 3000 K, 6500 K: the lamp changed from the setup's (CIE A, 2856 K) with the camera's
  white balance kept: per-channel gains, the ratio of the bare substrate's signal under the two lamps
  through the setup's camera (``flakeseg.optics``; applied to every pixel alike, an approximation);
- ``gamma`` 0.8, 1.25: the tone curve's exponent changed, ``v' = v^(1/g)``;
- ``vignetting`` 15 %, 30 %: brightness falling off to the corners, ``1 - f r^2``;
- ``vignetting_flatfield`` 15 %, 30 %: the same, divided by a flat field estimated from a simulated
  blank image (uniform grey under that fall-off, noise sigma 2, smoothed): close to, not exactly, the
  field;
- ``vignetting_folder`` 15 %, 30 %: the same, divided by a flat field estimated from the shifted test
  images themselves, flakes and all, no blank (:func:`flakeseg.optics.substrate.estimate_flat_field`,
  what ``flakeseg calibrate --flatfield-from-images`` does for a lab without a blank image);
- ``defocus`` 1, 2 px: Gaussian blur; ``jpeg`` 50, 30: JPEG quality; ``noise`` 2, 5: Gaussian sensor
  noise in grey levels;
- ``magnification`` x0.7, x1.4: image and labels resized, the model not told; ``magnification_scaled``:
  the same with the matching ``--scale`` (the model sees its training magnification);
- ``oxide`` 90 nm, 285 nm: each image re-rendered by the optics on that oxide, labels kept
  (:func:`flakeseg.optics.drift.rerender` through the data set's shipped setup).

Scores per model, shift and strength: flake F1 of monolayer and bilayer (flakes >= 100 px, IoU >= 0.5,
the model card's post-processing), mean class accuracy (pooled pixels), ``drift_flagged``, the
share of images the setup check of ``predict`` flags one by one, and ``drift_flagged_folder``, as one
folder (:func:`flakeseg.optics.drift.check_folder`). Writes ``robustness.json``, ``robustness.md``
and ``robustness.png``.

Models: shipped names or checkpoint files, and ``contrast_gmm`` (fitted on the data set's training
split on the spot) and ``optics`` (zero labels, the other material's shipped setup). With
``--translate`` every network also runs as ``NAME+translate``: each image the setup check flags shown
first as the data set's setup would show it (:func:`flakeseg.optics.drift.translate_to_setup`). The
benchmark's oxide shift is rendered by the same optics, so that row grades the optics against itself.

Examples:
    flakeseg robustness mos2 contrast_gmm --data mos2 --out docs/results/robustness_cpu
    flakeseg robustness graphene --data graphene --shifts exposure,jpeg --out /tmp/r
    flakeseg robustness mos2 --data mos2 --translate --out docs/results/translate_cpu/mos2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flakeseg.utils.command_line import ArgumentParser

#: shift -> its two strengths (as written in robustness.json)
SHIFTS: dict[str, tuple[str, str]] = {
    "exposure": ("0.7", "1.4"),
    "white_balance": ("3000", "6500"),
    "gamma": ("0.8", "1.25"),
    "vignetting": ("0.15", "0.3"),
    "vignetting_flatfield": ("0.15", "0.3"),
    "vignetting_folder": ("0.15", "0.3"),
    "defocus": ("1", "2"),
    "jpeg": ("50", "30"),
    "noise": ("2", "5"),
    "magnification": ("0.7", "1.4"),
    "magnification_scaled": ("0.7", "1.4"),
    "oxide": ("90", "285"),
}


def shift_image(
    shift: str, strength: float, image: np.ndarray, layers: np.ndarray, context: dict[str, Any], seed: int = 0
) -> np.ndarray:
    """``image`` (uint8 RGB) under one shift; ``layers``: per pixel 0 substrate, n layers, -1 other
    (for ``oxide``); ``context``: the data set's ``setup`` and ``material``. Magnification is not an
    image shift here (it resizes the labels too: :func:`resize_pair`). The steps:
    :mod:`flakeseg.optics.shifts`, shared with training across simulated setups."""
    import cv2

    from flakeseg.optics import shifts

    if shift == "exposure":
        return shifts.scale_linear(image, strength)
    if shift == "white_balance":
        return shifts.scale_linear(image, shifts.lamp_gains(context["setup"], strength))
    if shift == "gamma":
        return shifts.regamma(image, strength)
    if shift in ("vignetting", "vignetting_flatfield"):
        field = shifts.falloff(image.shape, strength)
        out = shifts.decode(image) * field
        if shift == "vignetting_flatfield":
            rng = np.random.default_rng(seed)
            blank = np.clip(200.0 * field ** (1 / shifts.GAMMA) + rng.normal(0.0, 2.0, image.shape), 0, 255)
            estimate = cv2.GaussianBlur(blank.astype(np.float32), (0, 0), 8.0).astype(np.float64)
            estimate = (estimate / np.median(estimate.reshape(-1, 3), axis=0)) ** shifts.GAMMA
            out = out / np.maximum(estimate, 1e-3)
        return shifts.encode(out)
    if shift == "defocus":
        return cv2.GaussianBlur(image, (0, 0), strength)
    if shift == "jpeg":
        _, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(strength)])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()
    if shift == "noise":
        noisy = image + np.random.default_rng(seed).normal(0.0, strength, image.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    if shift == "oxide":
        import dataclasses

        from flakeseg.optics.drift import rerender

        setup = context["setup"]
        return rerender(
            image, layers, context["material"], setup, dataclasses.replace(setup, oxide_nm=strength)
        )
    raise ValueError(f"unknown shift {shift}")


def resize_pair(image: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    height, width = mask.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), cv2.resize(
        mask, size, interpolation=cv2.INTER_NEAREST
    )


def score(
    probabilities: Callable[[np.ndarray], np.ndarray],
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    flake: Sequence[int],
    min_area: int,
    min_confidence: float,
    check: Callable | None,
) -> dict[str, float]:
    from flakeseg.evaluation.flake_scores import FlakeScores
    from flakeseg.evaluation.metrics import confusion_matrix, present_class_accuracy
    from flakeseg.optics.drift import check_folder
    from flakeseg.optics.substrate import estimate_background

    scores = FlakeScores(class_names, flake, min_area, min_confidence, floors={"": 100}, thresholds={"": 0.5})
    confmat = np.zeros((len(class_names),) * 2, np.int64)
    verdicts = []
    for image, mask in pairs:
        probs = probabilities(image)
        scores.update(probs, mask)
        confmat += confusion_matrix(probs.argmax(axis=0), mask, len(class_names))
        if check is not None:
            verdicts.append(check(estimate_background(image)))

    def share(judged) -> float | None:
        if check is None:
            return None
        return round(sum(not v.setup_ok for v in judged) / max(len(pairs), 1), 4)

    result = scores.compute("r")
    return {
        **{
            f"flake_f1_{class_names[c]}": round(float(result[f"r/flake_f1_{class_names[c]}"]), 4)
            for c in flake
        },
        "mean_class_acc": round(present_class_accuracy(confmat), 4),
        "drift_flagged": share(verdicts),
        "drift_flagged_folder": share(check_folder(verdicts)[0]),  # the shift's images as one folder
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="flakeseg robustness",
        description=__doc__.split("\n\n", 1)[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:" + __doc__.split("Examples:", 1)[1],
    )
    parser.add_argument("models", nargs="+", help="shipped names, checkpoint files, contrast_gmm, optics")
    parser.add_argument("--data", required=True, help="data set whose test split is shifted (mos2, graphene)")
    parser.add_argument("--out", type=Path, required=True, help="folder for robustness.json, .md, .png")
    parser.add_argument(
        "--shifts", default=",".join(SHIFTS), help=f"comma-separated subset of: {', '.join(SHIFTS)}"
    )
    parser.add_argument(
        "--images", type=int, default=None, help="only the first N test images (a quick look)"
    )
    parser.add_argument(
        "--translate",
        action="store_true",
        help="also run each network as NAME+translate: images the setup check flags are first shown as "
        "the data set's setup would show them (optics, the oxide fitted on each image)",
    )
    args = parser.parse_args(argv)
    shifts = [s.strip() for s in args.shifts.split(",") if s.strip()]
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        parser.error(f"--shifts: unknown {', '.join(unknown)} (known: {', '.join(SHIFTS)})")
    if args.images is not None and args.images < 1:
        parser.error(f"--images: must be >= 1, got {args.images}")

    from flakeseg.errors import FlakesegError

    try:
        return run(args, shifts)
    except FlakesegError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1


def _models(
    names: Sequence[str], data_cfg: dict, data: Any, translate: Callable | None = None
) -> dict[str, tuple[Callable, Any]]:
    """name -> (make a predictor at a scale, its card); with ``translate``, every network again as
    ``NAME+translate``, its images passed through ``translate`` first."""
    from flakeseg.inference.predictor import ClassicalBackend, Predictor, load_predictor, optics_predictor
    from flakeseg.inference.shipped import resolve_model

    out = {}
    for name in names:
        if name == "contrast_gmm":
            from omegaconf import OmegaConf

            from flakeseg.inference.checkpoint import card_from_config
            from flakeseg.models import build_model
            from flakeseg.utils.config_files import CONFIG_DIR

            model_cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "contrast_gmm.yaml"))
            model = build_model(model_cfg, len(data.scheme.names))
            train = data.subset(data_cfg["split"]["train"])
            model.fit(train.images, train.masks, seed=0)  # every training label of the data set
            card = card_from_config({"data": data_cfg, "model": model_cfg})
            out[name] = (lambda scale, m=model, c=card: Predictor(ClassicalBackend(m), c, scale=scale), card)
        elif name == "optics":
            from flakeseg.optics.calibration import shipped_setup

            other = "paper_graphene" if data_cfg["name"] == "mos2" else "paper_mos2"
            # the other microscope's setup: its oxide refitted on each image, as in make optics
            made = optics_predictor(data_cfg["material"], shipped_setup(other), fit_oxide=True)
            out[name] = (lambda scale, p=made: _rescaled(p, scale), made.card)
        else:
            loaded = load_predictor(resolve_model(name))
            # a checkpoint file is reported by its file name (mos2_setup.ckpt -> mos2_setup)
            key = Path(name).stem if Path(name).suffix == ".ckpt" else name
            out[key] = (lambda scale, p=loaded: _rescaled(p, scale), loaded.card)
            if translate is not None:
                translated = load_predictor(resolve_model(name))
                translated.translate = translate
                out[f"{key}+translate"] = (lambda scale, p=translated: _rescaled(p, scale), translated.card)
    return out


def _rescaled(predictor: Any, scale: float) -> Any:
    predictor.scale = scale
    return predictor


def run(args: argparse.Namespace, shifts: Sequence[str]) -> int:
    from rich.progress import Progress

    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.contrasts import substrate_masks
    from flakeseg.evaluation.postprocess import Postprocess
    from flakeseg.inference.predictor import class_indices
    from flakeseg.optics.calibration import shipped_setup
    from flakeseg.optics.drift import SetupCheck
    from flakeseg.optics.substrate import apply_flat_field, estimate_flat_field
    from flakeseg.utils.config_files import compose_data_config

    started = time.perf_counter()
    data_cfg = {**compose_data_config(args.data, []), **AS_STORED}
    data = load_dataset(data_cfg, progress=False)
    test = list(data_cfg["split"]["test"])[: args.images]
    setup = shipped_setup(f"paper_{args.data}")
    context = {"setup": setup, "material": data_cfg["material"]}
    check = SetupCheck(setup.substrates)
    bare = dict(zip(data.ids, substrate_masks(data), strict=True))
    tests = data.subset(test)
    layers = []
    for image_id, mask in zip(tests.ids, tests.masks, strict=True):
        counts = np.where(mask > 0, mask.astype(np.int64), -1)
        counts[bare[image_id]] = 0
        layers.append(counts)
    translate = None
    if args.translate:
        import functools

        from flakeseg.optics.drift import translate_to_setup

        translate = functools.partial(translate_to_setup, material=data_cfg["material"], setup=setup)
    models = _models(args.models, data_cfg, data, translate)
    cases = [("none", "0")] + [(s, strength) for s in shifts for strength in SHIFTS[s]]
    results: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in models}
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("shifts x models", total=len(cases) * len(models))
        for shift, strength in cases:
            value = float(strength)
            if shift.startswith("magnification"):
                pairs = [resize_pair(im, m, value) for im, m in zip(tests.images, tests.masks, strict=True)]
            elif shift == "none":
                pairs = list(zip(tests.images, tests.masks, strict=True))
            elif shift == "vignetting_folder":
                shifted = [shift_image("vignetting", value, im, None, context) for im in tests.images]
                field = estimate_flat_field(shifted)
                pairs = [(apply_flat_field(im, field), m) for im, m in zip(shifted, tests.masks, strict=True)]
            else:
                pairs = [
                    (shift_image(shift, value, im, lay, context, seed=i), m)
                    for i, (im, m, lay) in enumerate(zip(tests.images, tests.masks, layers, strict=True))
                ]
            for name, (make, card) in models.items():
                predictor = make(1.0 / value if shift == "magnification_scaled" else 1.0)
                post = Postprocess.from_card(card.postprocess)
                flake = class_indices(card, card.flake_classes)
                results[name].setdefault(shift, {})[strength] = score(
                    predictor.probabilities,
                    pairs,
                    card.class_names,
                    flake,
                    post.min_area,
                    post.min_confidence,
                    check,
                )
                bar.advance(task)
    elapsed = time.perf_counter() - started
    write_report(args, results, len(test), elapsed)
    print(f"-> {args.out / 'robustness.md'}, robustness.json, robustness.png ({elapsed:.0f} s)")
    return 0


def write_report(args: argparse.Namespace, results: dict, images: int, elapsed: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flakeseg.utils.files import write_json_atomic, write_text_atomic

    args.out.mkdir(parents=True, exist_ok=True)
    command = (
        "flakeseg robustness "
        + " ".join(args.models)
        + f" --data {args.data}"
        + (" --translate" if getattr(args, "translate", False) else "")
        + f" --out {args.out}"
    )
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    write_json_atomic(args.out / "robustness.json", results)  # {model: {shift: {strength: scores}}}
    lines = [
        f"# Robustness: {args.data} test split under shifts of the microscope",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%d')}, {machine}, {images} test images, {elapsed:.0f} s). "
        "What each shift is: the docstring of `flakeseg.studies.robustness`. Flake F1: flakes >= 100 px, "
        "IoU >= 0.5; flagged: share of images the setup check of `predict` flags, one by one / as one "
        "folder (`drift.check_folder`).",
        "",
        "| model | shift | strength | monolayer F1 | bilayer F1 | mean class acc | flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_shift in results.items():
        for shift, by_strength in by_shift.items():
            for strength, row in by_strength.items():
                cells = [row.get("flake_f1_monolayer"), row.get("flake_f1_bilayer"), row["mean_class_acc"]]
                text = " | ".join("-" if v is None or v != v else f"{v:.3f}" for v in cells)
                flag = "-"
                if row["drift_flagged"] is not None:
                    flag = f"{100 * row['drift_flagged']:.0f} % / {100 * row['drift_flagged_folder']:.0f} %"
                lines.append(f"| {name} | {shift} | {strength} | {text} | {flag} |")
    lines += ["", "![monolayer flake F1 under each shift](robustness.png)", ""]
    write_text_atomic(args.out / "robustness.md", "\n".join(lines))
    shifts = [s for s in next(iter(results.values())) if s != "none"]
    columns = 4
    rows = (len(shifts) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for ax, shift in zip(axes.flat, shifts, strict=False):
        for name, by_shift in results.items():
            strengths = ["0", *by_shift[shift]]
            values = [by_shift["none"]["0"].get("flake_f1_monolayer")] + [
                by_shift[shift][s].get("flake_f1_monolayer") for s in by_shift[shift]
            ]
            ax.plot(
                range(len(strengths)), [np.nan if v is None else v for v in values], marker="o", label=name
            )
            ax.set_xticks(range(len(strengths)), ["none", *by_shift[shift]])
        ax.set_title(shift, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(shifts) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("monolayer flake F1")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "robustness.png", dpi=100)
    plt.close(fig)
