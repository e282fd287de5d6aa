"""Skipping finished work: a job folder whose results are complete is not trained again.

Results files (``metrics.json``, ``test_metrics.json``) carry ``complete`` and the resolved config of
the run that wrote them. A rerun into the same folder reuses them when the config is the same, and
refuses when it is not, so one folder never mixes the outputs of two configs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig, OmegaConf

from flakeseg.errors import ConfigError

#: Config keys that may differ between a run and its rerun: where things are, not what is computed.
#: (``logger.save_dir`` is ``paths.output_dir`` resolved: relative or absolute, depending on the caller.)
#: ``evaluate`` only re-scores the finished fold models (``evaluation.json``), so a rerun with other
#: ``evaluate.*`` values reuses the training.
IGNORED_KEYS = ("paths", "data.root", "resume", "logger.save_dir", "evaluate")
#: the results file of a CV run (``stage=cv``) and of a test stage (``stage=test``)
METRICS_FILE = "metrics.json"
TEST_METRICS_FILE = "test_metrics.json"

log = logging.getLogger(__name__)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, ignoring :data:`IGNORED_KEYS`."""
    a, b = _flatten(old), _flatten(new)

    def kept(key: str) -> bool:
        return not any(key == k or key.startswith(k + ".") for k in IGNORED_KEYS)

    return sorted(k for k in set(a) | set(b) if kept(k) and a.get(k, "<unset>") != b.get(k, "<unset>"))


def load_previous(path: Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The results at ``path`` if a run of the same ``config`` wrote them, else ``None``.

    Unreadable or half-written files count as absent (the run is redone). Results of a different
    config raise :class:`ConfigError` naming the file and the first differing keys.
    """
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), Mapping):
        return None
    diff = config_differences(payload["config"], config)
    if diff:
        old, new = _flatten(payload["config"]), _flatten(config)
        shown = ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise ConfigError(
            f"{path}: holds results of a different config ({shown}{more}); "
            "write to a new output folder or delete this one"
        )
    return payload


class RunStart(NamedTuple):
    """What :func:`start_run` found: the output folder, the results file, the resolved config and the
    earlier results of this config there (``None`` if none)."""

    output_dir: Path
    path: Path
    config: dict[str, Any]
    previous: dict[str, Any] | None


def start_run(cfg: DictConfig, results_file: str) -> RunStart:
    """Check ``cfg``, make the output folder and read earlier results of the same config.

    Returns:
        the output folder, the results file's path, the resolved config and, with ``resume=true``,
        the results an earlier run of this config left there (``None`` if none).
    """
    from flakeseg.stages.config_checks import validate_config

    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / results_file
    config = OmegaConf.to_container(cfg, resolve=True)
    previous = load_previous(path, config) if cfg.get("resume", True) else None
    if previous is not None and previous.get("complete"):
        log.info("%s is complete for this config: nothing to train (resume=false retrains)", path)
    return RunStart(output_dir, path, config, previous)
