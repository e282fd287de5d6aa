"""Does an image look like it came from the microscope a model knows? The setup check of ``predict``.

A model learns the colours of its training images: one oxide, one lamp, one camera. The substrate's
colour carries all three, and its chromaticity (the ratios R/G and B/G) does not change with exposure:
a common gain scales every channel alike (with a power-law tone curve too). The check compares an
image's substrate chromaticity, ``log(R/G), log(B/G)``, with those of the images the setup was fitted
on (:attr:`~flakeseg.optics.calibration.Setup.substrates`): the image passes when one of them lies
within :data:`TOLERANCE`. Only ratios of unclipped channels are compared; a substrate clipped in two
channels (half the paper's graphene images) says nothing and passes as ``not checked``.

:data:`TOLERANCE` is the 95th percentile of the leave-one-out nearest-neighbour distances among the
training images of the two shipped setups (MoS2's and graphene's, pooled; 47 images with a usable
ratio; measured on the training split only), 0.046, rounded up.

:func:`rerender` shows a labelled image as another setup (another oxide thickness, another lamp) would:
what the check must catch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flakeseg.optics.calibration import CLIP, RELATIVE_FLOOR, Setup
from flakeseg.optics.camera import Tone
from flakeseg.optics.substrate import substrate_colour

__all__ = [
    "CONTRAST_TOLERANCE",
    "TOLERANCE",
    "SetupCheck",
    "contrast_error",
    "log_chroma",
    "rerender",
    "rerender_ratios",
]

#: a flake (or labelled region) is off its layer count when its contrast differs from the optics'
#: prediction by more than this share in the prediction's dominant channels: the optics' own error
#: across materials is 5-39 % (docs/results/optics/)
CONTRAST_TOLERANCE = 0.5
#: the largest log-chromaticity distance to the nearest training image that passes: the 95th percentile
#: (0.046) of the leave-one-out distances of the shipped setups' training images, rounded up
TOLERANCE = 0.05


def log_chroma(substrate: Sequence[float] | np.ndarray) -> np.ndarray:
    """``[log(R/G), log(B/G)]`` of a substrate colour (8-bit), NaN where either channel is clipped."""
    rgb = np.maximum(np.asarray(substrate, dtype=np.float64), 1.0)
    ratios = np.log(rgb[[0, 2]] / rgb[1])
    clipped = rgb >= CLIP
    return np.where(clipped[[0, 2]] | clipped[1], np.nan, ratios)


class SetupCheck:
    """The setup check against the substrate colours of a setup's images (8-bit, ``N x 3``)."""

    def __init__(self, substrates: Sequence[Sequence[float]], tolerance: float = TOLERANCE):
        self.reference = np.array([log_chroma(s) for s in substrates]).reshape(-1, 2)
        self.tolerance = float(tolerance)

    def __call__(self, substrate: Sequence[float] | np.ndarray) -> tuple[bool, str]:
        """``(setup_ok, reason)`` for an image whose substrate colour is ``substrate``."""
        point = log_chroma(substrate)
        usable = np.isfinite(point)
        colour = "(" + ", ".join(f"{v:.0f}" for v in np.asarray(substrate, float)) + ")"
        if usable.sum() == 0:
            return True, f"not checked: substrate {colour} is clipped (255) in two channels"
        comparable = self.reference[np.isfinite(self.reference[:, usable]).all(axis=1)][:, usable]
        if len(comparable) == 0:
            return True, f"not checked: no training image has the substrate channels of {colour} unclipped"
        distance = float(np.sqrt(((comparable - point[usable]) ** 2).sum(axis=1)).min())
        if distance <= self.tolerance:
            return (
                True,
                f"substrate {colour} like the training images' ({distance:.3f} <= {self.tolerance:g})",
            )
        return False, (
            f"substrate {colour} unlike every training image's ({distance:.3f} > {self.tolerance:g} in "
            "log chromaticity): another oxide, lamp or camera? its candidates may be wrong"
        )


def rerender(
    image: np.ndarray, layers: np.ndarray, material: str, source: Setup, target: Setup
) -> np.ndarray:
    """``image`` (uint8) as ``target`` would show it, ``source`` being the setup it was taken with.

    ``layers``: per pixel the layer count (0: bare substrate, n >= 1: n layers of ``material``, -1:
    anything else: thick flakes of unknown thickness, residue). The microscope's exposure and white
    balance stay: the gains that put the substrate where it is through ``source`` are applied to
    ``target``'s linear signals. Each pixel of n layers is multiplied, per channel, by the ratio of
    the colours the two setups predict for n layers (so texture and noise stay); pixels of ``-1``
    take the substrate's ratio (their true colour under ``target`` is unknown: documented, not
    modelled). Values clip at 255 as a camera's do.
    """
    ratios = rerender_ratios(
        substrate_colour(image, layers == 0), material, source, target, [int(c) for c in np.unique(layers)]
    )
    out = image.astype(np.float64)
    for count, ratio in ratios.items():
        out[layers == count] *= ratio
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def rerender_ratios(
    substrate: np.ndarray, material: str, source: Setup, target: Setup, counts: Sequence[int]
) -> dict[int, np.ndarray]:
    """Per layer count (-1: as the substrate), the per-channel factor :func:`rerender` multiplies the
    8-bit values of an image whose substrate colour is ``substrate`` (8-bit) by."""
    base = source.linear(None, 0)
    gains = source.tone().decode(np.minimum(np.asarray(substrate, float), 255.0) / 255.0) / np.maximum(
        base, 1e-12
    )

    def colour(setup: Setup, count: int) -> np.ndarray:
        tone = Tone(setup.tone().curve, setup.gamma, 1.0, True, setup.shoulder)
        return 255.0 * tone.encode(gains * setup.linear(material if count else None, count))

    ratios = {}
    for count in counts:
        known = max(int(count), 0)  # -1: as the substrate
        ratios[int(count)] = colour(target, known) / np.maximum(colour(source, known), 1e-6)
    return ratios


def contrast_error(
    setup: Setup, material: str, layers: int, contrast: np.ndarray, substrate: np.ndarray
) -> float:
    """How far a measured contrast (``I / b - 1``, NaN on unknown channels) is from the contrast
    ``setup`` predicts for ``layers`` layers of ``material`` on ``substrate``: the largest relative
    difference over the prediction's dominant channels (those with ``|prediction|`` at least half the
    largest, among the known ones); NaN when no channel is known."""
    expected = setup.contrast(material, layers, np.asarray(substrate, dtype=np.float64)[None])[0]
    known = np.isfinite(contrast) & np.isfinite(expected)
    if not known.any():
        return float("nan")
    size = np.where(known, np.abs(expected), 0.0)
    dominant = known & (size >= 0.5 * size.max())
    relative = np.abs(contrast[dominant] - expected[dominant]) / np.maximum(
        np.abs(expected[dominant]), RELATIVE_FLOOR
    )
    return float(relative.max())
