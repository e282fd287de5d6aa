"""Every model family on every protocol, one table: ``flakeseg leaderboard`` (``make leaderboard``).

For each protocol of a profile (``conf/leaderboard/<name>.yaml``: ``protocol=paper`` on MoS2 and
graphene, ``protocol=upstream`` on MoS2), each data set it names and each model (the best network
recipe, the paper recipe, smp, the pixel-wise CNN, bag of visual words, the contrast GMM), the same
``train.py`` config is composed and its cross-validation runs in this process into
``<runs>/<dataset>/<protocol>/<model>/`` (exactly what ``python train.py ... hydra.run.dir=<that folder>``
writes). On protocols with a held-out test split, the fold models are then scored on it, each alone
(mean over them), with the evaluation-time steps of the model's own config but no fold ensemble
(``evaluation.json``): the test flake scores and region accuracy. The report:

- ``leaderboard.md``: per data set and protocol one row per model, led by what a screening lab gets:
  CV flake F1 of monolayer and bilayer flakes (device-sized, >= 600 px; matches pooled over every
  fold of every repeat) and AP50, then F1 of all flakes >= 100 px, CV mean per-class accuracy (mean ±
  std over folds), pooled macro precision (of the summed out-of-fold confusion matrix), mean IoU, test
  region accuracy (the paper's measure), training seconds (all folds); the constant-map rows show
  what each number rewards;
- ``leaderboard.json``: ``{dataset: {protocol: {model: {"kind", "cv/mean_class_acc",
  "cv/mean_class_acc_std", "cv/macro_precision", "cv/mean_iou", "test/region_accuracy", "train_s",
  "cv/flake_f1_monolayer_device", ...}}}}`` (every ``cv/flake_*`` key of the run);
- ``leaderboard.png``: flake F1 and the pixel scores as bars.

Rerunning resumes: complete runs of the same config are not trained again. An invocation that runs
part of the profile (``--dataset``, ``--models``) keeps the other rows of the ``leaderboard.json``
already in ``--out``, marked as from an earlier invocation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.studies.common import StudyProfile, require_distinct_names
from flakeseg.studies.compare import compose, train_command

log = logging.getLogger("flakeseg.studies.leaderboard")

#: the leaderboard.json keys of each row, in order; then every ``cv/flake_*`` key of the run (flake
#: precision, recall, F1, counts and AP50 per flake class, pooled over every fold of every repeat) and
#: the test split's ``test/flake_*`` where one is held out
ROW_KEYS = (
    "kind",
    "cv/mean_class_acc",
    "cv/mean_class_acc_std",
    "cv/macro_precision",
    "cv/mean_iou",
    "test/region_accuracy",
    "train_s",
)


@dataclass
class BoardModel:
    """One row of every table: folder name, label, ``network`` or ``classical``, its overrides, and
    overrides for one data set only (``per_dataset``: the zero-label optics row screens each material
    with the setup calibrated on the other one's labels)."""

    name: str
    label: str
    kind: str
    overrides: list[str]
    per_dataset: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class BoardProtocol:
    """One protocol: its name (``conf/protocol/<name>.yaml``) and the data sets it runs on."""

    name: str
    datasets: list[str]


@dataclass
class LeaderboardProfile(StudyProfile):
    """A leaderboard profile (``conf/leaderboard/<name>.yaml``)."""

    repeats: int = 1
    protocols: list[BoardProtocol] = field(default_factory=list)
    models: list[BoardModel] = field(default_factory=list)

    study: ClassVar[str] = "leaderboard"

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> dict[str, Any]:
        models = [
            BoardModel(
                str(m["name"]),
                str(m.get("label") or m["name"]),
                str(m["kind"]),
                [str(o) for o in m["overrides"]],
                {str(d): [str(o) for o in extra] for d, extra in (m.get("per_dataset") or {}).items()},
            )
            for m in raw["models"]
        ]
        protocols = [
            BoardProtocol(str(name), [str(d) for d in datasets])
            for name, datasets in raw["protocols"].items()
        ]
        return {"repeats": int(raw.get("repeats", 1)), "protocols": protocols, "models": models}

    def check(self, path: Path) -> None:
        require_distinct_names(path, "models", [m.name for m in self.models])
        for model in self.models:
            if model.kind not in ("network", "classical"):
                raise ConfigError(
                    f"{path}: model {model.name}: kind must be network or classical, got {model.kind!r}"
                )
            unknown = sorted(set(model.per_dataset) - set(self.datasets))
            if unknown:
                raise ConfigError(
                    f"{path}: model {model.name}: per_dataset names {unknown}, not among the datasets "
                    f"{self.datasets}"
                )
        if self.repeats < 1:
            raise ConfigError(f"{path}: repeats must be at least 1, got {self.repeats}")

    def overrides(self, dataset: str, protocol: str, model: BoardModel, run_dir: Path) -> list[str]:
        """The ``train.py`` overrides of one job (``paths.output_dir`` is the job's folder)."""
        return [
            f"data={dataset}",
            *self.common,
            *model.overrides,
            *model.per_dataset.get(dataset, []),
            f"protocol={protocol}",
            f"cv.folds={self.folds}",
            f"cv.repeats={self.repeats}",
            "task_name=leaderboard",
            f"paths.output_dir={run_dir}",
        ]


@dataclass
class BoardResult:
    """One (data set, protocol, model) job."""

    dataset: str
    protocol: str
    model: BoardModel
    run_dir: Path
    command: str
    row: dict[str, Any] | None = None
    error: str | None = None
    #: the row comes from the report already in ``--out``: this invocation did not run it
    carried: bool = False


def board_row(
    model: BoardModel, metrics: dict[str, Any], evaluation: dict[str, Any] | None
) -> dict[str, Any]:
    """The leaderboard.json row of a finished job (its ``metrics.json`` and ``evaluation.json``)."""
    folds = metrics["folds"]
    return {
        "kind": model.kind,
        "cv/mean_class_acc": float(metrics["cv/mean_class_acc"]),
        "cv/mean_class_acc_std": float(metrics.get("cv/mean_class_acc_std", 0.0)),
        # pooled: the out-of-fold confusion matrices summed over folds (one image cannot carry a fold)
        "cv/macro_precision": float(metrics["cv/pooled_macro_precision"]),
        "cv/mean_iou": float(metrics["cv/mean_iou"]),
        "test/region_accuracy": float(evaluation["test/region_accuracy"]) if evaluation else None,
        "train_s": float(sum(float(f.get("train_seconds") or 0.0) for f in folds)),
        # the CV flakes as `predict` lists them by default: the plain fold models, pooled out of fold
        **{k: v for k, v in metrics.items() if k.startswith("cv/flake_")},
        **{
            k: v
            for k, v in (evaluation or {}).items()
            if k.startswith("test/flake_") and not k.endswith("_std")
        },
    }


def evaluate_on_test(cfg: Any, metrics: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """Each fold model (of every repeat) on the test split, mean over them, with the config's
    evaluation steps but no fold ensemble: the post-processing is chosen on single fold models' CV
    predictions (an ensemble's averaged probabilities are less sure, so fewer of its flakes pass that
    confidence), and nested CV kept the ensemble off (``docs/results/nested_ensemble_cpu/``).
    ``None`` where the CV pool holds the test images (``protocol=upstream``)."""
    from omegaconf import OmegaConf

    from flakeseg.stages.evaluation_options import EvalOptions
    from flakeseg.stages.fold_evaluation import evaluate_cv_run
    from flakeseg.utils.files import write_json_atomic

    if str(cfg.cv.get("pool") or "train") != "train":
        return None
    path = run_dir / "evaluation.json"
    if path.exists():
        import json

        cached = json.loads(path.read_text())
        # one written before the evaluation scored every repeat holds the first repeat's alone
        if int(cached.get("cv/repeats", 1)) == int(metrics.get("repeats") or 1):
            return cached
    options = dict(OmegaConf.to_container(cfg.evaluate, resolve=True))
    if metrics["folds"] and metrics["folds"][0].get("model_file"):  # classical: no TTA or temperature
        options.update(tta=False, temperature=False)
    result = evaluate_cv_run(metrics, EvalOptions.from_config({**options, "ensemble": False}))
    write_json_atomic(path, result)
    return result


def run_job(
    profile: LeaderboardProfile,
    dataset: str,
    protocol: str,
    model: BoardModel,
    runs: Path,
    report_only: bool = False,
) -> BoardResult:
    """Cross-validate one row (resuming) and score its fold models on the test split; with
    ``report_only`` a row without a complete run is reported as not run instead of trained."""
    from flakeseg.stages.cv import run_cross_validation
    from flakeseg.stages.resume import METRICS_FILE

    run_dir = runs / dataset / protocol / model.name
    overrides = profile.overrides(dataset, protocol, model, run_dir.resolve())
    result = BoardResult(dataset, protocol, model, run_dir, train_command(overrides, run_dir))
    if report_only and not _complete(run_dir / METRICS_FILE):
        result.error = f"not run (no complete {run_dir / METRICS_FILE})"
        return result
    try:
        cfg = compose(overrides)
        metrics = run_cross_validation(cfg)
        result.row = board_row(model, metrics, evaluate_on_test(cfg, metrics, run_dir))
    except FlakesegError as exc:
        result.error = str(exc).splitlines()[0]
    except Exception as exc:  # one broken job must not cost the others' results
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.exception("%s / %s / %s failed", dataset, protocol, model.name)
    if result.error:
        log.error("%s / %s / %s: %s", dataset, protocol, model.name, result.error)
    return result


def _complete(path: Path) -> bool:
    import json

    try:
        return bool(json.loads(path.read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def carried_rows(
    profile: LeaderboardProfile, board: dict[str, Any], runs: Path, skip: set[tuple[str, str, str]]
) -> list[BoardResult]:
    """The profile's rows found in an earlier ``leaderboard.json`` (``board``) other than ``skip``,
    with the command the profile gives them today."""
    carried = []
    for protocol in profile.protocols:
        for dataset in protocol.datasets:
            for model in profile.models:
                row = board.get(dataset, {}).get(protocol.name, {}).get(model.name)
                if row is None or (dataset, protocol.name, model.name) in skip:
                    continue
                run_dir = runs / dataset / protocol.name / model.name
                command = train_command(
                    profile.overrides(dataset, protocol.name, model, run_dir.resolve()), run_dir
                )
                carried.append(
                    BoardResult(dataset, protocol.name, model, run_dir, command, row=row, carried=True)
                )
    return carried


def _previous_board(path: Path) -> dict[str, Any]:
    import json

    if not path.exists():
        return {}
    try:
        board = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not a leaderboard.json ({exc}); move it away to start afresh") from None
    if not isinstance(board, dict):
        raise ConfigError(f"{path}: not a leaderboard.json (not an object); move it away to start afresh")
    return board


def run_leaderboard(
    profile: LeaderboardProfile,
    datasets: Sequence[str],
    out: Path,
    runs: Path,
    report_only: bool = False,
    models: Sequence[str] | None = None,
) -> list[BoardResult]:
    """Run every job of ``profile`` on ``datasets`` (and of ``models`` only, if given) into ``runs``
    and write the report into ``out`` (``report_only``: from the complete runs already there, training
    nothing). The profile's other rows in ``out``'s ``leaderboard.json`` are kept (``carried``)."""
    from rich.console import Console

    from flakeseg.studies.leaderboard_report import write_report

    names = [m.name for m in profile.models]
    unknown = sorted(set(models or []) - set(names))
    if unknown:
        raise ConfigError(f"--models: {', '.join(unknown)} not in the profile ({', '.join(names)})")
    previous = _previous_board(out / "leaderboard.json")
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [
        (dataset, protocol.name, model)
        for protocol in profile.protocols
        for dataset in protocol.datasets
        if dataset in datasets
        for model in profile.models
        if models is None or model.name in models
    ]
    carried = carried_rows(profile, previous, runs, {(d, p, m.name) for d, p, m in jobs})
    every_row = [(d, p.name, m.name) for p in profile.protocols for d in p.datasets for m in profile.models]
    order = {key: i for i, key in enumerate(every_row)}

    def report(results: list[BoardResult], log_invocation: bool) -> None:
        rows = sorted(results + carried, key=lambda r: order[(r.dataset, r.protocol, r.model.name)])
        write_report(profile, rows, out, time.perf_counter() - started, log_invocation=log_invocation)

    results: list[BoardResult] = []
    for number, (dataset, protocol, model) in enumerate(jobs, start=1):
        elapsed = time.perf_counter() - started
        console.rule(
            f"[bold][{number}/{len(jobs)}] {dataset}, protocol={protocol}: {model.label}[/] "
            f"({elapsed:.0f} s so far)"
        )
        results.append(run_job(profile, dataset, protocol, model, runs, report_only))
        # after every job, so a stopped run leaves the report of what finished
        report(results, log_invocation=False)
    report(results, log_invocation=True)
    return results
