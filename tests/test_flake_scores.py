"""Flake-level precision, recall, F1 and AP50 (flakeseg.evaluation.flake_scores): hand-made cases, the
label clean-up, and agreement with pycocotools' COCOeval on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flakeseg.evaluation.flake_scores import FlakeScores, clean_labels, match_flakes

NAMES = ["other", "monolayer", "bilayer"]
FLAKES = [1, 2]


def probs_of(classmap: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    """Probabilities whose arg-max is ``classmap``, the winner at ``confidence``."""
    rest = (1.0 - confidence) / (len(NAMES) - 1)
    probs = np.full((len(NAMES), *classmap.shape), rest, np.float32)
    for c in range(len(NAMES)):
        probs[c][classmap == c] = confidence
    return probs


def scores(pred: np.ndarray, mask: np.ndarray, **kwargs) -> dict:
    metric = FlakeScores(NAMES, FLAKES, **kwargs)
    metric.update(probs_of(pred), mask)
    return metric.compute("t")


def blank(h: int = 120, w: int = 160) -> np.ndarray:
    return np.zeros((h, w), np.uint8)


def test_a_perfect_prediction_scores_one():
    mask = blank()
    mask[10:40, 10:50] = 1
    mask[60:100, 60:110] = 2
    out = scores(mask, mask)
    for name in ("monolayer", "bilayer"):
        assert (
            out[f"t/flake_f1_{name}"]
            == out[f"t/flake_precision_{name}"]
            == out[f"t/flake_recall_{name}"]
            == 1
        )
        assert out[f"t/flake_ap50_{name}"] == pytest.approx(1.0)
        assert (out[f"t/flake_tp_{name}"], out[f"t/flake_fp_{name}"], out[f"t/flake_fn_{name}"]) == (1, 0, 0)


def test_a_split_flake_is_two_false_alarms_and_a_miss():
    mask = blank()
    mask[20:60, 20:100] = 1
    pred = mask.copy()
    pred[:, 55:65] = 0  # two halves, each under half of the flake
    out = scores(pred, mask)
    assert (out["t/flake_tp_monolayer"], out["t/flake_fp_monolayer"], out["t/flake_fn_monolayer"]) == (
        0,
        2,
        1,
    )
    assert out["t/flake_f1_monolayer"] == 0
    # at IoU 0.25 the larger half matches, the other stays a false alarm
    assert (out["t/flake_tp_monolayer_iou25"], out["t/flake_fp_monolayer_iou25"]) == (1, 1)


def test_merged_flakes_match_at_most_one():
    mask = blank()
    mask[20:60, 20:60] = 1
    mask[20:60, 64:104] = 1
    pred = mask.copy()
    pred[20:60, 60:64] = 1  # one predicted flake over both
    out = scores(pred, mask)
    assert (out["t/flake_tp_monolayer"], out["t/flake_fp_monolayer"], out["t/flake_fn_monolayer"]) == (
        0,
        1,
        2,
    )
    assert out["t/flake_tp_monolayer_iou25"] == 1  # one-to-one: never both
    assert out["t/flake_fn_monolayer_iou25"] == 1


def test_one_pixel_holes_and_gaps_in_the_labels_are_closed():
    mask = blank()
    mask[20:60, 20:100] = 1
    pred = mask.copy()
    speckled = mask.copy()
    speckled[30, 30] = speckled[40, 70] = 0  # holes
    speckled[20:60, 60] = 0  # a 1-px gap splits the label in two components
    out = scores(pred, speckled)
    assert (out["t/flake_tp_monolayer"], out["t/flake_fp_monolayer"], out["t/flake_fn_monolayer"]) == (
        1,
        0,
        0,
    )
    raw = FlakeScores(NAMES, FLAKES)
    found = match_flakes(probs_of(pred), speckled, NAMES, FLAKES, clean=False)
    assert found[("monolayer", "", "")].truths == 2  # without the clean-up: two "flakes"
    raw.update(probs_of(pred), clean_labels(speckled, FLAKES))
    assert raw.compute("t")["t/flake_tp_monolayer"] == 1


def test_clean_labels_closes_only_one_pixel_holes_and_gaps():
    mask = blank(60, 60)
    mask[10:50, 10:50] = 1
    mask[20, 20] = 0  # 1-px hole: closed
    mask[30:33, 30:33] = 0  # 3 x 3 hole: kept
    mask[10:50, 40:42] = 0  # 2-px gap: kept
    mask[45, 15] = 2  # another flake class inside: kept
    mask[5, 5] = 255  # ignored: kept
    cleaned = clean_labels(mask, FLAKES)
    assert cleaned[20, 20] == 1
    assert (cleaned[30:33, 30:33] == 0).all()
    assert (cleaned[10:50, 40:42] == 0).all()
    assert cleaned[45, 15] == 2 and cleaned[5, 5] == 255
    changed = cleaned != mask
    assert (mask[changed] == 0).all()  # only background pixels ever change


def test_clean_labels_keeps_two_pixel_holes_inner_corners_and_diagonal_contacts():
    mask = blank(20, 20)
    mask[2:10, 2:10] = 1
    mask[4:6, 4:6] = 0  # 2 x 2 hole: kept
    mask[12, 12:18] = 1
    mask[12:18, 12] = 1  # an L: its inner corner (13, 13) stays background
    mask[10, 10] = 1  # touches the square only at a corner: stays a separate flake
    cleaned = clean_labels(mask, FLAKES)
    assert (cleaned[4:6, 4:6] == 0).all() and cleaned[13, 13] == 0
    assert (cleaned == mask).all()


def test_a_flake_of_the_wrong_class_is_a_miss_and_a_false_alarm():
    mask = blank()
    mask[20:60, 20:100] = 1
    pred = blank()
    pred[20:60, 20:100] = 2
    out = scores(pred, mask)
    assert out["t/flake_fn_monolayer"] == 1 and out["t/flake_tp_monolayer"] == 0
    assert out["t/flake_fp_bilayer"] == 1 and out["t/flake_f1_bilayer"] == 0
    assert math.isnan(out["t/flake_recall_bilayer"])  # no true bilayer


def test_an_empty_prediction_finds_nothing():
    mask = blank()
    mask[20:60, 20:100] = 1
    out = scores(blank(), mask)
    assert out["t/flake_recall_monolayer"] == 0 and out["t/flake_f1_monolayer"] == 0
    assert math.isnan(out["t/flake_precision_monolayer"])
    assert out["t/flake_ap50_monolayer"] == 0


def test_a_constant_map_scores_zero():
    mask = blank()
    mask[10:40, 10:50] = 1
    mask[60:100, 60:110] = 1
    mask[70:90, 10:40] = 2
    for cls in (1, 2):
        out = scores(np.full_like(mask, cls), mask)
        name = NAMES[cls]
        assert out[f"t/flake_f1_{name}"] == 0 and out[f"t/flake_precision_{name}"] == 0
        assert out[f"t/flake_fp_{name}"] == 1


def test_size_floors_ignore_small_truth_and_small_unmatched_predictions():
    mask = blank(200, 200)
    mask[10:20, 10:20] = 1  # 100 px: counted at >= 100, ignored at >= 600
    mask[50:80, 50:80] = 1  # 900 px: counted at both
    pred = mask.copy()
    pred[150:160, 150:165] = 1  # 150 px false alarm: counted at >= 100, ignored at >= 600
    pred[100:130, 150:180] = 1  # 900 px false alarm: counted at both
    out = scores(pred, mask)
    assert (out["t/flake_tp_monolayer"], out["t/flake_fp_monolayer"], out["t/flake_fn_monolayer"]) == (
        2,
        2,
        0,
    )
    device = (
        out["t/flake_tp_monolayer_device"],
        out["t/flake_fp_monolayer_device"],
        out["t/flake_fn_monolayer_device"],
    )
    assert device == (1, 1, 0)  # the small match is ignored, not counted right or wrong


def test_post_processing_drops_predictions_as_predict_does():
    mask = blank()
    mask[20:60, 20:100] = 1
    pred = mask.copy()
    pred[80:90, 120:135] = 1  # 150 px false alarm
    probs = probs_of(pred)
    probs[1][80:90, 120:135], probs[0][80:90, 120:135] = 0.55, 0.45 - 1e-3
    kept = FlakeScores(NAMES, FLAKES)
    kept.update(probs, mask)
    dropped = FlakeScores(NAMES, FLAKES, min_confidence=0.6)
    dropped.update(probs, mask)
    assert kept.compute("t")["t/flake_fp_monolayer"] == 1
    assert dropped.compute("t")["t/flake_fp_monolayer"] == 0


def test_folds_pool_by_summing_matches():
    mask = blank()
    mask[20:60, 20:100] = 1
    first, second = FlakeScores(NAMES, FLAKES), FlakeScores(NAMES, FLAKES)
    first.update(probs_of(mask), mask)
    second.update(probs_of(blank()), mask)
    pooled = FlakeScores.pooled([first.to_dict(), second.to_dict()], NAMES, FLAKES).compute("cv")
    assert (pooled["cv/flake_tp_monolayer"], pooled["cv/flake_fn_monolayer"]) == (1, 1)
    assert pooled["cv/flake_recall_monolayer"] == 0.5


# -- agreement with pycocotools -------------------------------------------------------------------


def random_scene(rng: np.random.Generator, h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A mask of rectangles of both flake classes, and probabilities of a noisy copy of it."""
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(2, 7)):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        mask[y : y + rng.integers(4, 40), x : x + rng.integers(4, 50)] = rng.integers(1, 3)
    pred = mask.copy()
    for _ in range(rng.integers(1, 6)):  # shifted, grown, shrunk, relabelled, invented flakes
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        pred[y : y + rng.integers(3, 35), x : x + rng.integers(3, 45)] = rng.integers(0, 3)
    probs = rng.uniform(0.0, 0.4, (len(NAMES), h, w)).astype(np.float32)
    for c in range(len(NAMES)):
        probs[c][pred == c] += rng.uniform(0.5, 1.0)
    return mask, probs / probs.sum(axis=0, keepdims=True)


