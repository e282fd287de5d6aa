"""Can one substrate colour tell another oxide from another lamp? What ``predict``'s translation sees.

For each test image of a data set, unshifted and under the robustness study's colour shifts (lamp,
gamma, noise, the optics' oxide re-render), the oxide fitted on the image's substrate colour within
40 nm of the data set's shipped setup (:func:`flakeseg.optics.calibration.image_setup`, what
:func:`flakeseg.optics.drift.translate_to_setup` maps from), how far the substrate's chromaticity
stays from that fit (the largest ``|log R/G|, |log B/G|`` difference; unclipped channels) and whether
the setup check flags the image. A shift the fit explains as well as the unshifted images' own
oxides is one the substrate colour cannot tell from an oxide change.

Run: ``FLAKESEG_DATA=... python benchmarks/oxide_or_lamp.py --data mos2 [--out F.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

#: (shift, strength) pairs of flakeseg.studies.robustness that move the substrate's colour
CASES = (
    ("none", "0"),
    ("oxide", "285"),
    ("oxide", "90"),
    ("white_balance", "3000"),
    ("white_balance", "6500"),
    ("gamma", "0.8"),
    ("noise", "5"),
)


def fit_residual(setup, substrate: np.ndarray) -> tuple[float, float]:
    """The oxide fitted on ``substrate`` (8-bit) within 40 nm of ``setup``'s, and the largest
    log-chromaticity difference between ``substrate`` and that oxide's substrate colour."""
    from flakeseg.optics.calibration import image_setup
    from flakeseg.optics.drift import log_chroma

    fitted = image_setup(setup, substrate)
    linear = fitted.linear(None, 0)
    tone = fitted.tone()
    # the fitted substrate at the exposure that gives the image's green: chromaticity is what counts
    gain = tone.decode(np.array([substrate[1] / 255.0]))[0] / linear[1]
    predicted = 255.0 * tone.encode(linear * gain)
    difference = np.abs(log_chroma(substrate) - log_chroma(predicted))
    # a substrate clipped in two channels has no chromaticity: nothing to compare
    return fitted.oxide_nm, float(np.nanmax(difference)) if np.isfinite(difference).any() else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="mos2", help="data set (mos2, graphene)")
    parser.add_argument("--out", type=Path, default=None, help="a JSON file for the per-image numbers")
    args = parser.parse_args(argv)
    if not os.environ.get("FLAKESEG_DATA"):
        parser.error("set FLAKESEG_DATA to the data root")

    from flakeseg.data.catalog import AS_STORED, load_dataset
    from flakeseg.data.contrasts import substrate_masks
    from flakeseg.optics.calibration import shipped_setup
    from flakeseg.optics.drift import SetupCheck
    from flakeseg.optics.substrate import estimate_background
    from flakeseg.studies.robustness import shift_image
    from flakeseg.utils.config_files import compose_data_config

    cfg = {**compose_data_config(args.data, []), **AS_STORED}
    data = load_dataset(cfg, progress=False)
    tests = data.subset(list(cfg["split"]["test"]))
    setup = shipped_setup(f"paper_{args.data}")
    context = {"setup": setup, "material": cfg["material"]}
    check = SetupCheck(setup.substrates)
    bare = dict(zip(data.ids, substrate_masks(data), strict=True))
    report = {"data": args.data, "setup_oxide_nm": setup.oxide_nm, "machine": platform.machine(), "cases": {}}
    print(f"{args.data}: setup oxide {setup.oxide_nm:g} nm; per case: fitted oxides (nm), residuals, flagged")
    for shift, strength in CASES:
        rows = []
        for seed, (image_id, image, mask) in enumerate(
            zip(tests.ids, tests.images, tests.masks, strict=True)
        ):
            layers = np.where(mask > 0, mask.astype(np.int64), -1)
            layers[bare[image_id]] = 0
            shown = (
                image
                if shift == "none"
                else shift_image(shift, float(strength), image, layers, context, seed)
            )
            substrate = estimate_background(shown).astype(np.float64)
            oxide, residual = fit_residual(setup, substrate)
            rows.append({"image": image_id, "oxide_nm": oxide, "residual": round(residual, 4),
                         "flagged": not check(substrate).setup_ok})  # fmt: skip
        report["cases"][f"{shift} {strength}"] = rows
        oxides = [r["oxide_nm"] for r in rows]
        residuals = [r["residual"] for r in rows if np.isfinite(r["residual"])]
        print(
            f"  {shift} {strength}: oxide {min(oxides):g}-{max(oxides):g}, residual "
            f"{min(residuals):.3f}-{max(residuals):.3f} (median {np.median(residuals):.3f}), "
            f"flagged {sum(r['flagged'] for r in rows)} of {len(rows)}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
