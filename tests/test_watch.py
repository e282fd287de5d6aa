"""`flakeseg watch`: a live folder screened as images are written into it, slowly, with a bad file, a
restart that reuses the records, --poll, and a clean stop by SIGTERM."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from flakeseg.cli.watch import main
from tests.conftest import REPO_ROOT

REFRESH_TAG = '<meta http-equiv="refresh"'


def _write_slowly(source: Path, target: Path, chunk: int = 64 * 1024, pause: float = 0.04) -> None:
    """Copy ``source`` to ``target`` in chunks, as a microscope's software writes a large image."""
    data = source.read_bytes()
    with open(target, "wb") as handle:
        for start in range(0, len(data), chunk):
            handle.write(data[start : start + chunk])
            handle.flush()
            time.sleep(pause)


def _wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def _check_outputs(out: Path, names: set[str]) -> None:
    """flakes.csv has every flake of every record, and only those images; nothing half-written."""
    records = _records(out)
    assert set(records) == names
    rows = _rows(out / "flakes.csv")
    assert Counter(r["image"] for r in rows) == {
        n: len(r["flakes"]) for n, r in records.items() if r["flakes"]
    }
    assert not list(out.rglob(".*.tmp"))


# --- the command line: answered at once, in one line ---------------------------------------------------


def test_watch_help_answers_without_torch():
    probe = (
        "import sys, time; t = time.perf_counter(); from flakeseg.cli import main\n"
        "try:\n    main(['watch', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    seconds, torch_loaded = done.stderr.split()
    assert "--poll" in done.stdout and "--settle" in done.stdout and "--idle-exit" in done.stdout
    assert "--min-confidence" in done.stdout  # predict's options
    assert torch_loaded == "False" and float(seconds) < 1.0


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["--model", "mos2", "missing", "--out", "o"], 1, "missing: no such folder"),
        (["--model", "mos2", "img.png", "--out", "o"], 1, "img.png: not a folder"),
        (["--model", "mos2", "--out", "o"], 2, "give one folder to watch, got 0"),
        (["--model", "mos2", "a", "b", "--out", "o"], 2, "give one folder to watch, got 2"),
        (["--out", "o"], 2, "no model and no folder given; e.g. flakeseg watch --model mos2"),
        (["--model", "hbn", "a", "--out", "o"], 2, "'hbn' is neither a shipped model"),
        (["notes.txt", "a", "--out", "o"], 1, "notes.txt: not a flakeseg checkpoint"),
        (["--model", "mos2", "a", "--out", "o", "--settle", "0"], 2, "--settle: must be > 0"),
        (["--model", "mos2", "a", "--out", "o", "--idle-exit", "-1"], 2, "--idle-exit: must be > 0"),
        (["--model", "mos2", "a"], 2, "required: --out"),
    ],
)
def test_a_mistake_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, args, status, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model\n")
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == status and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert says in lines[0]
    assert not (tmp_path / "o").exists()


def test_watch_is_a_flakeseg_command():
    from flakeseg.cli import COMMANDS

    assert COMMANDS["watch"][0] == "flakeseg.cli.watch:main"


# --- the parts: when a file counts as written, which files, the report's reload ------------------------


@pytest.fixture
def watcher(tmp_path: Path):
    """A watcher of ``tmp_path/in`` without a model: enough for deciding which files are ready."""
    from flakeseg.screening.screen import ScreenSettings
    from flakeseg.screening.watch import FolderWatcher

    (tmp_path / "in").mkdir()
    settings = ScreenSettings(checkpoint="m.ckpt", checkpoint_sha256="0" * 64, backend="torch")
    return FolderWatcher(None, settings, {}, tmp_path / "in", tmp_path / "in" / "out", settle=0.3)


def test_a_file_is_ready_only_after_it_stopped_changing_for_the_settle_time(watcher):
    path = watcher.folder / "slow.png"
    path.write_bytes(b"\x89PNG" + b"0" * 100)
    watcher.offer(path)
    watcher._take_events(timeout=0.01)
    assert watcher._settled() == []  # first seen
    time.sleep(0.2)
    with open(path, "ab") as handle:
        handle.write(b"1" * 100)  # still being written
    assert watcher._settled() == []
    time.sleep(0.2)
    assert watcher._settled() == []  # 0.2 s unchanged < settle
    time.sleep(0.15)
    stat = path.stat()
    assert watcher._settled() == [(path, (stat.st_size, stat.st_mtime_ns))]
    assert watcher.waiting == {}


