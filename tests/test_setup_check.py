"""The setup check (flakeseg.optics.drift; ``predict`` flags images unlike its model's training
images) and the re-rendering of a labelled image as another setup would show it."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

from flakeseg.optics.calibration import shipped_setup
from flakeseg.optics.drift import (
    FOLDER_SIGNIFICANCE,
    OWN_FLAG_RATE,
    TOLERANCE,
    SetupCheck,
    SetupVerdict,
    check_folder,
    folder_chance,
    log_chroma,
    rerender,
    rerender_ratios,
    translate,
    translate_to_setup,
)
from tests.test_optics_layers import rendered

TRAINING = [(176.0, 151.0, 207.0), (219.0, 190.0, 226.0), (255.0, 209.0, 255.0)]


def test_log_chroma_leaves_out_ratios_of_clipped_channels():
    assert log_chroma((176, 151, 207)) == pytest.approx(np.log([176 / 151, 207 / 151]))
    assert np.isnan(log_chroma((255, 200, 180))[0]) and np.isfinite(log_chroma((255, 200, 180))[1])
    assert np.isnan(log_chroma((200, 255, 180))).all()  # green clipped: no ratio at all


def test_the_check_passes_a_known_colour_at_any_exposure_and_flags_another():
    check = SetupCheck(TRAINING)
    for gain in (0.8, 1.0, 1.2):  # a common gain through a power-law gamma keeps the ratios
        colour = 255.0 * ((np.array(TRAINING[0]) / 255.0) ** 2.2 * gain) ** (1 / 2.2)
        assert check(colour)[0], gain
    ok, reason, checked = check((176.0, 151.0, 240.0))  # bluer: log(240/207) = 0.15 > the tolerance
    assert not ok and checked and "unlike every training image" in reason and f"{TOLERANCE:g}" in reason
    ok, reason, checked = check((255.0, 200.0, 255.0))
    assert ok and not checked and reason.startswith("not checked")


def test_folder_chance_is_the_binomial_tail_of_the_own_flag_rate():
    def tail(k: int, n: int) -> float:  # the sum itself
        p = OWN_FLAG_RATE
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))

    for k, n in ((1, 1), (2, 3), (3, 14), (39, 44)):
        assert folder_chance(k, n) == pytest.approx(tail(k, n), rel=1e-9, abs=1e-300)
    assert folder_chance(0, 10) == 1.0


def test_a_folder_with_too_many_flags_flags_all_its_images_and_a_few_flags_flag_only_themselves():
    near = SetupVerdict(True, "substrate (1) like the training images'")
    clipped = SetupVerdict(True, "not checked: clipped", checked=False)
    far = SetupVerdict(False, "substrate (2) unlike every training image's")
    judged, folder = check_folder([near, far, far, clipped])  # 2 flags of 3 checked: chance 0.007
    assert folder and folder.startswith("the folder: 2 of its 3 checked images")
    assert [v.setup_ok for v in judged] == [False] * 4
    assert judged[0].reason.startswith(folder) and judged[0].reason.endswith(near.reason)
    assert judged[3].checked is False and judged[1] == far  # a flagged image keeps its own reason
    few = [near] * 18 + [far] * 2  # 2 of 20: as often as images of the training setup give (chance 0.26)
    assert folder_chance(2, 20) >= FOLDER_SIGNIFICANCE
    assert check_folder(few) == (few, None)
    assert check_folder([]) == ([], None)


def test_a_thin_oxide_hides_in_the_spread_of_the_training_lamps_one_image_at_a_time_not_as_a_folder():
    """The paper's graphene substrates re-rendered at 90 nm of oxide (their colour ratio as the optics
    predicts it): some land near another session's lamp and pass one by one; as one folder all are
    flagged. The training substrates themselves, each left out in turn, pass as a folder."""
    setup = shipped_setup("paper_graphene")
    thin = dataclasses.replace(setup, oxide_nm=90.0)
    colours = [
        np.asarray(s, float) * rerender_ratios(np.asarray(s, float), "graphene", setup, thin, [0])[0]
        for s in setup.substrates
    ]
    check = SetupCheck(setup.substrates)
    alone = [check(np.clip(c, 0, 255)) for c in colours]
    assert 0 < sum(v.setup_ok for v in alone) < len(alone) // 4  # most flagged, not all
    judged, folder = check_folder(alone)
    assert folder and not any(v.setup_ok for v in judged)
    own = [
        SetupCheck(setup.substrates[:i] + setup.substrates[i + 1 :])(s)
        for i, s in enumerate(setup.substrates)
    ]
    assert check_folder(own)[1] is None


def test_rerender_at_the_same_setup_changes_nothing_and_at_90_nm_is_flagged():
    setup = shipped_setup()
    image, layers = rendered(setup, "MoS2")
    counts = np.where(layers == 12, -1, layers)  # the thick flake: thickness unknown to the re-render
    same = rerender(image, counts, "MoS2", setup, setup)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1
    thin = rerender(image, counts, "MoS2", setup, dataclasses.replace(setup, oxide_nm=90.0))
    check = SetupCheck(setup.substrates)
    assert check(np.median(image[layers == 0], axis=0))[0]
    assert not check(np.median(thin[layers == 0], axis=0))[0]
    # the monolayer keeps its contrast's sign in red, as the optics predicts for 90 nm
    expected = dataclasses.replace(setup, oxide_nm=90.0).contrast(
        "MoS2", 1, np.median(thin[layers == 0], axis=0)
    )
    measured = np.median(thin[layers == 1], axis=0) / np.median(thin[layers == 0], axis=0) - 1
    assert np.sign(measured[0]) == np.sign(expected[0, 0])


def test_translate_reads_the_layers_from_the_colours_as_rerender_reads_them_from_labels():
    """An image of a setup 15 nm of oxide off: translated with no labels, each region's colour is what
    the labelled re-render gives it, the thick flake (off the layer curve) taking the substrate's ratio
    as the re-render's -1 does; translated onto its own setup it does not change."""
    setup = shipped_setup()
    thicker = dataclasses.replace(setup, oxide_nm=setup.oxide_nm + 15)
    image, layers = rendered(thicker, "MoS2")
    counts = np.where(layers == 12, -1, layers)
    same = translate(image, "MoS2", thicker, thicker)
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1
    labelled = rerender(image, counts, "MoS2", thicker, setup)
    unlabelled = translate(image, "MoS2", thicker, setup)
    for count in (0, 1, 2, 12):
        inside = layers == count
        expected = np.median(labelled[inside], axis=0)
        assert np.abs(np.median(unlabelled[inside], axis=0) - expected).max() <= 2, (count, expected)
        moved = np.abs(expected - np.median(image[inside], axis=0)).max()
        assert count == 12 or moved >= 3, (count, moved)  # the oxide change is visible in each layer