def coco_ap50(masks, probs_list, cls: int, floor: int) -> float:
    """AP at IoU 0.5 of class ``cls`` with area range ``[floor, inf)``, as pycocotools computes it."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    from scipy import ndimage

    from flakeseg.evaluation.flakes import find_flakes

    def rle(binary):
        encoded = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
        encoded["counts"] = encoded["counts"].decode()
        return encoded

    images, annotations, results = [], [], []
    for index, (mask, probs) in enumerate(zip(masks, probs_list, strict=True), start=1):
        images.append({"id": index, "height": mask.shape[0], "width": mask.shape[1]})
        regions, count = ndimage.label(clean_labels(mask, FLAKES) == cls)
        for region in range(1, count + 1):
            inside = regions == region
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": cls,
                    "segmentation": rle(inside),
                    "area": int(inside.sum()),
                    "iscrowd": 0,
                    "bbox": [0, 0, 1, 1],
                }
            )
        ids, flakes = find_flakes(probs, NAMES, FLAKES)
        for flake in flakes:
            if flake.class_name == NAMES[cls]:
                results.append(
                    {
                        "image_id": index,
                        "category_id": cls,
                        "segmentation": rle(ids == flake.flake_id),
                        "score": flake.confidence,
                    }
                )
    truth = COCO()
    truth.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": NAMES[c]} for c in FLAKES],
    }
    truth.createIndex()
    if not results:
        return 0.0 if annotations else float("nan")
    evaluation = COCOeval(truth, truth.loadRes(results), "segm")
    evaluation.params.catIds = [cls]
    evaluation.params.iouThrs = np.array([0.5])
    evaluation.params.areaRng = [[floor, 1e10]]
    evaluation.params.areaRngLbl = ["all"]
    evaluation.params.maxDets = [10_000]
    evaluation.evaluate()
    evaluation.accumulate()
    precision = evaluation.eval["precision"][0, :, 0, 0, 0]
    return float(precision.mean()) if (precision > -1).any() else float("nan")


@pytest.mark.parametrize("seed", range(6))
def test_ap50_agrees_with_cocoeval(seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(4)]
    ours = FlakeScores(NAMES, FLAKES, floors={"": 20, "_device": 300})
    for mask, probs in scenes:
        ours.update(probs, mask)
    out = ours.compute("t")
    for cls in FLAKES:
        for suffix, floor in (("", 20), ("_device", 300)):
            expected = coco_ap50([m for m, _ in scenes], [p for _, p in scenes], cls, floor)
            got = out[f"t/flake_ap50_{NAMES[cls]}{suffix}"]
            if math.isnan(expected):
                assert math.isnan(got)
            else:
                assert got == pytest.approx(expected, abs=1e-9), (cls, floor)


def test_bootstrap_intervals_hold_the_pooled_value_and_widen_with_disagreeing_images():
    mask = blank()
    mask[20:60, 20:100] = 1
    agreeing, mixed = FlakeScores(NAMES, FLAKES), FlakeScores(NAMES, FLAKES)
    for k in range(6):
        agreeing.update(probs_of(mask), mask)
        mixed.update(probs_of(mask if k % 2 else blank()), mask)
    assert agreeing.intervals("t")["t/flake_f1_monolayer_ci95"] == [1.0, 1.0]
    low, high = mixed.intervals("t")["t/flake_f1_monolayer_ci95"]
    f1 = mixed.compute("t")["t/flake_f1_monolayer"]
    assert low < f1 < high and low >= 0.0 and high <= 1.0
    assert FlakeScores(NAMES, FLAKES).intervals("t") == {}


def test_stored_masks_are_cut_where_the_scored_crop_of_the_resampled_image_lies(tmp_path):
    """cv.score_crop cuts the loaded (resampled) images; the stored masks are cut to the same pixels,
    so a prediction resized back lines up (here 700 x 525 at scales 1, 0.5 and 0.25)."""
    from PIL import Image

    from flakeseg.data.catalog import FlakeImages, Pair
    from flakeseg.data.classes import ClassScheme
    from flakeseg.data.preprocess import resize_image

    mask = np.zeros((525, 700), np.uint8)
    mask[200:330, 240:460] = 1  # a flake well inside the centre
    path = tmp_path / "m.png"
    Image.fromarray(mask, mode="L").save(path)
    scheme = ClassScheme.from_config({"names": NAMES, "label_values": [[0], [1], [2]]})
    for scale in (1.0, 0.5, 0.25):
        images = FlakeImages(["a"], [np.zeros((1, 1, 3), np.uint8)], [mask], scheme, [Pair("a", path, path)])
        small = resize_image(mask, scale) if scale != 1 else mask
        cut = round(512 * scale)
        top, left = (small.shape[0] - cut) // 2, (small.shape[1] - cut) // 2
        scored = small[top : top + cut, left : left + cut]
        stored = images.stored_masks(512, scale)[0]
        back = resize_image(scored, 1 / scale) if scale != 1 else scored
        assert abs(stored.shape[0] - back.shape[0]) <= 1 and abs(stored.shape[1] - back.shape[1]) <= 1
        h, w = min(stored.shape[0], back.shape[0]), min(stored.shape[1], back.shape[1])
        agree = (stored[:h, :w] == (back[:h, :w] > 0)).mean()
        assert agree > 0.995, (scale, agree)


def test_cv_table_line_gives_device_flake_f1_with_counts_per_class():
    from flakeseg.evaluation.folds import flake_line

    summary = {}
    for name, (tp, fp, fn) in {"monolayer": (8, 2, 0), "bilayer": (1, 1, 3)}.items():
        tail = f"{name}_device"
        summary |= {
            f"cv/flake_tp_{tail}": tp,
            f"cv/flake_fp_{tail}": fp,
            f"cv/flake_fn_{tail}": fn,
            f"cv/flake_precision_{tail}": tp / (tp + fp),
            f"cv/flake_recall_{tail}": tp / (tp + fn),
            f"cv/flake_f1_{tail}": 2 * tp / (2 * tp + fp + fn),
        }
    line = flake_line(summary, ["other", "monolayer", "bilayer"])
    assert "monolayer F1 0.889 (P 0.800, R 1.000; 8 found / 2 false / 0 missed)" in line
    assert line.index("monolayer") < line.index("bilayer F1 0.333")
    assert "other" not in line and "\n" not in line
    assert flake_line({}, ["other", "monolayer"]) == ""  # a run without flake scores prints nothing


def test_a_flake_predict_lists_as_unknown_is_no_listing_and_a_moved_one_is_scored_in_its_new_class():
    """Unknown flakes (colour off every layer class) are no prediction: a true flake only an unknown
    flake covers is missed, and a false one listed unknown is no false alarm. A flake the colour moves
    to another class is scored there, with the network's confidence."""
    from flakeseg.evaluation.test_scores import flake_scores

    mask = blank()
    mask[10:40, 10:50] = 1  # found, listed
    mask[60:100, 60:110] = 1  # found but listed unknown: a miss
    mask[10:40, 100:150] = 2  # a bilayer the network calls monolayer, moved to bilayer by its colour
    pred = mask.copy()
    pred[60:100, 10:40] = 2  # a false bilayer, listed unknown: nothing
    pred[10:40, 100:150] = 1
    checked = np.full(mask.shape, -1, np.int16)
    checked[60:100, 60:110] = checked[60:100, 10:40] = 0  # the background class: unknown
    checked[10:40, 100:150] = 2
    plain = flake_scores([probs_of(pred)], [mask], NAMES, FLAKES).compute("t")
    out = flake_scores([probs_of(pred)], [mask], NAMES, FLAKES, checked=[checked]).compute("t")
    assert [plain[f"t/flake_{k}_monolayer"] for k in ("tp", "fp", "fn")] == [2, 1, 0]
    assert [out[f"t/flake_{k}_monolayer"] for k in ("tp", "fp", "fn")] == [1, 0, 1]
    assert [plain[f"t/flake_{k}_bilayer"] for k in ("tp", "fp", "fn")] == [0, 1, 1]
    assert [out[f"t/flake_{k}_bilayer"] for k in ("tp", "fp", "fn")] == [1, 0, 0]