def test_only_image_files_outside_the_output_folder_are_taken(watcher):
    folder = watcher.folder
    for name in ("a.png", "b.TIF", "notes.txt", ".a.png.tmp", ".hidden.png", "~lock.png"):
        watcher.offer(folder / name)
    watcher.offer(folder / "out" / "overlays" / "a.png")  # our own overlay
    watcher.offer(folder / "sub" / "c.png")  # a sub-folder without --recursive
    watcher._take_events(timeout=0.01)
    assert list(watcher.waiting) == [folder / "a.png", folder / "b.TIF"]


def test_recursive_takes_sub_folders_but_never_the_output_folder(watcher):
    watcher.recursive = True
    folder = watcher.folder
    for path in (folder / "day1" / "a.png", folder / "out" / "overlays" / "a.png", folder / "out" / "b.png"):
        watcher.offer(path)
    watcher._take_events(timeout=0.01)
    assert list(watcher.waiting) == [folder / "day1" / "a.png"]


def test_output_names_stay_fixed_and_a_later_same_stem_gets_a_hash(watcher):
    first, later = watcher.folder / "x.png", watcher.folder / "x.tif"
    assert watcher.name_of(first) == "x"
    assert watcher.name_of(later).startswith("x-") and watcher.name_of(first) == "x"


def test_the_report_reloads_itself_only_when_asked():
    from flakeseg.screening.html_report import render_report

    still = render_report([], {"a": 1}, ["monolayer"], {"monolayer": "#0000ff"})
    live = render_report([], {"a": 1}, ["monolayer"], {"monolayer": "#0000ff"}, refresh_seconds=10)
    assert REFRESH_TAG not in still and "<script" not in still
    assert f'{REFRESH_TAG} content="10">' in live
    assert live.replace(f'{REFRESH_TAG} content="10">\n', "") == still


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread")
def test_sigterm_stops_like_ctrl_c_and_the_handler_is_restored():
    from flakeseg.screening.watch import _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupt_waits_until_the_image_is_committed(sig):
    from flakeseg.screening.watch import _committing, _sigterm_as_interrupt

    done, before = [], signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_interrupt():
        with _committing():
            os.kill(os.getpid(), sig)
            time.sleep(0.2)  # the handler runs here and holds the interrupt back
            done.append("record, count and line")
        done.append("the next image")
    assert done == ["record, count and line"]
    assert signal.getsignal(signal.SIGINT) == before


# --- end to end: the shipped MoS2 model on real images ---------------------------------------------------


@pytest.mark.slow
def test_watch_screens_each_image_once_skips_a_bad_file_restarts_and_stops_on_sigterm(
    data_root, tmp_path, monkeypatch, capsys
):
    """In this process: an image already there, one written slowly, a text file named .png; the live
    report reloads itself, the final one does not. Then a restart with --poll in a process of its own:
    the records are reused, only the new image is screened, and SIGTERM stops it cleanly."""
    import flakeseg.screening.watch as watch

    originals = data_root / "data" / "ori"
    folder, out = tmp_path / "incoming", tmp_path / "screening"
    folder.mkdir()
    shutil.copy(originals / "or00000.png", folder / "or00000.png")
    screened: list[str] = []
    real_screen_one = watch.screen_one

    def counting(predictor, path, name, out, settings):
        screened.append(path.name)
        return real_screen_one(predictor, path, name, out, settings)

    monkeypatch.setattr(watch, "screen_one", counting)
    argv = ["--model", "mos2", str(folder), "--out", str(out), "--settle", "0.5", "--idle-exit", "3"]
    result: dict[str, int] = {}
    run = threading.Thread(target=lambda: result.update(code=main([*argv, "--threads", "1"])))
    run.start()
    report = out / "report.html"
    _wait_for(report.exists, what="the first report")  # written once watching
    live_pages = []
    writer = threading.Thread(target=_write_slowly, args=(originals / "or00001.png", folder / "or00001.png"))
    writer.start()
    (folder / "bad.png").write_text("a text file, not an image\n")
    while run.is_alive():
        if report.exists():
            live_pages.append(report.read_text())
        time.sleep(0.1)
    writer.join()
    run.join()
    err = capsys.readouterr().err
    assert result["code"] == 0, err
    assert sorted(screened) == ["or00000.png", "or00001.png"]  # each once, the slow one whole
    assert [line for line in err.splitlines() if line.startswith("skipped")] == [
        f"skipped {folder / 'bad.png'}: not an image Pillow can read (UnidentifiedImageError)"
    ]
    assert "2 images (2 screened, 0 already done)" in err and "1 inputs skipped" in err
    assert any(REFRESH_TAG in page for page in live_pages) and REFRESH_TAG not in report.read_text()
    _check_outputs(out, {"or00000", "or00001"})
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["images"] == ["or00000", "or00001"] and len(run_json["problems"]) == 1

    # a restart, polling: the two records are reused, the new image is screened, SIGTERM stops it
    before = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    command = [sys.executable, "-m", "flakeseg", "watch", *argv[:-2], "--poll", "--threads", "1"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: REFRESH_TAG in report.read_text(), what="the restarted watch")
        _write_slowly(originals / "or00002.png", folder / "or00002.png")
        _wait_for((out / "records" / "or00002.json").exists, what="the new image's record")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("screened")] == [
        "screened or00002.png"
    ]
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("skipped")] == [
        f"skipped {folder / 'bad.png'}"  # said again in the new run, once
    ]
    assert err.strip().splitlines()[-1].startswith("3 images (1 screened, 2 already done)")
    after = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert before == {name: after[name] for name in before}  # the old records were not rewritten
    _check_outputs(out, {"or00000", "or00001", "or00002"})
    assert REFRESH_TAG not in report.read_text()  # the final report is a still page


