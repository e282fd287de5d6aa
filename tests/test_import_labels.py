"""``flakeseg import-labels``: COCO (polygons, RLE), Labelme and colour masks to this project's layout,
on small hand-made annotations, their bad cases, and the round trip import -> COCO -> import."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flakeseg.cli import main as flakeseg_main
from flakeseg.data import label_formats
from flakeseg.data.coco import encode_rle
from flakeseg.data.importing import write_dataset
from flakeseg.errors import ConfigError, DataError

H, W = 30, 40


def _image(path: Path, size=(H, W)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _rect(x0, y0, x1, y1) -> list[float]:
    """A COCO polygon of the rectangle with corners (x0, y0), (x1, y1)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _coco(tmp_path: Path, annotations_of: dict[str, list[dict]], categories=None) -> Path:
    images = []
    for number, name in enumerate(annotations_of, start=1):
        _image(tmp_path / "images" / name)
        images.append({"id": number, "file_name": name, "height": H, "width": W})
    entries = [
        {"id": 100 * number + k, "image_id": number, **item}
        for number, name in enumerate(annotations_of, start=1)
        for k, item in enumerate(annotations_of[name])
    ]
    document = {
        "images": images,
        "annotations": entries,
        "categories": categories or [{"id": 1, "name": "monolayer"}, {"id": 2, "name": "bilayer"}],
    }
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(document))
    return path


def _two_flakes() -> np.ndarray:
    bilayer = np.zeros((H, W), bool)
    bilayer[20:26, 25:35] = True
    return bilayer


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    """Two images: a monolayer polygon and a bilayer RLE; a monolayer polygon alone."""
    return _coco(
        tmp_path,
        {
            "a.png": [
                {"category_id": 1, "segmentation": [_rect(2, 3, 12, 10)]},
                {"category_id": 2, "segmentation": encode_rle(_two_flakes())},
            ],
            "b.png": [{"category_id": 1, "segmentation": [_rect(0, 0, 40, 30)]}],
        },
    )


def test_coco_polygons_and_rle_become_index_masks(coco_file: Path):
    labels = label_formats.read_coco(coco_file, coco_file.parent / "images")
    assert labels.names == ["substrate", "monolayer", "bilayer"]
    a, b = labels.images
    assert (a.id, b.id) == ("a", "b")
    # pycocotools rasterises the polygon of corners (2,3)-(12,10) as columns 2..11, rows 3..9
    assert (a.mask == 1).sum() == 10 * 7 and a.mask[3:10, 2:12].min() == 1
    assert np.array_equal(a.mask == 2, _two_flakes())
    assert (b.mask == 1).all()  # a polygon on the image's border is inside it


def test_coco_bad_cases_are_one_line_each(tmp_path: Path):
    path = _coco(
        tmp_path,
        {
            "overlap.png": [
                {"category_id": 1, "segmentation": [_rect(0, 0, 20, 20)]},
                {"category_id": 2, "segmentation": [_rect(10, 10, 30, 25)]},
            ],
            "outside.png": [{"category_id": 1, "segmentation": [_rect(30, 5, 45, 10)]}],
            "unknown.png": [{"category_id": 3, "segmentation": [_rect(1, 1, 5, 5)]}],
            "empty.png": [],
        },
        categories=[
            {"id": 1, "name": "monolayer"},
            {"id": 2, "name": "bilayer"},
            {"id": 3, "name": "trilayer"},
        ],
    )
    with pytest.raises(DataError) as error:
        label_formats.read_coco(path, tmp_path / "images", classes=["monolayer", "bilayer"])
    lines = error.value.problems
    assert len(lines) == 4, lines
    by_image = {
        name: [line for line in lines if f"image {name}" in line]
        for name in ("overlap.png", "outside.png", "unknown.png", "empty.png")
    }
    assert "overlaps annotation 100 (monolayer) on" in by_image["overlap.png"][0]
    assert "(45.0, 5.0) outside the 40x30 image" in by_image["outside.png"][0]
    assert "unknown class 'trilayer'" in by_image["unknown.png"][0]
    assert "no annotations" in by_image["empty.png"][0]
    # overlap=last paints the later annotation over the earlier one, as Labelme draws
    ok = _coco(
        tmp_path / "ok",
        {
            "o.png": [
                {"category_id": 1, "segmentation": [_rect(0, 0, 20, 20)]},
                {"category_id": 2, "segmentation": [_rect(10, 10, 30, 25)]},
            ]
        },
    )
    mask = label_formats.read_coco(ok, ok.parent / "images", overlap="last").images[0].mask
    assert mask[15, 15] == 2 and mask[5, 5] == 1


