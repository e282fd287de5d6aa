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

One substrate colour cannot tell 90 nm of oxide from the paper's ~270 nm, nor an oxide from a lamp:
the paper's graphene training images, taken under lamps of several sessions, span as much
chromaticity as the oxide moves it. A folder can: :func:`check_folder` flags every image of a folder
whose flags are too many for images of the training setup, which the check flags about
:data:`OWN_FLAG_RATE` of the time (docs/results/folder_check_cpu).

:func:`rerender` shows a labelled image as another setup (another oxide thickness, another lamp) would:
what the check must catch. :func:`translate` does the same for an image without labels, each pixel's
layer count read from its colour; :func:`translate_to_setup` shows a trained network each flagged image
as its own microscope would have (``flakeseg robustness --translate`` measures it; not adopted:
docs/results/translate_cpu).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from flakeseg.optics.calibration import CLIP, RELATIVE_FLOOR, Setup, image_setup
from flakeseg.optics.camera import Tone
from flakeseg.optics.substrate import contrast_noise, estimate_background, substrate_colour

__all__ = [
    "CONTRAST_TOLERANCE",
    "FOLDER_SIGNIFICANCE",
    "OWN_FLAG_RATE",
    "TOLERANCE",
    "SetupCheck",
    "SetupVerdict",
    "check_folder",
    "contrast_error",
    "folder_chance",
    "log_chroma",
    "rerender",
    "rerender_ratios",
    "translate",
    "translate_to_setup",
]

#: a flake (or labelled region) is off its layer count when its contrast differs from the optics'
#: prediction by more than this share in the prediction's dominant channels: the optics' own error
#: across materials is 5-39 % (docs/results/optics/)
CONTRAST_TOLERANCE = 0.5
#: :func:`translate` reads a layer count from a pixel's colour up to this many layers
TRANSLATE_LAYERS = 6
#: the noise a pixel's contrast is allowed beyond the layer curve, in multiples of the image's own
#: contrast noise (the spread of its substrate pixels), before :func:`translate` fades to the substrate's
#: ratio
TRANSLATE_NOISE = 3.0
#: and at least this share of the monolayer's predicted contrast (the optics' own error is 5-39 %)
TRANSLATE_SHARE = 0.5
#: the largest log-chromaticity distance to the nearest training image that passes: the 95th percentile
#: (0.046) of the leave-one-out distances of the shipped setups' training images, rounded up
TOLERANCE = 0.05
#: the share of images of a setup's own microscope the check flags: :data:`TOLERANCE` is the 95th
#: percentile of the training images' leave-one-out distances
OWN_FLAG_RATE = 0.05
#: a folder is flagged as a whole when images of the training setup would give as many flags less often
#: than this (binomial, :data:`OWN_FLAG_RATE`)
FOLDER_SIGNIFICANCE = 0.01


class SetupVerdict(NamedTuple):
    """The setup check of one image: whether it passes, why, and whether its substrate could be
    compared at all (``checked`` false: clipped, it passes unjudged)."""

    setup_ok: bool
    reason: str
    checked: bool = True


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

    def __call__(self, substrate: Sequence[float] | np.ndarray) -> SetupVerdict:
        """The verdict on an image whose substrate colour is ``substrate``."""
        point = log_chroma(substrate)
        usable = np.isfinite(point)
        colour = "(" + ", ".join(f"{v:.0f}" for v in np.asarray(substrate, float)) + ")"
        if usable.sum() == 0:
            return SetupVerdict(
                True, f"not checked: substrate {colour} is clipped (255) in two channels", False
            )
        comparable = self.reference[np.isfinite(self.reference[:, usable]).all(axis=1)][:, usable]
        if len(comparable) == 0:
            return SetupVerdict(
                True,
                f"not checked: no training image has the substrate channels of {colour} unclipped",
                False,
            )
        distance = float(np.sqrt(((comparable - point[usable]) ** 2).sum(axis=1)).min())
        if distance <= self.tolerance:
            return SetupVerdict(
                True, f"substrate {colour} like the training images' ({distance:.3f} <= {self.tolerance:g})"
            )
        return SetupVerdict(
            False,
            f"substrate {colour} unlike every training image's ({distance:.3f} > {self.tolerance:g} in "
            "log chromaticity): another oxide, lamp or camera? its candidates may be wrong",
        )


def folder_chance(flagged: int, checked: int) -> float:
    """The chance that ``checked`` images of the training setup give ``flagged`` flags or more."""
    if flagged <= 0:
        return 1.0
    from scipy.stats import binom

    return float(binom.sf(flagged - 1, checked, OWN_FLAG_RATE))


def check_folder(verdicts: Sequence[SetupVerdict]) -> tuple[list[SetupVerdict], str | None]:
    """The verdicts of one folder's images judged together, and the folder's reason (``None`` when it
    passes). A folder with more flags than images of the training setup give, at
    :data:`FOLDER_SIGNIFICANCE`, is unlike it as a whole: each of its images is flagged, one that
    passed alone (or could not be checked: the folder says where it comes from) with the folder's reason
    before its own, one flagged alone with its own."""
    checked = sum(v.checked for v in verdicts)
    flagged = sum(not v.setup_ok for v in verdicts)
    chance = folder_chance(flagged, checked)
    if chance >= FOLDER_SIGNIFICANCE:
        return list(verdicts), None
    folder = (
        f"the folder: {flagged} of its {checked} checked images are unlike the training images' (chance "
        f"{chance:.1g} for images of the training setup, {OWN_FLAG_RATE:.0%} of which are flagged), so "
        "it comes from another oxide, lamp or camera"
    )
    judged = [
        v if not v.setup_ok else SetupVerdict(False, f"{folder}; this image: {v.reason}", v.checked)
        for v in verdicts
    ]
    return judged, folder


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


