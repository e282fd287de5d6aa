"""A microscope's setup, fitted on its own images: oxide thickness, camera and tone curve.

The physics (:mod:`~flakeseg.optics.thin_film`, :mod:`~flakeseg.optics.camera`) predicts a flake's
colour once four things are known that no database holds; a :class:`Setup` states them:

- **the oxide thickness**, fitted on the bare-substrate colours of a folder of images (no labels: the
  substrate colour varies strongly with the oxide). The camera is assumed white-balanced on its lamp
  (a white reference reads grey); each image keeps its own exposure. :func:`fit_oxide`.
- **the camera's channel sensitivities** (a candidate from :data:`CANDIDATE_CAMERAS`: the measured
  cameras colour-science bundles, the CIE observer as linear sRGB, Gaussian channels) and **the tone
  curve** (a power-law gamma and a highlight shoulder, :class:`~flakeseg.optics.camera.Tone`): these
  need one labelled material on that microscope. For every candidate camera and tone the oxide is
  fitted on the substrate colours, then the labelled contrasts are predicted; the candidate with the
  smallest mean relative error over images, layer counts and unclipped channels wins
  (:func:`calibrate`, :data:`RELATIVE_FLOOR`).
- **the per-channel gains** (exposure and white balance) of an image: its own substrate colour
  (:meth:`Setup.contrast` takes it).

Why a shoulder: on the paper's images a flake's contrast shrinks as the substrate gets brighter (MoS2
monolayer red contrast -0.21 on substrates near red 175, -0.14 to -0.17 on those near 220), which a
pure power law, whose contrast is independent of exposure, cannot give.

Contrast is measured as on images: ``I / b - 1`` of the 8-bit values, the per-class median over the
labelled pixels of one image against its substrate (the densest colour of its substrate pixels,
:func:`~flakeseg.optics.substrate.substrate_colour`), on channels where the substrate is not clipped
(:func:`measure_contrast`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flakeseg.errors import ConfigError, DataError
from flakeseg.optics.camera import DEFAULT_CAMERA, Camera, Tone, illuminant_spd, linear_rgb
from flakeseg.optics.substrate import substrate_colour
from flakeseg.optics.thin_film import flake_reflectance, substrate_reflectance

__all__ = [
    "CANDIDATE_CAMERAS",
    "CLIP",
    "ImageContrast",
    "Setup",
    "calibrate",
    "fit_oxide",
    "image_setup",
    "measure_contrast",
    "resolve_setup",
    "shipped_setup",
]

#: the wavelengths spectra are integrated on, nm (5 nm steps over the camera band)
WAVELENGTH_NM = np.arange(400.0, 781.0, 5.0)
#: an 8-bit value at or above this counts as clipped: its channel's contrast is unknown
CLIP = 254.5
#: a layer class needs this many labelled pixels in an image to be measured there
MIN_PIXELS = 50
#: the oxide thicknesses searched, nm (start, stop, step); refined to 0.5 nm around the best
OXIDE_RANGE_NM = (50.0, 350.0, 2.0)
#: an oxide fitted on one image stays within this of its setup's (substrate colours repeat every
#: ~200 nm of oxide: 90 nm and 280 nm look alike, so one colour alone cannot tell them apart)
OXIDE_WINDOW_NM = 40.0
#: the fit weighs each channel's error relative to its measured contrast, at least this: MoS2's red
#: contrast (-0.2 to -0.4) would otherwise outweigh its green and blue (about 0.05) by 4 to 8 times.
#: Chosen on the training images (MoS2 setup -> graphene training images: monolayer green off by 46 %
#: relative, 76 % absolute; the reverse unchanged); the test images were not looked at.
RELATIVE_FLOOR = 0.02
GAMMAS = (1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 3.5)
SHOULDERS: tuple[float | None, ...] = (None, 1.6, 0.8, 0.4, 0.2, 0.1)
#: cameras tried by :func:`calibrate`: names :meth:`Setup.camera_model` understands
CANDIDATE_CAMERAS: tuple[str, ...] = (
    "Nikon 5100 (NPL)",
    "Sigma SDMerill (NPL)",
    "Canon EOS 5D Mark II",
    "cie-srgb",
    *(
        f"gaussian {r}/{g}/{b} fwhm {w}"
        for (r, g, b), w in itertools.product(
            ((600, 535, 460), (610, 540, 460), (620, 540, 450), (590, 530, 470)), (50, 80, 110)
        )
    ),
)


def camera_model(name: str) -> Camera:
    """A camera by name: a measured one (:meth:`Camera.measured`), ``cie-srgb``, or
    ``gaussian R/G/B fwhm W`` (centres and full width at half maximum in nm)."""
    text = name.strip()
    if text.lower() == "cie-srgb":
        return Camera.cie_srgb()
    if text.lower().startswith("gaussian"):
        try:
            centres, width = text.split(None, 1)[1].split("fwhm")
            return Camera.gaussian(tuple(float(c) for c in centres.split("/")), float(width))
        except ValueError:
            raise ConfigError(
                f"camera {name!r}: write a Gaussian camera as 'gaussian 610/540/460 fwhm 50'"
            ) from None
    return Camera.measured(text)


@functools.lru_cache(maxsize=4096)
def _substrate_spectrum(oxide_nm: float, na: float) -> np.ndarray:
    return substrate_reflectance(oxide_nm, WAVELENGTH_NM, na=na)


@functools.lru_cache(maxsize=4096)
def _layer_spectrum(material: str, layers: int, oxide_nm: float, na: float) -> np.ndarray:
    return flake_reflectance(material, layers, oxide_nm, WAVELENGTH_NM, na=na)


@functools.lru_cache(maxsize=256)
def _camera_weights(camera: str, illuminant: str | float) -> np.ndarray:
    """``W x 3`` weights: lamp x sensitivities on :data:`WAVELENGTH_NM`, each column integrating to 1."""
    unit = np.eye(len(WAVELENGTH_NM))  # the signal of each wavelength alone
    return linear_rgb(unit, WAVELENGTH_NM, camera_model(camera), illuminant)


def _signal(spectrum: np.ndarray, camera: str, illuminant: str | float) -> np.ndarray:
    """White-balanced linear RGB of a reflectance spectrum on :data:`WAVELENGTH_NM`."""
    return spectrum @ _camera_weights(camera, illuminant)


@dataclass(frozen=True)
class ImageContrast:
    """One labelled image: its substrate colour (8-bit RGB) and, per layer count present, the median
    contrast ``I / b - 1`` of its labelled pixels (NaN on channels where the substrate is clipped)."""

    image_id: str
    substrate: np.ndarray
    layers: Mapping[int, np.ndarray] = field(default_factory=dict)


def measure_contrast(
    image_id: str,
    image: np.ndarray,
    layer_masks: Mapping[int, np.ndarray],
    substrate_mask: np.ndarray,
    min_pixels: int = MIN_PIXELS,
) -> ImageContrast:
    """The substrate colour of ``image`` (densest colour of ``substrate_mask``'s pixels) and the median
    contrast of each ``layer_masks`` entry (layer count -> boolean mask) with ``min_pixels`` or more."""
    substrate = substrate_colour(image, substrate_mask)
    usable = substrate < CLIP
    layers = {}
    for count, where in layer_masks.items():
        if int(where.sum()) >= min_pixels:
            median = np.median(image[where].astype(np.float64), axis=0)
            layers[int(count)] = np.where(usable, median / np.maximum(substrate, 1.0) - 1.0, np.nan)
    return ImageContrast(image_id, substrate, layers)


@dataclass(frozen=True)
class Setup:
    """What the physics needs to know about a microscope; see the module docstring.

    Attributes:
        oxide_nm: SiO2 thickness on the silicon.
        camera: :func:`camera_model`'s name of the channel sensitivities.
        gamma, shoulder: the tone curve (:class:`~flakeseg.optics.camera.Tone`).
        illuminant: the lamp (colour-science name or a colour temperature in K).
        na: numerical aperture of the illumination (0: normal incidence).
        fitted_on: what the setup was fitted on, and how well it fits (written by :func:`calibrate`).
        substrates: the substrate colour of every image fitted on (8-bit): what ``predict``'s setup
            check compares a new image with (:mod:`~flakeseg.optics.drift`).
        flat_field: the microscope's flat field (``calibrate --blank`` or ``--flatfield-from-images``)
            as :func:`~flakeseg.optics.substrate.compact_flat_field` keeps it, or ``None``: ``predict
            --setup`` divides every image by it.
    """

    oxide_nm: float
    camera: str = DEFAULT_CAMERA
    gamma: float = 2.2
    shoulder: float | None = None
    illuminant: str | float = "A"
    na: float = 0.0
    fitted_on: Mapping[str, Any] = field(default_factory=dict)
    substrates: tuple[tuple[float, float, float], ...] = ()
    flat_field: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.oxide_nm <= 2000.0:
            raise ConfigError(f"oxide_nm: must be in [0, 2000], got {self.oxide_nm}")
        Tone(gamma=self.gamma, shoulder=self.shoulder)  # checks both

    def tone(self) -> Tone:
        return Tone(curve="gamma", gamma=self.gamma, shoulder=self.shoulder, clip=True)

    def camera_model(self) -> Camera:
        return camera_model(self.camera)

    def linear(self, material: str | None, layers: int) -> np.ndarray:
        """White-balanced linear RGB of ``layers`` layers of ``material`` (0 or ``None``: the bare
        substrate) on this setup's oxide."""
        if material is None or layers == 0:
            spectrum = _substrate_spectrum(float(self.oxide_nm), float(self.na))
        else:
            spectrum = _layer_spectrum(str(material), int(layers), float(self.oxide_nm), float(self.na))
        return _signal(spectrum, self.camera, self.illuminant)

    def colours(self, material: str, layers: Sequence[int], substrates: np.ndarray) -> np.ndarray:
        """Expected 8-bit RGB (``N x len(layers) x 3``) of each layer count on images whose substrate
        colours are ``substrates`` (``N x 3`` or ``3``): each image's gains put its substrate there.
        Layer count 0 is the substrate itself."""
        subs = np.atleast_2d(np.asarray(substrates, dtype=np.float64))
        tone = self.tone()
        base = self.linear(None, 0)
        gains = tone.decode(np.minimum(subs, 255.0) / 255.0) / np.maximum(base, 1e-12)
        signals = np.stack([self.linear(material, n) for n in layers])  # L x 3
        exposed = Tone(tone.curve, tone.gamma, 1.0, tone.clip, tone.shoulder)
        return 255.0 * exposed.encode(gains[:, None, :] * signals[None, :, :])

    def contrast(self, material: str, layers: int, substrates: np.ndarray) -> np.ndarray:
        """Predicted ``I / b - 1`` (``N x 3``) of ``layers`` layers on images with these substrate
        colours (8-bit, ``N x 3``); NaN on channels where the substrate is clipped."""
        subs = np.atleast_2d(np.asarray(substrates, dtype=np.float64))
        both = self.colours(material, [0, layers], subs)
        out = both[:, 1] / np.maximum(both[:, 0], 1e-9) - 1.0
        return np.where(subs < CLIP, out, np.nan)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fitted_on"] = dict(self.fitted_on)
        out["substrates"] = [[round(float(v), 1) for v in colour] for colour in self.substrates]
        if self.flat_field is None:
            del out["flat_field"]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "setup") -> Setup:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        if "oxide_nm" not in values:
            raise ConfigError(f"{source}: oxide_nm is missing")
        kwargs = dict(values)
        numbers = ["oxide_nm", *(k for k in ("gamma", "na") if k in kwargs)]
        numbers += ["shoulder"] if kwargs.get("shoulder") is not None else []  # None: no shoulder
        for key in numbers:  # each bad number named by its key
            try:
                kwargs[key] = float(kwargs[key])
            except (TypeError, ValueError):
                raise ConfigError(f"{source}: {key}: a number, got {kwargs[key]!r}") from None
        if not 0.0 <= kwargs.get("na", 0.0) < 1.0:
            raise ConfigError(
                f"{source}: na: the objective's numerical aperture, in [0, 1), got {kwargs['na']:g}"
            )
        if not isinstance(kwargs.get("fitted_on") or {}, Mapping):
            raise ConfigError(f"{source}: fitted_on: a mapping, got {kwargs['fitted_on']!r}")
        kwargs["fitted_on"] = dict(kwargs.get("fitted_on") or {})
        try:
            kwargs["substrates"] = tuple(
                tuple(float(v) for v in colour) for colour in kwargs.get("substrates") or ()
            )
            if any(len(colour) != 3 for colour in kwargs["substrates"]):
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(
                f"{source}: substrates: a list of R, G, B triples, got {kwargs.get('substrates')!r}"
            ) from None
        try:
            if kwargs.get("flat_field") is not None:
                _check_flat_field(kwargs["flat_field"])
            setup = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        try:  # an unknown camera is one line now, not at the first prediction
            setup.camera_model()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}; or cie-srgb, or 'gaussian 610/540/460 fwhm 50'") from None
        try:  # and an unknown lamp
            illuminant_spd(setup.illuminant, np.array([550.0]))
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: illuminant: {str(exc).splitlines()[0]}") from None
        return setup

    def save(self, path: str | Path) -> Path:
        """Write the setup as YAML, atomically (a half-written file never replaces an old one)."""
        import yaml

        from flakeseg.utils.files import write_text_atomic

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        write_text_atomic(Path(path), text)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Setup:
        import yaml

        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise DataError(f"{path}: cannot read the setup ({exc.strerror or exc})") from None
        except (yaml.YAMLError, UnicodeDecodeError):
            raise DataError(f"{path}: not a setup file (YAML written by flakeseg calibrate)") from None
        if not isinstance(values, Mapping):
            raise DataError(f"{path}: not a setup file (YAML written by flakeseg calibrate)")
        return cls.from_dict(values, source=str(path))


