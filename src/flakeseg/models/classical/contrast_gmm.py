"""Optical contrast against the substrate, one Gaussian per class (``model=contrast_gmm``).

How labs identify layer numbers by eye, and the method of the 2DMatGMM tool (Uslu et al. 2024): a
flake of a given thickness changes the colour of the substrate under it by a fixed ratio, whatever the
illumination. So per image:

1. the substrate colour ``b`` is estimated (:func:`estimate_background`): the densest colour of the
   image (most pixels of a flake image are substrate), refined to the median of the pixels near it;
2. each pixel's RGB contrast is ``c = I / b - 1`` (0 on the substrate, negative where darker);
3. one Gaussian (full 3x3 covariance) per class is fitted to training pixels' contrasts, and a pixel
   gets the class of highest likelihood (times the class prior, uniform by default). Probabilities are
   the normalised likelihoods.

A class that is a union of materials gets a mixture of Gaussians instead (``components``): the
three-class scheme's ``other`` is the substrate (contrast near 0, a tight cluster) *and* flakes of three
layers or more (large, varied contrasts). One Gaussian stretched over both is wider than the monolayer
Gaussian even at contrast 0, and takes the substrate away from ``other`` (measured on MoS2, 16 training
images, 8 held out: mean per-class accuracy 0.49 with one Gaussian for ``other``, 0.76 with two).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from scipy.special import logsumexp

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError
from flakeseg.models.classical.base import ClassicalModel, softmax
from flakeseg.models.registry import register_model
from flakeseg.optics.substrate import SubstratePrior, estimate_background

PRIORS = ("uniform", "empirical")


def contrast_image(image: np.ndarray, background: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """Per-pixel RGB contrast ``I / background - 1`` (``H x W x 3`` float64), after an optional blur."""
    pixels = image.astype(np.float64)
    if blur_sigma > 0:
        pixels = cv2.GaussianBlur(pixels, (0, 0), blur_sigma)
    return pixels / np.maximum(np.asarray(background, dtype=np.float64), 1.0) - 1.0


def gaussian_log_likelihood(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Log density of ``N x D`` points under a full-covariance Gaussian."""
    chol = np.linalg.cholesky(cov)
    solved = np.linalg.solve(chol, (x - mean).T)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * ((solved**2).sum(axis=0) + log_det + x.shape[1] * np.log(2 * np.pi))