def test_coco_entries_without_sizes_ids_or_images_are_one_line_each(tmp_path: Path, coco_file: Path):
    """What a hand-edited or foreign COCO file gets wrong: an image without a size, an id that is no
    number, an annotation of an image the file does not list (no longer dropped in silence), no
    categories at all."""
    document = json.loads(coco_file.read_text())
    del document["images"][0]["height"]
    document["images"][1]["id"] = "one"
    document["annotations"][0]["image_id"] = 99
    coco_file.write_text(json.dumps(document))
    with pytest.raises(DataError) as error:
        label_formats.read_coco(coco_file, coco_file.parent / "images")
    lines = error.value.problems
    assert any("images[0]: no height" in line for line in lines), lines
    assert any("images[1] (b.png): id 'one' is not a whole number" in line for line in lines), lines
    assert any("image_id 99 is none of the file's images" in line for line in lines), lines
    assert all("\n" not in line for line in lines)
    document["categories"] = []
    coco_file.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"no categories") as error:
        label_formats.read_coco(coco_file, coco_file.parent / "images")
    assert len(error.value.problems) == 1


def test_coco_missing_image_and_wrong_size(tmp_path: Path, coco_file: Path):
    document = json.loads(coco_file.read_text())
    document["images"][0]["width"] = 41
    (coco_file.parent / "images" / "b.png").unlink()
    coco_file.write_text(json.dumps(document))
    with pytest.raises(DataError) as error:
        label_formats.read_coco(coco_file, coco_file.parent / "images")
    assert len(error.value.problems) == 2
    assert "the file is 40x30, the annotations say 41x30" in error.value.problems[0]
    assert "b.png: image missing or unreadable" in error.value.problems[1]


def _labelme(folder: Path, name: str, shapes: list[dict]) -> None:
    _image(folder / f"{name}.jpg")
    document = {"imagePath": f"{name}.jpg", "imageHeight": H, "imageWidth": W, "shapes": shapes}
    (folder / f"{name}.json").write_text(json.dumps(document))


def _shape(label: str, points, kind="polygon") -> dict:
    return {"label": label, "points": points, "shape_type": kind}


def test_labelme_shapes_and_bad_cases(tmp_path: Path):
    folder = tmp_path / "lm"
    crop = np.zeros((4, 6), np.uint8)
    crop[1:3, 1:5] = 1
    buffer = io.BytesIO()
    Image.fromarray(crop * 255).convert("1").save(buffer, format="PNG")
    _labelme(
        folder,
        "one",
        [
            _shape("monolayer", [[2, 2], [14, 2], [14, 12], [2, 12]]),
            _shape("bilayer", [[20, 4], [30, 10]], "rectangle"),
            _shape("monolayer", [[8, 22], [12, 22]], "circle"),
            {
                **_shape("bilayer", [[30, 20], [35, 23]], "mask"),
                "mask": base64.b64encode(buffer.getvalue()).decode(),
            },
        ],
    )
    labels = label_formats.read_labelme(folder)
    assert labels.names == ["substrate", "monolayer", "bilayer"]  # in the order the labels first appear
    mask = labels.images[0].mask
    assert mask[5, 5] == 1 and mask[7, 25] == 2 and mask[22, 8] == 1 and mask[21, 32] == 2
    assert mask[20, 30] == 0 and mask[0, 0] == 0
    assert (mask == 2).sum() == 10 * 6 + 2 * 4

    _labelme(
        folder,
        "two",
        [_shape("monolayer", [[1, 1], [50, 1], [50, 5]]), _shape("x", [[1, 1], [3, 3]], "line")],
    )
    _labelme(folder, "three", [])
    with pytest.raises(DataError) as error:
        label_formats.read_labelme(folder, classes=["monolayer", "bilayer"])
    lines = error.value.problems
    assert any("two.json: shape 1 (monolayer): point (50.0, 1.0) outside the 40x30 image" in x for x in lines)
    assert any("two.json: shape 2 (x): unknown class 'x'" in x for x in lines)
    assert any("three.json: no shapes" in x for x in lines)
    assert len(lines) == 3, lines


