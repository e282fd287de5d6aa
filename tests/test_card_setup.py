"""A model trained on a data set with a material and no shipped setup carries a setup calibrated on its
training images and labels: predict checks new images against it, and evaluation lists as unknown the
flakes whose colour fits no layer count of it."""

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


def test_no_card_setup_without_a_material_or_where_one_ships():
    from flakeseg.data.contrasts import card_setup

    cfg = compose_train(["data=mos2"])
    assert card_setup({**cfg.data, "material": None, "name": "lab"}, ["00005"]) is None
    assert card_setup(dict(cfg.data), ["00005"]) is None  # paper_mos2 ships
