"""Synthetic flakes for a material with no labels (``flakeseg.data.synthetic``): each pasted flake
carries exactly its label and the optics' colour, thin unknown flakes are removed, thick ones kept."""

from __future__ import annotations

import numpy as np

from flakeseg.data.synthetic import FlakeRenderer, random_polygon, shapes_from_masks
from flakeseg.optics.calibration import shipped_setup

SUBSTRATE = np.array([200.0, 160.0, 215.0])


def _image(seed: int = 0) -> np.ndarray:
    """A 120 x 160 substrate with a faint unknown flake (3 % darker in green) and a thick one."""
    rng = np.random.default_rng(seed)
    image = np.ones((120, 160, 3)) * SUBSTRATE
    image[10:40, 10:50] *= (0.99, 0.97, 1.0)  # faint: a monolayer nobody labelled
    image[80:110, 120:155] *= (0.6, 0.8, 0.9)  # thick
    return np.clip(np.round(image + rng.normal(0, 0.7, image.shape)), 0, 255).astype(np.uint8)


def _renderer(**options) -> FlakeRenderer:
    square = np.ones((12, 12), bool)
    defaults = {"flakes": (4, 4), "edge_px": 0.0, "scale": (1.0, 1.0), "polygon_p": 0.0}
    return FlakeRenderer("graphene", shipped_setup("paper_mos2"), [square], **{**defaults, **options})


def test_thin_unknown_flakes_are_filled_and_thick_ones_kept():
    image = _image()
    cleaned, substrate, thick = _renderer().clean(image, np.random.default_rng(0))
    assert np.abs(substrate - SUBSTRATE).max() <= 2
    faint = cleaned[15:35, 15:45].astype(float).mean(axis=(0, 1))
    assert np.abs(faint / SUBSTRATE - 1).max() < 0.01  # was 3 % off in green
    assert thick[85:105, 125:150].all() and not thick[:60].any()
    assert np.array_equal(cleaned[85:105, 125:150], image[85:105, 125:150])


def test_each_pasted_flake_carries_exactly_its_label_and_the_optics_colour():
    renderer = _renderer()
    image = _image()
    out, mask = renderer(image, np.random.default_rng(3))
    again, same = renderer(image, np.random.default_rng(3))
    assert np.array_equal(out, again) and np.array_equal(mask, same)  # one seed, one render
    _, substrate, thick = renderer.clean(image, np.random.default_rng(3))
    assert set(np.unique(mask)) <= {0, 1, 2} and (mask > 0).sum() >= 2 * 144
    assert not (mask[thick] > 0).any()  # never on a thick flake
    colours = renderer._setup_for(substrate).colours("graphene", [0, 1, 2], substrate)[0]
    for layers in (1, 2):
        if not (mask == layers).any():
            continue
        expected = colours[layers] / colours[0] - 1
        measured = out[mask == layers].astype(float).mean(axis=0) / substrate - 1
        assert np.abs(measured - expected).max() < 0.006, (layers, measured, expected)
    # outside the flakes nothing is recoloured: the image is the cleaned one
    outside = (mask == 0) & ~thick
    assert np.abs(out[outside].astype(float).mean(axis=0) - SUBSTRATE).max() < 1.0


def test_outlines_come_from_masks_and_polygons():
    mask = np.zeros((50, 50), np.uint8)
    mask[5:25, 5:25] = 1
    mask[30:33, 30:33] = 2  # 9 px: under the floor
    shapes = shapes_from_masks([mask], [1, 2], min_area=100)
    assert len(shapes) == 1 and shapes[0].shape == (20, 20) and shapes[0].all()
    polygon = random_polygon(np.random.default_rng(0))
    assert polygon.dtype == bool and 0.2 < polygon.mean() < 0.9


def test_the_study_refuses_an_unknown_material_in_one_line(tmp_path, capsys):
    from flakeseg.studies.synthetic import main

    args = ["--material", "unobtainium", "--images", "graphene", "--shapes", "mos2"]
    assert main([*args, "--name", "x", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unobtainium" in err and "\n" not in err


def test_the_study_writes_a_data_set_of_the_crystal_it_rendered(tmp_path, capsys):
    """The renders' config names the material, so a model trained on them with stage=test carries a
    setup in its card (calibrated on the renders) and predict checks flake colours against it."""
    from PIL import Image

    from flakeseg.data.importing import write_dataset
    from flakeseg.data.label_formats import ImportedLabels, LabelledImage
    from flakeseg.studies.synthetic import main
    from flakeseg.utils.config_files import compose_data_config

    pictures = []
    for i in range(2):
        mask = np.zeros((120, 160), np.uint8)
        mask[50:70, 60:90] = 1  # an outline for the renderer (600 px)
        Image.fromarray(_image(i)).save(tmp_path / f"s{i}.png")
        pictures.append(LabelledImage(f"s{i}", tmp_path / f"s{i}.png", mask))
    labels = ImportedLabels(["other", "monolayer", "bilayer"], ["#000000", "#1f5fff", "#20c020"], pictures)
    _, source = write_dataset(labels, "pictures", tmp_path / "pictures", tmp_path / "conf", test_fraction=0)
    args = ["--material", "graphene", "--images", str(source), "--shapes", str(source), "--per-image", "2"]
    where = ["--name", "syn", "--out", str(tmp_path / "syn"), "--conf-dir", str(tmp_path / "conf")]
    assert main([*args, *where]) == 0
    assert "4 images" in capsys.readouterr().out
    written = compose_data_config(str(tmp_path / "conf" / "data" / "syn.yaml"))
    assert written["material"] == "graphene"
    masks = [np.array(Image.open(p)) for p in sorted((tmp_path / "syn" / "masks").glob("*.png"))]
    assert len(masks) == 4 and all((m == 1).any() or (m == 2).any() for m in masks)
