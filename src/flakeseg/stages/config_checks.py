"""Checks of ``train.py`` config values that Hydra cannot make by itself; each error names its key."""

from __future__ import annotations

import math
import re

from omegaconf import DictConfig, OmegaConf

from flakeseg.data.splits import CV_POOLS
from flakeseg.errors import ConfigError

#: what ``stage=`` may be: k-fold CV on the training split, or training on it all and scoring the test split
STAGES = ("cv", "test")
#: what Lightning's Trainer takes as ``accelerator`` and ``precision`` (checked here: Lightning's own
#: refusal comes after the data loaded, as a traceback)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = (
    *("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16"),
    *("16-true", "bf16-true", "64-true", "64"),
)


def _number(cfg: DictConfig, key: str, kind: type = float):
    value = cfg
    for part in key.split("."):
        if part not in value:
            raise ConfigError(f"{key}: missing from the config")
        value = value[part]
    return _as_number(value, key, kind)


def _as_number(value, key: str, kind: type = float):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        what = {"int": "an integer", "float": "a number"}.get(kind.__name__, f"a {kind.__name__}")
        raise ConfigError(f"{key}: expected {what}, got {value!r}") from None
    if kind is int and float(value) != number:
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if kind is float and not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return number


#: keys whose values become parts of output paths (run folders, log folders, sweep sub-folders)
PATH_NAME_KEYS = (
    "task_name",
    "data.name",
    "model.name",
    "loss.name",
    "augment.name",
    "optim.name",
    "logger.name",
)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def path_name_problems(cfg: DictConfig) -> list[str]:
    """``key: problem`` for each value of :data:`PATH_NAME_KEYS` that could leave the run folder."""
    problems = []
    for key in PATH_NAME_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        text = str(value)
        if not _SAFE_NAME.match(text) or ".." in text:
            problems.append(
                f"{key}: {text!r} is not a plain name (letters, digits, _ . + -; no '/' or '..'): "
                "it becomes part of an output path"
            )
    return problems


def validate_config(cfg: DictConfig) -> None:
    """Refuse values that would fail late or silently; the error names the key."""
    names = path_name_problems(cfg)
    if names:
        raise ConfigError(names[0])
    checks = [
        ("optim.lr", float, lambda v: v > 0, "must be > 0"),
        ("data.batch_size", int, lambda v: v >= 1, "must be at least 1"),
        ("data.crop_size", int, lambda v: v >= 1, "must be at least 1"),
        ("data.scale", float, lambda v: 0 < v <= 8, "must be in (0, 8]"),
        ("data.num_workers", int, lambda v: v >= 0, "must be >= 0"),
        ("trainer.max_epochs", int, lambda v: v >= 1, "must be at least 1"),
        ("cv.folds", int, lambda v: v >= 2, "must be at least 2"),
        ("seed", int, lambda v: v >= 0, "must be >= 0"),
    ]
    for key, kind, ok, rule in checks:
        value = _number(cfg, key, kind)
        if not ok(value):
            raise ConfigError(f"{key}: {rule}, got {value!r}")
    if cfg.cv.get("fold") is not None:
        fold = _number(cfg, "cv.fold", int)
        if not 0 <= fold < int(cfg.cv.folds):
            raise ConfigError(f"cv.fold: must be in 0..{int(cfg.cv.folds) - 1} or null, got {fold}")
    repeats = _number(cfg, "cv.repeats", int) if cfg.cv.get("repeats") is not None else 1
    if repeats < 1:
        raise ConfigError(f"cv.repeats: must be at least 1, got {repeats}")
    if cfg.cv.get("pool", "train") not in CV_POOLS:
        raise ConfigError(f"cv.pool: must be one of {', '.join(CV_POOLS)}, got {cfg.cv.pool!r}")
    if cfg.cv.get("score_crop") is not None and _number(cfg, "cv.score_crop", int) < 1:
        raise ConfigError(f"cv.score_crop: a side in pixels (>= 1) or null, got {cfg.cv.score_crop}")
    trainer = cfg.get("trainer") or {}
    if str(trainer.get("accelerator", "cpu")) not in ACCELERATORS:
        raise ConfigError(
            f"trainer.accelerator: one of {', '.join(ACCELERATORS)}, got {trainer.get('accelerator')!r}"
        )
    if str(trainer.get("precision", "32-true")) not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision: one of {', '.join(PRECISIONS)}, got {trainer.get('precision')!r}"
        )
    if cfg.get("stage", "cv") not in STAGES:
        raise ConfigError(f"stage: must be one of {', '.join(STAGES)}, got {cfg.get('stage')!r}")
    test_ids = (cfg.data.get("split") or {}).get("test")
    if cfg.get("stage", "cv") == "test" and test_ids is not None and not len(test_ids):
        raise ConfigError(
            "data.split.test: empty, so stage=test has nothing to score; hold images out (e.g. "
            "`flakeseg import-labels ... --test-fraction 0.25`) or cross-validate (stage=cv)"
        )
    from flakeseg.stages.evaluation_options import EvalOptions

    options = EvalOptions.from_config(cfg.get("evaluate"))  # one line naming a bad evaluate.* key

    if options.tta and cfg.get("model") is not None:
        from flakeseg.models import is_classical

        if is_classical(cfg.model):  # refused before training, not after
            raise ConfigError(
                f"evaluate.tta: test-time augmentation is for networks, not model={cfg.model.name}"
            )
    budgets = cfg.cv.get("eval_epochs")
    if budgets is not None:
        if isinstance(budgets, (int, float, str)) or not len(budgets):
            raise ConfigError(f"cv.eval_epochs: expected a list of epochs like [10,30], got {budgets!r}")
        epochs = [_as_number(value, "cv.eval_epochs", int) for value in budgets]
        if min(epochs) < 1:
            raise ConfigError(f"cv.eval_epochs: epochs must be at least 1, got {epochs}")
        if max(epochs) != int(cfg.trainer.max_epochs):
            raise ConfigError(
                f"cv.eval_epochs: the largest budget ({max(epochs)}) must equal trainer.max_epochs "
                f"({cfg.trainer.max_epochs})"
            )
    if cfg.data.get("samples_per_epoch") is None:
        if _number(cfg, "data.samples_per_image", int) < 1:
            raise ConfigError("data.samples_per_image: must be at least 1")
    elif _number(cfg, "data.samples_per_epoch", int) < 1:
        raise ConfigError("data.samples_per_epoch: must be at least 1 or null")
    for key in ("mean", "std"):
        values = list(cfg.data[key])
        if len(values) != int(cfg.model.get("in_channels", 3)):
            raise ConfigError(
                f"data.{key}: {len(values)} values for model.in_channels={cfg.model.in_channels}"
            )
    if any(float(s) <= 0 for s in cfg.data.std):
        raise ConfigError("data.std: every value must be > 0")