def test_color_masks(tmp_path: Path):
    table = label_formats.parse_color_table("#000000=substrate, #ff0000=monolayer, #00ff00=bilayer")
    assert table[(255, 0, 0)] == "monolayer"
    painted = np.zeros((H, W, 3), np.uint8)
    painted[2:8, 3:9] = (255, 0, 0)
    painted[10:20, 10:20] = (0, 255, 0)
    _image(tmp_path / "im" / "s1.png")
    (tmp_path / "mk").mkdir()
    Image.fromarray(painted).save(tmp_path / "mk" / "s1.png")
    labels = label_formats.read_color_masks(tmp_path / "im", tmp_path / "mk", table)
    mask = labels.images[0].mask
    assert labels.names == ["substrate", "monolayer", "bilayer"]
    assert (mask == 1).sum() == 36 and (mask == 2).sum() == 100

    painted[0, 0] = (1, 2, 3)  # an anti-aliased edge, say
    Image.fromarray(painted).save(tmp_path / "mk" / "s1.png")
    _image(tmp_path / "im" / "s2.png")
    with pytest.raises(DataError) as error:
        label_formats.read_color_masks(tmp_path / "im", tmp_path / "mk", table)
    assert len(error.value.problems) == 2
    assert "1 pixels of colours not in --colors (first #010203 at x=0, y=0)" in error.value.problems[1]
    assert "s2.png: no mask" in error.value.problems[0]
    with pytest.raises(ConfigError, match="not a colour"):
        label_formats.parse_color_table("#12345=monolayer")
    with pytest.raises(ConfigError, match="no colour for the background"):
        label_formats.read_color_masks(tmp_path / "im", tmp_path / "mk", {(255, 0, 0): "monolayer"})


def _masks(labels) -> dict[str, np.ndarray]:
    return {im.id: im.mask for im in labels.images}


def _reimport(out: Path):
    """Import the COCO file an import wrote (the masks as RLE instances)."""
    return label_formats.read_coco(out / "annotations.json", out / "images", allow_empty=True)


def test_every_format_round_trips_through_coco(tmp_path: Path, coco_file: Path):
    imported = {"coco": label_formats.read_coco(coco_file, coco_file.parent / "images")}
    folder = tmp_path / "lm"
    _labelme(
        folder,
        "x",
        [
            _shape("monolayer", [[2, 2], [20, 3], [11, 18]]),
            _shape("bilayer", [[25, 5], [38, 25]], "rectangle"),
        ],
    )
    imported["labelme"] = label_formats.read_labelme(folder)
    painted = np.zeros((H, W, 3), np.uint8)
    painted[5:9, 5:30] = (255, 0, 0)
    painted[7, 5:30] = (0, 255, 0)  # a bilayer line splitting a monolayer: three regions
    _image(tmp_path / "im" / "m.png")
    (tmp_path / "mk").mkdir()
    Image.fromarray(painted).save(tmp_path / "mk" / "m.png")
    table = {(0, 0, 0): "substrate", (255, 0, 0): "monolayer", (0, 255, 0): "bilayer"}
    imported["masks"] = label_formats.read_color_masks(tmp_path / "im", tmp_path / "mk", table)
    for name, labels in imported.items():
        out, _ = write_dataset(labels, f"set_{name}", tmp_path / "out" / name, tmp_path / "conf")
        again = _reimport(out)
        assert again.names == labels.names, name
        assert _masks(again).keys() == _masks(labels).keys()
        for image_id, mask in _masks(labels).items():
            assert np.array_equal(_masks(again)[image_id], mask), (name, image_id)
            # and the palette PNG written holds the same class indices
            assert np.array_equal(np.array(Image.open(out / "masks" / f"{image_id}.png")), mask)


