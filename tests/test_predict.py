"""`flakeseg predict` and `flakeseg export`: screening new images with a trained checkpoint."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

from flakeseg.cli.predict import main
from flakeseg.data.io import read_image
from flakeseg.evaluation.flakes import FLAKE_COLUMNS, find_flakes
from flakeseg.inference.checkpoint import ModelCard, load_torch_model
from flakeseg.inference.predictor import Predictor, TorchBackend, load_predictor
from flakeseg.inference.tiling import plan_tiles, predict_tiled
from flakeseg.screening.html_report import GALLERY_LIMIT
from flakeseg.screening.screen import collect_inputs, output_names
from tests.conftest import REPO_ROOT, TINY, compose_train

MOS2_TEST_IDS = ["00000", "00001", "00002"]


@pytest.fixture(scope="session")
def checkpoint(data_root: Path, tmp_path_factory) -> Path:
    """A tiny model trained for 2 epochs on the MoS2 training split (the test stage's final.ckpt)."""
    from flakeseg.stages.test_split import run_test_stage

    out = tmp_path_factory.mktemp("trained")
    cfg = compose_train(
        [*TINY, "stage=test", "trainer.max_epochs=2", f"data.root={data_root}", f"paths.output_dir={out}"]
    )
    run_test_stage(cfg)
    return out / "checkpoints" / "final.ckpt"


@pytest.fixture
def images(data_root: Path, tmp_path: Path) -> list[Path]:
    """Three real MoS2 test images, copied so the test can check they are never modified."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    for image_id in MOS2_TEST_IDS:
        shutil.copy(data_root / "data" / "ori" / f"or{image_id}.png", folder / f"or{image_id}.png")
    return sorted(folder.iterdir())


def _digests(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the whole run -----------------------------------------------------------------------------------


def test_predict_writes_every_output_and_never_touches_inputs(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    before = _digests(images)
    argv = [str(checkpoint), str(images[0].parent), "--out", str(out), "--save-probabilities"]
    argv += ["--coco", str(out / "flakes.json")]
    code = main([*argv, "--min-area", "0", "--min-confidence", "0", "--pixel-size", "0.1"])
    assert code == 0
    assert _digests(images) == before
    names = [p.stem for p in images]
    card = load_torch_model(checkpoint)[1]
    assert card.flake_classes == ["monolayer", "bilayer"] and card.crop_size == 64 and card.data == "mos2"
    for name in names:
        overlay = Image.open(out / "overlays" / f"{name}.png")
        assert overlay.size == Image.open(images[0]).size
        for cls in card.flake_classes:
            prob = np.asarray(Image.open(out / "probabilities" / f"{name}_{cls}.png"))
            assert prob.shape == (525, 700) and prob.dtype == np.uint8
        record = json.loads((out / "records" / f"{name}.json").read_text())
        assert record["width"] == 700 and record["height"] == 525
        assert record["counts"] == {
            c: sum(f["class_name"] == c for f in record["flakes"]) for c in card.flake_classes
        }
    rows = _rows(out / "flakes.csv")
    # a model of the mos2 data: its images are checked against the shipped paper_mos2 setup
    assert list(rows[0]) == ["image", "source", *FLAKE_COLUMNS, "setup_ok"]
    assert {row["setup_ok"] for row in rows} == {"True"}  # the paper's own MoS2 images pass
    records = [json.loads((out / "records" / f"{n}.json").read_text()) for n in names]
    assert len(rows) == sum(len(r["flakes"]) for r in records) > 0
    for row in rows:
        assert row["class_name"] in [*card.flake_classes, "unknown"]  # unknown: colour fits no class
        assert float(row["area_um2"]) == pytest.approx(int(row["area_px"]) * 0.01, rel=1e-6)
        assert 0.0 <= float(row["confidence"]) <= 1.0
    page = (out / "report.html").read_text()
    assert page.count('<tr class="flake"') == len(rows)
    # the gallery: every flake's crop, surest first
    shown = [float(c) for c in re.findall(r'<figure class="crop"[^>]*data-confidence="([0-9.]+)"', page)]
    assert len(shown) == min(len(rows), GALLERY_LIMIT) and shown == sorted(shown, reverse=True)
    assert page.count('<tr class="ranked"') == len(names)
    assert "http://" not in page and "https://" not in page  # self-contained
    run = json.loads((out / "run.json").read_text())
    assert run["flakes"] == len(rows) and run["problems"] == []
    assert not list(out.rglob(".*.tmp"))
    _check_coco(out / "flakes.json", rows, images, card)


def _check_coco(path: Path, rows: list[dict[str, str]], images: list[Path], card) -> None:
    """--coco: pycocotools reads it; one instance per flake of flakes.csv with its class, confidence
    and area; importing it back gives the predicted flakes as a mask."""
    from pycocotools.coco import COCO

    from flakeseg.data.label_formats import read_coco

    coco = COCO(str(path))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(card.flake_classes)
    by_flake = {(r["image"], int(r["flake_id"])): r for r in rows}
    assert len(coco.getAnnIds()) == len(rows)
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann["image_id"])[0]
        row = by_flake[(Path(image["file_name"]).stem, ann["attributes"]["flake_id"])]
        assert coco.annToMask(ann).sum() == ann["area"] == int(row["area_px"])
        if row["class_name"] == "unknown":  # the model's class stays the category, flagged
            assert ann["attributes"]["unknown"] is True
        else:
            assert coco.loadCats(ann["category_id"])[0]["name"] == row["class_name"]
        assert ann["score"] == pytest.approx(float(row["confidence"]), abs=1e-4)
    root = Path(json.loads(path.read_text())["info"]["image_root"])
    assert root == images[0].parent.resolve()
    imported = read_coco(path, root, allow_empty=True)
    for labelled in imported.images:
        flakes = [r for r in rows if r["image"] == labelled.id]
        assert int((labelled.mask > 0).sum()) == sum(int(r["area_px"]) for r in flakes)


def test_rerun_skips_finished_images_and_other_settings_redo_them(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(checkpoint), *map(str, images), "--out", str(out)]
    assert main(argv) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    capsys.readouterr()
    assert main(argv) == 0
    assert "(0 screened, 3 already done)" in capsys.readouterr().err.replace("\n", " ")
    assert {p: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == stamps
    next((out / "overlays").iterdir()).unlink()  # a deleted overlay: that image is screened again
    assert main(argv) == 0
    assert "(1 screened, 2 already done)" in capsys.readouterr().err.replace("\n", " ")
    assert len(list((out / "overlays").iterdir())) == 3
    assert main([*argv, "--min-confidence", "0.9"]) == 0
    assert "(3 screened, 0 already done)" in capsys.readouterr().err.replace("\n", " ")


def test_a_rerun_that_screens_nothing_keeps_the_earlier_outputs(checkpoint, images, tmp_path, capsys):
    """Every input of the rerun fails to decode: the earlier run's flakes.csv, report, run.json and
    COCO file stay as they were, and the last line says so."""
    out, coco = tmp_path / "out", tmp_path / "flakes.json"
    assert main([str(checkpoint), str(images[0]), "--out", str(out), "--coco", str(coco)]) == 0
    kept = [out / "flakes.csv", out / "report.html", out / "run.json", coco]
    before = _digests(kept)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images[1].read_bytes()[:5000])  # a whole header, no image: fails to decode
    capsys.readouterr()
    assert main([str(checkpoint), str(truncated), "--out", str(out), "--coco", str(coco)]) == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "nothing screened" in err and "kept as they were" in err and "truncated.png" in err
    assert _digests(kept) == before


def test_kill_9_leaves_whole_files_and_the_rerun_finishes(checkpoint, images, tmp_path, capsys):
    """A run killed mid-way leaves no half-written output; the rerun (in this process: only the killed
    run needs one of its own) screens only what is missing."""
    inputs = tmp_path / "many"
    inputs.mkdir()
    for k in range(12):
        shutil.copy(images[k % len(images)], inputs / f"img{k:02d}.png")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "flakeseg.cli",
        "predict",
        str(checkpoint),
        str(inputs),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "records").glob("*.json"))) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.stem for p in (out / "records").glob("*.json")}
    assert 2 <= len(finished) < 12, "the run should have been killed part-way"
    for overlay in (out / "overlays").glob("*.png"):
        Image.open(overlay).load()  # every overlay present is a whole PNG
    for record in (out / "records").glob("*.json"):
        json.loads(record.read_text())
    capsys.readouterr()
    assert main(command[4:]) == 0
    said = capsys.readouterr().err.replace("\n", " ")
    assert f"({12 - len(finished)} screened, {len(finished)} already done)" in said
    assert not list(out.rglob(".*.tmp"))
    assert len({r["image"] for r in _rows(out / "flakes.csv")}) <= 12


# --- inputs --------------------------------------------------------------------------------------------


def _write_kinds(folder: Path, rgb: np.ndarray) -> dict[str, tuple[int, int]]:
    """Every input kind labs have, with the (height, width) each must be read at."""
    folder.mkdir()
    h, w = rgb.shape[:2]
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=95)
    tifffile.imwrite(folder / "rgb8.tif", rgb)
    tifffile.imwrite(folder / "rgb16.tiff", rgb.astype(np.uint16) * 257)
    tifffile.imwrite(folder / "gray16_tiff.tif", rgb[..., 1].astype(np.uint16) * 257)
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rotated.save(folder / "exif_rotated.jpg", exif=exif, quality=95)
    kinds = {p.name: (h, w) for p in folder.iterdir()}
    kinds["exif_rotated.jpg"] = (w, h)
    return kinds


def test_every_input_kind_is_read_at_the_right_size_and_colour(tmp_path):
    rgb = np.zeros((60, 90, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    kinds = _write_kinds(tmp_path / "kinds", rgb)
    for name, shape in kinds.items():
        image = read_image(tmp_path / "kinds" / name)
        assert image.shape == (*shape, 3) and image.dtype == np.uint8, name
        if name.startswith("rgb"):  # 8- and 16-bit RGB come out as the same 8-bit colour
            assert np.abs(image.astype(int) - [200, 100, 50]).max() <= 1, name
        if name.startswith("gray16"):  # 16-bit gray is scaled, not clipped at 255
            assert 90 <= image.mean() <= 210, name


def test_unreadable_inputs_are_one_line_each_and_the_rest_go_on(checkpoint, images, tmp_path, capsys):
    folder = tmp_path / "mixed"
    kinds = _write_kinds(folder, np.asarray(Image.open(images[0]).convert("RGB"))[:200, :300])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    (folder / "truncated.png").write_bytes(images[0].read_bytes()[:5000])
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    code = main([str(checkpoint), str(folder), str(tmp_path / "missing.png"), "--out", str(out)])
    assert code == 1  # some inputs were skipped
    err = capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert len(run["problems"]) == 4
    for bad in ("empty.png", "text.jpg", "truncated.png", "missing.png"):
        lines = [p for p in run["problems"] if bad in p]
        assert len(lines) == 1 and "\n" not in lines[0], bad
        assert bad in err
    assert sorted(run["images"]) == sorted(Path(k).stem for k in kinds)
    records = {r: json.loads((out / "records" / f"{r}.json").read_text()) for r in run["images"]}
    assert (records["exif_rotated"]["height"], records["exif_rotated"]["width"]) == (300, 200)


def test_inputs_by_folder_glob_and_file_without_duplicates_or_own_outputs(tmp_path):
    folder = tmp_path / "scan"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.JPG", "c.tif", "sub/d.png", "sub/a.png"):
        (folder / name).write_bytes(b"x")
    (folder / "readme.md").write_text("x")
    out = folder / "results"  # an output folder inside the input folder
    (out / "overlays").mkdir(parents=True)
    (out / "overlays" / "a.png").write_bytes(b"x")
    paths, problems = collect_inputs([str(folder), str(folder / "a.png"), str(folder / "sub" / "*.png")], out)
    assert [p.relative_to(folder).as_posix() for p in paths] == [
        "a.png",
        "b.JPG",
        "c.tif",
        "sub/a.png",
        "sub/d.png",
    ]
    assert problems == []
    deep, _ = collect_inputs([str(folder)], out, recursive=True)
    assert len(deep) == 5 and not any("results" in str(p) for p in deep)
    names = output_names(paths)
    assert len(set(names.values())) == len(paths)  # the two a.png get distinct output names
    _, problems = collect_inputs([str(tmp_path / "nothing*.png"), str(tmp_path / "gone.png")])
    assert len(problems) == 2 and "matches no files" in problems[0] and "no such file" in problems[1]


# --- checkpoints ---------------------------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_with_pickled_code_or_foreign_file_is_refused(
    checkpoint, images, tmp_path, capsys, monkeypatch
):
    monkey_cwd = tmp_path / "cwd"
    monkey_cwd.mkdir()
    monkeypatch.chdir(monkey_cwd)
    tampered = tmp_path / "tampered.ckpt"
    content = torch.load(checkpoint, weights_only=True)
    content["hyper_parameters"]["extra"] = _Payload()
    torch.save(content, tampered)
    foreign = tmp_path / "foreign.ckpt"
    foreign.write_bytes(b"\x00garbage" * 100)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    for path, says in ((tampered, "refused"), (foreign, "not a flakeseg"), (plain, "not a flakeseg")):
        capsys.readouterr()
        assert main([str(path), str(images[0]), "--out", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip()
        assert says in err and str(path) in err.replace("\n", ""), err
        assert "Traceback" not in err
    assert not (monkey_cwd / "pwned").exists()


# --- tiling --------------------------------------------------------------------------------------------


def _local_net(seed: int = 0) -> nn.Module:
    """Two 3x3 convolutions: each output pixel sees only a 5x5 neighbourhood."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 3, 3, padding=1)).eval()


def test_tiled_prediction_equals_whole_image_away_from_tile_borders_and_has_no_seam():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 250, 333)).astype(np.float32)
    backend = TorchBackend(_local_net())
    whole = predict_tiled(backend, image, tile=512, multiple=16)
    tiled = predict_tiled(backend, image, tile=96, overlap=0.25, multiple=16, batch_size=3)
    layout = plan_tiles(250, 333, 96, 0.25, 16)
    assert len(layout) == 4 * 5 and all(s % 16 == 0 for s in layout.starts_x + layout.starts_y)
    # Pixels 3+ px from every tile border lie with their whole 5x5 view inside each tile that covers them.
    near = np.zeros((250, 333), bool)
    for start in layout.starts_y:
        for edge in (start, start + 96):
            near[max(edge - 3, 0) : edge + 3, :] = True
    for start in layout.starts_x:
        for edge in (start, start + 96):
            near[:, max(edge - 3, 0) : edge + 3] = True
    difference = np.abs(tiled - whole).max(axis=0)
    assert difference[~near].max() < 1e-5
    # At tile borders the Gaussian weights favour the tile the pixel sits deep in: no visible seam.
    assert difference[near].max() < 5e-3
    flat = predict_tiled(backend, image, tile=96, overlap=0.0, multiple=16)
    assert np.abs(flat - whole).max() > 10 * difference.max()  # cut without overlap would show seams