class ContrastGMM(ClassicalModel):
    """Per-class Gaussians (or mixtures) over the RGB contrast against each image's substrate colour.

    Args:
        num_classes: classes to predict.
        components: Gaussians per class: one number for every class, or a list in class order;
            ``None``: two for the first class (the three-class scheme's ``other``, see the module notes)
            and one for each other class.
        background_bin: colour histogram bin width (levels) of :func:`estimate_background`.
        background_radius: RGB distance of the pixels that refine the substrate colour.
        blur_sigma: Gaussian blur (pixels) before computing contrast, against camera noise; 0 for none.
        pixels_per_class: training pixels per class the Gaussians are fitted on (a random subsample).
        priors: ``uniform`` (every class equally likely: what the mean per-class accuracy rewards) or
            ``empirical`` (the classes' shares of the training pixels).
        reg_covar: added to the covariance diagonals, so a class with few pixels stays invertible.
    """

    name = "contrast_gmm"

    def __init__(
        self,
        num_classes: int,
        components: int | Sequence[int] | None = None,
        background_bin: int = 4,
        background_radius: float = 10.0,
        blur_sigma: float = 1.0,
        pixels_per_class: int = 50_000,
        priors: str = "uniform",
        reg_covar: float = 1.0e-6,
    ):
        if priors not in PRIORS:
            raise ConfigError(f"model.priors: must be one of {', '.join(PRIORS)}, got {priors!r}")
        if components is None:
            counts = [2] + [1] * (num_classes - 1)
        elif isinstance(components, int):
            counts = [components] * num_classes
        else:
            counts = [int(c) for c in components]
        if len(counts) != num_classes or min(counts) < 1:
            raise ConfigError(
                f"model.components: one positive count per class ({num_classes} classes) or one number, "
                f"got {components!r}"
            )
        if int(background_bin) not in (1, 2, 4, 8, 16):
            raise ConfigError(f"model.background_bin: must be 1, 2, 4, 8 or 16, got {background_bin}")
        if not float(background_radius) > 0:
            raise ConfigError(f"model.background_radius: must be > 0, got {background_radius}")
        if int(pixels_per_class) < 10:
            raise ConfigError(f"model.pixels_per_class: must be at least 10, got {pixels_per_class}")
        super().__init__(
            num_classes,
            components=counts,
            background_bin=int(background_bin),
            background_radius=float(background_radius),
            blur_sigma=float(blur_sigma),
            pixels_per_class=int(pixels_per_class),
            priors=priors,
            reg_covar=float(reg_covar),
        )
        most = max(counts)
        #: per class and component (unused components have weight 0): weights, means, covariances
        self.weights = np.zeros((num_classes, most))
        self.means = np.zeros((num_classes, most, 3))
        self.covariances = np.tile(np.eye(3), (num_classes, most, 1, 1))
        self.log_priors = np.full(num_classes, -np.log(num_classes))
        #: known flake contrasts that choose the substrate among colour peaks (``None``: the densest
        #: colour, 2DMatGMM's choice); set by the recipe's GMM input channels, not part of the file
        self.substrate_prior: SubstratePrior | None = None

    def background(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        return estimate_background(
            image, cfg["background_bin"], cfg["background_radius"], prior=self.substrate_prior
        )

    def contrast(self, image: np.ndarray) -> np.ndarray:
        return contrast_image(image, self.background(image), self.config["blur_sigma"])

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        from sklearn.mixture import GaussianMixture

        rng = np.random.default_rng(seed)
        contrasts = np.concatenate([self.contrast(image).reshape(-1, 3) for image in images])
        labels = np.concatenate([mask.ravel() for mask in masks])
        counts = np.bincount(labels[labels != IGNORE_INDEX], minlength=self.num_classes)[: self.num_classes]
        present = counts >= np.array(self.config["components"]) * 10
        for cls in np.flatnonzero(present):
            where = np.flatnonzero(labels == cls)
            if len(where) > self.config["pixels_per_class"]:
                where = rng.choice(where, self.config["pixels_per_class"], replace=False)
            mixture = GaussianMixture(
                self.config["components"][cls],
                covariance_type="full",
                reg_covar=self.config["reg_covar"],
                random_state=seed,
            ).fit(contrasts[where])
            used = len(mixture.weights_)
            self.weights[cls, :used] = mixture.weights_
            self.means[cls, :used] = mixture.means_
            self.covariances[cls, :used] = mixture.covariances_
        # a class without (enough) training pixels is never predicted
        if self.config["priors"] == "empirical":
            shares = counts / counts[present].sum()
            self.log_priors = np.where(present, np.log(np.maximum(shares, 1e-300)), -np.inf)
        else:
            self.log_priors = np.where(present, -np.log(present.sum()), -np.inf)
        return {"training_pixels": counts.tolist()}

    def class_log_likelihood(self, points: np.ndarray, cls: int) -> np.ndarray:
        """``log p(contrast | class)`` of ``N x 3`` contrasts under the class's Gaussian mixture."""
        terms = [
            np.log(weight) + gaussian_log_likelihood(points, self.means[cls, k], self.covariances[cls, k])
            for k, weight in enumerate(self.weights[cls])
            if weight > 0
        ]
        return logsumexp(np.stack(terms), axis=0)

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        points = self.contrast(image).reshape(-1, 3)
        scores = np.full((self.num_classes, len(points)), -np.inf)
        for cls in np.flatnonzero(np.isfinite(self.log_priors)):
            scores[cls] = self.class_log_likelihood(points, cls) + self.log_priors[cls]
        return softmax(scores, axis=0).reshape(self.num_classes, height, width).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "weights": self.weights,
            "means": self.means,
            "covariances": self.covariances,
            "log_priors": self.log_priors,
        }

    def num_parameters(self) -> int:
        """Per fitted component a weight, 3 means and 6 distinct covariance entries; per class a prior."""
        return int((self.weights > 0).sum()) * (1 + 3 + 6) + int(np.isfinite(self.log_priors).sum())

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        for key in ("weights", "means", "covariances", "log_priors"):
            setattr(self, key, np.asarray(arrays[key], dtype=np.float64))


@register_model("contrast_gmm", kind="classical")
def build_contrast_gmm(num_classes: int, **options: Any) -> ContrastGMM:
    return ContrastGMM(num_classes, **options)
