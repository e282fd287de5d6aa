"""The recipe, one step at a time: ``flakeseg ablation`` (``make ablation``).

A profile (``conf/ablation/<name>.yaml``) lists steps; each adds to all the steps before it:

- a *training* step (the first step always is one) adds ``train.py`` overrides (a loss, a network,
  colour normalisation, crop sampling, a schedule): its recipe is cross-validated on the same folds into
  ``<out>/<dataset>/<NN>_<step>/`` (exactly what the printed ``python train.py`` command writes);
- an *evaluation* step turns on an option of :class:`flakeseg.stages.fold_evaluation.EvalOptions` (test-time
  augmentation, the fold ensemble, post-processing, temperature scaling) for the models of the last
  training step: nothing is trained again.

Every row is scored by :func:`flakeseg.stages.fold_evaluation.evaluate_predictions`: CV mean per-class
accuracy,
macro precision and mean IoU (mean ± std over folds), ECE of the held-out pixel probabilities, test
region accuracy, training time. The report (``ablation.md``, ``.csv``, ``.json``, plots) is rewritten
after every row; a rerun resumes (complete CV runs are not trained again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.stages.fold_evaluation import (
    CVPredictions,
    EvalOptions,
    collect_predictions,
    evaluate_predictions,
)
from flakeseg.studies.common import StudyProfile, require_distinct_names
from flakeseg.studies.compare import compose, train_command

log = logging.getLogger("flakeseg.studies.ablation")

DATASETS = ("mos2", "graphene")
EVAL_KEYS = ("tta", "ensemble", "postprocess", "temperature")


@dataclass
class AblationStep:
    """One step: a short name (its folder), a label for tables, and what it adds."""

    name: str
    label: str
    train: list[str] = field(default_factory=list)
    evaluate: dict[str, bool] = field(default_factory=dict)


@dataclass
class AblationProfile(StudyProfile):
    """An ablation profile (``conf/ablation/<name>.yaml``)."""

    steps: list[AblationStep] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)

    study: ClassVar[str] = "ablation"

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> dict[str, Any]:
        steps = [
            AblationStep(
                name=str(s["name"]),
                label=str(s.get("label") or s["name"]),
                train=[str(o) for o in s.get("train") or []],
                evaluate=dict(s.get("evaluate") or {}),
            )
            for s in raw["steps"]
        ]
        return {"steps": steps, "targets": {str(k): float(v) for k, v in (raw.get("targets") or {}).items()}}

    def check(self, path: Path) -> None:
        require_distinct_names(path, "steps", [step.name for step in self.steps])
        for step in self.steps:
            bad = sorted(set(step.evaluate) - set(EVAL_KEYS))
            if bad:
                raise ConfigError(
                    f"{path}: step {step.name}: unknown evaluate key {bad[0]!r} (known: {EVAL_KEYS})"
                )
            try:
                EvalOptions.from_config(step.evaluate)  # true/false only
            except ConfigError as exc:
                raise ConfigError(f"{path}: step {step.name}: {exc}") from None


def merge_overrides(*groups: Sequence[str]) -> list[str]:
    """Overrides of later groups replace earlier ones of the same key (Hydra refuses a key twice).

    The strongest ``+``/``++`` prefix seen for a key is kept: ``+x=1`` then ``x=2`` gives ``+x=2``
    (``x`` is not in the config without the ``+``).
    """
    merged: dict[str, tuple[str, str]] = {}
    for group in groups:
        for override in group:
            head, sep, value = override.partition("=")
            key = head.lstrip("+")
            prefix = head[: len(head) - len(key)]
            earlier = merged.pop(key, ("", ""))[0]
            merged[key] = (max(prefix, earlier, key=len), f"{sep}{value}")
    return [f"{prefix}{key}{rest}" for key, (prefix, rest) in merged.items()]


@dataclass
class Row:
    """One row of the table: a step on a data set, its scores and where they came from."""

    dataset: str
    step: AblationStep
    index: int
    run_dir: Path
    command: str
    options: EvalOptions
    trained: bool
    scores: dict[str, Any] | None = None
    train_seconds: float | None = None
    error: str | None = None


def _train(overrides: list[str]) -> dict[str, Any]:
    from flakeseg.stages.cv import run_cross_validation

    return run_cross_validation(compose(overrides))


def run_ablation(profile: AblationProfile, datasets: Sequence[str], out: Path) -> list[Row]:
    """Run every step of ``profile`` on ``datasets`` into ``out``, rewriting the report after each row."""
    from rich.console import Console

    from flakeseg.studies.ablation_report import write_report

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[Row] = []
    for dataset in datasets:
        overrides: list[str] = []
        options = EvalOptions()
        metrics: dict[str, Any] | None = None
        run_dir = out
        command = ""
        cache: dict[bool, CVPredictions] = {}
        failed = False
        for index, step in enumerate(profile.steps):
            elapsed = time.perf_counter() - started
            console.rule(
                f"[bold]{dataset}: step {index + 1}/{len(profile.steps)}: {step.label}[/] "
                f"({elapsed:.0f} s so far)"
            )
            options = replace(options, **step.evaluate)
            trained = bool(step.train) or index == 0
            if trained:
                overrides = merge_overrides(overrides, step.train)
                run_dir = out / dataset / f"{index:02d}_{step.name}"
                job = merge_overrides(
                    [f"data={dataset}"],
                    profile.common,
                    overrides,
                    [
                        f"cv.folds={profile.folds}",
                        "task_name=ablation",
                        f"paths.output_dir={run_dir.resolve()}",
                    ],
                )
                command = train_command(job, run_dir)
                cache = {}
            row = Row(dataset, step, index, run_dir, command, options, trained)
            rows.append(row)
            if failed:
                row.error = "an earlier step failed"
                continue
            try:
                if trained:
                    metrics = _train(job)
                assert metrics is not None
                if options.tta not in cache:
                    cache[options.tta] = collect_predictions(metrics, tta=options.tta)
                row.scores = evaluate_predictions(cache[options.tta], options)
                row.train_seconds = float(sum(f["train_seconds"] for f in metrics["folds"]))
            except FlakesegError as exc:
                row.error = str(exc).splitlines()[0]
                failed = True
                log.error("%s / %s: %s", dataset, step.name, row.error)
            except Exception as exc:  # the other data set's rows are still worth having
                row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                failed = True
                log.exception("%s / %s failed", dataset, step.name)
            write_report(profile, rows, out, time.perf_counter() - started)
    write_report(profile, rows, out, time.perf_counter() - started, final=True)
    return rows