def test_the_written_config_trains(tmp_path: Path, coco_file: Path):
    """train.py composes the written config and loads the same masks through the normal loader."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from flakeseg.data.catalog import load_dataset
    from flakeseg.data.splits import split_from_config
    from flakeseg.utils.config_files import CONFIG_DIR

    labels = label_formats.read_coco(coco_file, coco_file.parent / "images")
    _, config = write_dataset(labels, "hbn", tmp_path / "hbn", tmp_path / "conf", test_fraction=0.5)
    assert config == tmp_path / "conf" / "data" / "hbn.yaml"
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=hbn", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"])
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    assert data_cfg["classes"]["names"] == ["substrate", "monolayer", "bilayer"]
    # the commands that take --data (calibrate, export-labels, audit-labels, evaluate) take its path too
    from flakeseg.utils.config_files import compose_data_config

    assert compose_data_config(str(config)) == data_cfg
    split = split_from_config(data_cfg)
    assert sorted(split["train"] + split["test"]) == ["a", "b"] and len(split["test"]) == 1
    loaded = load_dataset({**data_cfg, "scale": 1.0, "substrate_normalize": False}, progress=False)
    assert loaded.ids == ["a", "b"]
    for image_id, mask in _masks(labels).items():
        assert np.array_equal(loaded.masks[loaded.ids.index(image_id)], mask)


def test_the_crystal_named_goes_into_the_config_and_an_unknown_one_is_one_line(
    tmp_path: Path, coco_file: Path, capsys
):
    """``--material`` is written as ``material:`` (what calibrate --data and the model card's setup read);
    unset, the config says no crystal rather than inheriting MoS2's; an unknown crystal writes nothing."""
    from flakeseg.utils.config_files import compose_data_config

    labels = label_formats.read_coco(coco_file, coco_file.parent / "images")
    _, named = write_dataset(labels, "wse2", tmp_path / "wse2", tmp_path / "conf", material="WSe2")
    _, unnamed = write_dataset(labels, "plain", tmp_path / "plain", tmp_path / "conf")
    assert compose_data_config(str(named))["material"] == "WSe2"
    assert compose_data_config(str(unnamed))["material"] is None

    args = ["import-labels", "coco", str(coco_file), "--images", str(coco_file.parent / "images")]
    where = ["--name", "x", "--out", str(tmp_path / "x"), "--conf-dir", str(tmp_path / "conf")]
    assert flakeseg_main([*args, *where, "--material", "unobtainium"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: material unobtainium: unknown")
    assert not (tmp_path / "x").exists() and not (tmp_path / "conf" / "data" / "x.yaml").exists()
    assert flakeseg_main([*args, *where, "--material", "hBN"]) == 0
    assert compose_data_config(str(tmp_path / "conf" / "data" / "x.yaml"))["material"] == "hBN"


def test_nothing_is_half_written_or_overwritten(tmp_path: Path, coco_file: Path, capsys):
    conf = tmp_path / "conf"
    args = [
        "import-labels",
        "coco",
        str(coco_file),
        "--images",
        str(coco_file.parent / "images"),
        "--name",
        "hbn",
        "--out",
        str(tmp_path / "hbn"),
        "--conf-dir",
        str(conf),
    ]
    assert flakeseg_main(args) == 0
    printed = capsys.readouterr().out
    assert "2 images, classes substrate, monolayer, bilayer" in printed
    # a config outside conf/: the printed command (and the config's own comment) carries the search path
    hint = f"python train.py data=hbn model.init_from=mos2 hydra.searchpath=[file://{conf.resolve()}]"
    assert hint in printed and hint in (conf / "data" / "hbn.yaml").read_text()
    before = sorted(p.name for p in (tmp_path / "hbn").rglob("*"))
    assert before == ["a.png", "a.png", "annotations.json", "b.png", "b.png", "images", "masks"]

    assert flakeseg_main(args) == 1  # both exist: refused, nothing touched
    assert "exists (--overwrite replaces it)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "hbn").rglob("*")) == before

    document = json.loads(coco_file.read_text())
    document["annotations"][0]["segmentation"] = [_rect(-5, 0, 10, 10)]
    coco_file.write_text(json.dumps(document))
    assert flakeseg_main([*args, "--overwrite", "--name", "other", "--out", str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "(-5.0, 0.0) outside the 40x30 image" in err
    assert not (tmp_path / "other").exists() and not (conf / "data" / "other.yaml").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left

    # a shipped data set's name, even with --overwrite: its config would include itself (train.py breaks)
    (conf / "data" / "mos2.yaml").write_text("kept: true\n")
    shipped = [*args[:-5], "mos2", "--out", str(tmp_path / "m"), "--conf-dir", str(conf), "--overwrite"]
    assert flakeseg_main(shipped) == 1
    assert "--name mos2: the name of a data set the project ships" in capsys.readouterr().err
    assert (conf / "data" / "mos2.yaml").read_text() == "kept: true\n" and not (tmp_path / "m").exists()


def test_a_real_data_set_round_trips_through_export_and_import(data_root: Path, tmp_path: Path, capsys):
    """``flakeseg export-labels`` writes graphene's masks as COCO; importing that file gives the masks
    the loader reads from the upstream palette PNGs, pixel for pixel."""
    from flakeseg.data.catalog import load_dataset
    from tests.conftest import compose_train

    ids = ["001", "007", "027"]  # monolayer only; monolayer and bilayer; mostly bilayer
    out = tmp_path / "graphene.json"
    argv = ["export-labels", "--data", "graphene", "--ids", ",".join(ids), "--out", str(out)]
    assert flakeseg_main([*argv, "--set", f"data.root={data_root}"]) == 0
    assert "3 images" in capsys.readouterr().out
    document = json.loads(out.read_text())
    imported = label_formats.read_coco(out, Path(document["info"]["image_root"]), background="other")
    cfg = compose_train(
        ["data=graphene", f"data.root={data_root}", "data.scale=1.0", "data.substrate_normalize=false"]
    )
    loaded = load_dataset(cfg.data, ids=ids, progress=False)
    assert imported.names == list(loaded.scheme.names)
    assert [im.id for im in imported.images] == [f"Go{i}" for i in ids]
    for labelled, mask in zip(imported.images, loaded.masks, strict=True):
        assert np.array_equal(labelled.mask, mask)
    assert (
        flakeseg_main(
            [*argv[:-1], str(tmp_path / "x.json"), "--ids", "999", "--set", f"data.root={data_root}"]
        )
        == 1
    )
    assert "id '999' has no complete image/mask pair" in capsys.readouterr().err


def test_missing_or_wrong_label_folders_are_one_line(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"")
    table = {(0, 0, 0): "substrate", (255, 0, 0): "monolayer"}
    with pytest.raises(DataError, match=r"^--images .*nope: no such folder$"):
        label_formats.read_color_masks(tmp_path / "nope", tmp_path, table)
    with pytest.raises(DataError, match=r"^--masks .*a\.png: not a folder$"):
        label_formats.read_color_masks(tmp_path, tmp_path / "a.png", table)
    with pytest.raises(DataError, match=r"nope: no such folder"):
        label_formats.read_labelme(tmp_path / "nope")
