"""``flakeseg audit-labels``: regions whose contrast contradicts their class, on the real MoS2 labels
and on a planted mislabel."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from flakeseg.cli import audit_labels as cli
from flakeseg.evaluation import label_audit
from flakeseg.evaluation.label_audit import audit_labels

SUBSTRATE = np.array([200.0, 170.0, 210.0])
MONOLAYER = np.array([-0.21, -0.05, 0.05])
BILAYER = np.array([-0.40, -0.05, 0.075])


def _paint(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], cls: int, contrast) -> None:
    y0, x0, y1, x1 = box
    image[y0:y1, x0:x1] = np.clip(np.round(SUBSTRATE * (1.0 + np.asarray(contrast))), 0, 255)
    mask[y0:y1, x0:x1] = cls


def synthetic_set(n: int = 6) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """``n`` images of substrate with a monolayer and a bilayer each (contrasts jittered by image); in
    image 002 a small extra region labelled monolayer has the bilayer's contrast."""
    rng = np.random.default_rng(0)
    ids, images, masks = [], [], []
    for i in range(n):
        image = np.empty((120, 160, 3), np.uint8)
        image[:] = SUBSTRATE.astype(np.uint8)
        mask = np.zeros((120, 160), np.uint8)
        jitter = rng.uniform(-0.004, 0.004, 3)
        _paint(image, mask, (10, 10, 50, 70), 1, MONOLAYER + jitter)
        _paint(image, mask, (60, 90, 110, 150), 2, BILAYER + jitter)
        if i == 2:
            _paint(image, mask, (70, 10, 90, 30), 1, BILAYER)  # the mislabel: 400 px
        image = np.clip(image.astype(int) + rng.integers(-2, 3, image.shape), 0, 255).astype(np.uint8)
        ids.append(f"{i:03d}")
        images.append(image)
        masks.append(mask)
    return ids, images, masks


def test_planted_mislabel_is_the_only_flag() -> None:
    ids, images, masks = synthetic_set()
    regions, stats = audit_labels(ids, images, masks, {1: "monolayer", 2: "bilayer"})
    assert len(regions) == 13
    np.testing.assert_allclose(stats[1][0], MONOLAYER, atol=0.02)
    np.testing.assert_allclose(stats[2][0], BILAYER, atol=0.02)
    flagged = [r for r in regions if r.flagged]
    assert [(r.image_id, r.class_name, r.area, r.looks_like) for r in flagged] == [
        ("002", "monolayer", 400, "bilayer")
    ]
    assert flagged[0].bbox == (10, 70, 30, 90)
    assert all(r.looks_like == r.class_name for r in regions if not r.flagged)


def test_clipped_channels_are_skipped() -> None:
    ids, images, masks = synthetic_set(3)
    for image in images:  # a saturated red substrate: red says nothing
        image[..., 0] = 255
    regions, _ = audit_labels(ids, images, masks, {1: "monolayer", 2: "bilayer"})
    assert all(np.isnan(r.contrast[0]) and np.isfinite(r.contrast[1:]).all() for r in regions)