def test_tiled_real_model_agrees_with_whole_image(checkpoint, images):
    image = read_image(images[1])
    whole = load_predictor(checkpoint, tile=1024).probabilities(image)
    tiled = load_predictor(checkpoint, tile=64).probabilities(image)  # 350 x 263 at the model's scale
    assert tiled.shape == whole.shape == (3, 525, 700)
    assert np.allclose(tiled.sum(axis=0), 1.0, atol=1e-4)
    assert (tiled.argmax(0) == whole.argmax(0)).mean() > 0.95
    assert np.abs(tiled - whole).mean() < 0.05


def test_scale_maps_predictions_back_onto_the_original_pixels(checkpoint, images):
    image = read_image(images[0])
    base = load_predictor(checkpoint).probabilities(image)
    enlarged = np.asarray(Image.fromarray(image).resize((1400, 1050), Image.BILINEAR))
    predictor = load_predictor(checkpoint, scale=0.5)  # these images are at twice the magnification
    assert predictor.resample == pytest.approx(predictor.card.data_scale * 0.5)
    probs = predictor.probabilities(enlarged)
    assert probs.shape == (3, 1050, 1400)
    back = probs[:, ::2, ::2]
    assert (back.argmax(0) == base.argmax(0)).mean() > 0.9


# --- flakes --------------------------------------------------------------------------------------------


