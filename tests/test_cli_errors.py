"""Every command answers a mistake in one line on stderr: no traceback, no log prefix, exit status 2 for
a usage mistake and 1 for a bad file. The commands run in this process (``main(argv)``); only the two
doors whose process is the point (``python -m flakeseg``, ``python train.py``) start one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flakeseg.cli import main as flakeseg_main
from tests.conftest import REPO_ROOT


def lay_out_mistake_files(folder: Path) -> Path:
    """The files a user mixes up, in ``folder``: images, a text file, a folder of folders (what
    :data:`BAD_INVOCATIONS` name; ``benchmarks/error_latency.py`` times them in the same layout)."""
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "img.png")
    Image.fromarray(image).save(folder / "fake.png")  # a real PNG, where the model goes
    (folder / "notes.txt").write_text("not a model\n")
    (folder / "bad.png").write_text("not an image\n")
    (folder / "nested" / "day1").mkdir(parents=True)
    Image.fromarray(image).save(folder / "nested" / "day1" / "a.png")
    return folder


@pytest.fixture
def files(tmp_path: Path, monkeypatch) -> Path:
    """A working folder of the files a user mixes up (:func:`lay_out_mistake_files`)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # `flakeseg train` hands Hydra its argv there
    return lay_out_mistake_files(tmp_path)


