"""Skipping finished work: a job folder whose results are complete is not trained again.

Results files (``metrics.json``, ``test_metrics.json``) carry ``complete`` and the resolved config of
the run that wrote them. A rerun into the same folder reuses them when the config is the same, and
refuses when it is not, so one folder never mixes the outputs of two configs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flakeseg.errors import ConfigError

#: Config keys that may differ between a run and its rerun: where things are, not what is computed.
#: (``logger.save_dir`` is ``paths.output_dir`` resolved: relative or absolute, depending on the caller.)
#: ``evaluate`` only re-scores the finished fold models (``evaluation.json``), so a rerun with other
#: ``evaluate.*`` values reuses the training.
IGNORED_KEYS = ("paths", "data.root", "resume", "logger.save_dir", "evaluate")


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
