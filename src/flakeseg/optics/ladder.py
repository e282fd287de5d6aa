"""The tone curve with zero labels: the layer ladder of a material fitted on a folder's own pixels.

A camera's tone curve (its gamma) scales every contrast ``I / b - 1`` in 8-bit space (roughly by
``1 / gamma``), and the substrate colours cannot tell it: a power law keeps their chromaticity at any
exposure. A folder of images of one material holds the answer anyway: its flakes' colours cluster on
the rungs the optics predicts for 1, 2, 3... layers, and only the right tone curve puts the rungs
where the clusters are.

For each candidate gamma (:data:`~flakeseg.optics.calibration.GAMMAS`, no shoulder) the oxide is
fitted again on the substrate colours, and each image's pixels are scored: blurred as the optics
model blurs them, every :data:`STRIDE`-th pixel, edges left out (:data:`FLAT_SLOPE`), each on its own
image's oxide within 40 nm, under a mixture of the bare substrate, 1 to :data:`LADDER_LAYERS` layers
(each a Gaussian of the image's own noise plus :data:`MODEL_ERROR` times the rung's contrast: the
noise model of ``model=optics``) and a uniform component for everything else (thick flakes, residue,
dust). The mixture weights are fitted by EM over the folder; the gamma of the highest mean
log-likelihood per pixel replaces the setup's own when it fits better in :data:`BOOTSTRAP_SHARE` of
bootstrap resamples of the images (:func:`fit_gamma`).

Checked on images the optics rendered through a known gamma (tests/test_ladder.py) and, zero labels,
on the paper's images (``benchmarks/ladder_gamma.py``, docs/results/optics_ladder/): 2.2 on MoS2 and
2.6 on the graphene images divided by their flat field, where the zero-label flake F1 is highest too;
3.5 on the graphene images without the flat field (their field falls to 0.89 at the corners; why the
fit then runs to the end of the grid is not established), where 2.6 scores best: divide by the field
first (``calibrate --flatfield-from-images``). Why edges are left out and why the bootstrap rule:
without the first a synthetic graphene folder at gamma 3.0 fitted 3.5 (an edge towards a thick flake
passes through every rung, which favours a denser ladder); without the second the MoS2 images divided
by their flat field moved to 1.8 on a margin that 1 in 3 resamples reverses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from flakeseg.errors import DataError
from flakeseg.optics.calibration import CLIP, GAMMAS, OXIDE_WINDOW_NM, Setup, fit_oxide, image_setup
from flakeseg.optics.camera import Tone
from flakeseg.optics.substrate import NOISE_FLOOR, contrast_noise, estimate_background

__all__ = ["BLUR_SIGMA", "LADDER_LAYERS", "MODEL_ERROR", "LadderSample", "fit_gamma", "ladder_likelihood"]

#: layer counts on the ladder (``model=optics``'s ``max_layers``)
LADDER_LAYERS = 6
#: the optics' relative error, added to each rung's noise (``model=optics``'s ``model_error``)
MODEL_ERROR = 0.15
#: the Gaussian blur before the contrast, px (``model=optics``'s ``blur_sigma``)
BLUR_SIGMA = 1.0
#: every STRIDE-th pixel of each row and column is scored (a ninth of them: the clusters stay full)
STRIDE = 3
#: a pixel is scored where its contrast changes by less than this many noise units per pixel: an
#: edge passes through every colour between its two sides (towards a thick flake, through every rung),
#: and those colours would pull the fit towards a denser ladder; the blurred noise alone gives about 1
FLAT_SLOPE = 3.0
#: at most this many images of a folder, evenly spaced, are scored (the fit's time stays bounded)
MAX_IMAGES = 48
#: contrast range of the uniform component, per channel: ``[-1, 1]``
OUTLIER_HALF_WIDTH = 1.0
#: EM stops when the mean log-likelihood per pixel moves by less than this
EM_TOLERANCE = 1e-7
EM_ITERATIONS = 300
#: the best gamma replaces the setup's own only when it fits better in at least this share of
#: bootstrap resamples of the images: the likelihood is flat near its top, and a folder where a few
#: images decide should keep the default
BOOTSTRAP_SHARE = 0.95
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class LadderSample:
    """What the fit needs of one image: its substrate colour, its unclipped channels, the contrast of
    the sampled pixels in those channels (``N x c``) and the image's noise per channel (``3``)."""

    background: np.ndarray
    channels: np.ndarray
    contrast: np.ndarray
    noise: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> LadderSample | None:
        """The sample of an ``H x W x 3`` uint8 image; ``None`` when every substrate channel clips."""
        background = estimate_background(image).astype(np.float64)
        channels = np.flatnonzero(background < CLIP)
        if len(channels) == 0:
            return None
        blurred = ndimage.gaussian_filter(image.astype(np.float64), (BLUR_SIGMA, BLUR_SIGMA, 0))
        contrast = blurred / np.maximum(background, 1.0) - 1.0
        noise = np.maximum(contrast_noise(image, contrast, background), NOISE_FLOOR)
        used = contrast[..., channels] / noise[channels]
        slope = np.sqrt(sum(np.gradient(used, axis=axis) ** 2 for axis in (0, 1)).sum(axis=-1))
        flat = (slope < FLAT_SLOPE)[::STRIDE, ::STRIDE]
        sampled = contrast[::STRIDE, ::STRIDE][..., channels][flat]
        return cls(background, channels, sampled, noise)