#: (argv of ``flakeseg``, exit status, words the line must hold)
BAD_INVOCATIONS = [
    (["no-such-command"], 2, "invalid choice"),
    # predict: the model forgotten, the wrong file, no images, nothing to screen
    (
        ["predict", "fake.png", "img.png", "--out", "out"],
        2,
        "fake.png: an image, not a model; did you mean --model mos2",
    ),
    (["predict", "notes.txt", "img.png", "--out", "out"], 1, "notes.txt: not a flakeseg checkpoint"),
    (["predict", "missing.ckpt", "img.png", "--out", "out"], 1, "missing.ckpt: model file not found"),
    (["predict", "--model", "mos2", "--out", "out"], 2, "no images given"),
    (["predict", "--out", "out"], 2, "no model and no images given"),
    (["predict", "--model", "hbn", "img.png", "--out", "out"], 2, "'hbn' is neither a shipped model"),
    (["predict", "--model", "mos2", "nested", "--out", "out"], 1, "nested: no images in the folder itself"),
    (["predict", "--model", "mos2", "missing.png", "--out", "out"], 1, "missing.png: no such file"),
    (["predict", "--model", "mos2", "bad.png", "--out", "out"], 1, "bad.png: not an image"),
    (["predict", "--model", "mos2", "img.png"], 2, "required: --out"),
    (["predict", "--model", "mos2", "img.png", "--out", "out", "--min-area", "x"], 2, "--min-area"),
    # outputs that would destroy a file: refused before anything is read or written
    (["predict", "--model", "mos2", "img.png", "--out", "notes.txt"], 2, "--out notes.txt: is a file"),
    (["predict", "--model", "mos2", "img.png", "--out", "out", "--coco", "img.png"], 2, "a .json file"),
    (
        ["predict", "--model", "mos2", "img.png", "--out", "out", "--coco", "out/run.json"],
        2,
        "is the run's own run.json",
    ),
    (["predict", "--model", "mos2", "img.png", "--out", "out", "--coco", "nested.json/x"], 2, ".json file"),
    (["watch", "--model", "mos2", "nested", "--out", "."], 2, "holds the watched folder nested"),
    (["predict", "--model", "mos2", "x.ckpt", "img.png", "--out", "out"], 2, "x.ckpt: a model file among"),
    (
        ["predict", "--model", "mos2", "img.png", "--out", "out", "--backend", "onnx", "--device", "cuda"],
        2,
        "the onnx backend runs on the CPU",
    ),
    (
        [
            *("predict", "--model", "mos2", "img.png", "--out", "out", "--scale", "2"),
            *("--pixel-size", "0.1", "--model-pixel-size", "0.1"),
        ],
        1,
        "the pixel sizes give the scale",
    ),
    (["export", "model.onnx", "--out", "model.onnx"], 1, "model.onnx: already an ONNX model"),
    (["export", "model.ckpt", "--out", "nested"], 2, "an ONNX model is a .onnx file"),
    (["export", "notes.txt", "--out", "notes.png"], 2, "an ONNX model is a .onnx file"),
    (["evaluate", "mos2", "--data", "mos2", "--out", "notes.txt"], 2, "the metrics file is a .json file"),
    (["export-labels", "--data", "mos2", "--out", "img.png"], 2, "a COCO file is a .json file"),
    (["audit-labels", "--data", "mos2", "--out", "img.png"], 2, "--out img.png: is a file, not a folder"),
    (["evaluate", "mos2", "--data", "nosuch"], 1, "--data nosuch: no such data set; available: graphene"),
    # train: Hydra's overrides, checked before the job
    (["train", "optim.lrr=0.1"], 2, "optim.lrr: no such key; closest: optim.lr"),
    (["train", "data=hbn2"], 2, "data=hbn2: no such option; available: graphene, mos2"),
    (["train", "+foo=1"], 2, "+foo=1: adds foo, which nothing reads"),
    (["train", "optim.lr=-1"], 1, "optim.lr: must be > 0"),
    (["train", "seed=abc"], 1, "seed: expected"),
    (["train", "stage=test", "data.split.test=[]"], 1, "data.split.test: empty, so stage=test"),
    (["train", "trainer.accelerator=foo"], 1, "trainer.accelerator: one of auto, cpu"),
    (["train", "trainer.precision=99"], 1, "trainer.precision: one of 32-true"),
    # the label and model converters
    (["import-labels"], 2, "FORMAT"),
    (["import-labels", "coco", "missing.json", "--images", ".", "--name", "x"], 1, "missing.json"),
    (["import-labels", "labelme", "img.png", "--name", "x"], 1, "img.png: not a folder"),
    (["export-labels", "--out", "x.json"], 2, "--data"),
    (["export-labels", "--data", "hbn2", "--out", "x.json"], 1, "--data hbn2: no such data set"),
    (["export-labels", "--data", "mos2", "--out", "x.json", "--ids", ""], 2, "--ids: no image id given"),
    (["export-labels", "--data", "mos2", "--out", "x.json", "--ids", "1", "--split", "test"], 2, "give one"),
    (["export"], 2, "checkpoint"),
    (["export", "notes.txt"], 1, "notes.txt: not a flakeseg checkpoint"),
    (["export", "fake.png"], 1, "fake.png: an image, not a model"),
    # the studies: profiles and data sets are checked while parsing
    *[([study, "--profile", "nope"], 2, "--profile: no profile 'nope'") for study in ("ablation", "compare")],
    *[
        ([study, "--profile", "nope"], 2, "--profile: no profile 'nope'")
        for study in ("leaderboard", "fewshot")
    ],
    (["reproduce", "--dataset", "hbn"], 2, "--dataset: invalid choice"),
    (["ablation", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["sweep-local"], 2, "sweep"),
    (["sweep-local", "missing.yaml"], 1, "missing.yaml: cannot read"),
    # predict --material: one model only, its own options, a known crystal
    (
        ["predict", "--model", "mos2", "--material", "MoS2", "img.png", "--out", "out"],
        2,
        "--model and --material",
    ),
    (
        ["predict", "model.ckpt", "img.png", "--material", "MoS2", "--out", "out"],
        2,
        "model.ckpt and --material",
    ),
    (["predict", "--model", "mos2", "img.png", "--oxide", "90", "--out", "out"], 2, "goes with --material"),
    (["predict", "--material", "unobtainium", "img.png", "--out", "out"], 2, "material unobtainium: unknown"),
    (
        ["predict", "--material", "MoS2/Hsu-1l", "img.png", "--out", "out"],
        2,
        "not in the refractiveindex.info database; close matches: main/MoS2/Hsu-1L",
    ),
    (["predict", "--material", "MoS2", "img.png", "--oxide", "-5", "--out", "out"], 2, "--oxide: a SiO2"),
    (["predict", "--material", "MoS2", "img.png", "--oxide", "thin", "--out", "out"], 2, "got 'thin'"),
    (
        ["predict", "--material", "MoS2", "img.png", "--setup", "no.yaml", "--out", "out"],
        1,
        "no.yaml: setup file",
    ),
    (["predict", "--material", "MoS2", "img.png", "--tta", "--out", "out"], 2, "--tta and --temperature"),
    (
        ["predict", "--model", "mos2", "img.png", "--flatfield", "notes.txt", "--out", "out"],
        1,
        "--flatfield notes.txt",
    ),
    # calibrate: nothing to fit on, the wrong output, images that cannot be read or fitted
    (["calibrate", "--out", "s.yaml"], 2, "give images to fit the oxide on"),
    (["calibrate", "img.png", "--out", "s.txt"], 2, "a setup is a .yaml file"),
    (["calibrate", "nested", "--out", "s.yaml"], 1, "nested: no images in the folder itself"),
    (["calibrate", "bad.png", "--out", "s.yaml"], 1, "bad.png: not an image"),
    (["calibrate", "img.png", "--out", "s.yaml"], 1, "the oxide cannot be fitted"),
    (["calibrate", "img.png", "--blank", "notes.txt", "--out", "s.yaml"], 1, "--blank notes.txt"),
    (["calibrate", "img.png", "--flatfield-from-images", "--out", "s.yaml"], 1, "at least 3 of them"),
    (
        ["calibrate", "--data", "mos2", "--flatfield-from-images", "--out", "s.yaml"],
        2,
        "--flatfield-from-images: give the images",
    ),
    (["calibrate", "--data", "hbn2", "--out", "s.yaml"], 2, "hbn2"),
    (["calibrate", "--data", "lab/data/nope.yaml", "--out", "s.yaml"], 2, "no data config file lab/data"),
    (["calibrate", "--data", "notes.yaml", "--out", "s.yaml"], 2, "no data config file notes.yaml"),
    (
        ["calibrate", "--data", "mos2", "--material", "unobtainium", "--out", "s.yaml"],
        2,
        "unobtainium: unknown",
    ),
    (["calibrate", "img.png", "--material", "unobtainium", "--out", "s.yaml"], 2, "unobtainium: unknown"),
    (["robustness", "mos2", "--data", "mos2", "--out", "r", "--shifts", "fog"], 2, "--shifts: unknown fog"),
    (["robustness", "mos2", "--out", "r"], 2, "--data"),
    (["evaluate", "mos2"], 2, "--data"),
    (["evaluate", "mos3", "--data", "mos2"], 2, "error: 'mos3' is neither a shipped model"),
    (
        ["evaluate", "mos2", "--data", "mos2", "--set", "data.split.test=[]"],
        1,
        "--split test: data set mos2 has no test images to score",
    ),
    (["export", "missing.ckpt"], 1, "'missing.ckpt' is neither a shipped model"),
    (["export", "model.onnx", "--out", "x.onnx"], 1, "model.onnx: already an ONNX model"),
    (["export", "notes.txt", "--opset", "999"], 2, "--opset: 7 to 28, got 999"),
    (["evaluate", "mos2", "--data", "mos2", "--set", "seed=1"], 2, "--set seed=1: only data.KEY=VALUE"),
    (["evaluate", "mos2", "--data", "mos2", "--set", "data.scale=2"], 1, "as the model card says"),
    (
        ["export-labels", "--data", "mos2", "--out", "x.json", "--set", "root=x"],
        2,
        "did you mean --set data.root=x?",
    ),
]


def _one_line(capsys, argv: list[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, f"{argv}: {captured.err!r}"
    assert "Traceback" not in captured.err and "][" not in lines[0], lines[0]  # no log prefix
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "status", "says"), BAD_INVOCATIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_a_mistake_is_one_line_on_stderr_with_its_exit_status(files, capsys, argv, status, says):
    try:
        code = flakeseg_main(argv)
    except SystemExit as stop:  # argparse and the train door stop by SystemExit
        code = stop.code
    line = _one_line(capsys, argv)
    assert code == status, f"{argv}: exit {code}, {line}"
    assert says in line, line
    assert not (files / "out").exists()  # predict wrote nothing, not even an empty report


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--model", "mos2", "img.png", "--out", "locked/run"],
        ["export-labels", "--data", "mos2", "--out", "locked/labels.json"],
        ["audit-labels", "--data", "mos2", "--out", "locked"],
    ],
)
def test_an_output_under_a_folder_nobody_may_write_is_one_line_before_any_work(
    files, capsys, monkeypatch, argv
):
    """A read-only disk or another user's folder: refused while the arguments are read, not by a
    traceback at the first file written (the tests run as root, who may write anywhere, so the
    permission is what ``os.access`` answers here)."""
    (files / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path).name != "locked" and real_access(path, mode)
    )
    try:
        code = flakeseg_main(argv)
    except SystemExit as stop:
        code = stop.code
    line = _one_line(capsys, argv)
    assert code == 2 and "locked is not writable" in line, line
    assert list((files / "locked").iterdir()) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["-m", "stage=test", "+selected=cell", "hydra.searchpath=[file://{sp}]"],  # reproduce's test stage
        ["++optim.lr=0.01", "++new_key=1"],  # sweep-local passes every parameter as ++key=value
        ["-m", "optim.lr=1.0e-5,1.0e-4", "data=graphene"],
        ["--help"],
    ],
)
def test_the_override_forms_the_studies_use_still_pass(tmp_path, overrides):
    from flakeseg.cli.train import override_problem

    (tmp_path / "selected").mkdir()
    (tmp_path / "selected" / "cell.yaml").write_text("# @package _global_\noptim:\n  lr: 0.001\n")
    assert override_problem([o.format(sp=tmp_path) for o in overrides]) is None


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLAKESEG_DATA": os.environ.get("FLAKESEG_DATA", "/nonexistent")}
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)


