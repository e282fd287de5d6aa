"""Models that ship inside the package, ready to use with no training: ``flakeseg predict --model mos2``.

Each is the winning CPU recipe (``experiment=best_cpu``) trained on its data set's whole training
split (``stage=test``), written as a slim checkpoint (weights and model card, no optimiser state) to
``flakeseg/inference/shipped/<name>.ckpt``, with the test metrics it scored when it was trained beside
it (``<name>.json``, what ``flakeseg evaluate <name>`` must reproduce). ``make models`` remakes them
(:mod:`flakeseg.stages.shipping`).
"""

from __future__ import annotations

from pathlib import Path

from flakeseg.errors import ConfigError

__all__ = ["SHIPPED_DIR", "resolve_model", "shipped_names"]

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def shipped_names() -> list[str]:
    """The names of the models in the package (``mos2``, ``graphene``)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.ckpt"))


def resolve_model(name_or_path: str | Path, option: str = "--model") -> Path:
    """A shipped model's file for its name, else ``name_or_path`` as a file; neither is one line
    (naming ``option``, the way the command took it; ``""``: a positional argument)."""
    text = str(name_or_path)
    shipped = SHIPPED_DIR / f"{text}.ckpt"
    if "/" not in text and shipped.is_file():
        return shipped
    path = Path(text)
    if path.is_file():
        return path
    names = ", ".join(shipped_names()) or "none"
    prefix = f"{option}: " if option else ""
    raise ConfigError(f"{prefix}{text!r} is neither a shipped model ({names}) nor a file")