def _layer_colours(
    substrate: np.ndarray, material: str, source: Setup, target: Setup, counts: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The 8-bit colours (``len(counts) x 3``; -1: as the substrate) of each layer count through
    ``source`` and ``target``, the gains those of an image whose substrate is ``substrate`` through
    ``source`` (its exposure and white balance, applied to ``target``'s linear signals)."""
    base = source.linear(None, 0)
    gains = source.tone().decode(np.minimum(np.asarray(substrate, float), 255.0) / 255.0) / np.maximum(
        base, 1e-12
    )

    def colour(setup: Setup, count: int) -> np.ndarray:
        tone = Tone(setup.tone().curve, setup.gamma, 1.0, True, setup.shoulder)
        known = max(int(count), 0)  # -1: as the substrate
        return 255.0 * tone.encode(gains * setup.linear(material if known else None, known))

    return (
        np.stack([colour(source, c) for c in counts]),
        np.stack([colour(target, c) for c in counts]),
    )


def rerender_ratios(
    substrate: np.ndarray, material: str, source: Setup, target: Setup, counts: Sequence[int]
) -> dict[int, np.ndarray]:
    """Per layer count (-1: as the substrate), the per-channel factor :func:`rerender` multiplies the
    8-bit values of an image whose substrate colour is ``substrate`` (8-bit) by."""
    counts = [int(c) for c in counts]
    before, after = _layer_colours(substrate, material, source, target, counts)
    ratios = after / np.maximum(before, 1e-6)
    return {count: ratios[i] for i, count in enumerate(counts)}


def translate(
    image: np.ndarray,
    material: str,
    source: Setup,
    target: Setup,
    substrate: np.ndarray | None = None,
    max_layers: int = TRANSLATE_LAYERS,
) -> np.ndarray:
    """``image`` (uint8), taken with ``source``, as ``target`` would show it, with no labels.

    :func:`rerender` with each pixel's layer count read from its colour: its contrast ``I / b - 1``
    (after a 1 px blur) is placed on the curve the contrasts of 0, 1, ... ``max_layers`` layers draw
    through ``source`` (the nearest point of the broken line between consecutive counts, in the
    substrate's unclipped channels), and the pixel is multiplied by the ratio of the two setups'
    colours interpolated at that point. A pixel farther from the curve than its noise allows
    (:data:`TRANSLATE_NOISE` times the image's contrast noise, at least :data:`TRANSLATE_SHARE` of
    the monolayer's contrast) fades, by twice that distance, to the substrate's ratio, as
    :func:`rerender` treats thick flakes and residue. Texture and noise stay; values clip at 255.
    """
    from scipy import ndimage

    background = np.asarray(estimate_background(image) if substrate is None else substrate, dtype=np.float64)
    counts = list(range(max_layers + 1))
    before, after = _layer_colours(background, material, source, target, counts)
    ratios = after / np.maximum(before, 1e-6)  # K x 3
    usable = np.flatnonzero(background < CLIP)
    if len(usable) == 0:  # every channel clipped: no colour to read a layer count from
        return np.clip(np.round(image.astype(np.float64) * ratios[0]), 0, 255).astype(np.uint8)
    curve = (before / np.maximum(before[0], 1e-6) - 1.0)[:, usable]  # K x c: contrast of each count
    pixels = ndimage.gaussian_filter(image.astype(np.float64), sigma=(1.0, 1.0, 0.0))
    contrast = (pixels / np.maximum(background, 1.0) - 1.0)[..., usable].reshape(-1, len(usable))
    noise = float(np.linalg.norm(contrast_noise(image, contrast, background)))
    tolerance = max(TRANSLATE_NOISE * noise, TRANSLATE_SHARE * float(np.linalg.norm(curve[1])), 1e-3)
    start, step = curve[:-1], np.diff(curve, axis=0)  # (K-1) x c segments
    length = np.maximum((step**2).sum(axis=1), 1e-12)
    t = np.clip(((contrast[:, None, :] - start[None]) * step[None]).sum(-1) / length[None], 0.0, 1.0)
    distance = np.linalg.norm(contrast[:, None, :] - (start[None] + t[..., None] * step[None]), axis=-1)
    segment = distance.argmin(axis=1)
    rows = np.arange(len(segment))
    where = t[rows, segment][:, None]
    on_curve = (1.0 - where) * ratios[segment] + where * ratios[segment + 1]  # N x 3
    weight = np.clip(2.0 - distance[rows, segment] / tolerance, 0.0, 1.0)[:, None]
    ratio = weight * on_curve + (1.0 - weight) * ratios[0]
    out = image.astype(np.float64) * ratio.reshape(image.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def translate_to_setup(image: np.ndarray, material: str, setup: Setup) -> np.ndarray:
    """``image`` as the microscope of ``setup`` would show it, if the setup check flags it.

    An image the check passes (:class:`SetupCheck` on ``setup``'s images) is returned as it is: it is
    one of the model's own kind. Otherwise its own setup is ``setup`` with the oxide fitted on its
    substrate colour (:func:`~flakeseg.optics.calibration.image_setup`, within 40 nm: what one
    substrate colour can tell), and :func:`translate` maps it onto ``setup``'s oxide. One substrate
    colour cannot tell another oxide from another lamp: a 6500 K lamp on the paper's MoS2 images
    fits as 294-298 nm of oxide, within 0.012 in log chromaticity (docs/results/translate_cpu)."""
    background = estimate_background(image).astype(np.float64)
    if setup.substrates and SetupCheck(setup.substrates)(background).setup_ok:
        return image
    source = image_setup(setup, background)
    if abs(source.oxide_nm - setup.oxide_nm) < 1.0:
        return image
    return translate(image, material, source, setup, background)


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
