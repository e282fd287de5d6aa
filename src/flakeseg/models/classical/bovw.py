"""Bag of visual words over superpixels (``model=bovw``), the paper's traditional computer-vision baseline.

1. Dense local descriptors on a grid (every ``grid_step`` pixels): colour and gradient histograms
   (:mod:`flakeseg.models.classical.descriptors`), each standardised.
2. Two codebooks by k-means (scikit-learn ``MiniBatchKMeans``) on descriptors sampled from the training
   images: ``colour_words`` colour words and ``gradient_words`` gradient words. Each grid point becomes
   the nearest word of each codebook.
3. Superpixels (scikit-image SLIC, about ``superpixel_size`` pixels each). A superpixel's feature is
   the histogram of the words of the grid points inside it, per codebook, L1-normalised and
   square-rooted (the Hellinger map, usual for histograms under a linear classifier).
4. A linear classifier (logistic regression, classes balanced) on the superpixels of the training
   images, each labelled with the majority class of its pixels. Every pixel gets its superpixel's
   class probabilities.

The fitted model is its arrays (standardisation, codebooks, classifier weights), so prediction needs
neither scikit-learn objects nor pickles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flakeseg.errors import ConfigError
from flakeseg.models.classical.base import ClassicalModel, softmax
from flakeseg.models.classical.descriptors import (
    colour_descriptors,
    gradient_descriptors,
    grid_points,
    lab_image,
)
from flakeseg.models.registry import register_model

#: the two descriptor kinds, each with its own codebook
KINDS = ("colour", "gradient")
#: an image's descriptors per kind at the grid points (``N x D``), and the points' rows and columns
Described = tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]


class BagOfVisualWords(ClassicalModel):
    """Superpixel classification from histograms of colour and gradient words.

    Args:
        num_classes: classes to predict.
        superpixel_size: mean superpixel area in pixels (SLIC's ``n_segments`` is the image area over it).
        compactness: SLIC's colour/space trade-off (higher: squarer superpixels).
        grid_step: spacing of the descriptor grid in pixels.
        patch_radius: descriptors summarise a ``2 r + 1`` square window around each grid point.
        orientations: gradient orientation bins.
        colour_words: size of the colour codebook.
        gradient_words: size of the gradient codebook.
        max_descriptors: descriptors per kind sampled from the training images for k-means.
        regularization: inverse regularisation strength ``C`` of the logistic regression.
        max_iter: iterations of the logistic regression's solver.
    """

    name = "bovw"

    def __init__(
        self,
        num_classes: int,
        *,
        superpixel_size: int = 64,
        compactness: float = 10.0,
        grid_step: int = 2,
        patch_radius: int = 4,
        orientations: int = 8,
        colour_words: int = 48,
        gradient_words: int = 32,
        max_descriptors: int = 100_000,
        regularization: float = 1.0,
        max_iter: int = 1000,
    ):
        minimum = {
            "superpixel_size": (superpixel_size, 4),
            "grid_step": (grid_step, 1),
            "patch_radius": (patch_radius, 1),
            "orientations": (orientations, 2),
            "colour_words": (colour_words, 2),
            "gradient_words": (gradient_words, 2),
            "max_descriptors": (max_descriptors, 100),
            "max_iter": (max_iter, 1),
        }
        for key, (value, least) in minimum.items():
            if not value >= least:
                raise ConfigError(f"model.{key}: must be at least {least}, got {value!r}")
        if not regularization > 0:
            raise ConfigError(f"model.regularization: must be > 0, got {regularization!r}")
        super().__init__(
            num_classes,
            superpixel_size=int(superpixel_size),
            compactness=float(compactness),
            grid_step=int(grid_step),
            patch_radius=int(patch_radius),
            orientations=int(orientations),
            colour_words=int(colour_words),
            gradient_words=int(gradient_words),
            max_descriptors=int(max_descriptors),
            regularization=float(regularization),
            max_iter=int(max_iter),
        )
        self.arrays: dict[str, np.ndarray] = {}

    # descriptors, words and superpixels -------------------------------------------------------------

    def _descriptors(self, image: np.ndarray) -> Described:
        """Each kind's descriptors at the grid points (``N x D``), and the points' rows and columns."""
        cfg = self.config
        lab = lab_image(image)
        rows, cols = grid_points(*image.shape[:2], cfg["grid_step"])
        dense = {
            "colour": colour_descriptors(lab, cfg["patch_radius"]),
            "gradient": gradient_descriptors(lab, cfg["patch_radius"], cfg["orientations"]),
        }
        return {kind: values[rows, cols].astype(np.float64) for kind, values in dense.items()}, (rows, cols)

    def _superpixels(self, image: np.ndarray) -> np.ndarray:
        from skimage.segmentation import slic

        segments = max(1, round(image.shape[0] * image.shape[1] / self.config["superpixel_size"]))
        labels = slic(image, n_segments=segments, compactness=self.config["compactness"], start_label=0)
        # SLIC may leave label numbers unused; renumber 0..S-1
        return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)

    def _words(self, kind: str, descriptors: np.ndarray) -> np.ndarray:
        standard = (descriptors - self.arrays[f"{kind}_mean"]) / self.arrays[f"{kind}_scale"]
        centres = self.arrays[f"{kind}_codebook"]
        distances = (standard**2).sum(1)[:, None] - 2 * standard @ centres.T + (centres**2).sum(1)[None]
        return distances.argmin(axis=1)

    def _features(
        self, image: np.ndarray, described: Described | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Superpixel features ``S x (colour_words + gradient_words)`` and the superpixel map.

        ``described`` is :meth:`_descriptors`'s result for ``image`` when already computed.
        """
        descriptors, (rows, cols) = described or self._descriptors(image)
        segments = self._superpixels(image)
        count = int(segments.max()) + 1
        owner = segments[rows, cols]
        parts = []
        for kind in KINDS:
            words = self.config[f"{kind}_words"]
            histogram = np.bincount(
                owner * words + self._words(kind, descriptors[kind]), minlength=count * words
            ).reshape(count, words)
            total = np.maximum(histogram.sum(axis=1, keepdims=True), 1)
            parts.append(np.sqrt(histogram / total))
        return np.concatenate(parts, axis=1), segments

    # fitting and prediction -------------------------------------------------------------------------

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(seed)
        described = [self._descriptors(image) for image in images]
        for kind in KINDS:
            pool = np.concatenate([d[0][kind] for d in described])
            if len(pool) > self.config["max_descriptors"]:
                pool = pool[rng.choice(len(pool), self.config["max_descriptors"], replace=False)]
            mean, scale = pool.mean(axis=0), pool.std(axis=0) + 1e-6
            kmeans = MiniBatchKMeans(
                n_clusters=self.config[f"{kind}_words"], n_init=3, batch_size=4096, random_state=seed
            ).fit((pool - mean) / scale)
            self.arrays.update(
                {f"{kind}_mean": mean, f"{kind}_scale": scale, f"{kind}_codebook": kmeans.cluster_centers_}
            )

        features, labels = [], []
        for image, mask, image_descriptors in zip(images, masks, described, strict=True):
            feats, segments = self._features(image, image_descriptors)
            count = feats.shape[0]
            votes = np.bincount(
                segments.ravel() * 256 + mask.ravel().astype(np.int64), minlength=count * 256
            ).reshape(count, 256)
            labelled = votes[:, : self.num_classes]
            keep = labelled.sum(axis=1) * 2 >= votes.sum(axis=1)  # at least half the pixels labelled
            features.append(feats[keep])
            labels.append(labelled[keep].argmax(axis=1))
        x, y = np.concatenate(features), np.concatenate(labels)
        present = np.unique(y)
        if len(present) < 2:
            raise ConfigError(
                f"model: bovw needs superpixels of two classes at least; training has {present}"
            )
        classifier = LogisticRegression(
            C=self.config["regularization"], class_weight="balanced", max_iter=self.config["max_iter"]
        ).fit(x, y)
        self.arrays.update(
            {
                "classifier_coef": classifier.coef_,
                "classifier_intercept": classifier.intercept_,
                "classifier_classes": classifier.classes_.astype(np.int64),
            }
        )
        superpixels = np.bincount(y, minlength=self.num_classes)[: self.num_classes]
        return {
            "training_superpixels": superpixels.tolist(),
            "classifier_iterations": int(classifier.n_iter_.max()),
        }

    def superpixel_proba(self, features: np.ndarray) -> np.ndarray:
        """``S x C`` class probabilities of superpixel features (classes absent from training get 0)."""
        coef, intercept = self.arrays["classifier_coef"], self.arrays["classifier_intercept"]
        scores = features @ coef.T + intercept
        if coef.shape[0] == 1:  # two classes: scikit-learn keeps one weight row, for the second class
            scores = np.concatenate([np.zeros_like(scores), scores], axis=1)
        proba = np.zeros((features.shape[0], self.num_classes))
        proba[:, self.arrays["classifier_classes"]] = softmax(scores, axis=1)
        return proba

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        features, segments = self._features(image)
        return self.superpixel_proba(features).T[:, segments].astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        if not self.arrays:
            raise RuntimeError("bovw: not fitted")
        return dict(self.arrays)

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = {key: np.asarray(value) for key, value in arrays.items()}


@register_model("bovw", kind="classical")
def build_bovw(num_classes: int, **options: Any) -> BagOfVisualWords:
    return BagOfVisualWords(num_classes, **options)
