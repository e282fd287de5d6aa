"""The substrate colour of a flake image, and images white-balanced against it.

Under an optical microscope a flake of a given thickness changes the colour of the substrate under it
by a fixed ratio, whatever the lamp, exposure or white balance (its optical contrast ``I / b - 1``
against the substrate colour ``b``). Labs identify layers by that contrast, 2DMatGMM classifies it,
MaskTerial feeds it to its network. :func:`normalize_substrate` rescales each channel so that the
substrate becomes a fixed grey: every pixel then encodes its contrast (up to a constant scale), and
images taken under different lighting look alike to a network.

Everything rests on ``b``. The densest colour (:func:`estimate_background` without a prior, 2DMatGMM's
and MaskTerial's histogram peak) is the substrate on most images, but not on an image that is mostly
one flake: MoS2 00005 is 68 % monolayer and 5 % substrate, and its densest colour is the monolayer's.
A :class:`SubstratePrior` (the flake contrasts seen on labelled images, :func:`fit_substrate_prior`)
lets :func:`choose_substrate` pick among several colour peaks (:func:`colour_peaks`) the one that is
not itself a known flake on another peak, and that explains the most pixels as substrate or known
flakes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from flakeseg.errors import DataError

__all__ = [
    "NOISE_FLOOR",
    "SUBSTRATE_GREY",
    "ColourPeak",
    "SubstratePrior",
    "apply_flat_field",
    "choose_substrate",
    "colour_peaks",
    "contrast_noise",
    "estimate_background",
    "estimate_flat_field",
    "fit_substrate_prior",
    "flat_field_from_blank",
    "normalize_substrate",
    "substrate_colour",
]

#: the level the substrate is mapped to: flakes up to twice as bright as the substrate stay unclipped
SUBSTRATE_GREY = 128.0
#: RGB distance from the substrate colour of the pixels whose spread is an image's noise
SUBSTRATE_RADIUS = 10.0


@dataclass(frozen=True)
class ColourPeak:
    """A peak of an image's colour histogram: its colour (RGB, 0..255) and the share of pixels near it."""

    colour: np.ndarray
    share: float