def test_flakes_have_the_hand_counted_area_box_centroid_and_confidence():
    probs = np.zeros((3, 20, 30), np.float32)
    probs[0] = 1.0
    probs[:, 2:6, 3:9] = np.array([0.2, 0.7, 0.1])[:, None, None]  # monolayer 4 x 6, confidence 0.7
    probs[:, 10:12, 20:21] = np.array([0.1, 0.0, 0.9])[:, None, None]  # bilayer 2 x 1
    probs[:, 15:18, 0:10] = np.array([0.3, 0.4, 0.3])[:, None, None]  # monolayer 3 x 10, unsure
    ids, flakes = find_flakes(probs, ["other", "monolayer", "bilayer"], [1, 2], pixel_size_um=0.5)
    assert [(f.flake_id, f.class_name, f.area_px) for f in flakes] == [
        (1, "monolayer", 30),
        (2, "monolayer", 24),
        (3, "bilayer", 2),
    ]
    second = flakes[1]
    assert (second.bbox_x0, second.bbox_y0, second.bbox_x1, second.bbox_y1) == (3, 2, 9, 6)
    assert (second.centroid_x, second.centroid_y) == (5.5, 3.5)
    assert second.confidence == pytest.approx(0.7) and second.area_um2 == pytest.approx(6.0)
    assert (ids == 2).sum() == 24 and (ids == 3).sum() == 2 and (ids > 0).sum() == 56
    _, sure = find_flakes(probs, ["other", "monolayer", "bilayer"], [1, 2], min_confidence=0.5)
    assert [f.area_px for f in sure] == [24, 2]
    _, large = find_flakes(probs, ["other", "monolayer", "bilayer"], [1, 2], min_area=3)
    assert [f.area_px for f in large] == [30, 24] and large[0].area_um2 is None


