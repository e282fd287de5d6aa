import json

import numpy as np
import pytest

from flakeseg.evaluation.folds import cv_markdown, summarize_folds
from flakeseg.utils.files import write_json_atomic


def _fold(k, acc):
    return {
        "fold": k,
        "val/mean_class_acc": acc,
        "val/macro_precision": 0.5,
        "val/mean_iou": 0.4,
        "val/acc_a": acc,
        "val/acc_b": 1.0,
        "train_seconds": 10.0,
        "val/confmat": [[1, 0], [0, 1]],
    }


def test_summary_is_mean_and_sample_std_over_folds():
    summary = summarize_folds([_fold(0, 0.6), _fold(1, 0.8), _fold(2, 0.7)])
    assert summary["cv/mean_class_acc"] == pytest.approx(0.7)
    assert summary["cv/mean_class_acc_std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert summary["cv/macro_precision_std"] == 0.0
    assert "cv/confmat" not in summary
    assert summarize_folds([_fold(0, 0.6)])["cv/mean_class_acc_std"] == 0.0


def test_markdown_table_has_a_row_per_fold_and_the_mean():
    folds = [_fold(0, 0.6), _fold(1, 0.8)]
    metrics = {"class_names": ["a", "b"], "folds": folds, **summarize_folds(folds), "wall_seconds": 21.0}
    lines = cv_markdown(metrics).splitlines()
    assert len(lines) == 2 + 2 + 1
    assert lines[2].startswith("| 0 | 0.600 |") and "0.700 ± 0.141" in lines[-1]


def test_json_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 2}  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_json_is_strict_nan_becomes_null(tmp_path):
    path = tmp_path / "m.json"
    write_json_atomic(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 0.5}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": 0.5}}


# --- the screening report (`flakeseg predict`'s report.html and flakes.csv), from synthetic records ---

CLASSES = ["monolayer", "bilayer"]
COLORS = {"monolayer": "#1f5fff", "bilayer": "#20c020"}


def _flake(flake_id, cls, area, confidence, pixel_size=None, box=(2, 492, 54, 525)):
    return {
        "flake_id": flake_id,
        "class_name": cls,
        "area_px": area,
        "area_um2": None if pixel_size is None else round(area * pixel_size**2, 2),
        "confidence": confidence,
        "bbox_x0": box[0],
        "bbox_y0": box[1],
        "bbox_x1": box[2],
        "bbox_y1": box[3],
        "centroid_x": 20.5,
        "centroid_y": 510.25,
    }


def _record(name, flakes):
    return {
        "name": name,
        "source": f"/images/{name}.png",
        "width": 700,
        "height": 525,
        "counts": {c: sum(f["class_name"] == c for f in flakes) for c in CLASSES},
        "flakes": flakes,
        "overlay": f"overlays/{name}.png",
        "thumbnail": "data:image/jpeg;base64,AAAA",
        "crops": {str(f["flake_id"]): f"data:image/jpeg;base64,crop-{name}-{f['flake_id']}" for f in flakes},
    }


def _records(pixel_size=None):
    """A large sure monolayer, an image of many monolayer specks, bilayers of several sizes."""
    px = pixel_size
    specks = [_flake(i, "monolayer", 120, 0.95, px) for i in range(1, 9)]
    return [
        _record("specks", specks),
        _record("large", [_flake(1, "monolayer", 64_000, 0.8, px), _flake(2, "bilayer", 900, 0.9, px)]),
        _record("mixed", [_flake(1, "monolayer", 5_000, 0.9, px), _flake(2, "bilayer", 40_000, 0.7, px)]),
    ]


def _best_rows(page: str) -> list[tuple[str, str, str]]:
    """(class, image, flake id) of each best-candidates row, in page order."""
    import re

    pattern = r'<tr class="best" data-image="([^"]+)" data-class="([^"]+)" data-flake="(\d+)"'
    return [(cls, image, flake) for image, cls, flake in re.findall(pattern, page)]


