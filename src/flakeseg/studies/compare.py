"""Every model family side by side: ``flakeseg compare`` (``make compare``).

For each data set and each model of a profile (``conf/compare/<name>.yaml``), the same ``train.py``
config is composed (the profile's common overrides, then the model's) and its cross-validation runs
in this process, on the same folds, into ``<out>/<dataset>/<model>/`` (its ``metrics.json``, logs and
fold models, exactly what ``python train.py ... hydra.run.dir=<that folder>`` writes). Then, per model,
the fold-0 model is timed on a 700 x 525 image and predicts one test image. The report:

- ``compare.md`` and ``compare.csv``: per data set and model the CV mean per-class accuracy, macro
  precision and mean IoU (mean ± std over folds), training time, inference images per second and
  parameter count;
- ``compare_scores.png`` (bar chart) and ``examples_<dataset>.png`` (one test image, its ground truth and
  every model's prediction).

Rerunning the same command resumes: models whose ``metrics.json`` is complete for the same config are
not trained again (``resume=true``); a killed model continues from its finished folds.
"""

from __future__ import annotations

import logging
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import DictConfig

from flakeseg.errors import FlakesegError
from flakeseg.studies.common import StudyProfile, require_distinct_names
from flakeseg.utils.config_files import CONFIG_DIR

log = logging.getLogger("flakeseg.studies.compare")

DATASETS = ("mos2", "graphene")


@dataclass
class CompareModel:
    """One model of a profile: a short name (its folder), a label for tables, its overrides."""

    name: str
    label: str
    overrides: list[str]


@dataclass
class InferenceSetup:
    """How inference speed is measured (see ``conf/compare/cpu.yaml``)."""

    width: int = 700
    height: int = 525
    warmup: int = 2
    repeats: int = 5
    threads: int = 2


@dataclass
class CompareProfile(StudyProfile):
    """A comparison profile (``conf/compare/<name>.yaml``)."""

    models: list[CompareModel] = field(default_factory=list)
    inference: InferenceSetup = field(default_factory=InferenceSetup)

    study: ClassVar[str] = "compare"

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> dict[str, Any]:
        models = [
            CompareModel(str(m["name"]), str(m.get("label") or m["name"]), [str(o) for o in m["overrides"]])
            for m in raw["models"]
        ]
        return {"models": models, "inference": InferenceSetup(**(raw.get("inference") or {}))}

    def check(self, path: Path) -> None:
        require_distinct_names(path, "models", [model.name for model in self.models])

    def overrides(self, dataset: str, model: CompareModel, run_dir: Path) -> list[str]:
        """The ``train.py`` overrides of one job (``paths.output_dir`` is the job's folder)."""
        return [
            f"data={dataset}",
            *self.common,
            *model.overrides,
            f"cv.folds={self.folds}",
            "task_name=compare",
            f"paths.output_dir={run_dir}",
        ]


def compose(overrides: Sequence[str]) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``, as ``train.py`` would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides))


def train_command(overrides: Sequence[str], run_dir: Path) -> str:
    """The ``python train.py`` command that runs one job by itself, into the same folder ``run_dir``."""
    args = [f"hydra.run.dir={run_dir}" if o.startswith("paths.output_dir=") else o for o in overrides]
    return "python train.py " + " ".join(shlex.quote(a) for a in args)


# -- the fold-0 model of a job: loading, predicting, timing -------------------------------------------