# --- ONNX ----------------------------------------------------------------------------------------------


def test_export_and_onnx_backend_agree_with_eager(checkpoint, images, tmp_path, capsys):
    from flakeseg.cli.export import main as export_main

    target = tmp_path / "model.onnx"
    assert export_main([str(checkpoint), "--format", "onnx", "--out", str(target)]) == 0
    image = read_image(images[2])[:300, :450]  # not the training size: shapes are dynamic
    eager = load_predictor(checkpoint, tile=128).probabilities(image)
    onnx = load_predictor(target, tile=128).probabilities(image)
    assert onnx.shape == eager.shape
    assert np.abs(onnx - eager).max() < 1e-4
    out = tmp_path / "out"
    assert main([str(checkpoint), str(images[2]), "--out", str(out), "--backend", "onnx"]) == 0
    assert list(out.glob("model-*.onnx")), "the onnx backend exports the checkpoint into --out"
    assert json.loads((out / "run.json").read_text())["settings"]["backend"] == "onnx"


def test_predictor_refuses_bad_options():
    card = ModelCard(
        model={"name": "unet_paper"},
        class_names=["a", "b"],
        class_colors=["#000000", "#ffffff"],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        input_multiple=16,
    )
    from flakeseg.errors import ConfigError

    with pytest.raises(ConfigError, match="--scale"):
        Predictor(TorchBackend(_local_net()), card, scale=0)
    with pytest.raises(ConfigError, match="--tile"):
        Predictor(TorchBackend(_local_net()), card, tile=8)


