"""Zero-label screening (``model=optics``, ``flakeseg predict --material``): layer counts from the
optics alone, on images rendered by the optics."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from flakeseg.errors import ConfigError
from flakeseg.models.classical.optics_layers import OpticsLayers
from flakeseg.optics.calibration import Setup, shipped_setup


def rendered(setup: Setup, material: str, substrate=(176.0, 151.0, 207.0), seed: int = 0) -> tuple:
    """A 120 x 160 image of the substrate with a monolayer, a bilayer and a thick (12-layer) flake, as
    ``setup`` renders them, with sensor noise; and its layer map (0 substrate, 1, 2, 12)."""
    layers = np.zeros((120, 160), np.int64)
    layers[10:50, 10:70] = 1
    layers[60:110, 20:60] = 2
    layers[30:90, 100:150] = 12
    colours = setup.colours(material, [0, 1, 2, 12], np.asarray(substrate))[0]
    lookup = {0: 0, 1: 1, 2: 2, 12: 3}
    image = colours[np.vectorize(lookup.get)(layers)]
    noise = np.random.default_rng(seed).normal(0.0, 1.5, image.shape)
    return np.clip(np.round(image + noise), 0, 255).astype(np.uint8), layers


@pytest.mark.parametrize("material", ["MoS2", "graphene"])
def test_layer_counts_of_an_image_rendered_by_the_same_setup(material):
    setup = shipped_setup()
    image, layers = rendered(setup, material)
    model = OpticsLayers(3, material=material, setup=setup.to_dict(), oxide_nm=setup.oxide_nm)
    predicted = model.predict_proba(image).argmax(axis=0)
    for count, cls in ((1, 1), (2, 2), (0, 0), (12, 0)):  # 12 layers: thicker than modelled -> class 0
        inside = layers == count
        assert np.mean(predicted[inside] == cls) > 0.9, (material, count, np.bincount(predicted[inside]))


def test_the_oxide_fitted_per_image_finds_a_shifted_oxide():
    """An image rendered on 20 nm more oxide than the setup says: with the oxide fitted on its substrate
    colour the layers are still found; with the setup's oxide fixed they are not all found."""
    truth = shipped_setup()
    import dataclasses

    shifted = dataclasses.replace(truth, oxide_nm=truth.oxide_nm + 20)
    substrate = 200.0 * shifted.linear(None, 0) / shifted.linear(None, 0).max()
    image, layers = rendered(shifted, "MoS2", substrate=shifted.colours("MoS2", [0], substrate)[0, 0])
    fitted = OpticsLayers(3, material="MoS2", setup=truth.to_dict(), oxide_nm=None).predict_proba(image)
    accuracy = np.mean(fitted.argmax(0)[layers == 1] == 1)
    assert accuracy > 0.9, accuracy


def test_a_colour_near_no_layer_count_is_rejected_into_class_0():
    setup = shipped_setup()
    image, layers = rendered(setup, "MoS2")
    image[layers == 1] = (40, 200, 40)  # green: no MoS2 thickness looks like that
    predicted = OpticsLayers(3, material="MoS2", setup=setup.to_dict()).predict_proba(image).argmax(0)
    assert np.mean(predicted[layers == 1] == 0) > 0.95


def test_bad_options_are_one_line():
    with pytest.raises(ConfigError, match="unobtainium"):
        OpticsLayers(3, material="unobtainium", setup=shipped_setup().to_dict())
    with pytest.raises(ConfigError, match="needs a setup"):
        OpticsLayers(3, material="MoS2")
    with pytest.raises(ConfigError, match="model_error"):
        OpticsLayers(3, material="MoS2", setup=shipped_setup().to_dict(), model_error=-1)
    with pytest.raises(ConfigError, match="model.level_share: must be in"):
        OpticsLayers(3, material="MoS2", setup=shipped_setup().to_dict(), level_share=1.5)


def test_predict_material_screens_a_rendered_image_with_no_model(tmp_path, capsys):
    from flakeseg.cli.predict import main

    setup = shipped_setup()
    image, _ = rendered(setup, "MoS2")
    Image.fromarray(image).save(tmp_path / "rendered.png")
    setup.save(tmp_path / "setup.yaml")
    out = tmp_path / "screen"
    setup_file, image_file = str(tmp_path / "setup.yaml"), str(tmp_path / "rendered.png")
    code = main(["--material", "MoS2", "--setup", setup_file, image_file, "--out", str(out)])
    assert code == 0
    with open(out / "flakes.csv") as handle:
        rows = list(csv.DictReader(handle))
    classes = sorted(row["class_name"] for row in rows)
    assert classes == ["bilayer", "monolayer"], rows
    assert "zero labels" in (out / "run.json").read_text()
    assert "1 monolayer, 1 bilayer candidates" in capsys.readouterr().err


def test_a_region_that_darkens_gradually_is_not_a_flake_and_a_sharp_one_is():
    """Uneven lighting: a smooth dark patch as deep as a monolayer's contrast is dropped by the edge
    rule; a monolayer of the same contrast with a sharp edge is kept."""
    setup = shipped_setup()
    substrate = np.array([176.0, 151.0, 207.0])
    mono = setup.colours("MoS2", [1], substrate)[0, 0]
    yy, xx = np.mgrid[0:160, 0:240]
    image = np.broadcast_to(substrate, (160, 240, 3)).astype(np.float64).copy()
    depth = np.exp(-(((xx - 60) ** 2 + (yy - 80) ** 2) / (2 * 28.0**2)))[..., None]  # a soft dark patch
    image = image + depth * (mono - substrate) * 1.2
    image[50:110, 150:210] = mono  # a sharp monolayer
    image = np.clip(np.round(image + np.random.default_rng(1).normal(0, 1.0, image.shape)), 0, 255)
    kwargs = {"material": "MoS2", "setup": setup.to_dict(), "oxide_nm": setup.oxide_nm}
    with_rule = OpticsLayers(3, **kwargs).predict_proba(image.astype(np.uint8)).argmax(0)
    without = OpticsLayers(3, edge_share=0.0, **kwargs).predict_proba(image.astype(np.uint8)).argmax(0)
    assert np.mean(without[70:90, 50:70] == 1) > 0.5  # the rule is what removes the patch
    assert np.mean(with_rule[70:90, 50:70] == 1) < 0.05
    assert np.mean(with_rule[55:105, 155:205] == 1) > 0.9