def _check_flat_field(raw: Any) -> None:
    if not isinstance(raw, Mapping) or set(raw) != {"height", "width", "field"}:
        raise ValueError("flat_field: needs exactly height, width and field (flakeseg calibrate writes it)")
    field = np.asarray(raw["field"], dtype=float)
    if field.ndim != 3 or field.shape[2] != 3 or not np.isfinite(field).all() or (field <= 0).any():
        raise ValueError("flat_field.field: an h x w x 3 grid of positive numbers")


#: setups that come with the package (``<name>.yaml`` here)
SHIPPED_DIR = Path(__file__).parent / "setups"
#: the paper's microscope (Saito et al. 2019), calibrated on the MoS2 training images and labels
DEFAULT_SETUP = "paper_mos2"


def shipped_setup(name: str = DEFAULT_SETUP) -> Setup:
    """A setup shipped with the package, by name (``paper_mos2``, ``paper_graphene``)."""
    path = SHIPPED_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
        raise ConfigError(f"setup {name}: not shipped (shipped: {', '.join(known) or 'none'})")
    return Setup.load(path)


def resolve_setup(choice: str | Path) -> Setup:
    """A setup by what a user writes: a YAML file (``flakeseg calibrate``'s) or a shipped name."""
    if str(choice).endswith((".yaml", ".yml")):
        return Setup.load(choice)
    if Path(choice).suffix:  # a file of another kind, not a name
        known = ", ".join(sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")))
        raise ConfigError(
            f"setup {choice}: a setup is a .yaml file (flakeseg calibrate writes one) "
            f"or a shipped name ({known})"
        )
    return shipped_setup(str(choice))


def _oxide_grid(oxide_range: tuple[float, float, float]) -> np.ndarray:
    lo, hi, step = (float(v) for v in oxide_range)
    if not (0 <= lo < hi and step > 0):
        raise ConfigError(f"oxide range: need 0 <= start < stop and step > 0, got {lo:g} {hi:g} {step:g}")
    return np.arange(lo, hi + step / 2.0, step)


def _substrate_costs(
    substrates: np.ndarray, camera: str, tone: Tone, oxides: np.ndarray, na: float, illuminant: str | float
) -> np.ndarray:
    """Per oxide: how far the substrate colours are from the predicted one up to one exposure per
    image (squared log residuals about their mean over each image's unclipped channels)."""
    subs = np.atleast_2d(np.asarray(substrates, dtype=np.float64))
    usable = (subs < CLIP) & (subs >= 5.0)
    keep = usable.sum(axis=1) >= 2
    if not keep.any():
        raise DataError("no image has two unclipped substrate channels: the oxide cannot be fitted")
    subs, usable = subs[keep], usable[keep]
    target = np.log(np.maximum(tone.decode(subs / 255.0), 1e-12))  # N x 3
    model = np.log(np.stack([_signal(_substrate_spectrum(float(o), na), camera, illuminant) for o in oxides]))
    residual = np.where(usable[None], target[None] - model[:, None, :], 0.0)  # O x N x 3
    mean = residual.sum(axis=2, keepdims=True) / usable.sum(axis=1)[None, :, None]
    return (np.where(usable[None], residual - mean, 0.0) ** 2).sum(axis=(1, 2))


def fit_oxide(
    substrates: np.ndarray,
    camera: str = DEFAULT_CAMERA,
    tone: Tone | None = None,
    oxide_range: tuple[float, float, float] = OXIDE_RANGE_NM,
    na: float = 0.0,
    illuminant: str | float = "A",
) -> float:
    """The oxide thickness (nm) whose substrate colour, through ``camera`` and ``tone`` with one
    exposure per image and no white-balance error, best matches ``substrates`` (8-bit, ``N x 3``):
    a grid search, refined to 0.5 nm around the best."""
    tone = tone or Tone()
    grid = _oxide_grid(oxide_range)
    best = float(grid[int(np.argmin(_substrate_costs(substrates, camera, tone, grid, na, illuminant)))])
    step = float(oxide_range[2])
    fine = np.arange(max(best - step, 0.0), best + step + 0.25, 0.5)
    return float(fine[int(np.argmin(_substrate_costs(substrates, camera, tone, fine, na, illuminant)))])


def image_setup(setup: Setup, substrate: np.ndarray, window_nm: float = OXIDE_WINDOW_NM) -> Setup:
    """``setup`` with its oxide fitted on one image's substrate colour (8-bit), through the setup's
    camera and tone curve, within ``window_nm`` of the setup's oxide, to 1 nm; the setup as it is
    where the substrate has under two unclipped channels."""
    centre = setup.oxide_nm
    window = (max(centre - window_nm, 0.0), centre + window_nm, 2.0)
    try:
        oxide = fit_oxide(
            np.asarray(substrate, dtype=np.float64)[None],
            setup.camera,
            setup.tone(),
            window,
            na=setup.na,
            illuminant=setup.illuminant,
        )
    except DataError:
        return setup
    return dataclasses.replace(setup, oxide_nm=float(round(oxide)))  # 1 nm: the spectra cache by oxide


def contrast_errors(
    setup: Setup, material: str, labelled: Sequence[ImageContrast], relative: bool = False
) -> np.ndarray:
    """Predicted minus measured contrast for every (image, layer count) of ``labelled``: ``M x 3``,
    NaN where either is unknown. ``relative``: divided by ``max(|measured|, RELATIVE_FLOOR)``."""
    rows = []
    for count in sorted({n for m in labelled for n in m.layers}):
        images = [m for m in labelled if count in m.layers]
        predicted = setup.contrast(material, count, np.stack([m.substrate for m in images]))
        measured = np.stack([m.layers[count] for m in images])
        error = predicted - measured
        rows.append(error / np.maximum(np.abs(measured), RELATIVE_FLOOR) if relative else error)
    return np.concatenate(rows) if rows else np.empty((0, 3))


def calibrate(
    substrates: np.ndarray,
    material: str | None = None,
    labelled: Sequence[ImageContrast] = (),
    cameras: Sequence[str] = CANDIDATE_CAMERAS,
    gammas: Sequence[float] = GAMMAS,
    shoulders: Sequence[float | None] = SHOULDERS,
    oxide_range: tuple[float, float, float] = OXIDE_RANGE_NM,
    na: float = 0.0,
    illuminant: str | float = "A",
    progress: Any = None,
) -> Setup:
    """Fit a :class:`Setup` on substrate colours (``N x 3``, 8-bit: any images of the microscope)
    and, when given, the measured contrasts of a labelled ``material``.

    Without labels the camera and tone stay at their defaults (the first of ``cameras``, the first
    gamma of 2.2 or the middle one, no shoulder) and only the oxide is fitted. With labels every
    camera x gamma x shoulder is tried, its oxide fitted on the substrate colours (the labelled
    images' included), and the mean relative contrast error decides. ``progress``: a callable
    ``(done, total)``.
    """
    subs = np.atleast_2d(np.asarray(substrates, dtype=np.float64))
    if labelled:
        subs = np.concatenate([subs.reshape(-1, 3), np.stack([m.substrate for m in labelled])])
    if len(subs) == 0:
        raise DataError("no images to calibrate on")
    counted = [m for m in labelled if m.layers]
    if counted and material is None:
        raise ConfigError("calibrate: labelled contrasts need the material they were measured on")
    if not counted:
        gamma = 2.2 if 2.2 in gammas else float(gammas[len(gammas) // 2])
        tone = Tone(gamma=gamma)
        oxide = fit_oxide(subs, cameras[0], tone, oxide_range, na, illuminant)
        fitted = {"images": len(subs), "labelled_images": 0, "fitted": "oxide"}
        return Setup(oxide, cameras[0], gamma, None, illuminant, na, fitted, _triples(subs))
    trials = list(itertools.product(cameras, gammas, shoulders))
    best: tuple[float, Setup] | None = None
    for done, (camera, gamma, shoulder) in enumerate(trials):
        tone = Tone(gamma=float(gamma), shoulder=shoulder)
        oxide = fit_oxide(subs, camera, tone, oxide_range, na, illuminant)
        setup = Setup(oxide, camera, float(gamma), shoulder, illuminant, na)
        errors = np.abs(contrast_errors(setup, material, counted, relative=True))
        score = float(np.nanmean(errors)) if np.isfinite(errors).any() else np.inf
        if best is None or score < best[0]:
            best = (score, setup)
        if progress is not None:
            progress(done + 1, len(trials))
    score, setup = best
    fitted = {
        "material": material,
        "images": len(subs),
        "labelled_images": len(counted),
        "layers": sorted({n for m in counted for n in m.layers}),
        "fitted": "oxide, camera, gamma, shoulder",
        "mean_relative_contrast_error": round(score, 4),
        "mean_abs_contrast_error": round(
            float(np.nanmean(np.abs(contrast_errors(setup, material, counted)))), 4
        ),
        "candidates": len(trials),
    }
    return dataclasses.replace(setup, fitted_on=fitted, substrates=_triples(subs))


def _triples(colours: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    return tuple(tuple(round(float(v), 1) for v in colour) for colour in colours)
