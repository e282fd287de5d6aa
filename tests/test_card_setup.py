"""A model trained with stage=test on a data set that names its crystal carries a setup calibrated on its
training images and labels, unless it trains on the split a shipped setup was calibrated on: predict
checks new images against it, and evaluation lists as unknown the flakes whose colour fits no layer
count of it. A setup that had read the labels of the images a model is scored on would flatter it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.conftest import TINY, compose_train


@pytest.mark.slow  # trains a test-stage model: end to end, outside `make test-fast`
def test_the_test_stage_calibrates_the_cards_setup_and_predict_checks_against_it(data_root: Path, tmp_path):
    from flakeseg.inference.predictor import load_predictor
    from flakeseg.optics.calibration import Setup
    from flakeseg.screening.screen import setup_to_check
    from flakeseg.stages.test_split import run_test_stage

    # MoS2's images under a name no setup ships for: a lab's own data set that names its crystal
    cfg = compose_train(
        [*TINY, "stage=test", "data.name=lab", f"data.root={data_root}", f"paths.output_dir={tmp_path}"]
    )
    run_test_stage(cfg)
    predictor = load_predictor(tmp_path / "checkpoints" / "final.ckpt")
    setup = Setup.from_dict(predictor.card.setup)
    assert setup.fitted_on["material"] == "MoS2" and setup.fitted_on["labelled_images"] == 24
    assert 250 <= setup.oxide_nm <= 330  # the paper states 300 nm
    checked, source = setup_to_check(argparse.Namespace(setup=None, material=None), predictor)
    assert checked.to_dict() == setup.to_dict() and "model card" in source
    metrics = json.loads((tmp_path / "test_metrics.json").read_text())
    assert metrics["test/flakes_unknown_setup"] == "the model card's setup"


def test_no_card_setup_without_a_material_or_where_one_ships_for_these_images(data_root: Path):
    """The shipped setup serves a model trained on the split it was calibrated on; a model trained on
    other images of that data set (a few-shot draw) gets a setup of its own images and labels only, so
    its held-out images' labels never reach the colour check that scores them."""
    from flakeseg.data.contrasts import card_setup
    from flakeseg.data.splits import split_from_config

    cfg = {**compose_train(["data=mos2", f"data.root={data_root}"]).data}
    assert card_setup({**cfg, "material": None, "name": "lab"}, ["00005"]) is None
    assert card_setup(cfg, reversed(split_from_config(cfg)["train"])) is None  # paper_mos2 ships for it
    from hydra import initialize_config_dir

    from flakeseg.utils.config_files import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):  # as inside train.py's Hydra app
        drawn = card_setup(cfg, ["00005", "00007"])
    assert drawn is not None and drawn["fitted_on"]["labelled_images"] == 2
    assert drawn["fitted_on"]["material"] == "MoS2"


def test_drawn_images_too_clipped_for_the_oxide_borrow_the_other_images_substrates(data_root: Path, caplog):
    """Graphene 008's substrate is 255 in red and blue: alone it cannot fix the oxide. The split's
    other images' substrate colours (pixels, no label) fix it; its own labels fit the camera. A data
    set with no other images to borrow from gets no setup and a warning, and still trains."""
    from flakeseg.data.contrasts import card_setup

    cfg = {**compose_train(["data=graphene", f"data.root={data_root}"]).data}
    drawn = card_setup(cfg, ["008"])
    assert drawn is not None and drawn["fitted_on"]["labelled_images"] == 1
    assert drawn["fitted_on"]["images"] == 30  # 29 borrowed substrates and its own
    with caplog.at_level("WARNING"):
        assert card_setup({**cfg, "name": "lab"}, ["008"]) is None
    assert "no setup calibrated on these training images" in caplog.text
    assert "oxide cannot be fitted" in caplog.text
