"""What a network's input holds beyond the resampled RGB image, fitted on its training images.

Two steps of the recipe learn from the training images' labels before the network trains, and are
kept in the checkpoint so that prediction prepares images the same way:

- ``data.substrate_choice=fitted``: the substrate colour each image is white-balanced against is chosen
  among its colour peaks with the flake contrasts of the training labels
  (:func:`~flakeseg.optics.substrate.fit_substrate_prior`) instead of being its densest colour;
- ``data.gmm_channels=true``: the optical-contrast GMM (:mod:`flakeseg.models.classical.contrast_gmm`,
  the classical model that needs 43 numbers) is fitted on the training images and its class
  posteriors, as 0..255 channels, follow the RGB channels: the network starts from what the physics
  says and learns what it misses (edges, context, label conventions).

In cross-validation both are fitted on each fold's training images only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flakeseg.data.classes import region_class_indices
from flakeseg.data.preprocess import network_rgb, uses_fitted_inputs
from flakeseg.optics.substrate import SubstratePrior, estimate_background, fit_substrate_prior

__all__ = ["GMM_CHANNEL_NORMALIZATION", "InputFeatures", "fit_input_features"]

#: mean and std of a posterior channel (0..255 -> -1..1)
GMM_CHANNEL_NORMALIZATION = (0.5, 0.5)


@dataclass
class InputFeatures:
    """How an image at the model's scale becomes the network's ``H x W x channels`` uint8 input.

    Attributes:
        substrate_normalize: white-balance the RGB channels against the substrate.
        prior: the fitted flake contrasts that choose the substrate (``None``: the densest colour).
        gmm: the fitted optical-contrast GMM whose posteriors are extra channels, or ``None``.
        substrate_channels: three constant channels of the substrate's colour after RGB
            (``data.substrate_channels``; :func:`~flakeseg.data.preprocess.network_rgb`).
    """

    substrate_normalize: bool = False
    prior: SubstratePrior | None = None
    gmm: Any = None
    substrate_channels: bool = False

    @property
    def channels(self) -> int:
        return 3 + 3 * self.substrate_channels + (self.gmm.num_classes if self.gmm is not None else 0)

    def normalization(self, mean: Sequence[float], std: Sequence[float]) -> dict[str, list[float]]:
        """The RGB ``mean`` and ``std`` extended by the substrate channels' (RGB's) and the posterior
        channels' (one value per channel)."""
        rgb_mean, rgb_std = list(map(float, mean)), list(map(float, std))
        if self.substrate_channels:
            rgb_mean, rgb_std = rgb_mean + rgb_mean[:3], rgb_std + rgb_std[:3]
        extra = self.channels - len(rgb_mean)
        low, spread = GMM_CHANNEL_NORMALIZATION
        return {"mean": [*rgb_mean, *[low] * extra], "std": [*rgb_std, *[spread] * extra]}

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The network input of an ``H x W x 3`` uint8 image already resampled to the model's scale."""
        if self.substrate_normalize or self.substrate_channels:
            background = estimate_background(image, prior=self.prior)
            rgb = network_rgb(image, background, self.substrate_normalize, self.substrate_channels)
        else:
            rgb = image
        if self.gmm is None:
            return rgb
        posteriors = self.gmm.predict_proba(image)  # C x H x W, against its own substrate choice
        extra = np.clip(np.round(posteriors * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return np.concatenate([rgb, extra], axis=2)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (a checkpoint loads with ``weights_only=True``)."""
        gmm = None
        if self.gmm is not None:
            gmm = {
                "num_classes": self.gmm.num_classes,
                "config": dict(self.gmm.config),
                "state": {k: np.asarray(v).tolist() for k, v in self.gmm.state().items()},
            }
        return {
            "substrate_normalize": self.substrate_normalize,
            "prior": self.prior.to_dict() if self.prior is not None else None,
            "gmm": gmm,
            "substrate_channels": self.substrate_channels,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> InputFeatures | None:
        if not raw:
            return None
        prior = SubstratePrior.from_dict(raw["prior"]) if raw.get("prior") else None
        gmm = None
        if raw.get("gmm"):
            from flakeseg.models.classical.contrast_gmm import ContrastGMM

            options = {k: v for k, v in raw["gmm"]["config"].items() if k != "name"}
            gmm = ContrastGMM(int(raw["gmm"]["num_classes"]), **options)
            gmm.load_state({k: np.asarray(v) for k, v in raw["gmm"]["state"].items()})
            gmm.substrate_prior = prior
        return cls(bool(raw.get("substrate_normalize")), prior, gmm, bool(raw.get("substrate_channels")))


def fit_input_features(
    data_cfg: Mapping[str, Any],
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    class_names: Sequence[str],
    seed: int = 0,
) -> InputFeatures:
    """Fit what ``data_cfg`` asks for (see the module notes) on training images at the model's scale."""
    uses_fitted_inputs(data_cfg)  # checks data.substrate_choice
    prior = None
    if str(data_cfg.get("substrate_choice") or "densest") == "fitted":
        flakes = region_class_indices(data_cfg["classes"], list(class_names))
        prior = fit_substrate_prior(
            images, masks, flakes, tolerance=float(data_cfg.get("substrate_tolerance", 0.07))
        )
    gmm = None
    if data_cfg.get("gmm_channels"):
        from flakeseg.models.classical.contrast_gmm import ContrastGMM

        gmm = ContrastGMM(len(class_names))
        gmm.substrate_prior = prior
        gmm.fit(images, masks, seed=seed)
    return InputFeatures(
        bool(data_cfg.get("substrate_normalize")), prior, gmm, bool(data_cfg.get("substrate_channels"))
    )
