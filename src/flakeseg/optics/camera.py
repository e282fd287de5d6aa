"""From reflectance spectra to the RGB values of a camera image, and the optical contrast of a flake.

What it models: a lamp of spectrum ``S(λ)`` (CIE illuminant A, a halogen lamp, by default) reflected
by the sample (:mod:`~flakeseg.optics.thin_film`) onto a camera with channel sensitivities ``C_c(λ)``:
the linear signal ``∫ R S C_c dλ / ∫ S C_c dλ`` per channel, i.e. white-balanced on a perfect
mirror (a white reference gives 1 in every channel); then per-channel exposure gains, a tone curve
(power-law gamma, the sRGB curve or none) and clipping to ``[0, 1]``: :class:`Tone`. Cameras:
colour-science's measured sensitivities (Nikon D5100 and Sigma SD Merrill from Darrodi et al.,
JOSA A 32, 381 (2015); Canon EOS 5D Mark II from rawtoaces), a Gaussian family, or the CIE 1931
observer turned into linear sRGB (an idealised colorimetric camera).

The optical contrast ``I / b - 1`` of a flake against its substrate, the number
:mod:`flakeseg.optics.substrate` measures on 8-bit images, is computed on encoded values
(:func:`flake_contrast`) and in linear signal (:func:`linear_contrast`). In linear signal it is
independent of exposure and white-balance gains; with a pure power law ``v = (g I)^(1/γ)`` it is
``(I/b)^(1/γ) - 1`` whatever the gains, which is not the linear contrast (about ``1/γ`` of it for
small contrasts); with the sRGB curve or clipping, gains matter.

What it ignores: the camera's colour-correction matrix (images are assumed to be white-balanced raw
RGB through a tone curve), demosaicing, noise, 8-bit quantisation, vignetting, the spectral
transmission of the microscope's optics and the lamp's real spectrum (only a named or Planckian
one), and everything outside ``band_nm`` (400-780 nm by default; refractive-index data of the
layer-resolved TMDs start at 397 nm).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flakeseg.errors import ConfigError
from flakeseg.optics.materials import Material
from flakeseg.optics.thin_film import flake_reflectance, substrate_reflectance

__all__ = [
    "BAND_NM",
    "DEFAULT_CAMERA",
    "GAMMA",
    "LINEAR",
    "Camera",
    "Tone",
    "contrast",
    "flake_contrast",
    "illuminant_spd",
    "layer_rgb",
    "linear_contrast",
    "linear_rgb",
    "substrate_rgb",
]

#: the spectral band integrated over, nm (inclusive)
BAND_NM = (400.0, 780.0)
#: colour-science's measured camera used by default (Darrodi et al. 2015, National Physical Laboratory)
DEFAULT_CAMERA = "Nikon 5100 (NPL)"
_CANON = "Canon EOS 5D Mark II"  # bundled with colour-science for its rawtoaces implementation


@dataclass(frozen=True, eq=False)
class Camera:
    """RGB channel sensitivities (``W x 3``, columns R, G, B) over wavelengths in nm."""

    name: str
    wavelength_nm: np.ndarray
    sensitivity: np.ndarray

    def at(self, wavelength_nm: np.ndarray) -> np.ndarray:
        """Sensitivities at ``wavelength_nm`` (linear interpolation, 0 outside the measured range)."""
        return np.stack(
            [
                np.interp(wavelength_nm, self.wavelength_nm, c, left=0.0, right=0.0)
                for c in self.sensitivity.T
            ],
            axis=1,
        )

    @classmethod
    def measured(cls, name: str = DEFAULT_CAMERA) -> Camera:
        """A camera of colour-science's ``MSDS_CAMERA_SENSITIVITIES`` (``"Nikon 5100 (NPL)"``,
        ``"Sigma SDMerill (NPL)"``) or ``"Canon EOS 5D Mark II"`` (its rawtoaces data)."""
        return _measured(name)

    @classmethod
    def gaussian(
        cls,
        centres_nm: Sequence[float] = (600.0, 535.0, 460.0),
        fwhm_nm: Sequence[float] | float = 60.0,
        wavelength_nm: np.ndarray | None = None,
    ) -> Camera:
        """Gaussian channels (R, G, B) of the given centres and full widths at half maximum."""
        wavelength = (
            np.arange(380.0, 781.0, 5.0) if wavelength_nm is None else np.asarray(wavelength_nm, float)
        )
        centres = np.asarray(centres_nm, dtype=np.float64)
        sigma = np.broadcast_to(np.asarray(fwhm_nm, dtype=np.float64), (3,)) / (
            2.0 * np.sqrt(2.0 * np.log(2.0))
        )
        curves = np.exp(-0.5 * ((wavelength[:, None] - centres[None, :]) / sigma[None, :]) ** 2)
        fwhm = np.broadcast_to(np.asarray(fwhm_nm, dtype=np.float64), (3,))
        name = "Gaussian " + "/".join(f"{c:g} nm (FWHM {w:g})" for c, w in zip(centres, fwhm, strict=True))
        return cls(name, wavelength, curves)

    @classmethod
    def cie_srgb(cls, observer: str = "CIE 1931 2 Degree Standard Observer") -> Camera:
        """A colorimetric camera: the CIE colour-matching functions mapped to linear sRGB primaries
        (channels may be negative at some wavelengths; the integrals are not)."""
        return _cie_srgb(observer)


@functools.cache
def _measured(name: str) -> Camera:
    import colour

    if name.lower() == _CANON.lower():
        import colour.characterisation

        csv = Path(colour.characterisation.__file__).parent / "datasets" / "rawtoaces"
        table = np.loadtxt(csv / "CANON_EOS_5DMark_II_RGB_Sensitivities.csv", delimiter=",", skiprows=1)
        return Camera(_CANON, table[:, 0], np.clip(table[:, 1:4], 0.0, None))
    known = list(colour.MSDS_CAMERA_SENSITIVITIES.keys())
    if name not in known:
        raise ConfigError(f"camera {name}: unknown (known: {', '.join([*known, _CANON])})")
    data = colour.MSDS_CAMERA_SENSITIVITIES[name]
    return Camera(
        name, np.asarray(data.wavelengths, float), np.clip(np.asarray(data.values, float), 0.0, None)
    )


@functools.cache
def _cie_srgb(observer: str) -> Camera:
    import colour

    cmfs = colour.MSDS_CMFS[observer]
    matrix = colour.models.RGB_COLOURSPACE_sRGB.matrix_XYZ_to_RGB
    return Camera(
        f"{observer} -> linear sRGB", np.asarray(cmfs.wavelengths, float), np.asarray(cmfs.values) @ matrix.T
    )


def illuminant_spd(
    illuminant: str | float | tuple[np.ndarray, np.ndarray], wavelength_nm: np.ndarray
) -> np.ndarray:
    """The lamp spectrum at ``wavelength_nm`` (arbitrary scale): a colour-science illuminant name
    (``"A"``, ``"D65"``, ``"LED-B3"``...), a colour temperature in kelvin (Planck's law), or a pair of
    arrays (wavelengths in nm, power)."""
    wavelength = np.asarray(wavelength_nm, dtype=np.float64)
    if isinstance(illuminant, str):
        import colour

        if illuminant not in colour.SDS_ILLUMINANTS:
            raise ConfigError(f"illuminant {illuminant}: unknown to colour-science (e.g. A, D65, LED-B3)")
        sd = colour.SDS_ILLUMINANTS[illuminant]
        return np.interp(wavelength, np.asarray(sd.wavelengths, float), np.asarray(sd.values, float))
    if isinstance(illuminant, int | float):
        h, c, k = 6.62607015e-34, 2.99792458e8, 1.380649e-23
        metres = wavelength * 1e-9
        return 1.0 / (metres**5 * np.expm1(h * c / (metres * k * float(illuminant))))
    wl, power = (np.asarray(a, dtype=np.float64) for a in illuminant)
    return np.interp(wavelength, wl, power)


@dataclass(frozen=True)
class Tone:
    """Exposure, tone curve and clipping from white-balanced linear signal to encoded values (0..1).

    Attributes:
        curve: ``"gamma"`` (``v = x^(1/gamma)``), ``"srgb"`` (IEC 61966-2-1) or ``"linear"``.
        gamma: the display gamma of the ``"gamma"`` curve.
        exposure: gains applied to the linear signal first, one or one per channel (R, G, B).
        clip: clip the encoded values to ``[0, 1]`` (an 8-bit camera's 0 and 255).
        shoulder: ``k`` of a highlight roll-off after the curve, ``v' = (1 + k) v / (v + k)``
            (fixes 0 and 1; compresses contrast near white by ``k / (1 + k)``, near black not at
            all); ``None``: no roll-off. Cameras' JPEG tone curves have one: on the paper's images a
            flake's contrast shrinks as the substrate gets brighter (``flakeseg.optics.calibration``).
    """

    curve: str = "gamma"
    gamma: float = 2.2
    exposure: float | tuple[float, float, float] = 1.0
    clip: bool = True
    shoulder: float | None = None

    def __post_init__(self) -> None:
        if self.curve not in ("gamma", "srgb", "linear"):
            raise ConfigError(f"tone curve: must be gamma, srgb or linear, got {self.curve!r}")
        if not self.gamma > 0:
            raise ConfigError(f"tone gamma: must be > 0, got {self.gamma}")
        if self.shoulder is not None and not self.shoulder > 0:
            raise ConfigError(f"tone shoulder: must be > 0 (or none), got {self.shoulder}")

    def encode(self, linear: np.ndarray) -> np.ndarray:
        x = np.maximum(
            np.asarray(linear, dtype=np.float64) * np.asarray(self.exposure, dtype=np.float64), 0.0
        )
        if self.curve == "gamma":
            v = x ** (1.0 / self.gamma)
        elif self.curve == "srgb":
            v = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1.0 / 2.4) - 0.055)
        else:
            v = x
        if self.shoulder is not None:
            v = (1.0 + self.shoulder) * v / (v + self.shoulder)
        return np.clip(v, 0.0, 1.0) if self.clip else v

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """Linear signal (after exposure) of encoded values: the inverse curve, without the gains."""
        v = np.asarray(encoded, dtype=np.float64)
        if self.shoulder is not None:
            # the roll-off's inverse; values at or above 1 + k have no preimage: the largest finite one
            v = self.shoulder * v / np.maximum(1.0 + self.shoulder - v, 1e-9)
        if self.curve == "gamma":
            return np.maximum(v, 0.0) ** self.gamma
        if self.curve == "srgb":
            return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
        return v

    def exposed_to(self, linear: np.ndarray, encoded: np.ndarray) -> Tone:
        """This tone with per-channel gains that encode ``linear`` (a substrate's signal) as
        ``encoded`` (its colour in an image, 0..1): the camera's exposure and white balance."""
        gains = self.decode(np.asarray(encoded, dtype=np.float64)) / np.maximum(
            np.asarray(linear, float), 1e-12
        )
        return Tone(self.curve, self.gamma, tuple(float(g) for g in gains), self.clip, self.shoulder)


#: no tone curve, no clipping: the linear signal itself
LINEAR = Tone(curve="linear", clip=False)
#: a power-law gamma of 2.2 with clipping, no gains
GAMMA = Tone()


def _grid(camera: Camera, band_nm: tuple[float, float]) -> np.ndarray:
    grid = camera.wavelength_nm[(camera.wavelength_nm >= band_nm[0]) & (camera.wavelength_nm <= band_nm[1])]
    if len(grid) < 2:
        raise ConfigError(f"band_nm: {band_nm} holds under two of the camera's wavelengths")
    return grid


def linear_rgb(
    reflectance: np.ndarray,
    wavelength_nm: np.ndarray,
    camera: Camera | None = None,
    illuminant: str | float | tuple[np.ndarray, np.ndarray] = "A",
) -> np.ndarray:
    """White-balanced linear RGB of reflectance spectra (``... x W``): ``∫ R S C / ∫ S C`` per channel
    (trapezoid rule on ``wavelength_nm``); a perfect mirror (R = 1) gives 1 in every channel."""
    camera = camera or Camera.measured()
    wavelength = np.asarray(wavelength_nm, dtype=np.float64)
    weights = illuminant_spd(illuminant, wavelength)[:, None] * camera.at(wavelength)  # W x 3
    signal = np.trapezoid(np.asarray(reflectance)[..., :, None] * weights, wavelength, axis=-2)
    return signal / np.trapezoid(weights, wavelength, axis=0)


def substrate_rgb(
    oxide_nm: float,
    camera: Camera | None = None,
    illuminant: str | float | tuple[np.ndarray, np.ndarray] = "A",
    tone: Tone = LINEAR,
    na: float = 0.0,
    band_nm: tuple[float, float] = BAND_NM,
    oxide: str | Material = "SiO2",
    silicon: str | Material = "Si",
) -> np.ndarray:
    """RGB of bare ``oxide_nm`` of SiO2 on Si, encoded by ``tone`` (default: linear signal)."""
    camera = camera or Camera.measured()
    wavelength = _grid(camera, band_nm)
    spectrum = substrate_reflectance(oxide_nm, wavelength, na=na, oxide=oxide, silicon=silicon)
    return tone.encode(linear_rgb(spectrum, wavelength, camera, illuminant))


def layer_rgb(
    material: str | Material,
    layers: int,
    oxide_nm: float,
    camera: Camera | None = None,
    illuminant: str | float | tuple[np.ndarray, np.ndarray] = "A",
    tone: Tone = LINEAR,
    na: float = 0.0,
    band_nm: tuple[float, float] = BAND_NM,
    flake_nm: float | None = None,
    oxide: str | Material = "SiO2",
    silicon: str | Material = "Si",
) -> np.ndarray:
    """RGB of ``layers`` layers of ``material`` on ``oxide_nm`` of SiO2 on Si, encoded by ``tone``."""
    camera = camera or Camera.measured()
    wavelength = _grid(camera, band_nm)
    spectrum = flake_reflectance(
        material, layers, oxide_nm, wavelength, na=na, flake_nm=flake_nm, oxide=oxide, silicon=silicon
    )
    return tone.encode(linear_rgb(spectrum, wavelength, camera, illuminant))


def contrast(layer: np.ndarray, substrate: np.ndarray) -> np.ndarray:
    """Optical contrast ``I / b - 1`` per channel of colour ``layer`` against colour ``substrate``
    (in whatever space both are: encoded, as measured on images, or linear)."""
    return np.asarray(layer, dtype=np.float64) / np.asarray(substrate, dtype=np.float64) - 1.0


def flake_contrast(
    material: str | Material, layers: int, oxide_nm: float, tone: Tone = GAMMA, **options
) -> np.ndarray:
    """``I / b - 1`` of the encoded flake colour against the encoded substrate colour: what an image
    shows. ``options``: those of :func:`layer_rgb` (camera, illuminant, na, band_nm...)."""
    flake_only = {k: options.pop(k) for k in ("flake_nm",) if k in options}
    return contrast(
        layer_rgb(material, layers, oxide_nm, tone=tone, **options, **flake_only),
        substrate_rgb(oxide_nm, tone=tone, **options),
    )


def linear_contrast(material: str | Material, layers: int, oxide_nm: float, **options) -> np.ndarray:
    """``I / b - 1`` in linear signal (no tone curve, no clipping): independent of exposure and
    white balance. ``options``: those of :func:`layer_rgb`."""
    return flake_contrast(material, layers, oxide_nm, tone=LINEAR, **options)
