"""Reflectance spectra of thin-film stacks: air / flake / SiO2 / Si, by transfer matrices (``tmm``).

What it models: coherent multiple reflection in a stack of flat, homogeneous, isotropic films between
a lossless ambient (air, index 1) and a semi-infinite substrate (silicon), computed with
``tmm.coh_tmm`` per wavelength (tmm is not vectorised: one call per wavelength, angle and
polarisation; results are cached). Normal incidence by default; with a numerical aperture ``na``
the reflectance is averaged over the illumination cone: uniform over the objective's pupil
(``sin θ`` up to ``na``, area element ``d(sin² θ)``), s and p polarisation alike (unpolarised lamp),
each ray collected at its own angle (Gauss-Legendre nodes in ``sin² θ``).

What it ignores: the out-of-plane (extraordinary) index of layered crystals at oblique incidence, the
incoherence of the lamp (fine for a 300 nm oxide: the coherence length of a halogen lamp through a
camera channel is a few µm), roughness, interface layers, contamination or water under the flake,
the finite lateral size of flakes (diffraction at their edges), and the microscope's apodisation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tmm

from flakeseg.errors import ConfigError
from flakeseg.optics.materials import Material, material, thickness_nm

__all__ = ["Film", "flake_reflectance", "reflectance", "substrate_reflectance"]


@dataclass(frozen=True, eq=False)
class Film:
    """One layer of a stack: a material and its thickness in nm."""

    material: Material
    thickness_nm: float


@functools.lru_cache(maxsize=2048)
def _reflectance(
    wavelengths: tuple[float, ...],
    indices: tuple[tuple[complex, ...], ...],
    thicknesses: tuple[float, ...],
    ambient: float,
    na: float,
    n_angles: int,
) -> np.ndarray:
    """R per wavelength; ``indices[i]``: the stack's indices (films, then substrate) at wavelength i."""
    d_list = [np.inf, *thicknesses, np.inf]
    if na > 0:
        # uniform over the pupil: uniform in u = sin^2(theta) on [0, na^2]
        nodes, weights = np.polynomial.legendre.leggauss(n_angles)
        angles = np.arcsin(np.sqrt(na**2 * (nodes + 1.0) / 2.0))
        weights = weights / 2.0
        plan = [(pol, float(a), float(w) / 2.0) for a, w in zip(angles, weights, strict=True) for pol in "sp"]
    else:
        plan = [("s", 0.0, 1.0)]
    out = np.empty(len(wavelengths))
    for i, (wavelength, n_stack) in enumerate(zip(wavelengths, indices, strict=True)):
        n_list = [complex(ambient), *n_stack]
        out[i] = sum(w * tmm.coh_tmm(pol, n_list, d_list, a, wavelength)["R"] for pol, a, w in plan)
    out.flags.writeable = False
    return out


def reflectance(
    wavelength_nm: np.ndarray | Sequence[float],
    films: Sequence[Film],
    substrate: Material,
    ambient: float = 1.0,
    na: float = 0.0,
    n_angles: int = 6,
) -> np.ndarray:
    """Reflectance (0..1) of ``ambient / films... / substrate`` at each wavelength (nm).

    Args:
        wavelength_nm: vacuum wavelengths, nm.
        films: from the ambient side down; thickness 0 is allowed (the film then changes nothing).
        substrate: semi-infinite bottom medium.
        ambient: real index of the medium the light comes from (air: 1).
        na: numerical aperture of the illumination; 0: normal incidence.
        n_angles: quadrature nodes over the cone when ``na > 0``.
    """
    wavelength = np.atleast_1d(np.asarray(wavelength_nm, dtype=np.float64))
    if not 0.0 <= na < 1.0 * ambient:
        raise ConfigError(f"na: must be in [0, {ambient:g}), got {na}")
    if any(f.thickness_nm < 0 for f in films):
        raise ConfigError(f"thickness_nm: must be >= 0, got {[f.thickness_nm for f in films]}")
    columns = [f.material.n(wavelength) for f in films] + [substrate.n(wavelength)]
    indices = tuple(tuple(complex(v) for v in row) for row in np.stack(columns, axis=1))
    return _reflectance(
        tuple(float(w) for w in wavelength),
        indices,
        tuple(float(f.thickness_nm) for f in films),
        float(ambient),
        float(na),
        int(n_angles),
    ).copy()


def _silicon_stack(oxide_nm: float, oxide: str | Material, silicon: str | Material) -> tuple[Film, Material]:
    oxide_material = oxide if isinstance(oxide, Material) else material(oxide)
    silicon_material = silicon if isinstance(silicon, Material) else material(silicon)
    return Film(oxide_material, float(oxide_nm)), silicon_material


def substrate_reflectance(
    oxide_nm: float,
    wavelength_nm: np.ndarray | Sequence[float],
    na: float = 0.0,
    oxide: str | Material = "SiO2",
    silicon: str | Material = "Si",
) -> np.ndarray:
    """Reflectance of bare ``air / oxide (oxide_nm) / silicon``."""
    film, substrate = _silicon_stack(oxide_nm, oxide, silicon)
    return reflectance(wavelength_nm, [film], substrate, na=na)


def flake_reflectance(
    name: str | Material,
    layers: int,
    oxide_nm: float,
    wavelength_nm: np.ndarray | Sequence[float],
    na: float = 0.0,
    flake_nm: float | None = None,
    oxide: str | Material = "SiO2",
    silicon: str | Material = "Si",
) -> np.ndarray:
    """Reflectance of ``air / layers x name / oxide (oxide_nm) / silicon``.

    ``flake_nm``: the flake's thickness; default ``layers`` x the material's monolayer thickness (a
    :class:`Material` or a database path needs it given). ``layers`` also picks layer-resolved
    indices where the data have them (:func:`flakeseg.optics.materials.material`).
    """
    flake = name if isinstance(name, Material) else material(name, layers)
    if flake_nm is None:
        flake_nm = thickness_nm(flake.name, layers)
    film, substrate = _silicon_stack(oxide_nm, oxide, silicon)
    return reflectance(wavelength_nm, [Film(flake, float(flake_nm)), film], substrate, na=na)