def test_outputs_are_kept_over_an_empty_run_unless_the_watch_wrote_them(tmp_path):
    """A run with no record leaves an earlier run's outputs as they were; a watch that wrote them
    itself updates them, down to empty (its images went bad), so nothing stale stays listed."""
    from types import SimpleNamespace

    from flakeseg.screening.screen import write_run_outputs

    (tmp_path / "run.json").write_text('{"earlier": true}')
    card = SimpleNamespace(
        class_names=["other", "monolayer", "bilayer"],
        class_colors=["#000000", "#0000ff", "#00ff00"],
        flake_classes=["monolayer", "bilayer"],
    )
    empty = {"records": [], "problems": ["a.png: cannot decode"], "done": 0, "skipped": 0, "failed": 1}
    predictor = SimpleNamespace(card=card)
    assert write_run_outputs(tmp_path, empty, predictor, {}) is False
    assert (tmp_path / "run.json").read_text() == '{"earlier": true}'
    assert not (tmp_path / "flakes.csv").exists()
    assert write_run_outputs(tmp_path, empty, predictor, {}, keep_earlier=False) is True
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["images"] == [] and written["problems"] == ["a.png: cannot decode"]
    assert (tmp_path / "flakes.csv").read_text().splitlines()[0].startswith("image,source")


def test_the_folder_so_far_is_judged_anew_and_its_verdict_said_when_it_changes(watcher, capsys):
    """Images arriving one at a time: one foreign image of one is no folder verdict; a second makes the
    folder foreign (a line, every image flagged); known images arriving after it lift the verdict."""

    def record(name: str, ok: bool) -> dict:
        reason = "like the training images'" if ok else "unlike every training image's"
        return {
            "name": name,
            "flakes": [],
            "counts": {},
            "setup_check": {"setup_ok": ok, "reason": reason, "checked": True},
        }

    def flagged() -> list[str]:
        return [r["name"] for r in watcher.summary()["records"] if not r["setup_check"]["setup_ok"]]

    watcher.records = {Path("a"): record("a", True), Path("b"): record("b", False)}
    assert flagged() == ["b"] and "setup check" not in capsys.readouterr().err
    watcher.records[Path("c")] = record("c", False)  # 2 of 3: not the model's microscope
    assert flagged() == ["a", "b", "c"] and "the folder: 2 of its 3" in capsys.readouterr().err
    assert flagged() == ["a", "b", "c"] and capsys.readouterr().err == ""  # said once
    watcher.records[Path("x")] = record("x", False)  # 3 of 4: still foreign, nothing new to say
    assert flagged() == ["a", "b", "c", "x"] and capsys.readouterr().err == ""
    watcher.records.update({Path(n): record(n, True) for n in "defghijklmnopqrstu"})  # 3 of 22
    assert flagged() == ["b", "c", "x"] and "the folder now passes" in capsys.readouterr().err
