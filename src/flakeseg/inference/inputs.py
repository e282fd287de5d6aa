"""What a network's input holds beyond the resampled RGB image, fitted on its training images.

Steps of the recipe that learn from the training images' labels before the network trains, and are
kept in the checkpoint so that prediction prepares images the same way:

- ``data.substrate_choice=fitted``: the substrate colour each image is white-balanced against is chosen
  among its colour peaks with the flake contrasts of the training labels
  (:func:`~flakeseg.optics.substrate.fit_substrate_prior`) instead of being its densest colour;
- ``data.gmm_channels=true``: the optical-contrast GMM (:mod:`flakeseg.models.classical.contrast_gmm`,
  the classical model that needs 43 numbers) is fitted on the training images and its class
  posteriors, as 0..255 channels, follow the RGB channels: the network starts from what the physics
  says and learns what it misses (edges, context, label conventions);
- ``data.optics_channels=true``: a microscope setup is calibrated on the training images and labels
  (:func:`~flakeseg.optics.calibration.calibrate`, as ``flakeseg calibrate --data`` does) and the
  thin-film optics model of ``data.material`` on it (:mod:`flakeseg.models.classical.optics_layers`,
  the oxide fitted on each image) gives three more channels: the posteriors of bare substrate (or
  thicker), one layer and two layers.

In cross-validation each is fitted on each fold's training images only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flakeseg.data.classes import region_class_indices
from flakeseg.data.preprocess import network_rgb, uses_fitted_inputs
from flakeseg.optics.substrate import SubstratePrior, estimate_background, fit_substrate_prior

__all__ = ["GMM_CHANNEL_NORMALIZATION", "InputFeatures", "fit_input_features", "fit_optics_channels"]

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
        optics: the optics model (:class:`~flakeseg.models.classical.optics_layers.OpticsLayers`,
            three classes) whose posteriors are the last channels, or ``None``.
    """

    substrate_normalize: bool = False
    prior: SubstratePrior | None = None
    gmm: Any = None
    substrate_channels: bool = False
    optics: Any = None

    @property
    def channels(self) -> int:
        return (
            3
            + 3 * self.substrate_channels
            + (self.gmm.num_classes if self.gmm is not None else 0)
            + (self.optics.num_classes if self.optics is not None else 0)
        )

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
        planes = [rgb]
        for model in (self.gmm, self.optics):
            if model is not None:
                posteriors = model.predict_proba(image)  # C x H x W, against its own substrate estimate
                planes.append(
                    np.clip(np.round(posteriors * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
                )
        return planes[0] if len(planes) == 1 else np.concatenate(planes, axis=2)

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
            "optics": {"material": self.optics.material, "setup": self.optics.setup.to_dict()}
            if self.optics is not None
            else None,
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
        optics = None
        if raw.get("optics"):
            optics = _optics_model(raw["optics"]["material"], raw["optics"]["setup"])
        return cls(
            bool(raw.get("substrate_normalize")), prior, gmm, bool(raw.get("substrate_channels")), optics
        )


def _optics_model(material: str, setup: Mapping[str, Any]) -> Any:
    """The three-class optics model (substrate or thicker, 1 layer, 2 layers) whose posteriors are
    the optics channels; the oxide fitted on each image."""
    from flakeseg.models.classical.optics_layers import OpticsLayers

    return OpticsLayers(3, material=material, setup=dict(setup), oxide_nm=None)


def fit_optics_channels(
    data_cfg: Mapping[str, Any],
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    class_names: Sequence[str],
) -> Any:
    """The optics model of ``data.material`` on a setup calibrated on these labelled images (class 0
    pixels as the substrate, the classes named like a layer count as those layers)."""
    from flakeseg.data.contrasts import LAYER_COUNTS, layer_classes
    from flakeseg.errors import ConfigError
    from flakeseg.optics.calibration import calibrate, measure_contrast

    material = data_cfg.get("material")
    if not material:
        raise ConfigError("data.optics_channels: needs data.material, the crystal (e.g. data.material=WSe2)")
    layers = layer_classes(class_names)
    if not layers:
        raise ConfigError(
            f"data.optics_channels: no layer class among {list(class_names)} "
            f"(known: {', '.join(LAYER_COUNTS)})"
        )
    labelled = [
        measure_contrast(str(i), image, {count: mask == cls for cls, count in layers.items()}, mask == 0)
        for i, (image, mask) in enumerate(zip(images, masks, strict=True))
    ]
    setup = calibrate(np.zeros((0, 3)), str(material), labelled)
    return _optics_model(str(material), setup.to_dict())


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
    optics = (
        fit_optics_channels(data_cfg, images, masks, class_names) if data_cfg.get("optics_channels") else None
    )
    return InputFeatures(
        bool(data_cfg.get("substrate_normalize")),
        prior,
        gmm,
        bool(data_cfg.get("substrate_channels")),
        optics,
    )