def _log_densities(setup: Setup, material: str, sample: LadderSample) -> np.ndarray:
    """``(2 + LADDER_LAYERS) x N`` log densities of the sample's pixels: the uniform component, the
    substrate, then 1 to :data:`LADDER_LAYERS` layers, on the image's own oxide within 40 nm."""
    own = image_setup(setup, sample.background)
    channels = sample.channels
    rungs = np.stack([own.contrast(material, n, sample.background)[0] for n in range(1, LADDER_LAYERS + 1)])
    means = np.concatenate([np.zeros((1, 3)), rungs])[:, channels]  # K x c
    sigma = np.sqrt(sample.noise[channels][None] ** 2 + (MODEL_ERROR * means) ** 2)
    z = (sample.contrast[None] - means[:, None]) / sigma[:, None]
    gaussian = (
        -0.5 * (z**2).sum(-1) - np.log(sigma).sum(axis=1)[:, None] - 0.5 * len(channels) * np.log(2 * np.pi)
    )
    uniform = np.full((1, gaussian.shape[1]), -len(channels) * np.log(2 * OUTLIER_HALF_WIDTH))
    return np.concatenate([uniform, gaussian])


def ladder_likelihood(setup: Setup, material: str, samples: Sequence[LadderSample]) -> np.ndarray:
    """The log-likelihood of each sample's pixels (summed per sample) under ``setup``'s ladder of
    ``material``, the mixture weights fitted by EM over every sample together."""
    densities = np.concatenate([_log_densities(setup, material, sample) for sample in samples], axis=1)
    owner = np.repeat(np.arange(len(samples)), [len(sample.contrast) for sample in samples])
    if densities.shape[1] == 0:
        return np.zeros(len(samples))
    # the components stay fixed, only their weights are fitted: each EM step is two matrix products
    shift = densities.max(axis=0)
    scaled = np.exp(densities - shift)  # K x N
    weights = np.full(len(scaled), 1.0 / len(scaled))
    previous = -np.inf
    for _ in range(EM_ITERATIONS):
        mixture = np.maximum(weights @ scaled, 1e-300)
        mean = float(np.mean(np.log(mixture) + shift))
        if mean - previous < EM_TOLERANCE:
            break
        previous = mean
        weights = weights * (scaled @ (1.0 / mixture)) / scaled.shape[1]
    return np.bincount(owner, weights=np.log(mixture) + shift, minlength=len(samples))


def fit_gamma(
    setup: Setup,
    images: Sequence[np.ndarray],
    material: str,
    gammas: Sequence[float] = GAMMAS,
    progress: Callable[[int, int], None] | None = None,
) -> Setup:
    """``setup`` with the gamma (and the oxide refitted for it) under which the flakes of ``images``
    (uint8, one material, one microscope; no labels) sit best on the ladder of ``material``; see the
    module docstring; the setup's own gamma stays unless another fits clearly better
    (:data:`BOOTSTRAP_SHARE`). The shoulder is dropped. ``progress``: a callable ``(done, total)``."""
    chosen = list(images)
    if len(chosen) > MAX_IMAGES:
        chosen = [chosen[int(i)] for i in np.linspace(0, len(chosen) - 1, MAX_IMAGES).round()]
    samples = [s for s in map(LadderSample.of, chosen) if s is not None and len(s.contrast)]
    if not samples:
        raise DataError(
            "no image has an unclipped substrate channel and flat areas to score: the tone curve "
            "cannot be fitted"
        )
    substrates = (
        np.asarray(setup.substrates, dtype=np.float64)
        if setup.substrates
        else np.stack([s.background for s in samples])
    )
    window = (max(setup.oxide_nm - OXIDE_WINDOW_NM, 0.0), setup.oxide_nm + OXIDE_WINDOW_NM, 2.0)
    pixels = np.array([len(s.contrast) for s in samples], dtype=np.float64)
    per_image, candidates = {}, {}
    for done, gamma in enumerate(gammas):
        oxide = fit_oxide(
            substrates, setup.camera, Tone(gamma=float(gamma)), window, setup.na, setup.illuminant
        )
        candidates[float(gamma)] = dataclasses.replace(
            setup, gamma=float(gamma), shoulder=None, oxide_nm=oxide
        )
        per_image[float(gamma)] = ladder_likelihood(candidates[float(gamma)], material, samples)
        if progress is not None:
            progress(done + 1, len(gammas))
    mean = {g: float(totals.sum() / max(pixels.sum(), 1.0)) for g, totals in per_image.items()}
    best = max(mean, key=mean.get)
    own = float(setup.gamma)
    share = 1.0
    if own in per_image and best != own:
        share = _bootstrap_share(per_image[best] - per_image[own])
        if share < BOOTSTRAP_SHARE:
            best = own  # not clearly better than the setup's own gamma: it stays
    fitted = {
        **dict(setup.fitted_on),
        "fitted": "oxide, gamma (the layer ladder on the images' own pixels, zero labels)",
        "ladder_material": material,
        "ladder_images": len(samples),
        "ladder_log_likelihood": {f"{g:g}": round(v, 5) for g, v in mean.items()},
        "ladder_bootstrap_share": round(share, 3),
    }
    return dataclasses.replace(candidates[best], fitted_on=fitted)


def _bootstrap_share(gain: np.ndarray) -> float:
    """The share of :data:`BOOTSTRAP_RESAMPLES` resamples of the images (with replacement, seed 0) in
    which the per-image log-likelihood ``gain`` of one gamma over another sums to more than zero."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(gain), size=(BOOTSTRAP_RESAMPLES, len(gain)))
    return float(np.mean(gain[picks].sum(axis=1) > 0.0))