@dataclass
class FoldPredictor:
    """Predicts class maps of RGB images at full resolution with a job's fold-0 model.

    Attributes:
        predict: ``H x W x 3`` uint8 image of the microscope -> class indices at the model's scale.
        scale: the ``data.scale`` the model works at.
        parameters: parameter count (networks) or fitted numbers (classical models).
        parameter_kind: ``"weights"`` or ``"fitted numbers"``.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    scale: float
    parameters: int
    parameter_kind: str


def load_fold_predictor(metrics: dict[str, Any]) -> FoldPredictor:
    """The fold-0 model of a CV run (its model after the last epoch, the one the score is of)."""
    from flakeseg.inference.checkpoint import card_from_config, load_classical
    from flakeseg.inference.predictor import ClassicalBackend, Predictor, TorchBackend, load_torch_model
    from flakeseg.models import is_classical

    config = metrics["config"]
    fold = metrics["folds"][0]
    if is_classical(config["model"]):
        model = load_classical(fold["model_file"], len(metrics["class_names"]))
        predictor = Predictor(ClassicalBackend(model), card_from_config(config))
        parameters, kind = model.num_parameters(), "fitted numbers"
    else:
        net, card = load_torch_model(fold["last_checkpoint"])
        predictor = Predictor(TorchBackend(net), card)
        parameters, kind = sum(p.numel() for p in net.parameters()), "weights"

    def predict(image: np.ndarray) -> np.ndarray:
        probs = predictor.probabilities_at_model_scale(predictor.prepare(image))
        return probs.argmax(axis=0).astype(np.uint8)

    return FoldPredictor(predict, predictor.card.data_scale, parameters, kind)


def time_inference(predictor: FoldPredictor, image: np.ndarray, setup: InferenceSetup) -> dict[str, float]:
    """Median seconds to predict ``image`` (resized to the setup's size) from full resolution.

    Each run resamples the image to the model's scale and predicts its class map, as a user's
    prediction of one microscope image would.
    """
    import cv2
    import torch

    full = cv2.resize(image, (setup.width, setup.height), interpolation=cv2.INTER_AREA)
    threads = torch.get_num_threads()
    torch.set_num_threads(setup.threads)
    try:
        for _ in range(setup.warmup):
            predictor.predict(full)
        seconds = []
        for _ in range(max(1, setup.repeats)):
            start = time.perf_counter()
            predictor.predict(full)
            seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    median = statistics.median(seconds)
    return {"inference_seconds": median, "inference_images_per_s": 1.0 / median}


# -- running a profile ---------------------------------------------------------------------------------


@dataclass
class JobResult:
    """What the report needs of one (data set, model) job."""

    dataset: str
    model: CompareModel
    run_dir: Path
    command: str
    metrics: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    prediction: np.ndarray | None = None
    error: str | None = None


def run_job(profile: CompareProfile, dataset: str, model: CompareModel, out: Path) -> JobResult:
    """Cross-validate one model on one data set (resuming), then time and run its fold-0 model."""
    from flakeseg.stages.cv import run_cross_validation

    run_dir = out / dataset / model.name
    # absolute, as Hydra makes hydra.run.dir: the resolved config then equals train.py's
    overrides = profile.overrides(dataset, model, run_dir.resolve())
    result = JobResult(dataset, model, run_dir, train_command(overrides, run_dir))
    try:
        cfg = compose(overrides)
        metrics = run_cross_validation(cfg)
    except FlakesegError as exc:
        result.error = str(exc).splitlines()[0]
        log.error("%s / %s: %s", dataset, model.name, result.error)
        return result
    except Exception as exc:  # one broken model must not cost the others' results
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.exception("%s / %s failed", dataset, model.name)
        return result
    result.metrics = metrics
    return result


def example_image(data_cfg: dict[str, Any]) -> dict[str, Any]:
    """The data set's first test image at full resolution and at ``data.scale``, with its mask.

    Returns:
        ``id``, ``image`` and ``mask`` (full resolution), ``shown_image`` and ``shown_mask`` (at the
        scale of ``data_cfg``, as the models see it) and the class ``colors``.
    """
    from flakeseg.data.catalog import AS_STORED, load_dataset

    test_id = str(data_cfg["split"]["test"][0])
    # as the microscope gave it: each model's predictor prepares it as its training images were
    full = load_dataset({**data_cfg, **AS_STORED}, ids=[test_id], progress=False)
    shown = load_dataset(data_cfg, ids=[test_id], progress=False)
    return {
        "id": test_id,
        "image": full.images[0],
        "mask": full.masks[0],
        "shown_image": shown.images[0],
        "shown_mask": shown.masks[0],
        "colors": list(data_cfg["classes"]["colors"]),
    }


def measure(result: JobResult, image: np.ndarray, setup: InferenceSetup) -> None:
    """Add inference speed, parameter count and the example prediction to a finished job."""
    predictor = load_fold_predictor(result.metrics)
    result.extras = {
        **time_inference(predictor, image, setup),
        "parameters": predictor.parameters,
        "parameter_kind": predictor.parameter_kind,
        "inference_threads": setup.threads,
    }
    result.prediction = predictor.predict(image)


def compare(profile: CompareProfile, datasets: Sequence[str], out: Path) -> list[JobResult]:
    """Run every model of ``profile`` on ``datasets`` into ``out`` and write the report there."""
    from rich.console import Console

    from flakeseg.studies.compare_report import write_report

    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(d, m) for d in datasets for m in profile.models]
    results: list[JobResult] = []
    examples: dict[str, dict[str, Any]] = {}
    for number, (dataset, model) in enumerate(jobs, start=1):
        elapsed = time.perf_counter() - started
        console.rule(f"[bold][{number}/{len(jobs)}] {dataset}: {model.label}[/] ({elapsed:.0f} s so far)")
        result = run_job(profile, dataset, model, out)
        if result.metrics is not None:
            if dataset not in examples:
                examples[dataset] = example_image(result.metrics["config"]["data"])
            try:
                measure(result, examples[dataset]["image"], profile.inference)
            except Exception as exc:  # the scores stand without the speed figure
                result.error = f"timing/prediction failed: {type(exc).__name__}: {exc}"
                log.exception("%s / %s: timing failed", dataset, model.name)
        results.append(result)
    wall = time.perf_counter() - started
    write_report(profile, results, examples, out, wall)
    return results