def test_translate_to_setup_leaves_the_models_own_images_and_maps_a_flagged_one():
    setup = shipped_setup()
    own, _ = rendered(setup, "MoS2", substrate=setup.substrates[0])
    assert translate_to_setup(own, "MoS2", setup) is own  # the setup check passes it: untouched
    thicker = dataclasses.replace(setup, oxide_nm=setup.oxide_nm + 20)
    own_substrate = np.asarray(setup.substrates[0], dtype=np.float64)  # the same microscope's gains
    substrate = own_substrate * rerender_ratios(own_substrate, "MoS2", setup, thicker, [0])[0]
    foreign, layers = rendered(thicker, "MoS2", substrate=substrate)
    check = SetupCheck(setup.substrates)
    assert not check(np.median(foreign[layers == 0], axis=0))[0]
    shown = translate_to_setup(foreign, "MoS2", setup)

    def off(image: np.ndarray) -> float:  # the monolayer's contrast against what the setup predicts
        bare = np.median(image[layers == 0], axis=0)
        measured = np.median(image[layers == 1], axis=0) / bare - 1
        return float(np.abs(measured - setup.contrast("MoS2", 1, bare[None])[0]).max())

    assert off(shown) < 0.5 * off(foreign), (off(shown), off(foreign))


def test_predict_flags_a_foreign_image_and_strict_withholds_its_candidates(tmp_path, capsys):
    from flakeseg.cli.predict import main

    setup = shipped_setup()
    known, _ = rendered(setup, "MoS2")
    foreign, _ = rendered(setup, "MoS2", substrate=(150.0, 190.0, 120.0))  # a greenish substrate
    Image.fromarray(known).save(tmp_path / "known.png")
    Image.fromarray(foreign).save(tmp_path / "foreign.png")
    out = tmp_path / "screen"
    images = [str(tmp_path / "known.png"), str(tmp_path / "foreign.png")]
    assert main(["--material", "MoS2", *images, "--out", str(out), "--strict"]) == 0
    run = json.loads((out / "run.json").read_text())
    verdicts = {entry["image"]: entry["setup_ok"] for entry in run["setup_check"]}
    assert verdicts == {"known": True, "foreign": False}
    with open(out / "flakes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert (
        rows and {row["image"] for row in rows} == {"known"} and {row["setup_ok"] for row in rows} == {"True"}
    )
    assert 'id="setup-check"' in (out / "report.html").read_text()
    err = capsys.readouterr().err
    assert "setup check foreign:" in err and "withheld (--strict)" in err