def test_best_candidates_rank_area_times_confidence_per_class_a_large_monolayer_first():
    from flakeseg.screening.html_report import best_candidates

    best = best_candidates(_records(), CLASSES, top=3)
    assert list(best) == CLASSES  # monolayer table first
    assert [(r["name"], f["flake_id"]) for r, f in best["monolayer"]] == [
        ("large", 1),  # 64000 x 0.8 before 5000 x 0.9 and every 120 px speck
        ("mixed", 1),
        ("specks", 1),  # ties: image, then flake id
    ]
    assert [(r["name"], f["flake_id"]) for r, f in best["bilayer"]] == [("mixed", 2), ("large", 2)]
    assert all(not pairs for pairs in best_candidates(_records(), CLASSES, top=0).values())


def test_best_candidates_table_respects_top_and_min_area_um2_and_links_each_image():
    from flakeseg.screening.html_report import ReportOptions, render_report

    records = _records(pixel_size=0.2)  # 120 px: 4.8 um^2; 5000 px: 200 um^2; 900 px: 36 um^2
    settings = {"pixel_size_um": 0.2}
    page = render_report(records, settings, CLASSES, COLORS, options=ReportOptions(top=2))
    assert _best_rows(page) == [
        ("monolayer", "large", "1"),
        ("monolayer", "mixed", "1"),
        ("bilayer", "mixed", "2"),
        ("bilayer", "large", "2"),
    ]
    assert page.index('id="best"') < page.index('id="ranking"')  # at the top
    assert 'href="#img-large"' in page and 'id="img-large"' in page
    assert "data:image/jpeg;base64,crop-large-1" in page  # each row's crop
    floor = render_report(records, settings, CLASSES, COLORS, options=ReportOptions(min_area_um2=50))
    assert _best_rows(floor) == [
        ("monolayer", "large", "1"),
        ("monolayer", "mixed", "1"),
        ("bilayer", "mixed", "2"),  # 36 um^2: left out; the specks too
    ]
    assert floor.count('<tr class="flake"') == 12  # the per-image tables keep every flake
    hidden = render_report(records, settings, CLASSES, COLORS, options=ReportOptions(top=0))
    assert 'id="best"' not in hidden and not _best_rows(hidden)


def test_areas_are_um2_with_the_pixel_size_and_its_source_else_pixels():
    from flakeseg.screening.html_report import ReportOptions, render_report

    options = ReportOptions(pixel_size_um=0.204, pixel_size_source="the model card")
    known = render_report(_records(pixel_size=0.204), {}, CLASSES, COLORS, options=options)
    assert "0.204 µm/px, from the model card" in known
    assert known.count("Area (µm²)") == 2 + 3  # two best tables, three images' tables
    assert "Largest (µm²)" in known and "2,663.4</td>" in known  # 64000 px at 0.204 um/px
    assert "2,663.4 µm²</figcaption>" in known  # the gallery
    unknown = render_report(_records(), {"pixel_size_um": None}, CLASSES, COLORS)
    assert "µm²" not in unknown and "um^2" not in unknown
    assert "Area (px)" in unknown and "Largest (px)" in unknown and "64,000</td>" in unknown
    assert "pixel size is unknown" in unknown
    # the run's settings say it when the options do not
    assert "0.5 µm/px, from --pixel-size" in render_report(
        _records(pixel_size=0.5), {"pixel_size_um": 0.5, "pixel_size_from": "--pixel-size"}, CLASSES, COLORS
    )


def test_page_has_human_headers_and_readable_boxes():
    from flakeseg.screening.html_report import render_report

    page = render_report(_records(), {"min_area": 100, "pixel_size_um": None}, CLASSES, COLORS)
    for header in ("Confidence", "Bounding box (x0, y0)&ndash;(x1, y1)", "Centroid (x, y)", "Flake"):
        assert f"<th>{header}</th>" in page
    for raw in ("flake_id", "class_name", "area_px", "area_um2", "<th>bbox", "min_area<"):
        assert raw not in page
    assert "(2, 492)&ndash;(54, 525)" in page and "2,492" not in page
    assert "(20.5, 510.2)" in page or "(20.5, 510.3)" in page


