"""The trivial baseline every score must beat: one class for every pixel (``model=constant``).

Calling every pixel "monolayer" wins region accuracy on MoS2 (0.593 on its test split), because that
measure counts only true regions; flake precision and recall give it 0. The leaderboard shows its rows
beside every model so a reader sees what each number rewards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flakeseg.errors import ConfigError
from flakeseg.models.classical.base import ClassicalModel
from flakeseg.models.registry import register_model


class ConstantMap(ClassicalModel):
    """Probability 1 for class ``predicts`` (an index of ``data.classes``) on every pixel; fits nothing."""

    name = "constant"

    def __init__(self, num_classes: int, predicts: int = 1):
        if not isinstance(predicts, int) or isinstance(predicts, bool) or not 0 <= predicts < num_classes:
            raise ConfigError(f"model.predicts: a class index in 0..{num_classes - 1}, got {predicts!r}")
        super().__init__(num_classes, predicts=predicts)
        self.predicts = predicts

    def fit(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        return {"images": len(images)}

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        probs = np.zeros((self.num_classes, *image.shape[:2]), np.float32)
        probs[self.predicts] = 1.0
        return probs

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        pass


@register_model("constant", kind="classical")
def build_constant(num_classes: int, **options: Any) -> ConstantMap:
    return ConstantMap(num_classes, **options)