def test_a_sharp_patch_short_of_the_monolayer_rung_is_not_a_flake():
    """Graphene, whose contrasts are small enough that a patch at 60 % of a monolayer's contrast is
    called monolayer pixel by pixel (on MoS2 the chi-square rejection already takes it): with a setup
    fitted on graphene the level rule drops the patch and keeps the monolayer beside it; with another
    material's setup, whose rungs may be off by more than the rule's margin, the rule stays off."""
    setup = shipped_setup("paper_graphene")
    substrate = np.array([176.0, 151.0, 207.0])
    mono = setup.colours("graphene", [1], substrate)[0, 0]
    image = np.broadcast_to(substrate, (120, 240, 3)).astype(np.float64).copy()
    image[30:90, 20:100] = substrate + 0.6 * (mono - substrate)  # short of the rung
    image[30:90, 140:220] = mono  # on it
    image = np.clip(np.round(image + np.random.default_rng(2).normal(0, 0.5, image.shape)), 0, 255)
    image = image.astype(np.uint8)
    kwargs = {"material": "graphene", "setup": setup.to_dict(), "oxide_nm": setup.oxide_nm}
    with_rule = OpticsLayers(3, **kwargs).predict_proba(image).argmax(0)
    without = OpticsLayers(3, level_share=0.0, **kwargs).predict_proba(image).argmax(0)
    assert np.mean(without[35:85, 25:95] == 1) > 0.3  # the rule is what removes the patch
    assert np.mean(with_rule[35:85, 25:95] == 1) < 0.05
    assert np.mean(with_rule[35:85, 145:215] == 1) > 0.9
    foreign = {**setup.to_dict(), "fitted_on": {"material": "MoS2"}}
    model = OpticsLayers(3, material="graphene", setup=foreign, oxide_nm=setup.oxide_nm)
    assert not model.rungs_fitted
    assert np.array_equal(model.predict_proba(image).argmax(0), without)
    laddered = {**setup.to_dict(), "fitted_on": {"material": "MoS2", "ladder_material": "graphene"}}
    assert OpticsLayers(3, material="graphene", setup=laddered).rungs_fitted


def test_a_bilayer_on_a_thick_flakes_terrace_keeps_its_edge_and_a_monolayer_halo_rule_stays():
    """The edge rule measures a bilayer against the substrate beside it, not the thick flake (class 0
    too) that borders it on three sides; measured against the thick flake it looked faded in."""
    setup = shipped_setup()
    substrate = np.array([176.0, 151.0, 207.0])
    bilayer = setup.colours("MoS2", [2], substrate)[0, 0]
    image = np.broadcast_to(substrate, (160, 240, 3)).astype(np.float64).copy()
    image[30:100, 50:190] = substrate * 0.55  # thick: no layer count's colour (rejected into class 0)
    image[50:100, 70:170] = bilayer  # a terrace: thick on three sides, substrate below
    image = np.clip(np.round(image + np.random.default_rng(2).normal(0, 1.0, image.shape)), 0, 255)
    kwargs = {"material": "MoS2", "setup": setup.to_dict(), "oxide_nm": setup.oxide_nm}
    labels = OpticsLayers(3, **kwargs).predict_proba(image.astype(np.uint8)).argmax(0)
    assert np.mean(labels[55:95, 75:165] == 2) > 0.9
    assert np.mean(labels[35:45, 55:185] == 0) > 0.9  # the thick flake stays class 0


def test_predict_oxide_fit_refits_a_setup_oxide_on_each_image(tmp_path):
    """``--setup FILE --oxide fit``: the setup's camera and tone, the oxide fitted on each image (a
    folder of chips from several oxide batches); the image here lies 20 nm of oxide off the setup's."""
    import dataclasses
    import json

    from flakeseg.cli.predict import main

    truth = shipped_setup()
    shifted = dataclasses.replace(truth, oxide_nm=truth.oxide_nm + 20)
    substrate = 200.0 * shifted.linear(None, 0) / shifted.linear(None, 0).max()
    image, _ = rendered(shifted, "MoS2", substrate=shifted.colours("MoS2", [0], substrate)[0, 0])
    Image.fromarray(image).save(tmp_path / "shifted.png")
    truth.save(tmp_path / "setup.yaml")
    runs = {}
    for how, extra in (("fixed", []), ("fit", ["--oxide", "fit"])):
        out = tmp_path / how
        args = ["--material", "MoS2", "--setup", str(tmp_path / "setup.yaml"), str(tmp_path / "shifted.png")]
        assert main([*args, *extra, "--out", str(out)]) == 0
        runs[how] = json.loads((out / "run.json").read_text())
        with open(out / "flakes.csv") as handle:
            runs[how]["classes"] = sorted(row["class_name"] for row in csv.DictReader(handle))
    assert runs["fit"]["classes"] == ["bilayer", "monolayer"], runs["fit"]["classes"]
    assert '"oxide_nm": null' in json.dumps(runs["fit"]) and f'"oxide_nm": {truth.oxide_nm}' in json.dumps(
        runs["fixed"]
    )
