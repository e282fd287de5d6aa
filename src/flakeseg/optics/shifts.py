"""How a change of microscope shows in an image: the photometric steps the robustness benchmark
(:mod:`flakeseg.studies.robustness`) applies at fixed strengths and training across simulated setups
(:mod:`flakeseg.data.setup_randomization`) samples at random, one implementation for both.

The steps act on 8-bit images through a power-law camera tone curve of :data:`GAMMA` (decode to the
sensor's linear signal, change it, encode again, clip at 255 as a sensor does):

- :func:`scale_linear`: exposure (a common gain), white balance (per-channel gains, :func:`lamp_gains`)
  and vignetting (a gain per pixel, :func:`falloff`), all multiply the linear signal;
- :func:`regamma`: another tone curve exponent, ``v' = v^(1/g)`` on the encoded values.

Oxide thickness changes colours per layer count: :func:`flakeseg.optics.drift.rerender`.
"""

from __future__ import annotations

import numpy as np

from flakeseg.optics.calibration import WAVELENGTH_NM, Setup
from flakeseg.optics.camera import illuminant_spd, linear_rgb
from flakeseg.optics.thin_film import substrate_reflectance

__all__ = ["GAMMA", "LAMP_K", "decode", "encode", "falloff", "lamp_gains", "regamma", "scale_linear"]

#: the tone curve the photometric steps decode and re-encode through (sRGB's effective exponent)
GAMMA = 2.2
#: the lamp of the paper's microscope, CIE illuminant A
LAMP_K = 2856.0


#: the linear signal of each 8-bit value (a lookup: training shifts thousands of images)
_DECODED = (np.arange(256) / 255.0) ** GAMMA


def decode(image: np.ndarray) -> np.ndarray:
    """8-bit values to the sensor's linear signal (0..1)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return _DECODED[image]
    return (image.astype(np.float64) / 255.0) ** GAMMA


def encode(linear: np.ndarray) -> np.ndarray:
    """Linear signal to 8-bit values, clipped at 255 as a sensor clips."""
    signal = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.round(255.0 * signal ** np.float32(1.0 / GAMMA)).astype(np.uint8)


def scale_linear(image: np.ndarray, gain: np.ndarray | float) -> np.ndarray:
    """``image`` with its linear signal multiplied by ``gain`` (a number, per channel, or per pixel)."""
    return encode(decode(image) * gain)


def regamma(image: np.ndarray, exponent: float) -> np.ndarray:
    """The encoded values (uint8) raised to ``1 / exponent``: a camera with another tone curve."""
    table = np.round(255.0 * (np.arange(256) / 255.0) ** (1.0 / exponent)).astype(np.uint8)
    return table[np.asarray(image, dtype=np.uint8)]


def falloff(shape: tuple[int, ...], strength: float) -> np.ndarray:
    """Vignetting as a gain ``1 - strength r^2 / 2`` (``H x W x 1``): 1 at the centre, ``1 - strength``
    in the corners (``r`` the distance from the centre, 1 at the middle of each side)."""
    height, width = shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    half_w, half_h = max((width - 1) / 2, 0.5), max((height - 1) / 2, 0.5)
    r2 = ((xx - (width - 1) / 2) / half_w) ** 2 + ((yy - (height - 1) / 2) / half_h) ** 2
    return (1.0 - strength * r2 / 2.0)[..., None]


def _lamp_power(setup: Setup, kelvin: float) -> np.ndarray:
    """Per channel, the camera's signal of a perfect mirror under a Planckian lamp (arbitrary scale,
    the same for every lamp's temperature): what the white balance had divided out."""
    spd = illuminant_spd(kelvin, WAVELENGTH_NM)
    spd = spd / np.trapezoid(spd, WAVELENGTH_NM)
    return np.trapezoid(spd[:, None] * setup.camera_model().at(WAVELENGTH_NM), WAVELENGTH_NM, axis=0)


def lamp_gains(setup: Setup, kelvin: float, source_k: float = LAMP_K) -> np.ndarray:
    """Per-channel linear gains (green 1) when the lamp changes from ``source_k`` to ``kelvin`` and the
    camera keeps its white balance: the ratio of the bare substrate's raw signal under the two lamps
    through ``setup``'s camera (applied to every pixel alike: an approximation, flakes reflect a
    slightly different spectrum)."""
    spectrum = substrate_reflectance(setup.oxide_nm, WAVELENGTH_NM)
    camera = setup.camera_model()
    raw = [linear_rgb(spectrum, WAVELENGTH_NM, camera, k) * _lamp_power(setup, k) for k in (source_k, kelvin)]
    gains = raw[1] / raw[0]
    return gains / gains[1]