def test_tta_and_temperature_wrap_the_backend_without_moving_the_argmax():
    from flakeseg.errors import ConfigError
    from flakeseg.inference.predictor import CalibratedBackend

    rng = np.random.default_rng(1)
    batch = rng.normal(size=(2, 3, 32, 48)).astype(np.float32)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    class Ramp:  # not equivariant: class 0 gains a left-to-right ramp of the input's own frame
        name = "ramp"

        def __call__(self, x):
            ramp = np.linspace(-2, 2, x.shape[-1], dtype=np.float32)
            return np.stack([x[:, 0] + ramp, x[:, 1], x[:, 2]], axis=1)

    class Pointwise:  # equivariant: every flip/rotation gives the same answer
        name = "pointwise"

        def __call__(self, x):
            return 3.0 * x

    plain = softmax(Pointwise()(batch))
    assert np.abs(softmax(CalibratedBackend(Pointwise(), tta=True)(batch)) - plain).max() < 1e-5
    by_hand = np.zeros_like(batch)
    for flip in (False, True):
        for turns in range(4):
            x = batch[..., ::-1] if flip else batch
            x = np.rot90(x, turns, axes=(-2, -1))
            p = np.rot90(softmax(Ramp()(np.ascontiguousarray(x))), -turns, axes=(-2, -1))
            by_hand += p[..., ::-1] if flip else p
    tta = softmax(CalibratedBackend(Ramp(), tta=True)(batch))
    assert np.abs(tta - by_hand / 8).max() < 1e-5 and np.abs(tta - softmax(Ramp()(batch))).max() > 0.05
    hot = softmax(CalibratedBackend(Pointwise(), temperature=2.0)(batch))
    assert (hot.argmax(1) == plain.argmax(1)).all() and (hot.max(1) < plain.max(1) + 1e-7).all()
    assert np.abs(softmax(2.0 * np.log(hot)) - plain).max() < 1e-5
    with pytest.raises(ConfigError, match="--temperature"):
        CalibratedBackend(Pointwise(), temperature=0)


