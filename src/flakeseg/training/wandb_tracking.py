"""Weights & Biases tracking of a cross-validation run (``logger=wandb``).

One CV run makes one W&B run for the CV (``job_type=cv``: resolved config, the CV summary mean ± std,
pooled validation ROC/PR curves and confusion matrix) and one run per fold (``job_type=fold``:
per-epoch metrics through Lightning's ``WandbLogger``, median-frequency class weights, prediction
overlays), all in one W&B group so the UI shows them together. Under a W&B sweep agent the CV run is
the agent's run, so the sweep sees ``cv/mean_class_acc`` in its summary.

Offline by itself: with no API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry) the runs are written
offline into ``<run dir>/wandb/`` without touching the network; with a key, an unreachable server
goes offline at once when its server does not accept a connection, and gives up after
``logger.init_timeout`` seconds when it accepts but does not answer. ``WANDB_MODE`` always wins.
The local CSV log is written too: it is the record of truth if a run is killed (W&B offline runs can
lose their last steps).
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from flakeseg.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")
#: environment a W&B sweep agent sets for the run it launched; fold runs must not claim it
_AGENT_ENV = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")


def has_api_key() -> bool:
    """Whether W&B credentials are available locally (no network involved)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(requested: str) -> tuple[str, str]:
    """The W&B mode to use and why: ``WANDB_MODE`` first, then the config, ``auto`` by credentials."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return ("offline" if env == "dryrun" else env), "WANDB_MODE"
    if requested not in MODES:
        raise ConfigError(f"logger.mode: must be one of {', '.join(MODES)}, got {requested!r}")
    if requested != "auto":
        return requested, "logger.mode"
    return ("online", "API key found") if has_api_key() else ("offline", "no W&B API key")


def server_reachable(timeout: float = 2.0) -> bool:
    """Whether the W&B server (``WANDB_BASE_URL``) accepts a TCP connection within ``timeout`` seconds.

    Only asked when there is an API key, i.e. when W&B would contact that server anyway; it saves the
    ``init_timeout`` wait when the machine is offline.
    """
    url = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "api.wandb.ai", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _without_agent_env() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in _AGENT_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class WandbTracker:
    """The W&B runs of one cross-validation (see the module docstring).

    Args:
        logger_cfg: the ``logger`` config node (``project``, ``entity``, ``tags``, ``group``, ``mode``,
            ``init_timeout``, ``log_images``).
        output_dir: the run folder; W&B files go to ``<output_dir>/wandb/``.
        config: the resolved config, logged with every run.
        class_names: class names in index order.
    """

    def __init__(
        self,
        logger_cfg: Mapping[str, Any],
        output_dir: Path,
        config: Mapping[str, Any],
        class_names: Sequence[str],
    ):
        import wandb

        self.wandb = wandb
        self.cfg = dict(logger_cfg)
        self.output_dir = Path(output_dir)
        self.config = dict(config)
        self.class_names = list(class_names)
        self.mode, why = resolve_mode(str(self.cfg.get("mode") or "auto"))
        self.group = str(self.cfg.get("group") or self.output_dir.name)
        self.timeout = float(self.cfg.get("init_timeout") or 8)
        if self.mode == "online" and why == "API key found" and not server_reachable():
            self.mode, why = "offline", "W&B server not reachable"
        log.info("W&B: %s (%s); run files in %s", self.mode, why, self.output_dir / "wandb")
        self.cv_run = self._init(job_type="cv", name=self.group, config=self.config)
        self._val_probs: list[np.ndarray] = []
        self._val_masks: list[np.ndarray] = []

    def _init(self, **kwargs: Any):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        common = {
            "project": self.cfg.get("project") or "flakeseg",
            "entity": self.cfg.get("entity"),
            "tags": list(self.cfg.get("tags") or []),
            "group": self.group,
            "dir": str(self.output_dir),
            "reinit": "create_new",  # the CV run stays open while fold runs come and go
        }
        try:
            return self.wandb.init(
                **common,
                **kwargs,
                mode=self.mode,
                settings=self.wandb.Settings(init_timeout=self.timeout, quiet=True),
            )
        except Exception as exc:  # any failure to reach the server means: go offline
            if self.mode != "online":
                raise
            log.warning(
                "W&B: server not reachable (%s); logging offline from now on", str(exc).splitlines()[0]
            )
            self.mode = "offline"
            return self.wandb.init(
                **common, **kwargs, mode="offline", settings=self.wandb.Settings(quiet=True)
            )

    def fold_logger(self, fold: int, class_weights: Sequence[float]):
        """A ``WandbLogger`` on a new run for ``fold``, in the CV run's group."""
        from pytorch_lightning.loggers import WandbLogger

        with _without_agent_env():
            run = self._init(
                job_type="fold",
                name=f"{self.group}/fold_{fold}",
                id=secrets.token_hex(6),  # an id of its own, never the agent's run
                config={**self.config, "fold": fold},
            )
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        run.summary["median_frequency_weights"] = dict(zip(self.class_names, class_weights, strict=True))
        self._fold_run = run
        return WandbLogger(experiment=run)

    def end_fold(self, entry: Mapping[str, Any], module, val_images, data_cfg: Mapping[str, Any]) -> None:
        """Log prediction overlays and the fold's final scores, then finish the fold's run."""
        run = self._fold_run
        predictor = module.predictor()
        probs = [predictor.probabilities_at_model_scale(image) for image in val_images.images]
        self._val_probs += probs
        self._val_masks += list(val_images.masks)
        labels = {i: n for i, n in enumerate(self.class_names)} | {255: "ignored"}
        shown = int(self.cfg.get("log_images", 4))
        overlays = [
            self.wandb.Image(
                image,
                caption=image_id,
                masks={
                    "prediction": {"mask_data": prob.argmax(axis=0).astype(np.uint8), "class_labels": labels},
                    "ground_truth": {"mask_data": mask, "class_labels": labels},
                },
            )
            for image, mask, prob, image_id in list(
                zip(val_images.images, val_images.masks, probs, val_images.ids, strict=True)
            )[:shown]
        ]
        if overlays:
            run.log({"val/predictions": overlays})
        for key, value in entry.items():
            if key.startswith("val/") and isinstance(value, float):
                run.summary[key] = value
        run.finish()
        self._fold_run = None

    def finish(self, payload: Mapping[str, Any]) -> None:
        """Put the CV summary, pooled ROC/PR curves and confusion matrix on the CV run and finish it."""
        from flakeseg.evaluation.curves import curve_rows, one_vs_rest_curves, plot_curves
        from flakeseg.evaluation.plots import plot_confusion_matrix

        run = self.cv_run
        for key, value in payload.items():
            if key.startswith("cv/"):
                run.summary[key] = value
        run.summary["wall_seconds"] = payload.get("wall_seconds")
        folds = payload.get("folds") or []
        if folds and self._val_probs:
            confmat = np.sum([np.array(f["val/confmat"]) for f in folds], axis=0)
            curves = {
                self.class_names[c]: one_vs_rest_curves(self._val_probs, self._val_masks, c)
                for c in range(1, len(self.class_names))
            }
            rows = curve_rows(curves)
            plots = self.output_dir / "wandb_plots"
            plot_curves(curves, plots / "val_roc_pr.png", "validation folds pooled")
            plot_confusion_matrix(
                confmat.tolist(), self.class_names, plots / "val_confusion.png", "validation"
            )
            run.log(
                {
                    "val/roc_pr": self.wandb.Image(str(plots / "val_roc_pr.png")),
                    "val/confusion_matrix": self.wandb.Image(str(plots / "val_confusion.png")),
                    "val/curves": self.wandb.Table(
                        columns=["class", "curve", "threshold", "x", "y"],
                        data=[list(r.values()) for r in rows],
                    ),
                    "val/confmat": self.wandb.Table(
                        columns=["true \\ predicted", *self.class_names],
                        data=[[n, *map(int, confmat[i])] for i, n in enumerate(self.class_names)],
                    ),
                }
            )
            for name, curve in curves.items():
                run.summary[f"cv/auc_{name}"] = curve["auc"]
                run.summary[f"cv/average_precision_{name}"] = curve["average_precision"]
        run.finish()
        if self.mode == "offline":
            log.info(
                "W&B runs saved offline; upload later with: wandb sync %s/wandb/offline-run-*",
                self.output_dir,
            )

    def abort(self) -> None:
        """Finish open runs after an error (marked failed), so nothing leaks into the next run."""
        for run in (getattr(self, "_fold_run", None), self.cv_run):
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish(exit_code=1)
