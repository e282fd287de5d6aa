"""Shared fixtures: the real data root, composed configs and tiny training settings."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

# One thread per process: the suite runs two xdist workers on two cores, and many tests start
# training processes of their own; more threads than cores only makes them wait for each other.
# Set before torch is imported (here, and in every process the tests start, which inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from flakeseg.utils.config_files import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Overrides that make a whole 3-fold CV on the real data take seconds on the CPU.
TINY = [
    # the small paper recipe: the default preset (best_cpu) fits input channels and scores its fold
    # models after CV, more than most tests need (those that test it name it)
    "experiment=cpu_quick",
    "data.scale=0.25",
    "data.crop_size=64",
    "data.samples_per_image=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.base_channels=4",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The upstream data folder from ``FLAKESEG_DATA``; missing data fails under CI and skips elsewhere."""
    root = os.environ.get("FLAKESEG_DATA")
    if root and (Path(root) / "data").is_dir():
        return Path(root)
    message = f"FLAKESEG_DATA={root!r} does not hold the upstream data/ folder"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def compose_train(overrides: list[str]) -> DictConfig:
    """Compose ``conf/train.yaml`` as ``train.py`` would, without running Hydra's job machinery."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture
def tiny_cfg(data_root: Path, tmp_path: Path):
    """A function returning a tiny training config on the real data, writing into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        tiny = TINY
        if any(o.startswith("experiment=") for o in overrides):  # the test names its preset
            tiny = [o for o in TINY if not o.startswith("experiment=")]
        return compose_train([*tiny, f"data.root={data_root}", f"paths.output_dir={tmp_path}", *overrides])

    return make


#: fixtures that train a model: a test using one is end-to-end, outside ``make test-fast``
TRAINED_FIXTURES = {"checkpoint"}

#: seconds each test took in a whole run of the suite on 2 cores (``make test-durations`` rewrites it)
DURATIONS_FILE = Path(__file__).with_name("durations.json")
#: a test the file does not know yet: a guess by its tier
UNKNOWN_SECONDS = {True: 10.0, False: 0.1}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on trained fixtures count as slow. The longest tests go first (by the recorded
    durations): the two xdist workers start on them and share the short ones at the end, so neither is
    left alone with a long test while the other idles (longest-first is the classic rule for two
    machines)."""
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    known = json.loads(DURATIONS_FILE.read_text()) if DURATIONS_FILE.is_file() else {}
    items.sort(
        key=lambda item: -known.get(item.nodeid, UNKNOWN_SECONDS[item.get_closest_marker("slow") is not None])
    )


_durations: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("FLAKESEG_RECORD_DURATIONS"):
        _durations[report.nodeid] += report.duration  # setup, call and teardown


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With ``FLAKESEG_RECORD_DURATIONS=1`` the controller writes every test's seconds to
    :data:`DURATIONS_FILE` (longest first)."""
    if os.environ.get("FLAKESEG_RECORD_DURATIONS") and not hasattr(session.config, "workerinput"):
        ordered = dict(sorted(((k, round(v, 2)) for k, v in _durations.items()), key=lambda kv: -kv[1]))
        DURATIONS_FILE.write_text(json.dumps(ordered, indent=0) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """An xdist worker ends here without the interpreter's teardown. It has reported every result to
    the controller (in ``pytest_sessionfinish``), and freeing what torch, torchvision and albumentations
    loaded took 1-3 s per worker on 2 cores, which the controller sat waiting for at the end of every
    run. The controller itself exits normally."""
    if hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
