"""Layer counts from physics, with no labels of the material: ``model=optics``, ``predict --material``.

Per image:

1. the substrate colour ``b`` is the image's densest colour
   (:func:`~flakeseg.optics.substrate.estimate_background`);
2. the oxide thickness is the setup's, or (``oxide_nm: null``) fitted on ``b`` through the setup's
   camera and tone curve within 40 nm of the setup's (:func:`~flakeseg.optics.calibration.image_setup`;
   the setup's where ``b`` has under two unclipped channels);
3. the setup predicts the contrast ``I / b - 1`` of 1 to ``max_layers`` layers of ``material`` on this
   image (:meth:`~flakeseg.optics.calibration.Setup.contrast`, from this image's ``b``);
4. each pixel's contrast (after a Gaussian blur of ``blur_sigma`` px, so that sensor noise does not
   split a flake) is scored against every layer count and the bare substrate under a Gaussian noise
   model per channel: the image's own noise (the spread of the substrate pixels' contrast, robust)
   plus the optics' own error, ``model_error`` times the predicted contrast;
5. a pixel whose nearest class is farther than the ``reject`` quantile of a chi-square law is no
   class (it goes to class 0: thick flakes beyond ``max_layers``, tape residue, dust);
6. flake pixels that an opening of ``opening`` px removes (the one- or two-pixel rims that every
   thicker flake's edge passes through on its way from the substrate's colour) go to class 0.

7. a flake region whose contrast does not step at its border by ``edge_share`` of its own contrast
   goes to class 0: uneven lighting (vignetting, dust on the optics) darkens the substrate gradually,
   a flake has a sharp edge. A region of two layers or more is measured against the class-0 pixels
   beside it that lie nearer the substrate's colour than it does (not a thicker flake), so a bilayer
   on a thick flake's terrace is kept;
8. a monolayer region whose median contrast, projected on the monolayer's predicted contrast, reaches
   less than ``level_share`` of it goes to class 0: a flake sits on its rung within the optics'
   error, while the pixels of a patch the lighting darkens straddle the substrate and the monolayer,
   and those called monolayer have a median just past halfway. Only with a setup whose tone was
   fitted on this material (``fitted_on``: its labels, or the ladder of its flakes,
   :mod:`flakeseg.optics.ladder`): another material's setup misses the rungs by up to 39 %.

The defaults (``model_error`` 0.15, ``blur_sigma`` 1, ``reject`` 0.999, ``opening`` 3, ``edge_share``
0.3) were chosen on the calibration materials' own training images, each screened with the setup
fitted on its labels (MoS2's on MoS2, graphene's on graphene), by the mean device-sized flake F1 of
monolayer and bilayer over both: ``model_error`` 0.15 gave 0.505 against 0.432 at 0.25 and 0.360 at
0.40; ``edge_share`` 0.3 then gave 0.585 (none: 0.505, 0.2: 0.563, 0.4: 0.483, 0.5: 0.335); a
polynomial substrate field per image (for vignetting) lowered it to 0.26 and was dropped. Leaving
pixels farther from the substrate than the region out of the outside band of bilayers raised it to
0.625 (bilayer F1 0.38 -> 0.49 on MoS2, 0.74 -> 0.79 on graphene, monolayers unchanged); leaving out
the pixels the model calls thicker or no class gave 0.615 for bilayers only and 0.590 for every class
(docs/results/optics_edge_probe/). ``level_share`` 0.7 (one minus twice ``model_error``, the value
expected before trying) raised it to 0.661 for monolayers only (graphene monolayer precision 0.33 ->
0.54), against 0.634 at 0.6 and 0.655 at 0.8; applied to bilayers too (their median measured from
the monolayer's rung to theirs), 0.651 (docs/results/optics_level_share/). No score of a material
screened with zero labels decided these choices; the bilayers lost beside thick flakes were first seen
on graphene test images, and the false monolayers of the zero-label graphene rows were looked at
beside those of the training rows before ``level_share`` was measured.

Class index ``n`` is ``n`` layers for ``n < num_classes``; more layers and the substrate are class 0 (the
three-class scheme: other, monolayer, bilayer). Nothing is fitted: ``fit`` does nothing, so a CV of
this model scores it on every image with zero labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from scipy import ndimage, stats

from flakeseg.errors import ConfigError
from flakeseg.models.classical.base import ClassicalModel, softmax
from flakeseg.models.registry import register_model
from flakeseg.optics.calibration import CLIP, Setup, image_setup, resolve_setup
from flakeseg.optics.ladder import BLUR_SIGMA, LADDER_LAYERS, MODEL_ERROR
from flakeseg.optics.materials import material as find_material
from flakeseg.optics.substrate import NOISE_FLOOR, contrast_noise, estimate_background


class OpticsLayers(ClassicalModel):
    """Per-pixel layer count of ``material`` from the optics of ``setup``; see the module docstring.

    Args:
        num_classes: classes to predict (index ``n``: ``n`` layers; 0: anything else).
        material: the crystal, as :func:`~flakeseg.optics.materials.material` names it.
        setup: a :class:`~flakeseg.optics.calibration.Setup` as a dict, a setup file
            (``flakeseg calibrate``'s YAML) or a shipped setup's name (``paper_mos2``, ``paper_graphene``).
        oxide_nm: fix the oxide thickness (nm); ``None``: fitted on each image's substrate colour.
        max_layers: layer counts modelled (thicker flakes are rejected into class 0).
        model_error: the optics' relative error, added to the noise of each predicted contrast.
        blur_sigma: Gaussian blur before the contrast, px.
        reject: a pixel farther than this chi-square quantile from every class goes to class 0.
        opening: side of the square opening that removes thin flake rims, px (0: none).
        edge_share: a flake region whose contrast steps at its border by less than this share of its
            own contrast goes to class 0 (uneven lighting, not a flake); 0: keep every region.
        level_share: a monolayer region whose median contrast reaches less than this share of the
            monolayer's predicted contrast goes to class 0 (uneven lighting); 0: keep every region.
            Applied only with a setup fitted on ``material`` (step 8).
    """

    name = "optics"

    def __init__(
        self,
        num_classes: int,
        material: str = "MoS2",
        setup: Mapping[str, Any] | str | None = None,
        oxide_nm: float | None = None,
        max_layers: int = LADDER_LAYERS,  # the ladder the zero-label gamma fit assumes too
        model_error: float = MODEL_ERROR,
        blur_sigma: float = BLUR_SIGMA,
        reject: float = 0.999,
        opening: int = 3,
        edge_share: float = 0.3,
        level_share: float = 0.7,
    ):
        if setup is None:
            raise ConfigError("model.setup: the optics model needs a setup (flakeseg calibrate's YAML)")
        if isinstance(setup, str):  # a shipped setup's name or a setup file
            setup = resolve_setup(setup).to_dict()
        if not material:
            raise ConfigError("model.material: no crystal named; set data.material, e.g. data.material=WSe2")
        find_material(material)  # an unknown material is one line here
        if not 1 <= int(max_layers) <= 50:
            raise ConfigError(f"model.max_layers: must be in 1..50, got {max_layers}")
        if not 0 <= model_error < 5 or not 0 < reject < 1 or blur_sigma < 0 or opening < 0:
            raise ConfigError(
                "model: need 0 <= model_error < 5, 0 < reject < 1, blur_sigma >= 0, opening >= 0, got "
                f"{model_error}, {reject}, {blur_sigma}, {opening}"
            )
        if not 0 <= level_share < 1:
            raise ConfigError(f"model.level_share: must be in [0, 1), got {level_share}")
        setup_dict = dict(Setup.from_dict(setup, source="model.setup").to_dict())
        super().__init__(
            num_classes,
            material=material,
            setup=setup_dict,
            oxide_nm=oxide_nm,
            max_layers=int(max_layers),
            model_error=float(model_error),
            blur_sigma=float(blur_sigma),
            reject=float(reject),
            opening=int(opening),
            edge_share=float(edge_share),
            level_share=float(level_share),
        )
        self.material = material
        self.setup = Setup.from_dict(setup_dict, source="model.setup")
        if oxide_nm is not None:
            self.setup = dataclasses.replace(self.setup, oxide_nm=float(oxide_nm))
        self.fit_oxide = oxide_nm is None
        self.layers = list(range(1, int(max_layers) + 1))
        self.model_error, self.blur_sigma = float(model_error), float(blur_sigma)
        self.reject, self.opening = float(reject), int(opening)
        self.edge_share = float(edge_share)
        self.level_share = float(level_share)
        # the level rule trusts the rungs to the optics' error: only where the setup's tone was fitted
        # on this material (its labels, or its flakes' ladder); another material's setup is off by up to
        # 39 % across materials (docs/results/optics/), beyond the rule's margin
        fitted = self.setup.fitted_on
        fitted_for = fitted.get("ladder_material") or fitted.get("material")
        self.rungs_fitted = str(fitted_for or "").lower() == str(material).lower()

    def setup_for(self, background: np.ndarray) -> Setup:
        """The setup of one image: the oxide fitted on its substrate colour unless fixed."""
        return image_setup(self.setup, background) if self.fit_oxide else self.setup

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        return {"fitted": "nothing (zero labels)"}

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        background = estimate_background(image).astype(np.float64)
        setup = self.setup_for(background)
        usable = background < CLIP
        pixels = image.astype(np.float64)
        if self.blur_sigma > 0:
            pixels = cv2.GaussianBlur(pixels, (0, 0), self.blur_sigma)
        contrast = pixels / np.maximum(background, 1.0) - 1.0  # H x W x 3
        noise = np.maximum(contrast_noise(image, contrast, background), NOISE_FLOOR)
        means = np.concatenate(
            [
                np.zeros((1, 3)),
                np.stack([setup.contrast(self.material, n, background)[0] for n in self.layers]),
            ]
        )  # K x 3: substrate, then 1..max_layers
        sigma = np.sqrt(noise[None, :] ** 2 + (self.model_error * means) ** 2)
        channels = np.flatnonzero(usable & np.isfinite(means).all(axis=0))
        if len(channels) == 0:  # every substrate channel clipped: nothing can be told apart
            out = np.zeros((self.num_classes, *image.shape[:2]), np.float32)
            out[0] = 1.0
            return out
        x = contrast[..., channels]  # H x W x c
        distance = (((x[None] - means[:, None, None, channels]) / sigma[:, None, None, channels]) ** 2).sum(
            -1
        )
        log_likelihood = -0.5 * distance - np.log(sigma[:, channels]).sum(axis=1)[:, None, None]
        posterior = softmax(log_likelihood, axis=0)  # K x H x W
        out = np.zeros((self.num_classes, *image.shape[:2]), np.float64)
        for k in range(len(means)):
            out[k if 0 < k < self.num_classes else 0] += posterior[k]
        rejected = distance.min(axis=0) > stats.chi2.ppf(self.reject, len(channels))
        out[:, rejected] = 0.0
        out[0, rejected] = 1.0
        if self.opening > 1:
            labels = out.argmax(axis=0)
            kernel = np.ones((self.opening, self.opening), bool)
            for cls in range(1, self.num_classes):
                mask = labels == cls
                rim = mask & ~ndimage.binary_opening(mask, kernel)
                out[0, rim] += out[cls, rim]
                out[cls, rim] = 0.0
        if self.edge_share > 0:
            self._drop_soft_edged(out, contrast[..., channels])
        if self.level_share > 0 and self.rungs_fitted:
            self._drop_off_rung(out, contrast[..., channels], means[1, channels])
        return out.astype(np.float32)

    def _drop_off_rung(self, out: np.ndarray, contrast: np.ndarray, monolayer: np.ndarray) -> None:
        """Monolayer regions whose median contrast, projected on the monolayer's predicted contrast,
        reaches less than ``level_share`` of it go to class 0 (in place): a flake sits on its rung
        within the optics' error, while the pixels of a patch the lighting darkens straddle the
        substrate and the monolayer, and those called monolayer have a median just past halfway."""
        size = float(monolayer @ monolayer)
        if self.num_classes < 2 or size <= 0:
            return
        regions, count = ndimage.label(out.argmax(axis=0) == 1)
        if count == 0:
            return
        index = np.arange(1, count + 1)
        medians = np.asarray(ndimage.median((contrast @ monolayer) / size, regions, index))
        off = np.isin(regions, index[medians < self.level_share])
        out[0, off] += out[1, off]
        out[1, off] = 0.0

    def _drop_soft_edged(self, out: np.ndarray, contrast: np.ndarray) -> None:
        """Flake regions without a sharp edge go to class 0 (in place): a flake's contrast steps at its
        border, while a region the uneven lighting (vignetting, dust on the optics) darkens fades in.
        Step: the median contrast of a 2-px band inside the border minus that of a 2-px band outside
        on class 0, projected on the region's own contrast; kept from ``edge_share`` of it. For two
        layers and more the outside band leaves out pixels farther from the substrate along that
        contrast than the region itself: class 0 holds thicker flakes too, and beside one a bilayer
        otherwise looks as if it faded in. Monolayers keep them: left out there too, more false
        monolayers were listed (docs/results/optics_edge_probe/)."""
        labels = out.argmax(axis=0)
        ring = np.ones((3, 3), bool)
        for cls in range(1, self.num_classes):
            regions, _ = ndimage.label(labels == cls)
            for index, box in enumerate(ndimage.find_objects(regions), start=1):
                pad = tuple(slice(max(b.start - 3, 0), b.stop + 3) for b in box)
                region = regions[pad] == index
                if region.sum() < 50:
                    continue
                inner = region & ~ndimage.binary_erosion(region, ring, iterations=2)
                outer = ndimage.binary_dilation(region, ring, iterations=2) & ~region & (labels[pad] == 0)
                local = contrast[pad]
                level = np.median(local[region], axis=0)
                size = np.linalg.norm(level)
                if cls >= 2:  # not a thicker flake beside it (nor the blurred edge towards one)
                    outer &= local @ level < size**2
                if not inner.any() or not outer.any():
                    continue
                step = np.median(local[inner], axis=0) - np.median(local[outer], axis=0)
                along = float(step @ level) / max(size, 1e-9)
                if along < self.edge_share * size:
                    moved = out[cls][pad][region]
                    out[0][pad][region] += moved
                    out[cls][pad][region] = 0.0

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        return None


@register_model("optics", kind="classical")
def build_optics_layers(num_classes: int, **options: Any) -> OpticsLayers:
    return OpticsLayers(num_classes, **options)