def test_predict_flags_a_whole_folder_from_another_microscope_and_strict_withholds_every_image(
    tmp_path, capsys
):
    """Two foreign images of three: too many for the model's own microscope, so the third, whose
    substrate alone passes, is flagged for the folder and, with --strict, its candidates withheld."""
    from flakeseg.cli.predict import main

    setup = shipped_setup()
    known, _ = rendered(setup, "MoS2")
    Image.fromarray(known).save(tmp_path / "known.png")
    for seed in (1, 2):
        foreign, _ = rendered(setup, "MoS2", substrate=(150.0, 190.0, 120.0), seed=seed)
        Image.fromarray(foreign).save(tmp_path / f"foreign{seed}.png")
    images = [str(tmp_path / f"{n}.png") for n in ("known", "foreign1", "foreign2")]
    out = tmp_path / "screen"
    assert main(["--material", "MoS2", *images, "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    reasons = {entry["image"]: entry["reason"] for entry in run["setup_check"]}
    assert not any(entry["setup_ok"] for entry in run["setup_check"])
    assert (
        reasons["known"].startswith("the folder: 2 of its 3 checked images")
        and "like the" in reasons["known"]
    )
    with open(out / "flakes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "known" in {row["image"] for row in rows} and {row["setup_ok"] for row in rows} == {"False"}
    assert "setup check the folder: 2 of its 3" in capsys.readouterr().err
    record = json.loads((out / "records" / "known.json").read_text())
    assert record["setup_check"]["setup_ok"] and record["flakes"]  # the record keeps what was screened

    strict = tmp_path / "strict"
    assert main(["--material", "MoS2", *images, "--out", str(strict), "--strict"]) == 0
    with open(strict / "flakes.csv") as handle:
        assert list(csv.DictReader(handle)) == []  # nothing listed from any image of the folder
    run = json.loads((strict / "run.json").read_text())
    withheld = {entry["image"]: entry.get("withheld") for entry in run["setup_check"]}
    assert withheld["known"] == len(record["flakes"]) and run["flakes"] == 0
    page = (strict / "report.html").read_text()
    assert "withheld (--strict)" in page and 'href="overlays/known.png"' not in page  # it shows candidates


def test_a_flake_whose_colour_fits_another_layer_class_moves_there_and_one_fitting_none_is_unknown():
    """Regions the model calls monolayer: one coloured as a monolayer keeps its class; one coloured as
    a bilayer becomes a bilayer when the model has that class, unknown when it has not; the thick
    (12-layer) flake fits no layer class: unknown."""
    from flakeseg.evaluation.flakes import UNKNOWN, colour_checked_flakes, find_flakes

    setup = shipped_setup()
    image, layers = rendered(setup, "MoS2")
    probs = np.zeros((3, *layers.shape), np.float32)
    probs[0] = 1.0
    for region in (layers == 1, layers == 2, layers == 12):  # all called monolayer by a (wrong) model
        probs[:, region] = 0.0
        probs[1, region] = 1.0
    ids, flakes = find_flakes(probs, ["other", "monolayer", "bilayer"], [1, 2], 100, 0.5)
    substrate = np.median(image[layers == 0], axis=0)
    area = {n: int((layers == n).sum()) for n in (1, 2, 12)}

    def named(classes: list[str]) -> dict[int, str]:
        checked = colour_checked_flakes(image, ids, flakes, setup, "MoS2", substrate, classes)
        return {f.area_px: f.class_name for f in checked}

    assert named(["monolayer", "bilayer"]) == {area[1]: "monolayer", area[2]: "bilayer", area[12]: UNKNOWN}
    assert named(["monolayer"]) == {area[1]: "monolayer", area[2]: UNKNOWN, area[12]: UNKNOWN}


def test_screening_lists_a_moved_flake_in_its_new_class_and_coco_keeps_the_networks(tmp_path):
    """predict's record of an image where the network calls a bilayer-coloured and a thick flake
    monolayer: flakes.csv rows in the colour's class (bilayer) and unknown, the COCO instance of the
    moved one in the bilayer category with the network's class kept as an attribute."""
    from types import SimpleNamespace

    from flakeseg.screening.screen import ScreenSettings, screen_one

    setup = shipped_setup()
    image, layers = rendered(setup, "MoS2")
    Image.fromarray(image).save(tmp_path / "im.png")
    probs = np.zeros((3, *layers.shape), np.float32)
    probs[0] = 1.0
    for region in (layers == 1, layers == 2, layers == 12):  # all "monolayer"
        probs[:, region] = 0.0
        probs[1, region] = 0.9
        probs[0, region] = 0.1
    card = SimpleNamespace(
        class_names=["other", "monolayer", "bilayer"],
        flake_classes=["monolayer", "bilayer"],
        class_colors=["#000000", "#0000ff", "#00ff00"],
    )
    predictor = SimpleNamespace(card=card, probabilities=lambda picture: probs)
    settings = ScreenSettings(
        checkpoint="m.ckpt", checkpoint_sha256="0" * 64, backend="torch",
        setup=json.dumps(setup.to_dict()), material="MoS2",
    )  # fmt: skip
    record = screen_one(predictor, tmp_path / "im.png", "im", tmp_path / "out", settings)
    by_area = {f["area_px"]: f["class_name"] for f in record["flakes"]}
    area = {n: int((layers == n).sum()) for n in (1, 2, 12)}
    assert by_area == {area[1]: "monolayer", area[2]: "bilayer", area[12]: "unknown"}
    assert record["counts"] == {"monolayer": 1, "bilayer": 1} and record["unknown"] == 1
    moved = next(i for i in record["instances"] if i["attributes"].get("network_class"))
    assert moved["category_id"] == 2 and moved["attributes"]["network_class"] == "monolayer"
    assert moved["score"] == pytest.approx(0.9)  # the network's confidence goes with the flake
    assert sum(bool(i["attributes"].get("unknown")) for i in record["instances"]) == 1


def test_a_moved_flake_joins_the_region_of_its_new_class_it_touches_as_the_scores_count_it():
    """A bilayer-coloured "monolayer" beside a bilayer the network found: predict lists one bilayer
    (a region of one class is one flake), the one the flake scores match; a thick "monolayer" apart
    stays its own flake, unknown."""
    from flakeseg.evaluation.flakes import (
        UNKNOWN,
        apply_colour_check,
        checked_listing,
        colour_check_map,
        find_flakes,
    )

    setup = shipped_setup()
    image, layers = rendered(setup, "MoS2")
    names, flake_classes = ["other", "monolayer", "bilayer"], [1, 2]
    probs = np.zeros((3, *layers.shape), np.float32)
    probs[0] = 1.0
    bilayer = layers == 2
    left = bilayer & (np.arange(layers.shape[1]) < 40)[None, :]  # the network: half monolayer, half bilayer
    for region, cls in ((left, 1), (bilayer & ~left, 2), (layers == 12, 1)):
        probs[:, region] = 0.0
        probs[cls, region] = 1.0
    assert len(find_flakes(probs, names, flake_classes, 100, 0.5)[1]) == 3
    ids, listed, moved_from = checked_listing(image, probs, names, flake_classes, 100, 0.5, setup, "MoS2")
    assert sorted((f.class_name, f.area_px) for f in listed) == sorted(
        [("bilayer", int(bilayer.sum())), (UNKNOWN, int((layers == 12).sum()))]
    )
    joined = next(f for f in listed if f.class_name == "bilayer")
    assert moved_from == {joined.flake_id: "monolayer"} and (ids[bilayer] == joined.flake_id).all()
    check, counts = colour_check_map(image, probs, names, flake_classes, 100, 0.5, setup, "MoS2")
    scored = find_flakes(apply_colour_check(probs, check, 0), names, flake_classes, 100, 0.5)[1]
    assert counts == {"unknown": 1, "reclassed": 1}
    assert [(f.class_name, f.area_px) for f in scored] == [("bilayer", joined.area_px)]
