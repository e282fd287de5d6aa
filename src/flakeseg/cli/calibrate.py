"""``flakeseg calibrate``: fit a microscope's setup (oxide thickness, camera, tone curve) from its
images, and write it as a small YAML a lab keeps per microscope and objective.

Unlabelled images fix the oxide thickness (from the bare-substrate colour; each image's densest colour
is taken as its substrate). Name the crystal on them (--material) and the tone curve (gamma) is fitted
too, with zero labels: the gamma under which the flakes' colours sit best on the optics' ladder of
1, 2, 3... layers (flakeseg.optics.ladder; on a microscope that vignettes, give the flat field too,
see below: on the paper's graphene images it fitted 2.6 with it, 3.5 without). The camera's channel
sensitivities need one labelled material on that microscope (--data: a data config whose masks label
monolayers and bilayers, its material named by the config's `material` key or --material). How it
is fitted: flakeseg.optics.calibration; how well it predicts another material: docs/results/optics/.

A flat field (the objective's uneven lighting, vignetting) goes into the setup too, and `predict
--setup` divides every image by it: from a blank image (--blank: bare substrate or a mirror, same
objective and camera) or, for labs without one, estimated from the images themselves
(--flatfield-from-images: the median of their substrate after masking flakes, at least 3 images).

Examples:
    flakeseg calibrate --data mos2 --out setup_nikon100x.yaml
    flakeseg calibrate new_images/ --data mos2 --split train --out setup.yaml
    flakeseg calibrate new_images/ --out oxide_only.yaml
    flakeseg calibrate new_images/ --material graphene --flatfield-from-images --out setup.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from flakeseg.errors import ConfigError, DataError, FlakesegError
from flakeseg.utils.command_line import SET_HELP, ArgumentParser, data_overrides

SPLITS = ("all", "train", "test")
#: longest side of the flat field a setup file keeps (a vignette is smooth; the file stays small)
SETUP_FIELD_SIDE = 32


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="flakeseg calibrate",
        description=__doc__.split("\n\n", 1)[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "images", nargs="*", help="unlabelled images, folders or glob patterns of the microscope"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="a labelled data config: a name (mos2, graphene, an imported one) or the path of its .yaml",
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="all", help="which of --data's images to fit on (default all)"
    )
    parser.add_argument(
        "--material",
        default=None,
        help="the crystal: with --data the labelled one (default: the config's material); without "
        "--data the one on the images, whose flakes' colours then fit the tone curve (zero labels)",
    )
    parser.add_argument("--recursive", action="store_true", help="also the images in sub-folders")
    parser.add_argument(
        "--oxide-range",
        nargs=3,
        type=float,
        metavar=("FROM", "TO", "STEP"),
        default=None,
        help="oxide thicknesses searched, nm (default 50 350 2)",
    )
    field = parser.add_mutually_exclusive_group()
    field.add_argument(
        "--blank", type=Path, default=None, help="a blank image: the setup keeps its flat field"
    )
    field.add_argument(
        "--flatfield-from-images",
        action="store_true",
        help="estimate the flat field from the images (at least 3, one camera and binning)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the setup file to write (YAML)")
    parser.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE", help=SET_HELP)
    args = parser.parse_args(argv)
    if not args.images and not args.data:
        parser.error("give images to fit the oxide on, --data with labels, or both")
    if args.out.suffix.lower() not in (".yaml", ".yml"):
        parser.error(f"--out {args.out}: a setup is a .yaml file")
    if args.out.is_dir():
        parser.error(f"--out {args.out}: is a folder; name the setup file, e.g. {args.out / 'setup.yaml'}")
    if args.set and not args.data:
        parser.error("--set changes --data's config: give --data")
    if args.flatfield_from_images and not args.images:
        parser.error("--flatfield-from-images: give the images to estimate it from")
    try:
        import numpy as np
        from rich.progress import Progress

        from flakeseg.data.io import image_problem, read_image
        from flakeseg.optics.calibration import OXIDE_RANGE_NM, calibrate, contrast_errors
        from flakeseg.optics.ladder import fit_gamma
        from flakeseg.optics.materials import material as find_material
        from flakeseg.optics.substrate import (
            apply_flat_field,
            compact_flat_field,
            estimate_flat_field,
            flat_field_from_blank,
            substrate_colour,
        )
        from flakeseg.screening.inputs import collect_inputs

        oxide_range = tuple(args.oxide_range) if args.oxide_range else OXIDE_RANGE_NM
        if args.material:
            find_material(args.material)  # an unknown material is one line before any image is read
        files, problems = collect_inputs(args.images, recursive=args.recursive)
        if args.blank is not None and (problem := image_problem(args.blank)) is not None:
            problems.insert(0, f"--blank {problem}")
        problems += [problem for problem in map(image_problem, files) if problem]
        if problems:
            raise DataError(problems[0])
        images = [read_image(path) for path in files]
        field = None
        if args.blank is not None:
            field = flat_field_from_blank(read_image(args.blank))
        elif args.flatfield_from_images:
            field = estimate_flat_field(images, names=[str(path) for path in files])
        if field is not None:  # the substrate colours the oxide is fitted on, as if evenly lit
            images = [
                apply_flat_field(image, field, str(path)) for image, path in zip(images, files, strict=True)
            ]
        substrates = [substrate_colour(image, np.ones(image.shape[:2], bool)) for image in images]
        labelled, material = [], args.material
        if args.data:
            from flakeseg.data.catalog import discover_pairs
            from flakeseg.data.contrasts import measure_labelled
            from flakeseg.utils.config_files import compose_data_config

            data_cfg = compose_data_config(args.data, data_overrides(args.set))
            material = material or data_cfg.get("material")
            if not material:
                raise ConfigError(f"--data {args.data}: the config names no material; give --material")
            find_material(material)  # an unknown material is one line before any image is read
            ids = None if args.split == "all" else list(data_cfg["split"][args.split])
            labelled = measure_labelled(data_cfg, ids, progress=sys.stderr.isatty())
            # an image given both ways is one image: its substrate comes with its labels
            pairs = discover_pairs(data_cfg)[0]
            chosen = {pair.image_path.resolve() for pair in pairs if ids is None or pair.id in ids}
            kept = [path.resolve() not in chosen for path in files]
            substrates = [colour for colour, keep in zip(substrates, kept, strict=True) if keep]
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("fitting camera x tone curve", total=None)
            setup = calibrate(
                np.array(substrates, dtype=float).reshape(-1, 3),
                material,
                labelled,
                oxide_range=oxide_range,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            if material and not args.data:  # zero labels: the tone curve from the flakes' own colours
                task = bar.add_task(f"fitting the tone curve on the {material} flakes' colours", total=None)
                setup = fit_gamma(
                    setup,
                    images,
                    material,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        if field is not None:
            setup = dataclasses.replace(setup, flat_field=compact_flat_field(field, SETUP_FIELD_SIDE))
        setup.save(args.out)
    except FlakesegError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1

    fitted = setup.fitted_on
    print(
        f"oxide {setup.oxide_nm:g} nm, camera {setup.camera}, gamma {setup.gamma:g}, "
        f"shoulder {setup.shoulder if setup.shoulder is not None else 'none'} "
        f"({fitted['images']} images, {fitted['labelled_images']} labelled)"
    )
    if "ladder_log_likelihood" in fitted:
        scores = fitted["ladder_log_likelihood"]
        others = ", ".join(f"{g}: {v:.3f}" for g, v in scores.items())
        images_used = fitted["ladder_images"]
        best = max(scores, key=scores.get)
        if scores.get(f"{setup.gamma:g}") == scores[best]:  # the kept gamma scores highest (ties too)
            why = f"the {material} layer ladder fits the flakes of {images_used} images best"
        else:  # the best-scoring gamma did not win often enough over resamples of the images
            share = fitted.get("ladder_bootstrap_share", 0.0)
            why = (
                f"kept: gamma {best} scores higher on the flakes of {images_used} images, but in only "
                f"{100 * share:.0f} % of resamples of them"
            )
        print(f"gamma {setup.gamma:g}: {why} (mean log-likelihood per pixel by gamma: {others})")
    elif not labelled:
        print("  (tone curve: the default; give --material CRYSTAL to fit it on the flakes' colours)")
    if labelled:
        errors = contrast_errors(setup, material, [m for m in labelled if m.layers])
        error = float(np.nanmean(np.abs(errors)))
        print(f"{material}: mean |predicted - measured| contrast {error:.3f} (R, G, B pooled)")
        for count in sorted({n for m in labelled for n in m.layers}):
            images = [m for m in labelled if count in m.layers]
            predicted = setup.contrast(material, count, np.stack([m.substrate for m in images]))
            measured = np.stack([m.layers[count] for m in images])
            layers = f"{count} layer{'s' if count > 1 else ''}"
            print(
                f"  {layers}: predicted {_fmt(np.nanmedian(predicted, axis=0))}, "
                f"measured {_fmt(np.nanmedian(measured, axis=0))} (median of {len(images)} images)"
            )
    if setup.flat_field is not None:
        grid = np.asarray(setup.flat_field["field"])
        source = args.blank if args.blank is not None else f"{len(files)} images"
        print(f"flat field from {source}: {grid.min():.2f} to {grid.max():.2f} of the median brightness")
    print(f"-> {args.out}")
    crystal = material or "CRYSTAL"
    print(f"screen with it: flakeseg predict --material {crystal} --setup {args.out} IMAGES --out DIR")
    if len(substrates) > 1:  # one oxide for the folder; chips from several batches differ (docs/optics.md)
        print("  (chips from several oxide batches: add --oxide fit, each image's oxide fitted within 40 nm)")
    return 0


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:+.3f}" for v in values) + ")"
