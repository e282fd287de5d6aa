"""Learning-rate schedules over the training steps: constant (the paper), poly (nnU-Net) or cosine."""

from __future__ import annotations

import math

from flakeseg.errors import ConfigError

__all__ = ["SCHEDULES", "lr_factor"]

SCHEDULES = ("none", "poly", "cosine")


def lr_factor(schedule: str, step: int, total_steps: int, exponent: float = 0.9) -> float:
    """The learning rate at ``step`` as a share of the initial one.

    - ``none``: 1 throughout (Adam at a constant rate, as the paper trains).
    - ``poly``: ``(1 - step / total) ** exponent``, nnU-Net's default (exponent 0.9).
    - ``cosine``: ``(1 + cos(pi * step / total)) / 2``.

    >>> [round(lr_factor("poly", s, 10), 3) for s in (0, 5, 10)]
    [1.0, 0.536, 0.0]
    >>> round(lr_factor("cosine", 5, 10), 3)
    0.5
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule: must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "none":
        return 1.0
    progress = min(max(step, 0) / max(total_steps, 1), 1.0)
    if schedule == "poly":
        return (1.0 - progress) ** exponent
    return 0.5 * (1.0 + math.cos(math.pi * progress))
