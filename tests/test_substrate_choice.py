"""The substrate colour chosen among colour peaks with the flake contrasts of labelled images."""

from __future__ import annotations

import numpy as np
import pytest

from flakeseg.optics.substrate import (
    SubstratePrior,
    _channel_max,
    _within,
    colour_peaks,
    estimate_background,
    fit_substrate_prior,
    normalize_substrate,
)

SUBSTRATE = np.array([176.0, 152.0, 208.0])
MONOLAYER = np.array([-0.21, -0.05, 0.05])
BILAYER = np.array([-0.40, -0.03, 0.08])


def scene(shares: dict[str, float], size: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bands of substrate, monolayer and bilayer (their shares of the rows), with camera noise."""
    rng = np.random.default_rng(seed)
    colours = {
        "substrate": SUBSTRATE,
        "monolayer": SUBSTRATE * (1 + MONOLAYER),
        "bilayer": SUBSTRATE * (1 + BILAYER),
    }
    labels = {"substrate": 0, "monolayer": 1, "bilayer": 2}
    image = np.zeros((size, size, 3))
    mask = np.zeros((size, size), np.uint8)
    top = 0
    for name, share in shares.items():
        rows = round(share * size)
        image[top : top + rows] = colours[name]
        mask[top : top + rows] = labels[name]
        top += rows
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


PRIOR = SubstratePrior(np.stack([MONOLAYER, BILAYER]), tolerance=0.05)


def test_mostly_substrate_both_choices_agree():
    image, _ = scene({"substrate": 0.85, "monolayer": 0.1, "bilayer": 0.05})
    assert np.abs(estimate_background(image) - SUBSTRATE).max() < 3
    assert np.abs(estimate_background(image, prior=PRIOR) - SUBSTRATE).max() < 3


def test_a_flake_covering_most_of_the_field_fools_the_densest_colour_not_the_prior():
    image, _ = scene({"substrate": 0.08, "monolayer": 0.8, "bilayer": 0.12})
    monolayer = SUBSTRATE * (1 + MONOLAYER)
    assert np.abs(estimate_background(image) - monolayer).max() < 3  # the known failure
    assert np.abs(estimate_background(image, prior=PRIOR) - SUBSTRATE).max() < 3
    balanced = normalize_substrate(image, prior=PRIOR)
    assert np.abs(np.median(balanced[:10].reshape(-1, 3), axis=0) - 128).max() <= 2


def test_without_known_contrasts_the_choice_is_the_densest_colour():
    image, _ = scene({"substrate": 0.1, "monolayer": 0.9})
    empty = SubstratePrior(np.zeros((0, 3)))
    assert np.array_equal(estimate_background(image, prior=empty), estimate_background(image))
    assert np.array_equal(colour_peaks(image)[0].colour, estimate_background(image))


def test_fitted_prior_holds_the_labelled_contrasts_and_skips_mostly_flake_images():
    normal, normal_mask = scene({"substrate": 0.8, "monolayer": 0.1, "bilayer": 0.1}, seed=1)
    flaky, flaky_mask = scene({"substrate": 0.1, "monolayer": 0.9}, seed=2)
    prior = fit_substrate_prior([normal, flaky], [normal_mask, flaky_mask], flake_classes=[1, 2])
    assert prior.contrasts.shape == (2, 3)  # the mostly-flake image gave none
    assert np.abs(prior.contrasts - np.stack([MONOLAYER, BILAYER])).max() < 0.02
    assert SubstratePrior.from_dict(prior.to_dict()).contrasts == pytest.approx(prior.contrasts, abs=1e-5)


def test_mos2_00005_substrate_found_with_the_other_training_images_labels(data_root):
    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.io import read_mask
    from tests.conftest import compose_train

    data_cfg = dict(compose_train([f"data.root={data_root}", "data.scale=0.5"]).data)
    train = load_dataset(data_cfg, ids=data_cfg["split"]["train"], progress=False)
    target = train.ids.index("00005")
    others = [i for i in range(len(train.ids)) if i != target]
    prior = fit_substrate_prior(
        [train.images[i] for i in others], [train.masks[i] for i in others], [1, 2], tolerance=0.07
    )
    image = train.images[target]
    # the true substrate: pixels labelled 0 (substrate) in the four-class labels, at the same scale
    raw = read_mask(data_root / "data" / "label_012" / "col00005.png")
    raw = raw[::2, ::2][: image.shape[0], : image.shape[1]]
    substrate = np.median(image[raw[: image.shape[0], : image.shape[1]] == 0], axis=0)
    densest = estimate_background(image)
    chosen = estimate_background(image, prior=prior)
    assert np.abs(densest - substrate).max() > 25  # 68 % monolayer: the densest colour is not substrate
    assert np.abs(chosen - substrate).max() < 8


def test_colour_distances_and_maxima_are_numpys_reductions_bit_for_bit():
    """The per-channel forms colour peaks and the substrate choice use, for speed, give exactly what
    ``.sum(axis=1)`` and ``.max(axis=-1)`` give: the substrate colour, and so every prediction, stays."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5000, 3)).astype(np.float64)
    for colour in (np.array([120.5, 131.0, 99.5]), rng.uniform(0, 255, 3)):
        plain = ((pixels - colour) ** 2).sum(axis=1) <= 30.0**2
        assert np.array_equal(_within(np.ascontiguousarray(pixels.T), colour, 30.0), plain)
    contrasts = rng.normal(size=(500, 7, 3))
    assert np.array_equal(_channel_max(contrasts), contrasts.max(axis=-1))