def test_python_dash_m_flakeseg_is_the_flakeseg_command():
    done = _run(sys.executable, "-m", "flakeseg", "--help")
    assert done.returncode == 0 and "predict" in done.stdout and "ablation" in done.stdout


def test_train_py_answers_an_unknown_key_in_one_line_without_a_plus_hint():
    done = _run(sys.executable, "train.py", "optim.lrr=0.1")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines == [
        "error: optim.lrr: no such key; closest: optim.lr, optim.name, optim.schedule"
    ]
    assert "+optim.lrr" not in done.stderr + done.stdout


@pytest.mark.parametrize("overrides", [[], ["data=graphene", "model=smp", "-h"]])
def test_quick_train_help_is_hydras_help_text(capsys, monkeypatch, overrides):
    """``train.py --help`` lists the config groups from the folder (Hydra's loader took 1.2 s for it):
    the text is the one Hydra's own help prints for the same overrides."""
    from flakeseg.cli import train

    argv = overrides if "-h" in overrides else ["--help", *overrides]
    assert train.quick_help(argv)
    quick = capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    with pytest.raises(SystemExit):
        train.run_job()  # Hydra's own --help, bypassing the quick one
    assert capsys.readouterr().out == quick
    assert "data/classes: four, three, three_thick_apart" in quick
    assert not train.quick_help(["data=graphene"])  # no --help: the job runs


