"""How many labelled images a new material needs: ``flakeseg fewshot`` (``make fewshot``).

For each k of a profile (``conf/fewshot/<name>.yaml``: k = 1, 3, 5, 10 and all training images of the
data set standing in for a new material) and each of ``draws`` random sets of k training images (drawn
among those that show a flake: a lab labels images with flakes on them; ``all`` is every one), every
arm (``finetuned``: ``model.init_from=mos2``; ``scratch``: random weights) is trained on that set with
``stage=test`` and scored on the training images it did not draw (held-out: arms are compared there,
never on the test split) and on the data set's fixed test split (reported). Both arms see the same
image sets and the same training budget. Each run is the ``train.py`` job
``<runs>/<arm>/k<k>/draw<d>/`` (resumed when complete). The report:

- ``fewshot.md``: per arm and k the mean ± std over draws of the held-out and test scores below, and
  the training seconds;
- ``fewshot.json``: ``{arm: {k: {"heldout/flake_f1_monolayer_device", "heldout/flake_f1_bilayer_device",
  "heldout/mean_class_acc", "test/flake_f1_monolayer_device", "test/flake_f1_bilayer_device",
  "test/region_accuracy", "test/macro_precision", "test/mean_class_acc",
  each with a "_std" key, "train_s", "train_s_std", "draws"}}}``;
- ``fewshot.png``: each metric against k, one curve per arm with its spread over draws.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.studies.common import StudyProfile, require_distinct_names
from flakeseg.studies.compare import compose, train_command
from flakeseg.studies.fewshot_report import METRICS, write_report

log = logging.getLogger("flakeseg.studies.fewshot")

ALL = "all"
#: which training images the k are drawn from: those whose labels show a flake (a lab labels images
#: with flakes on them), or every one; ``all`` is always every training image
POOLS = ("with_flakes", "any")


def images_with_flakes(data_cfg: Any, ids: Sequence[str]) -> list[str]:
    """The ids among ``ids`` whose mask holds a pixel of a flake class (``region_classes``)."""
    from flakeseg.data.catalog import discover_pairs
    from flakeseg.data.classes import ClassScheme, region_class_indices
    from flakeseg.data.io import read_dataset_mask

    scheme = ClassScheme.from_config(data_cfg["classes"])
    flakes = region_class_indices(data_cfg["classes"], list(scheme.names))
    masks = {p.id: p.mask_path for p in discover_pairs(data_cfg)[0]}
    return [
        i
        for i in ids
        if i in masks and np.isin(scheme.encode(read_dataset_mask(masks[i]), str(masks[i])), flakes).any()
    ]


@dataclass
class FewshotProfile(StudyProfile):
    """A few-shot profile (``conf/fewshot/<name>.yaml``)."""

    ks: list[str] = field(default_factory=list)
    pool: str = "with_flakes"
    draws: int = 3
    seed: int = 0
    arms: dict[str, list[str]] = field(default_factory=dict)

    study: ClassVar[str] = "fewshot"

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "ks": [str(k) for k in raw["ks"]],
            "pool": str(raw.get("pool", "with_flakes")),
            "draws": int(raw.get("draws", 3)),
            "seed": int(raw.get("seed", 0)),
            "arms": {str(name): [str(o) for o in overrides or []] for name, overrides in raw["arms"].items()},
        }

    def check(self, path: Path) -> None:
        require_distinct_names(path, "arms", list(self.arms))
        require_distinct_names(path, "ks", self.ks)
        for k in self.ks:
            if k != ALL and not (k.isdigit() and int(k) >= 1):
                raise ConfigError(f"{path}: ks: {k!r} is neither a positive number of images nor 'all'")
        if self.pool not in POOLS:
            raise ConfigError(f"{path}: pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if len(self.datasets) != 1:
            raise ConfigError(f"{path}: datasets: one data set per few-shot profile, got {self.datasets}")
        if self.draws < 1:
            raise ConfigError(f"{path}: draws must be at least 1, got {self.draws}")


def draw_sets(
    train_ids: Sequence[str], ks: Sequence[str], draws: int, seed: int, pool: Sequence[str] | None = None
) -> dict[str, list[list[str]]]:
    """Per k, the image sets of its draws, drawn from ``pool`` (default: every id; ``all``: one set,
    every id); draw d of every k uses the generator ``default_rng(seed + d)`` (drawing again while its
    set equals an earlier draw's), so a set is the same for every arm and every rerun."""
    everything = sorted(train_ids)
    ordered = sorted(pool) if pool is not None else everything
    sets: dict[str, list[list[str]]] = {}
    for k in ks:
        if k == ALL:
            sets[k] = [everything]
            continue
        if int(k) > len(ordered):
            raise ConfigError(f"fewshot: k={k} is more than the {len(ordered)} training images to draw from")
        if math.comb(len(ordered), int(k)) < draws:
            raise ConfigError(f"fewshot: fewer than {draws} distinct sets of {k} among {len(ordered)} images")
        sets[k] = []
        for d in range(draws):
            rng = np.random.default_rng(seed + d)
            while True:  # the draws of one k are distinct sets (k=1 would often repeat an image)
                chosen = sorted(rng.choice(ordered, size=int(k), replace=False).tolist())
                if chosen not in sets[k]:
                    break
            sets[k].append(chosen)
    return sets


@dataclass
class FewshotRun:
    """One (arm, k, draw) job."""

    dataset: str
    arm: str
    k: str
    draw: int
    ids: list[str]
    run_dir: Path
    command: str
    scores: dict[str, float] | None = None
    error: str | None = None


def run_job(
    profile: FewshotProfile,
    dataset: str,
    arm: str,
    k: str,
    draw: int,
    ids: list[str],
    runs: Path,
    train_ids: Sequence[str] = (),
):
    """Train one arm on one image set (resuming a complete run) and keep its scores: on the training
    images of ``train_ids`` it did not draw (``heldout/...``, what arms are compared on) and on the
    test split (``test/...``, reported)."""
    from flakeseg.stages.model_evaluation import evaluate_model
    from flakeseg.stages.resume import TEST_METRICS_FILE, start_run
    from flakeseg.stages.test_split import run_test_stage

    run_dir = runs / dataset / arm / f"k{k}" / f"draw{draw}"
    overrides = [
        f"data={dataset}",
        *profile.common,
        *profile.arms[arm],
        "stage=test",
        f"data.split.train={json.dumps(ids, separators=(',', ':'))}",  # quoted: ids like 007 stay strings
        "task_name=fewshot",
        f"paths.output_dir={run_dir.resolve()}",
    ]
    result = FewshotRun(dataset, arm, k, draw, ids, run_dir, train_command(overrides, run_dir))
    try:
        cfg = compose(overrides)
        metrics = run_test_stage(cfg, start_run(cfg, TEST_METRICS_FILE))
        # scored anew, not read from a resumed run's test_metrics.json: what predict lists may have
        # changed since it trained (the colour check moves or drops flakes)
        metrics |= evaluate_model(str(metrics["checkpoint"]), dataset, "test", progress=False)
        held_out = [i for i in train_ids if i not in ids]
        if held_out:
            scored = evaluate_model(str(metrics["checkpoint"]), dataset, ids=held_out, progress=False)
            metrics |= {f"heldout/{key.removeprefix('test/')}": v for key, v in scored.items()}
        result.scores = {m: float(metrics.get(m, float("nan"))) for m in METRICS} | {
            "train_s": float(metrics["train_seconds"])
        }
    except FlakesegError as exc:
        result.error = str(exc).splitlines()[0]
    except Exception as exc:  # one broken job must not cost the others' results
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.exception("%s / %s / k=%s / draw %d failed", dataset, arm, k, draw)
    if result.error:
        log.error("%s / %s / k=%s / draw %d: %s", dataset, arm, k, draw, result.error)
    return result


def run_fewshot(profile: FewshotProfile, datasets: Sequence[str], out: Path, runs: Path) -> list[FewshotRun]:
    """Every job of ``profile`` on ``datasets`` into ``runs``; the report into ``out`` after each job."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from rich.console import Console

    from flakeseg.data.splits import split_from_config
    from flakeseg.utils.config_files import CONFIG_DIR

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = []
    train_ids: dict[str, list[str]] = {}
    for dataset in datasets:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            data_cfg = hydra_compose("train", overrides=[f"data={dataset}"]).data
        train_ids[dataset] = split_from_config(data_cfg)["train"]
        pool = images_with_flakes(data_cfg, train_ids[dataset]) if profile.pool == "with_flakes" else None
        sets = draw_sets(train_ids[dataset], profile.ks, profile.draws, profile.seed, pool)
        # draw by draw, so a stopped study has every k and arm of its first draws
        depth = max(len(v) for v in sets.values())
        jobs += [
            (dataset, arm, k, d, sets[k][d])
            for d in range(depth)
            for k in profile.ks
            if d < len(sets[k])
            for arm in profile.arms
        ]
    results: list[FewshotRun] = []
    for number, (dataset, arm, k, draw, ids) in enumerate(jobs, start=1):
        elapsed = time.perf_counter() - started
        console.rule(
            f"[bold][{number}/{len(jobs)}] {dataset}: {arm}, k={k}, draw {draw}[/] ({elapsed:.0f} s so far)"
        )
        results.append(run_job(profile, dataset, arm, k, draw, ids, runs, train_ids[dataset]))
        write_report(profile, results, out, time.perf_counter() - started, log_invocation=False)
    write_report(profile, results, out, time.perf_counter() - started)
    return results