def test_flakes_csv_values_are_rounded(tmp_path):
    import csv
    from types import SimpleNamespace

    from flakeseg.evaluation.flakes import Flake
    from flakeseg.screening.screen import write_run_outputs

    noisy = Flake(3, "monolayer", 15368, 639.5600000000002, 0.912345678, 1, 2, 30, 40, 12.3456, 7.0499999)
    row = noisy.row()
    assert (row["area_um2"], row["confidence"], row["centroid_x"], row["centroid_y"]) == (
        639.56,
        0.912,
        12.3,
        7.0,
    )
    assert row["area_px"] == 15368 and Flake(**{**row, "area_um2": None}).row()["area_um2"] is None
    flake = _flake(1, "monolayer", 15368, 0.912345678, pixel_size=None) | {
        "area_um2": 639.5600000000002,
        "centroid_x": 12.3456,
    }
    card = SimpleNamespace(class_names=["other", *CLASSES], class_colors=["#000000", "#1f5fff", "#20c020"])
    card.flake_classes = CLASSES
    summary = {"records": [_record("a", [flake])], "problems": []}
    write_run_outputs(tmp_path, summary, SimpleNamespace(card=card), {"pixel_size_um": 0.204})
    text = (tmp_path / "flakes.csv").read_text()
    assert "0000" not in text and "9999" not in text
    (row,) = csv.DictReader(text.splitlines())
    assert (row["area_um2"], row["confidence"], row["centroid_x"]) == ("639.56", "0.912", "12.3")
    assert "Area (µm²)" in (tmp_path / "report.html").read_text()


def test_overlay_label_sits_on_an_l_shaped_flake():
    from flakeseg.evaluation.flakes import find_flakes
    from flakeseg.screening.overlay import draw_overlay, label_anchors

    probs = np.zeros((3, 120, 160), np.float32)
    probs[0] = 1.0
    # an L: a vertical bar and a horizontal bar; its centroid and its box corner lie off the flake
    probs[:, 10:110, 20:34] = np.array([0.0, 1.0, 0.0])[:, None, None]
    probs[:, 96:110, 20:150] = np.array([0.0, 1.0, 0.0])[:, None, None]
    # a diagonal band of bilayer, touching the right border
    for row in range(0, 80):
        probs[:, row, 60 + row : 72 + row] = np.array([0.0, 0.0, 1.0])[:, None]
    ids, flakes = find_flakes(probs, ["other", *CLASSES], [1, 2])
    assert [f.class_name for f in flakes] == ["monolayer", "bilayer"]
    lshape = flakes[0]
    assert ids[round(lshape.centroid_y), round(lshape.centroid_x)] != lshape.flake_id  # off the L
    anchors = label_anchors(ids, flakes)
    for flake in flakes:
        x, y = anchors[flake.flake_id]
        assert ids[y, x] == flake.flake_id
    # the drawn number (white) is on its flake, not above the box corner
    image = np.full((120, 160, 3), 90, np.uint8)
    picture = np.asarray(draw_overlay(image, ids, flakes, {"monolayer": "#1f5fff", "bilayer": "#20c020"}))
    white = np.argwhere(picture.min(axis=2) > 240)
    assert len(white) > 0 and (ids[white[:, 0], white[:, 1]] > 0).mean() > 0.8
    assert white[:, 0].min() >= min(f.bbox_y0 for f in flakes)


def test_overlay_label_stays_in_the_picture():
    from flakeseg.evaluation.flakes import find_flakes
    from flakeseg.screening.overlay import draw_overlay

    probs = np.zeros((3, 40, 60), np.float32)
    probs[0] = 1.0
    probs[:, 0:3, 55:60] = np.array([0.0, 1.0, 0.0])[:, None, None]  # a speck in the top-right corner
    ids, flakes = find_flakes(probs, ["other", *CLASSES], [1, 2])
    picture = np.asarray(draw_overlay(np.full((40, 60, 3), 90, np.uint8), ids, flakes, COLORS))
    white = np.argwhere(picture.min(axis=2) > 240)
    assert len(white) > 0 and white[:, 1].max() < 60 and white[:, 0].min() >= 0
    assert np.hypot(white[:, 0].mean() - 1, white[:, 1].mean() - 57) < 15  # next to its flake
