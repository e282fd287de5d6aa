"""The data check: every defect is reported as `file: problem`, all of them in one error."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flakeseg.data.catalog import load_dataset
from flakeseg.data.io import read_image, read_mask
from flakeseg.errors import DataError

CLASSES = {
    "names": ["other", "monolayer", "bilayer"],
    "label_values": [[0, 3], [1], [2]],
    "colors": ["#000", "#00f", "#0f0"],
}


def _save_mask(path: Path, array: np.ndarray) -> None:
    image = Image.fromarray(array.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 0, 0, 255, 0, 255, 0, 255, 0, 0] + [0] * (256 * 3 - 12))
    image.save(path)


def _make_set(root: Path, n: int = 3, shape=(20, 30)) -> dict:
    (root / "img").mkdir(parents=True)
    (root / "lab").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(
            root / "img" / f"or{i:05d}.png"
        )
        _save_mask(root / "lab" / f"col{i:05d}.png", rng.integers(0, 4, shape))
    return {
        "name": "toy",
        "root": str(root),
        "image_dir": "img",
        "mask_dir": "lab",
        "image_pattern": r"or(?P<id>\d+)\.png",
        "mask_template": "col{id}.png",
        "scale": 1.0,
        "classes": CLASSES,
    }


def test_clean_set_loads_with_class_indices(tmp_path):
    data = load_dataset(_make_set(tmp_path), progress=False)
    assert data.ids == ["00000", "00001", "00002"]
    assert data.images[0].shape == (20, 30, 3) and data.masks[0].dtype == np.uint8
    # raw 3 (thicker) folds into class 0 (other)
    assert set(np.unique(np.concatenate([m.ravel() for m in data.masks]))) <= {0, 1, 2}


def test_every_defect_is_reported_in_one_pass(tmp_path):
    cfg = _make_set(tmp_path, n=6)
    img, lab = tmp_path / "img", tmp_path / "lab"
    (lab / "col00000.png").unlink()  # image without mask
    (img / "or00001.png").unlink()  # mask without image
    _save_mask(lab / "col00002.png", np.zeros((21, 30)))  # size mismatch
    bad = np.zeros((20, 30))
    bad[0, 0] = 7
    _save_mask(lab / "col00003.png", bad)  # unknown label value
    (img / "or00004.png").write_bytes(b"not a png at all")  # undecodable image
    Image.new("RGB", (30, 20)).save(lab / "col00005.png")  # RGB mask
    with pytest.raises(DataError) as err:
        load_dataset(cfg, progress=False)
    lines = str(err.value).splitlines()
    assert len(lines) == 6, lines
    expected = {
        "or00000.png": "no mask",
        "col00001.png": "mask without an image",
        "col00002.png": "does not match image",
        "col00003.png": "label values [7]",
        "or00004.png": "cannot decode",
        "col00005.png": "mode 'RGB'",
    }
    for name, problem in expected.items():
        assert any(name in line and problem in line for line in lines), (name, lines)


def test_missing_root_says_how_to_get_the_data(tmp_path):
    cfg = _make_set(tmp_path)
    cfg["root"] = None
    with pytest.raises(DataError, match="make data"):
        load_dataset(cfg, progress=False)
    cfg["root"] = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="nowhere: data root does not exist"):
        load_dataset(cfg, progress=False)


def test_empty_image_folder_is_reported(tmp_path):
    cfg = _make_set(tmp_path, n=1)
    (tmp_path / "img" / "or00000.png").unlink()
    with pytest.raises(DataError, match="no image matches"):
        load_dataset(cfg, progress=False)


def test_split_ids_without_files_are_reported(tmp_path):
    with pytest.raises(DataError, match="'00099'"):
        load_dataset(_make_set(tmp_path), ids=["00000", "00099"], progress=False)


def test_scale_resamples_image_and_mask_together(tmp_path):
    cfg = {**_make_set(tmp_path, shape=(40, 60)), "scale": 0.5}
    data = load_dataset(cfg, progress=False)
    assert data.images[0].shape == (20, 30, 3) and data.masks[0].shape == (20, 30)


def test_read_image_handles_16_bit_grayscale_and_rgba(tmp_path):
    sixteen = np.full((4, 5), 65535, dtype=np.uint16)
    sixteen[0, 0] = 32896  # about half
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (4, 5, 3) and out[1, 1, 0] == 255 and 126 <= out[0, 0, 0] <= 129
    Image.new("RGBA", (5, 4), (10, 20, 30, 0)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [10, 20, 30]
    Image.new("L", (5, 4), 77).save(tmp_path / "l.png")
    assert read_image(tmp_path / "l.png")[0, 0].tolist() == [77, 77, 77]


def test_data_set_files_are_decoded_once_and_again_when_changed(tmp_path, monkeypatch):
    from flakeseg.data import io

    decoded = []
    monkeypatch.setattr(io, "read_image", lambda path: decoded.append(path) or read_image(path))
    path = tmp_path / "x.png"
    Image.fromarray(np.full((4, 5, 3), 10, np.uint8)).save(path)
    first = io.read_dataset_image(path)
    first[:] = 0  # the caller's copy: the next read is the file's
    assert io.read_dataset_image(path)[0, 0].tolist() == [10, 10, 10] and len(decoded) == 1
    Image.fromarray(np.full((4, 5, 3), 20, np.uint8)).save(path)  # the same size, new content
    assert io.read_dataset_image(path)[0, 0].tolist() == [20, 20, 20] and len(decoded) == 2
    with pytest.raises(DataError, match="missing.png: file not found"):
        io.read_dataset_image(tmp_path / "missing.png")


def test_palette_mask_reads_indices_not_colours(tmp_path):
    values = np.array([[0, 1], [2, 3]])
    _save_mask(tmp_path / "m.png", values)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), values)


def test_truncated_file_is_a_data_error(tmp_path):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.png: cannot decode"):
        read_image(tmp_path / "t.png")


def _zero_width_png(path: Path) -> None:
    """A PNG whose header declares a 0 x 20 image (Pillow refuses to write one)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 0, 20, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("flatfield", [None, "training_images"])  # the default recipe's field