def test_predictor_with_tta_tiles_a_non_square_image_like_the_whole():
    card = ModelCard(
        model={"name": "unet_paper"},
        class_names=["a", "b", "c"],
        class_colors=["#000000", "#ffffff", "#ff0000"],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        input_multiple=16,
    )
    image = np.random.default_rng(3).integers(0, 255, size=(250, 333, 3), dtype=np.uint8)
    net = _local_net()
    plain = Predictor(TorchBackend(net), card, tile=512).probabilities(image)
    whole = Predictor(TorchBackend(net), card, tile=512, tta=True).probabilities(image)
    tiled = Predictor(TorchBackend(net), card, tile=96, tta=True).probabilities(image)
    assert whole.shape == tiled.shape == (3, 250, 333) and np.allclose(tiled.sum(0), 1.0, atol=1e-4)
    assert np.abs(tiled - whole).mean() < 1e-3  # the same average, tile by tile (rotated tiles fit)
    assert np.abs(whole - plain).max() > 1e-3  # and TTA did change the answer of this local net


# --- the report in a browser ---------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


class _DomCounter(HTMLParser):
    """Flake rows, ranked rows and thumbnails in a DOM dump."""

    def __init__(self):
        super().__init__()
        self.flake_rows: list[tuple[str, str]] = []
        self.ranked_rows = 0
        self.thumb_sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "tr" and "flake" in classes:
            self.flake_rows.append((attrs["data-image"], attrs["data-class"]))
        if tag == "tr" and "ranked" in classes:
            self.ranked_rows += 1
        if tag == "img" and "thumb" in classes:
            self.thumb_sources.append(attrs.get("src", ""))


