"""The tone curve with zero labels (flakeseg.optics.ladder, ``flakeseg calibrate IMAGES --material``):
the gamma of a known setup recovered from images it rendered, a tie kept, bad input in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from flakeseg.errors import DataError
from flakeseg.optics.calibration import Setup, calibrate
from flakeseg.optics.ladder import LadderSample, fit_gamma, ladder_likelihood


def folder(truth: Setup, material: str, flakes: bool = True, seed: int = 0) -> list[np.ndarray]:
    """Four 90 x 120 images of ``truth`` at several exposures, each with a monolayer, a bilayer and a
    thick (12-layer) flake of ``material`` placed differently on each (or bare substrate only), with
    sensor noise."""
    signal = truth.linear(None, 0)
    tone = truth.tone()
    rng = np.random.default_rng(seed)
    images = []
    for index, brightness in enumerate((0.55, 0.65, 0.75, 0.85)):
        substrate = 255.0 * tone.encode(signal * brightness / signal.max())
        layers = np.zeros((90, 120), np.int64)
        if flakes:
            layers[10:40, 10:60], layers[50:80, 15:55], layers[20:70, 75:110] = 1, 2, 3
            layers = np.roll(layers, (11 * index, 29 * index), axis=(0, 1))
        colours = truth.colours(material, [0, 1, 2, 12], substrate)[0]
        image = colours[layers] + rng.normal(0.0, 1.0, (90, 120, 3))
        images.append(np.clip(np.round(image), 0, 255).astype(np.uint8))
    return images


def start(images: list[np.ndarray], gamma: float = 2.2) -> Setup:
    """What ``flakeseg calibrate IMAGES`` fits before the ladder: the oxide, the default camera."""
    colours = np.stack([np.median(image.reshape(-1, 3), axis=0) for image in images])
    return calibrate(colours, gammas=(gamma,), oxide_range=(240.0, 330.0, 2.0))


@pytest.mark.parametrize(("material", "gamma"), [("MoS2", 2.6), ("MoS2", 1.8), ("graphene", 3.0)])
def test_the_gamma_of_a_known_setup_is_recovered_from_its_flakes(material, gamma):
    """Images rendered through a gamma of ``gamma``; the fit starts from the default 2.2 (or from 2.6)
    and finds it, with an oxide near the truth's."""
    truth = Setup(oxide_nm=285.0, gamma=gamma)
    images = folder(truth, material)
    for begin in (2.2, 2.6):
        fitted = fit_gamma(start(images, begin), images, material)
        assert fitted.gamma == gamma, (material, begin, fitted.fitted_on["ladder_log_likelihood"])
        assert fitted.oxide_nm == pytest.approx(285.0, abs=6.0)
        assert fitted.shoulder is None
        assert fitted.fitted_on["ladder_images"] == 4 and fitted.fitted_on["ladder_material"] == material


def test_without_flakes_the_setup_keeps_its_gamma():
    """Bare substrate only: every gamma explains it alike, so the setup's own gamma stays."""
    images = folder(Setup(oxide_nm=285.0, gamma=2.6), "MoS2", flakes=False)
    for begin in (1.8, 2.2):
        assert fit_gamma(start(images, begin), images, "MoS2").gamma == begin


def test_the_likelihood_is_summed_per_image_and_an_image_without_scored_pixels_adds_nothing():
    truth = Setup(oxide_nm=285.0, gamma=2.2)
    images = folder(truth, "MoS2")
    samples = [LadderSample.of(image) for image in images[:2]]
    empty = dataclasses.replace(samples[0], contrast=samples[0].contrast[:0])
    totals = ladder_likelihood(truth, "MoS2", [samples[0], empty, samples[1]])
    assert totals.shape == (3,) and totals[1] == 0.0 and np.all(np.isfinite(totals))
    alone = ladder_likelihood(truth, "MoS2", [samples[0], samples[1]])
    assert totals[[0, 2]] == pytest.approx(alone)


def test_a_folder_of_clipped_substrates_is_one_line():
    white = [np.full((30, 40, 3), 255, np.uint8)] * 2
    with pytest.raises(DataError, match="no image has an unclipped substrate channel") as caught:
        fit_gamma(Setup(oxide_nm=285.0), white, "MoS2")
    assert "\n" not in str(caught.value)


def test_calibrate_command_with_a_material_fits_the_gamma(tmp_path, capsys):
    """``flakeseg calibrate IMAGES --material MoS2``: the setup file holds the fitted gamma and says how;
    without ``--material`` the gamma stays the default and the command says how to fit it."""
    from flakeseg.cli.calibrate import main

    truth = Setup(oxide_nm=285.0, gamma=2.6)
    for i, image in enumerate(folder(truth, "MoS2")):
        Image.fromarray(image).save(tmp_path / f"im{i}.png")
    out = tmp_path / "setup.yaml"
    args = [str(tmp_path), "--out", str(out), "--oxide-range", "240", "330", "2"]
    assert main([*args, "--material", "MoS2"]) == 0
    fitted = Setup.load(out)
    assert fitted.gamma == 2.6 and "ladder_log_likelihood" in fitted.fitted_on
    assert "gamma 2.6: the MoS2 layer ladder fits the flakes of 4 images best" in capsys.readouterr().out
    assert main(args) == 0
    assert Setup.load(out).gamma == 2.2
    assert "give --material CRYSTAL to fit it" in capsys.readouterr().out