def test_a_file_the_system_refuses_is_one_line_and_an_oserror_naming_no_file_keeps_its_traceback(
    capsys, monkeypatch
):
    """A folder the system will not make (``/proc/x``) or a full disk fails at the first file written,
    after the checks: one line naming the file. An OSError that names no file is a bug's."""
    import types

    import flakeseg.cli as cli

    def refuse(argv):
        raise FileNotFoundError(2, "No such file or directory", "/proc/nosuch")

    def broken(argv):
        raise OSError("no file named")

    fake = types.ModuleType("fake_command")
    fake.refuse, fake.broken = refuse, broken
    monkeypatch.setitem(sys.modules, "fake_command", fake)
    monkeypatch.setitem(cli.COMMANDS, "predict", ("fake_command:refuse", "screen"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict"])
    assert stop.value.code == 1
    assert capsys.readouterr().err == "error: /proc/nosuch: No such file or directory\n"
    monkeypatch.setitem(cli.COMMANDS, "predict", ("fake_command:broken", "screen"))
    with pytest.raises(OSError, match="no file named"):
        cli.main(["predict"])


def test_a_full_disk_names_the_output_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    """The disk fills while an output is written: the error names the file the user asked for (not
    the temporary one), which the top level prints as one line; the earlier file stays whole."""
    from flakeseg.utils.files import write_text_atomic

    target = tmp_path / "flakes.csv"
    target.write_text("earlier run\n")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        write_text_atomic(target, "new run\n")
    assert raised.value.filename == str(target) and raised.value.strerror == "No space left on device"
    assert target.read_text() == "earlier run\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "flakes.csv"
    ]


def test_set_takes_a_data_key_or_an_option_of_a_data_config_group():
    from flakeseg.errors import ConfigError
    from flakeseg.utils.command_line import data_overrides

    assert data_overrides(["data.root=/x", "data/classes=four"]) == ["data.root=/x", "data/classes=four"]
    for wrong in ("data/=four", "classes=four", "model/arch=FPN"):
        with pytest.raises(ConfigError, match=rf"^--set {wrong}: only data\.KEY=VALUE or data/GROUP=OPTION"):
            data_overrides([wrong])