def test_apply_colour_check_swaps_the_moved_pixels_probabilities_and_blanks_the_unknown():
    from flakeseg.evaluation.flakes import apply_colour_check

    prob = np.zeros((3, 2, 2), np.float32)
    prob[:, 0, 0] = (0.1, 0.7, 0.2)  # monolayer, moved to bilayer
    prob[:, 0, 1] = (0.2, 0.2, 0.6)  # bilayer, unknown
    prob[:, 1, :] = np.array([0.8, 0.1, 0.1])[:, None]  # untouched
    checked = np.array([[2, 0], [-1, -1]], np.int16)
    out = apply_colour_check(prob, checked, background=0)
    assert out[:, 0, 0].tolist() == pytest.approx([0.1, 0.2, 0.7])
    assert out[:, 0, 1].tolist() == [1.0, 0.0, 0.0]
    assert (out[:, 1] == prob[:, 1]).all() and prob[1, 0, 0] == pytest.approx(0.7)  # the input kept
    assert apply_colour_check(prob, np.full((2, 2), -1, np.int16), 0) is prob


def test_colour_check_listing_moves_a_flake_to_the_class_its_colour_fits_and_else_calls_it_unknown(tmp_path):
    """As predict: on the stored image, with the shipped setup of the model's data; none without one."""
    from PIL import Image

    from flakeseg.data.catalog import FlakeImages, Pair
    from flakeseg.data.classes import ClassScheme
    from flakeseg.evaluation.postprocess import Postprocess
    from flakeseg.evaluation.test_scores import colour_check_listing
    from flakeseg.optics.calibration import shipped_setup

    setup = shipped_setup("paper_mos2")
    substrate = np.array(setup.substrates[0], dtype=np.float64)
    one, two, thick = setup.colours("MoS2", [1, 2, 12], substrate)[0]
    image = np.tile(substrate, (120, 160, 1))
    image[10:40, 10:50], image[60:100, 60:110], image[10:40, 100:150] = one, two, thick
    path = tmp_path / "or00000.png"
    Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8)).save(path)
    pred = blank()
    pred[10:40, 10:50] = 1  # a monolayer coloured as one: listed
    pred[60:100, 60:110] = 1  # a "monolayer" coloured as a bilayer: moved to bilayer
    pred[10:40, 100:150] = 2  # a "bilayer" coloured as 12 layers: unknown
    images = FlakeImages(
        ids=["00000"],
        images=[image.astype(np.uint8)],
        masks=[pred],
        scheme=ClassScheme.from_config({"names": NAMES, "label_values": [[0], [1], [2]]}),
        pairs=[Pair("00000", path, path)],
    )
    post = Postprocess(min_area=100, min_confidence=0.5)
    maps, summary = colour_check_listing([probs_of(pred)], images, FLAKES, post, "mos2")
    assert summary == {"setup": "paper_mos2", "flakes": 1, "reclassed": 1}
    assert maps[0][70, 80] == 2 and maps[0][20, 120] == 0 and maps[0][20, 20] == -1
    assert (maps[0] >= 0).sum() == 40 * 50 + 30 * 50
    assert colour_check_listing([probs_of(pred)], images, FLAKES, post, "hbn") == (
        None,
        {"setup": None, "flakes": 0, "reclassed": 0},
    )
