"""``flakeseg robustness``: the shifts do what they say, and the study writes its report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flakeseg.optics.calibration import shipped_setup
from flakeseg.studies.robustness import SHIFTS, resize_pair, shift_image
from tests.test_optics_layers import rendered


@pytest.fixture(scope="module")
def sample():
    setup = shipped_setup()
    image, layers = rendered(setup, "MoS2")
    return image, np.where(layers == 12, -1, layers), {"setup": setup, "material": "MoS2"}


def test_neutral_strengths_change_nothing(sample):
    image, layers, context = sample
    for shift, strength in (("exposure", 1.0), ("gamma", 1.0), ("vignetting", 0.0), ("noise", 0.0)):
        out = shift_image(shift, strength, image, layers, context)
        assert np.abs(out.astype(int) - image.astype(int)).max() <= 1, shift
    same_lamp = shift_image("white_balance", 2856.0, image, layers, context)
    assert np.abs(same_lamp.astype(int) - image.astype(int)).max() <= 1


def test_shifts_move_the_image_the_way_they_say(sample):
    image, layers, context = sample
    bright = shift_image("exposure", 1.4, image, layers, context)
    assert bright.mean() > image.mean()
    warm = shift_image("white_balance", 3000.0, image, layers, context).astype(float)
    cold = shift_image("white_balance", 6500.0, image, layers, context).astype(float)
    assert warm[..., 2].mean() / warm[..., 0].mean() < cold[..., 2].mean() / cold[..., 0].mean()  # bluer lamp
    vignetted = shift_image("vignetting", 0.3, image, layers, context)
    corrected = shift_image("vignetting_flatfield", 0.3, image, layers, context)
    assert vignetted[0, 0].mean() < image[0, 0].mean() - 10  # the corner lost about 30 % of its signal

    # the flat field makes the field even again (at the field's median brightness): corner vs centre
    def corner_over_centre(im):
        return im[:8, :8].astype(float).mean() / im[56:64, :8].astype(float).mean()

    assert corner_over_centre(vignetted) < 0.95 * corner_over_centre(image)
    assert corner_over_centre(corrected) == pytest.approx(corner_over_centre(image), abs=0.03)
    thin = shift_image("oxide", 90.0, image, layers, context)
    assert np.abs(thin[layers == 0].astype(int) - image[layers == 0].astype(int)).mean() > 10


def test_magnification_resizes_image_and_labels_together(sample):
    image, layers, _ = sample
    small, mask = resize_pair(image, (layers > 0).astype(np.uint8), 0.7)
    assert small.shape[:2] == mask.shape == (round(120 * 0.7), round(160 * 0.7))
    assert set(np.unique(mask)) <= {0, 1}


def test_every_shift_has_two_strengths():
    assert all(len(strengths) == 2 for strengths in SHIFTS.values())
    names = "exposure white_balance gamma vignetting vignetting_flatfield defocus jpeg noise magnification"
    assert {*names.split(), "vignetting_folder", "magnification_scaled", "oxide"} == set(SHIFTS)


@pytest.mark.slow
def test_the_study_writes_its_json_in_the_issue_layout(data_root, tmp_path, monkeypatch):
    from flakeseg.studies.robustness import main

    monkeypatch.setenv("FLAKESEG_DATA", str(data_root))
    out = tmp_path / "rob"
    assert (
        main(["optics", "--data", "mos2", "--shifts", "exposure,oxide", "--images", "2", "--out", str(out)])
        == 0
    )
    result = json.loads((out / "robustness.json").read_text())
    assert set(result) == {"optics"}
    assert set(result["optics"]) == {"none", "exposure", "oxide"}
    assert set(result["optics"]["exposure"]) == {"0.7", "1.4"} and set(result["optics"]["none"]) == {"0"}
    row = result["optics"]["oxide"]["90"]
    scores = {
        "flake_f1_monolayer",
        "flake_f1_bilayer",
        "mean_class_acc",
        "drift_flagged",
        "drift_flagged_folder",
    }
    assert set(row) == scores
    assert row["drift_flagged"] == row["drift_flagged_folder"] == 1.0  # 90 nm of oxide: every image flagged
    assert result["optics"]["none"]["0"]["drift_flagged_folder"] == 0.0
    assert (out / "robustness.png").stat().st_size > 0 and "| optics | oxide | 90 |" in (
        out / "robustness.md"
    ).read_text()


def test_a_blank_image_undoes_vignetting_and_a_wrong_size_is_one_line(sample, tmp_path, capsys):
    from PIL import Image

    from flakeseg.cli.predict import main
    from flakeseg.errors import DataError
    from flakeseg.optics.substrate import apply_flat_field, flat_field_from_blank

    image, layers, context = sample
    vignetted = shift_image("vignetting", 0.3, image, layers, context)
    blank = shift_image("vignetting", 0.3, np.full_like(image, 180), layers, context)
    corrected = apply_flat_field(vignetted, flat_field_from_blank(blank))
    corner, side = (slice(0, 8), slice(0, 8)), (slice(56, 64), slice(0, 8))
    for im in (image, corrected):  # corner and side lit alike again
        assert im[corner].astype(float).mean() / im[side].astype(float).mean() == pytest.approx(
            image[corner].astype(float).mean() / image[side].astype(float).mean(), abs=0.03
        )
    with pytest.raises(DataError, match="flat field 10 x 10"):
        apply_flat_field(image, np.ones((10, 10, 3), np.float32))
    Image.fromarray(vignetted).save(tmp_path / "v.png")
    Image.fromarray(blank).save(tmp_path / "blank.png")
    Image.fromarray(blank[:50]).save(tmp_path / "small.png")
    out = tmp_path / "s"
    assert main(["--material", "MoS2", str(tmp_path / "v.png"), "--flatfield", str(tmp_path / "blank.png"),
                 "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "run.json").read_text())["settings"]["flatfield_sha256"]
    code = main(["--material", "MoS2", str(tmp_path / "v.png"), "--flatfield", str(tmp_path / "small.png"),
                 "--out", str(tmp_path / "s2")])  # fmt: skip
    assert code == 1 and "the flat field 160 x 50" in capsys.readouterr().err


def test_translate_runs_each_network_again_through_the_translation(sample):
    from flakeseg.studies.robustness import _models

    seen = []

    def translate(image):
        seen.append(image.shape)
        return image

    models = _models(["mos2"], {}, None, translate)
    assert set(models) == {"mos2", "mos2+translate"}
    image = sample[0]
    models["mos2"][0](1.0).probabilities(image)
    assert seen == []
    models["mos2+translate"][0](1.0).probabilities(image)
    assert seen == [image.shape]