def test_mos2_monolayers_of_00001_and_00006_are_flagged(data_root: Path, tmp_path: Path, capsys) -> None:
    status = cli.main(["--data", "mos2", "--set", f"data.root={data_root}", "--out", str(tmp_path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "00001" in out and "00006" in out
    with (tmp_path / "audit.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    flagged = {(r["image_id"], r["class"]) for r in rows if r["flagged"] == "True"}
    assert {("00001", "monolayer"), ("00006", "monolayer")} <= flagged
    big = [r for r in rows if r["image_id"] in ("00001", "00006") and r["class"] == "monolayer"]
    biggest = max(big, key=lambda r: int(r["area_px"]))
    assert biggest["flagged"] == "True" and biggest["looks_like"] == "bilayer"
    # the optics (the shipped paper_mos2 setup) flags the same two images' monolayers, and no other's
    by_optics = {(r["image_id"], r["class"]) for r in rows if r["optics_flagged"] == "True"}
    assert {("00001", "monolayer"), ("00006", "monolayer")} <= by_optics
    assert {image for image, _ in by_optics} == {"00001", "00006"}
    # few others: outside those two images, at most a handful of the ~100 regions
    assert sum(r["flagged"] == "True" and r["image_id"] not in ("00001", "00006") for r in rows) <= 6
    assert "<img" in (tmp_path / "audit.html").read_text()


def test_bad_data_name_is_one_line(capsys) -> None:
    assert cli.main(["--data", "hbn2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--data hbn2: no such data set" in err[0]


def test_threshold_default_agrees_and_help_imports_no_torch() -> None:
    assert cli.DEFAULT_THRESHOLD == label_audit.DEFAULT_THRESHOLD
    code = "import sys; import flakeseg.cli.audit_labels; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_optics_flags_a_region_whose_contrast_is_another_layer_count() -> None:
    """Regions rendered by a setup's optics: the labelled monolayer that is really a bilayer is
    flagged by the optics (off by about 90 %) and named 2 layers; the true ones are not flagged."""
    from flakeseg.optics.calibration import shipped_setup

    setup = shipped_setup()
    substrate = np.array([176.0, 151.0, 207.0])
    colours = setup.colours("MoS2", [0, 1, 2], substrate)[0]
    image = np.broadcast_to(np.round(colours[0]), (100, 160, 3)).astype(np.uint8).copy()
    mask = np.zeros((100, 160), np.uint8)
    image[10:40, 10:60], mask[10:40, 10:60] = np.round(colours[1]), 1  # a monolayer
    image[50:90, 10:60], mask[50:90, 10:60] = np.round(colours[2]), 2  # a bilayer
    image[30:70, 90:140], mask[30:70, 90:140] = np.round(colours[2]), 1  # a bilayer labelled monolayer
    regions, _ = audit_labels(["x"], [image], [mask], {1: "monolayer", 2: "bilayer"})
    label_audit.optics_verdicts(regions, setup, "MoS2", {1: 1, 2: 2})
    verdicts = {(r.class_name, r.bbox[0]): (r.optics_flagged, r.optics_layers) for r in regions}
    assert verdicts == {
        ("monolayer", 10): (False, 1),
        ("bilayer", 10): (False, 2),
        ("monolayer", 90): (True, 2),
    }


def test_an_image_whose_labels_are_mostly_flagged_is_mislabelled() -> None:
    from flakeseg.evaluation.label_audit import mislabelled_images

    ids, images, masks = synthetic_set()
    # image 004: its monolayer, grown to 3,375 px (the larger region of the two), has the bilayer's contrast
    _paint(images[4], masks[4], (10, 10, 55, 85), 1, BILAYER)
    regions, _ = audit_labels(ids, images, masks, {1: "monolayer", 2: "bilayer"})
    # 002's planted mislabel is 400 of its 5,300 px: not mostly flagged
    assert mislabelled_images(regions, optics=False) == ["004"]
    # with the optics asked, the data's flag alone is not enough
    assert mislabelled_images(regions, optics=True) == []
    for region in regions:
        region.optics_flagged = region.image_id == "004"
    assert mislabelled_images(regions, optics=True) == ["004"]
    for region in regions:
        region.optics_flagged = region.image_id == "004" and region.class_name == "bilayer"
    assert mislabelled_images(regions, optics=True) == []  # a region counts when both flag it


def test_mos2_training_images_left_out_are_00006_alone(data_root: Path) -> None:
    from flakeseg.data.catalog import load_dataset
    from flakeseg.stages.fold_inputs import without_mislabelled
    from flakeseg.utils.config_files import compose_data_config

    for name, dropped in (("mos2", ["00006"]), ("graphene", [])):
        cfg = compose_data_config(name, [f"data.root={data_root}", "data.scale=0.25"])
        train = load_dataset(cfg, ids=list(cfg["split"]["train"]), progress=False)
        kept = without_mislabelled(train, cfg)
        assert sorted(set(train.ids) - set(kept.ids)) == dropped, name
        assert kept.images[0].shape == train.images[0].shape  # the images as the fold loaded them


def test_a_cv_fold_audits_by_a_setup_of_its_own_training_images(data_root: Path, monkeypatch) -> None:
    """The shipped setup has read every training label, the held-out fold's too: a fold's audit never
    uses it, and still finds 00006 among its training images."""
    import flakeseg.optics.calibration as calibration
    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.splits import fold_ids
    from flakeseg.stages.fold_inputs import without_mislabelled
    from flakeseg.utils.config_files import compose_data_config

    cfg = compose_data_config("mos2", [f"data.root={data_root}", "data.scale=0.25"])
    train_ids, held_out = fold_ids(list(cfg["split"]["train"]), 3, 0, 0)
    assert "00006" in train_ids and held_out
    train = load_dataset(cfg, ids=train_ids, progress=False)

    def shipped(name: str):
        raise AssertionError(f"{name} read for a CV fold's audit")

    monkeypatch.setattr(calibration, "shipped_setup", shipped)
    kept = without_mislabelled(train, cfg)
    assert sorted(set(train.ids) - set(kept.ids)) == ["00006"]


def test_a_fold_without_a_setup_of_its_own_leaves_nothing_out(data_root: Path, monkeypatch, caplog) -> None:
    """Never the shipped setup instead, which has read the held-out fold's labels."""
    import flakeseg.data.contrasts as contrasts
    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.splits import fold_ids
    from flakeseg.stages.fold_inputs import without_mislabelled
    from flakeseg.utils.config_files import compose_data_config

    cfg = compose_data_config("mos2", [f"data.root={data_root}", "data.scale=0.25"])
    train_ids, _ = fold_ids(list(cfg["split"]["train"]), 3, 0, 0)
    train = load_dataset(cfg, ids=train_ids, progress=False)
    monkeypatch.setattr(contrasts, "card_setup", lambda *args: None)  # e.g. every substrate clipped
    with caplog.at_level("WARNING"):
        assert without_mislabelled(train, cfg).ids == train.ids
    assert "nothing left out" in caplog.text