def test_eleven_kinds_of_defect_in_one_pass_one_line_each_nothing_loaded(tmp_path, flatfield):
    """Also when the default recipe estimates a flat field from the same (broken) training images
    first: every problem of every file, not the first one the field met under its key."""
    cfg = _make_set(tmp_path, n=11)
    cfg["flatfield"] = flatfield
    cfg["split"] = {"train": [f"{i:05d}" for i in range(11)], "test": []}
    cfg["image_pattern"] = r"or(?P<id>\d+)\.(?:png|jpg)"  # lets two files claim one id
    img, lab = tmp_path / "img", tmp_path / "lab"
    (lab / "col00000.png").unlink()  # 1 missing mask
    (img / "or00001.png").unlink()  # 2 missing image
    _save_mask(lab / "col00002.png", np.zeros((21, 30)))  # 3 size mismatch
    bad = np.zeros((20, 30))
    bad[0, 0] = 7
    _save_mask(lab / "col00003.png", bad)  # 4 unknown label value
    (img / "or00004.png").write_bytes(b"not a png at all")  # 5 unreadable file
    Image.new("RGB", (30, 20)).save(lab / "col00005.png")  # 6 RGB mask
    data = (img / "or00006.png").read_bytes()
    (img / "or00006.png").write_bytes(data[: len(data) // 2])  # 7 truncated file
    (lab / "col00007.png").write_bytes(b"")  # 8 empty file
    _zero_width_png(img / "or00008.png")  # 9 zero-size image
    Image.fromarray(np.full((20, 30), 1000, np.uint16)).save(lab / "col00009.png")  # 10 16-bit mask > 255
    Image.new("RGB", (30, 20)).save(img / "or00010.jpg")  # 11 duplicate id (or00010.png too)
    with pytest.raises(DataError) as err:
        load_dataset(cfg, progress=False)
    lines = str(err.value).splitlines()
    expected = {
        "or00000.png": "no mask",
        "col00001.png": "mask without an image",
        "col00002.png": "does not match image",
        "col00003.png": "label values [7]",
        "or00004.png": "cannot decode",
        "col00005.png": "mode 'RGB'",
        "or00006.png": "cannot decode",
        "col00007.png": "cannot decode",
        "or00008.png": "",
        "col00009.png": "outside 0..255",
        "or00010.": "duplicate image id '00010'",
    }
    assert len(lines) == len(expected), lines
    for name, problem in expected.items():
        assert sum(name in line and problem in line for line in lines) == 1, (name, lines)


def test_fuzzed_pngs_are_read_or_refused_cleanly(tmp_path):
    """A few hundred randomly damaged PNGs: each is read (right shape) or a DataError, never a crash."""
    rng = np.random.default_rng(1234)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "image.png")
    _save_mask(tmp_path / "mask.png", rng.integers(0, 4, (24, 32)))
    outcomes = {"read": 0, "refused": 0}
    for source, reader in (("image.png", read_image), ("mask.png", read_mask)):
        clean = bytearray((tmp_path / source).read_bytes())
        for trial in range(150):
            damaged = bytearray(clean)
            kind = trial % 3
            if kind == 0:  # truncate
                damaged = damaged[: int(rng.integers(0, len(damaged)))]
            elif kind == 1:  # flip bytes
                for position in rng.integers(0, len(damaged), size=int(rng.integers(1, 8))):
                    damaged[position] = int(rng.integers(0, 256))
            else:  # splice junk in
                at = int(rng.integers(0, len(damaged)))
                damaged[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            path = tmp_path / f"fuzz_{trial}_{source}"
            path.write_bytes(bytes(damaged))
            try:
                array = reader(path)
            except DataError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc)
                outcomes["refused"] += 1
            else:
                assert (
                    array.dtype == np.uint8
                    and array.ndim == (3 if reader is read_image else 2)
                    and array.size > 0
                )
                outcomes["read"] += 1
    assert outcomes["refused"] > 50 and sum(outcomes.values()) == 300


def test_a_mask_folder_without_masks_is_one_line_not_one_per_image(tmp_path):
    cfg = _make_set(tmp_path, n=5)
    cfg["mask_dir"] = "img"  # the images' folder by mistake: no file matches the mask template
    with pytest.raises(DataError) as err:
        load_dataset(cfg, progress=False)
    lines = str(err.value).splitlines()
    assert len(lines) == 1 and "no file matches data.mask_template 'col{id}.png' (data.mask_dir)" in lines[0]