def _sample(image: np.ndarray, max_pixels: int) -> np.ndarray:
    pixels = image.reshape(-1, 3)
    return pixels[:: max(1, len(pixels) // max_pixels)].astype(np.float64)  # the sample, not the image


def _within(channels: np.ndarray, colour: np.ndarray, radius: float) -> np.ndarray:
    """Which pixels (``channels``: ``3 x N``, a channel per row) lie within ``radius`` RGB levels of
    ``colour``. The squared channel differences are added channel by channel, the order
    ``.sum(axis=1)`` of ``N x 3`` pixels adds them in (and exact anyway: pixels are whole levels,
    colours whole or half), at a fraction of that reduction's cost."""
    diff = channels - colour[:, None]
    diff *= diff
    return (diff[0] + diff[1]) + diff[2] <= radius**2


def _channel_max(values: np.ndarray) -> np.ndarray:
    """``values.max(axis=-1)`` over the 3 channels of the last axis (the same maxima, a fraction of the
    time: numpy reduces over 3 values slowly)."""
    return np.maximum(np.maximum(values[..., 0], values[..., 1]), values[..., 2])


def _refine(channels: np.ndarray, colour: np.ndarray, radius: float) -> np.ndarray:
    """Three mode-seeking steps: the median of the pixels (``3 x N``) within ``radius`` RGB levels."""
    for _ in range(3):
        near = channels[:, _within(channels, colour, radius)]
        if near.shape[1] == 0:
            break
        colour = np.median(near, axis=1)
    return colour


def colour_peaks(
    image: np.ndarray,
    bin_width: int = 4,
    radius: float = 10.0,
    max_pixels: int = 50_000,
    max_peaks: int = 6,
    min_share: float = 0.01,
) -> list[ColourPeak]:
    """The main colours of an ``H x W x 3`` uint8 image, densest first.

    The colour histogram (bins of ``bin_width`` levels, smoothed over 3 x 3 x 3 bins) has a peak per
    uniform area: the substrate, each flake thickness, saturated white. Each local maximum is refined
    to the median of the pixels within ``radius`` RGB levels of it (three mode-seeking steps); peaks
    that end within ``radius`` of a denser one, or with under ``min_share`` of the pixels near them,
    are dropped. The first peak is always the global maximum (what :func:`estimate_background`
    returns without a prior).
    """
    sample = _sample(image, max_pixels)
    bins = 256 // bin_width
    index = np.minimum((sample // bin_width).astype(np.int64), bins - 1)
    histogram = np.bincount(np.ravel_multi_index(index.T, (bins,) * 3), minlength=bins**3)
    density = ndimage.uniform_filter(
        histogram.reshape((bins,) * 3).astype(np.float64), size=3, mode="constant"
    )
    # the global maximum first, exactly as the densest-colour estimate finds it
    first = np.array(np.unravel_index(density.argmax(), density.shape))
    starts = [first]
    if max_peaks > 1:  # the first start is always kept: one peak needs no search for the others
        is_peak = (density == ndimage.maximum_filter(density, size=5, mode="constant")) & (density > 0)
        where = np.argwhere(is_peak)
        order = np.argsort(-density[is_peak], kind="stable")
        starts += [where[i] for i in order[: 4 * max_peaks] if not np.array_equal(where[i], first)]
    channels = np.ascontiguousarray(sample.T)
    peaks: list[ColourPeak] = []
    for start in starts:
        colour = _refine(channels, (start + 0.5) * bin_width, radius)
        share = float(_within(channels, colour, radius).mean())
        if peaks and (share < min_share or any(np.abs(colour - p.colour).max() < radius for p in peaks)):
            continue
        peaks.append(ColourPeak(colour, share))
        if len(peaks) == max_peaks:
            break
    return peaks


def substrate_colour(image: np.ndarray, substrate: np.ndarray) -> np.ndarray:
    """The densest colour of the pixels where ``substrate`` is true (all pixels if none are)."""
    pixels = image[substrate]
    if len(pixels) == 0:
        pixels = image.reshape(-1, 3)
    return colour_peaks(pixels.reshape(-1, 1, 3), max_peaks=1)[0].colour


@dataclass(frozen=True)
class SubstratePrior:
    """What labelled images say about flake colours: the optical contrasts ``I / b - 1`` of their
    flakes against their substrate.

    Attributes:
        contrasts: ``N x 3`` known flake contrasts (one per labelled image and flake class).
        tolerance: how far (largest channel difference) a contrast may be from a known one to match.
    """

    contrasts: np.ndarray
    tolerance: float = 0.05

    def matches(self, contrast: np.ndarray) -> np.ndarray:
        """Which of ``N x 3`` contrasts are within ``tolerance`` of a known flake contrast."""
        if len(self.contrasts) == 0:
            return np.zeros(len(contrast), dtype=bool)
        diff = np.abs(contrast[:, None, :] - self.contrasts[None, :, :])
        gaps = _channel_max(diff)
        return gaps.min(axis=1) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"contrasts": np.round(self.contrasts, 5).tolist(), "tolerance": float(self.tolerance)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SubstratePrior:
        contrasts = np.asarray(raw.get("contrasts") or [], dtype=np.float64).reshape(-1, 3)
        return cls(contrasts, float(raw.get("tolerance", 0.05)))


def fit_substrate_prior(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    flake_classes: Sequence[int],
    min_substrate_share: float = 0.3,
    min_pixels: int = 50,
    tolerance: float = 0.05,
) -> SubstratePrior:
    """The flake contrasts of labelled images (a fold's training images).

    On each image where the non-flake pixels are at least ``min_substrate_share`` of the image, the
    substrate is the densest colour of those pixels (thick flakes spread over many colours), and each
    flake class with ``min_pixels`` pixels contributes the median contrast of its pixels. Images that
    are mostly flake are skipped: their densest non-flake colour may be a thick flake.
    """
    flakes = list(flake_classes)
    contrasts = []
    for image, mask in zip(images, masks, strict=True):
        is_flake = np.isin(mask, flakes)
        background_pixels = image[~is_flake & (mask < 255)]
        if len(background_pixels) < max(min_pixels, min_substrate_share * mask.size):
            continue
        substrate = np.maximum(colour_peaks(background_pixels.reshape(-1, 1, 3), max_peaks=1)[0].colour, 1.0)
        for cls in flakes:
            pixels = image[mask == cls]
            if len(pixels) >= min_pixels:
                contrasts.append(np.median(pixels.astype(np.float64), axis=0) / substrate - 1.0)
    return SubstratePrior(np.asarray(contrasts, dtype=np.float64).reshape(-1, 3), tolerance)


def choose_substrate(
    peaks: Sequence[ColourPeak], prior: SubstratePrior, sample: np.ndarray | None = None
) -> ColourPeak:
    """The peak that is the substrate, given what flakes look like.

    A peak whose contrast against another peak is a known flake contrast is that flake, not the
    substrate (the monolayer of MoS2 00005 against its true substrate). Of the remaining peaks, the
    one that explains the most pixels wins: those within ``tolerance`` of contrast 0 (substrate) or of
    a known flake contrast against it. ``sample``: the image's pixels (``N x 3``); without it, the peak
    shares stand for their pixels. Ties go to the denser peak.
    """
    if len(peaks) == 1 or len(prior.contrasts) == 0:
        return peaks[0]
    colours = np.stack([p.colour for p in peaks])
    candidates = []
    for i, peak in enumerate(peaks):
        others = np.delete(colours, i, axis=0)
        as_flake = peak.colour[None, :] / np.maximum(others, 1.0) - 1.0
        if not prior.matches(as_flake).any():
            candidates.append(i)
    if not candidates:
        candidates = list(range(len(peaks)))
    points = sample if sample is not None else colours
    weights = None if sample is not None else np.array([p.share for p in peaks])

    def explained(i: int) -> float:
        contrast = points / np.maximum(peaks[i].colour, 1.0) - 1.0
        hit = (_channel_max(np.abs(contrast)) <= prior.tolerance) | prior.matches(contrast)
        return float(hit.mean() if weights is None else (hit * weights).sum())

    return peaks[max(candidates, key=lambda i: (explained(i), -i))]


#: the noise floor of a channel's contrast: 8-bit quantisation on a substrate near 200
NOISE_FLOOR = 0.004


def contrast_noise(image: np.ndarray, contrast: np.ndarray, background: np.ndarray) -> np.ndarray:
    """An image's noise in contrast, per channel of ``contrast`` (``H x W x c`` or ``H*W x c``, the
    contrast ``I / b - 1`` of each pixel of the ``H x W x 3`` ``image`` against ``background``): the
    robust spread (1.4826 x median absolute deviation) of the pixels within :data:`SUBSTRATE_RADIUS`
    of the substrate colour, or of every pixel when fewer than 100 are."""
    values = contrast.reshape(-1, contrast.shape[-1])
    near = (np.linalg.norm(image.astype(np.float64) - background, axis=2) <= SUBSTRATE_RADIUS).ravel()
    spread = values[near] if near.sum() >= 100 else values
    return 1.4826 * np.median(np.abs(spread - np.median(spread, axis=0)), axis=0)


def estimate_background(
    image: np.ndarray,
    bin_width: int = 4,
    radius: float = 10.0,
    max_pixels: int = 50_000,
    prior: SubstratePrior | None = None,
) -> np.ndarray:
    """The substrate colour (RGB, float, 0..255) of an ``H x W x 3`` uint8 image.

    Without ``prior``: the densest colour (the highest peak of the colour histogram, refined by
    mode seeking; see :func:`colour_peaks`). Thick flakes, often brighter and larger than the thin
    ones, spread over many interference colours and make lower peaks. An image that is mostly one flake
    has that flake's colour as its peak. With ``prior``: :func:`choose_substrate` among the peaks,
    which finds the substrate of such images too.

    Args:
        image: ``H x W x 3`` uint8 RGB image.
        bin_width: histogram bin width in levels (256 must be a multiple of it).
        radius: RGB distance of the pixels that refine a peak.
        max_pixels: pixels used (an even subsample, deterministic).
        prior: known flake contrasts (:func:`fit_substrate_prior`), or ``None``.
    """
    if prior is None:
        return colour_peaks(image, bin_width, radius, max_pixels, max_peaks=1)[0].colour
    peaks = colour_peaks(image, bin_width, radius, max_pixels)
    sample = _sample(image, max_pixels // 5)
    return choose_substrate(peaks, prior, sample).colour


def flat_field_from_blank(blank: np.ndarray, smooth_px: float = 4.0) -> np.ndarray:
    """The field of view's relative brightness (``H x W x 3``, median 1 per channel) from a blank image
    (bare substrate or a mirror, same objective and camera), smoothed by a Gaussian of ``smooth_px``
    so that its noise and dust specks of the sample do not enter; what 2DMatGMM divides every image by."""
    field = ndimage.gaussian_filter(blank.astype(np.float32), sigma=(smooth_px, smooth_px, 0))
    return (field / np.maximum(np.median(field.reshape(-1, 3), axis=0), 1e-6)).astype(np.float32)


#: longest side the images are averaged at when a flat field is estimated from them (a field is smooth)
ESTIMATE_SIDE = 160


#: degree of the 2-D polynomial a flat field estimated from images is (a vignette is smooth)
FIELD_DEGREE = 4


def _polynomial_surface(values: np.ndarray, degree: int = FIELD_DEGREE) -> np.ndarray:
    """Per channel, the least-squares 2-D polynomial of ``degree`` through the finite ``values``
    (``h x w x C``), evaluated everywhere: smooth, and unbiased into the corners, where a Gaussian
    smoothing would flatten a vignette."""
    height, width = values.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = (yy / max(height - 1, 1) * 2 - 1).ravel(), (xx / max(width - 1, 1) * 2 - 1).ravel()
    terms = np.stack([x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i)], axis=1)
    surface = np.ones_like(values, dtype=np.float64)
    for channel in range(values.shape[2]):
        column = values[..., channel].ravel()
        known = np.isfinite(column)
        if known.sum() > terms.shape[1]:
            coefficients = np.linalg.lstsq(terms[known], column[known], rcond=None)[0]
            surface[..., channel] = (terms @ coefficients).reshape(height, width)
    return surface


def estimate_flat_field(
    images: Sequence[np.ndarray],
    tolerance: float = 0.04,
    clip: float = 250.0,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """The field of view's relative brightness (``H x W x 3``, median 1 per channel) estimated from
    ordinary images of one microscope and objective, for labs without a blank image.

    Each image is divided by its substrate colour (its densest colour), so exposure and white balance
    drop out; per pixel, the median over the images of that ratio is the field where the pixel shows
    substrate in most of them. Two passes: the first median (flakes sit in different places on
    different images), then the same with every pixel masked whose colour differs from the substrate
    under the first field by more than ``tolerance`` in any channel (flakes, dust) or that is clipped
    (``>= clip``): the median of their substrate after masking flakes. Computed at
    :data:`ESTIMATE_SIDE` px, each pass smoothed by a 2-D polynomial of :data:`FIELD_DEGREE` fitted
    through it (which also fills pixels no image shows as substrate), then resampled to the images'
    size.

    Raises:
        DataError: fewer than 3 images, or images of different sizes (named by ``names``).
    """
    if len(images) < 3:
        raise DataError(f"a flat field from images needs at least 3 of them, got {len(images)}")
    height, width = images[0].shape[:2]
    for index, image in enumerate(images):
        if image.shape[:2] != (height, width):
            name = names[index] if names is not None else f"image {index + 1}"
            raise DataError(
                f"{name}: {image.shape[1]} x {image.shape[0]} px, the first {width} x {height}: "
                "a flat field needs images of one camera and binning"
            )
    factor = min(1.0, ESTIMATE_SIDE / max(height, width))
    small_h, small_w = max(1, round(height * factor)), max(1, round(width * factor))
    ratios = []
    for image in images:
        colour = np.maximum(substrate_colour(image, np.ones(image.shape[:2], bool)), 1.0)
        small = _resampled(image.astype(np.float32), small_h, small_w) if factor < 1 else image
        ratio = small.astype(np.float64) / colour
        ratios.append(np.where(small >= clip, np.nan, ratio))
    stack = np.stack(ratios)
    with warnings.catch_warnings():  # pixels masked in every image: NaN, filled from their neighbours
        warnings.simplefilter("ignore", RuntimeWarning)
        field = _polynomial_surface(np.nanmedian(stack, axis=0))
        flakes = (np.abs(stack / field[None] - 1.0) > tolerance).any(axis=-1, keepdims=True)
        field = _polynomial_surface(np.nanmedian(np.where(flakes, np.nan, stack), axis=0))
    field = field / np.maximum(np.median(field.reshape(-1, 3), axis=0), 1e-6)
    full = _resampled(field.astype(np.float32), height, width) if factor < 1 else field
    return full.astype(np.float32)


def apply_flat_field(image: np.ndarray, field: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` (uint8) divided by the flat ``field``: as if the whole field of view were lit as its
    median. Encoded values divide as linear ones do under a power-law tone curve."""
    if field.shape != image.shape:
        raise DataError(
            f"{name}: {image.shape[1]} x {image.shape[0]} px, the flat field {field.shape[1]} x "
            f"{field.shape[0]}: a blank image of another camera or binning"
        )
    return np.clip(np.round(image.astype(np.float32) / np.maximum(field, 1e-3)), 0, 255).astype(np.uint8)


#: longest side of a flat field as a model card keeps it (a smooth field needs no more)
CARD_FIELD_SIDE = 64


def _resampled(field: np.ndarray, height: int, width: int) -> np.ndarray:
    """``field`` (``h x w x C``) linearly resampled to ``height x width``, pixel centres aligned."""
    rows = (np.arange(height) + 0.5) * field.shape[0] / height - 0.5
    cols = (np.arange(width) + 0.5) * field.shape[1] / width - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    channels = [
        ndimage.map_coordinates(field[..., c], grid, order=1, mode="nearest") for c in range(field.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def compact_flat_field(field: np.ndarray, side: int = CARD_FIELD_SIDE) -> dict[str, Any]:
    """A flat field as plain data for a model card or a setup file: its image size and the field
    smoothed and resampled to at most ``side`` px on its longest side, 4 decimals."""
    height, width = field.shape[:2]
    factor = min(1.0, side / max(height, width))
    small_h, small_w = max(1, round(height * factor)), max(1, round(width * factor))
    # a Gaussian of about one output pixel first, so the few kept samples average their neighbourhood
    sigma = (0.5 / factor, 0.5 / factor, 0) if factor < 1 else 0
    small = _resampled(ndimage.gaussian_filter(field.astype(np.float32), sigma), small_h, small_w)
    return {"height": int(height), "width": int(width), "field": np.round(small, 4).tolist()}


def expand_flat_field(compact: Mapping[str, Any]) -> np.ndarray:
    """The ``H x W x 3`` field of :func:`compact_flat_field`'s data, at its image size (bilinear)."""
    small = np.asarray(compact["field"], dtype=np.float32)
    return _resampled(small, int(compact["height"]), int(compact["width"]))


def normalize_substrate(
    image: np.ndarray,
    grey: float = SUBSTRATE_GREY,
    prior: SubstratePrior | None = None,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """White-balance ``image`` (``H x W x 3`` uint8) so its substrate becomes ``grey`` in each channel.

    Pixel ``I`` becomes ``grey * I / b``, so ``(pixel / grey) - 1`` is the optical contrast ``I / b - 1``
    (quantised to ``1 / grey``, clipped at ``255 / grey - 1``). ``prior``: see :func:`estimate_background`;
    ``background``: the substrate colour ``b`` when it is known (it is then not estimated).
    """
    if background is None:
        background = estimate_background(image, prior=prior)
    background = np.maximum(np.asarray(background, dtype=np.float64), 1.0)
    scaled = image.astype(np.float64) * (grey / background)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