def test_report_in_headless_chromium_shows_the_table_and_thumbnails(checkpoint, images, tmp_path):
    browser = _chromium()
    if browser is None:
        message = "no chromium: `make test` installs Debian's chromium (make browser)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "out"
    assert main([str(checkpoint), *map(str, images), "--out", str(out), "--min-area", "0"]) == 0
    flakes = _rows(out / "flakes.csv")
    page = (out / "report.html").as_uri()
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    counter = _DomCounter()
    counter.feed(dom.stdout)
    # every flake of flakes.csv has its row (the page orders images by rank, the CSV by input)
    assert sorted(counter.flake_rows) == sorted((r["image"], r["class_name"]) for r in flakes)
    assert len(flakes) > 0
    assert counter.ranked_rows == len(images)
    assert len(counter.thumb_sources) == 2 * len(images)  # ranking table and each image's section
    assert all(src.startswith("data:image/jpeg;base64,") for src in counter.thumb_sources)
    shot = tmp_path / "report.png"
    taken = subprocess.run(
        [*common, "--hide-scrollbars", "--window-size=1200,1400", f"--screenshot={shot}", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape[:2] == (1400, 1200)
    # The crops and thumbnails are colour photographs: thousands of distinct colours. Text, rules and
    # background are grey or white, and a page whose pictures fail to load keeps a few hundred (the
    # class swatches, links and frames, antialiased: 233 measured with the data URIs broken).
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 40
    assert len(np.unique(pixels[colourful], axis=0)) > 2000


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--min-confidence", "1.5"),
        ("--min-area", "-1"),
        ("--overlap", "0.95"),
        ("--threads", "0"),
        ("--device", "tpu"),
        ("--scale", "0"),
        ("--scale", "inf"),
        ("--scale", "100"),
        ("--tile", "0"),
        ("--temperature", "-1"),
    ],
)
def test_bad_option_is_one_line_naming_it_and_writes_nothing(
    checkpoint, images, tmp_path, capsys, option, value
):
    out = tmp_path / "out"
    assert main([str(checkpoint), str(images[0]), "--out", str(out), option, value]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and option in err and "Traceback" not in err
    assert not out.exists() or not any(out.rglob("*.json"))


def test_one_large_sure_monolayer_ranks_above_many_specks():
    from flakeseg.screening.html_report import rank_images

    def flake(cls: str, area: int, confidence: float) -> dict:
        return {"class_name": cls, "area_px": area, "confidence": confidence}

    specks = {"name": "specks", "flakes": [flake("monolayer", 120, 0.9) for _ in range(8)]}
    large = {"name": "large", "flakes": [flake("monolayer", 64_000, 0.8)]}
    bilayer_only = {"name": "bilayer", "flakes": [flake("bilayer", 90_000, 0.99)]}
    unsure = {"name": "unsure", "flakes": [flake("monolayer", 64_000, 0.1)]}
    ranked = rank_images([specks, bilayer_only, unsure, large], ["monolayer", "bilayer"])
    assert [r["name"] for r in ranked] == ["large", "unsure", "specks", "bilayer"]


# --- report settings: --top, --min-area-um2 and the pixel size (shipped models, one small image) -----


@pytest.fixture
def small_image(tmp_path: Path) -> Path:
    folder = tmp_path / "small"
    folder.mkdir()
    rng = np.random.default_rng(0)
    picture = np.clip(rng.normal(170, 5, (96, 128, 3)), 0, 255).astype(np.uint8)
    picture[30:70, 40:100] = (150, 140, 190)  # something flake-like on the substrate
    Image.fromarray(picture).save(folder / "small.png")
    return folder / "small.png"


def test_pixel_size_comes_from_the_option_else_the_card_at_the_models_magnification():
    from argparse import Namespace

    from flakeseg.screening.screen import resolve_pixel_size

    def args(pixel_size=None, model_pixel_size=None, scale=None):
        return Namespace(pixel_size=pixel_size, model_pixel_size=model_pixel_size, scale=scale)

    assert resolve_pixel_size(args(pixel_size=0.1), 2.0, 0.204) == (0.1, "--pixel-size")
    assert resolve_pixel_size(args(), 1.0, 0.204) == (0.204, "the model card")
    assert resolve_pixel_size(args(model_pixel_size=0.3), 1.0, 0.3) == (0.3, "--model-pixel-size")
    assert resolve_pixel_size(args(scale=2.0), 2.0, 0.204) == (None, "")  # another magnification
    assert resolve_pixel_size(args(), 1.0, None) == (None, "")


def test_min_area_um2_without_a_pixel_size_is_a_one_line_usage_error(small_image, tmp_path, capsys):
    out = tmp_path / "out"
    for extra in (["--model", "mos2"], ["--model", "graphene", "--scale", "2"]):  # no pixel size known
        with pytest.raises(SystemExit) as stop:
            main([*extra, str(small_image), "--out", str(out), "--min-area-um2", "5"])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --min-area-um2:") and "--pixel-size" in err and "\n" not in err
        assert not (out / "records").exists()
    assert main(["--model", "mos2", str(small_image), "--out", str(out), "--top", "-1"]) == 1
    assert "--top" in capsys.readouterr().err


def test_graphene_card_gives_um2_and_report_settings_redo_no_image(data_root, tmp_path, capsys):
    """A graphene test image at the model's magnification: areas in um^2 at the card's 0.204 um/px."""
    image = tmp_path / "Go002.jpg"
    shutil.copy(data_root / "data" / "graphen" / "original_halfsize" / "Go002.jpg", image)
    out = tmp_path / "out"
    argv = ["--model", "graphene", str(image), "--out", str(out)]
    assert main([*argv, "--min-area-um2", "1"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (
        run["settings"]["pixel_size_um"] == 0.204 and run["settings"]["pixel_size_from"] == "the model card"
    )
    page = (out / "report.html").read_text()
    assert "0.204 µm/px, from the model card" in page and "Area (µm²)" in page
    rows = _rows(out / "flakes.csv")
    assert rows and all(float(r["area_um2"]) == round(int(r["area_px"]) * 0.204**2, 2) for r in rows)
    capsys.readouterr()
    assert main([*argv, "--top", "0", "--min-area-um2", "500"]) == 0  # the page changes, not the images
    assert "(0 screened, 1 already done)" in capsys.readouterr().err.replace("\n", " ")
    assert 'id="best"' not in (out / "report.html").read_text()
    assert main([*argv, "--pixel-size", "0.1"]) == 0  # the pixel size changes the rows: redone
    assert "(1 screened, 0 already done)" in capsys.readouterr().err.replace("\n", " ")
    assert "0.1 µm/px, from --pixel-size" in (out / "report.html").read_text()
