"""Training across simulated microscopes: a training image shown as another setup would show it.

A network trained on one lab's 24-30 images learns that lab's lamp, camera and oxide. With
``augment.setup`` on, each training sample is, with probability ``p`` and before it is cropped and
augmented, re-rendered as a setup drawn at random would show it (all steps at once, each strength
drawn uniformly from its range, ranges that hold "no change"):

- **oxide thickness** (with probability ``oxide_p``): the substrate and every labelled layer count
  recoloured by the optics from the data set's setup to the same setup on another oxide
  (:func:`flakeseg.optics.drift.rerender_ratios`); pixels of no known layer count (thick flakes in
  "other", unlabelled ones) take the substrate's factor, as in the robustness benchmark;
- **lamp** colour temperature, the camera's white balance kept for the old lamp
  (:func:`flakeseg.optics.shifts.lamp_gains`); **exposure** (a common gain, clipped at 255);
  **vignetting** (:func:`flakeseg.optics.shifts.falloff`): all on the linear signal;
- **gamma** (the tone curve's exponent), **defocus** (Gaussian blur), **sensor noise** and **JPEG**
  compression (a quality drawn from ``jpeg``; 100: none), the camera's last step.

With ``data.substrate_normalize`` the shifted image is then white-balanced against its own substrate
colour: the labelled substrate's colour passed through the same per-pixel steps (so no estimate can
pick the wrong peak on a shifted image). Copy-paste, when on, pastes unshifted flakes afterwards.

Every range lies outside the strengths :mod:`flakeseg.studies.robustness` benchmarks, and the oxide
ranges avoid its thicknesses (a test checks every preset in ``conf/augment/setup/``), so the benchmark
does not grade the simulator against itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from flakeseg.data.transforms import config_range
from flakeseg.errors import ConfigError
from flakeseg.optics import shifts
from flakeseg.optics.calibration import Setup, resolve_setup
from flakeseg.optics.drift import rerender_ratios

__all__ = ["SetupRandomization"]

#: the drawn oxide thickness and lamp temperature are rounded to these steps, so the optics runs for a
#: few hundred (image, oxide) pairs per training, not for every sample
OXIDE_STEP_NM = 2.0
LAMP_STEP_K = 100.0
#: the layer counts re-rendered (-1: unknown, recoloured as the substrate; layer classes go up to 3)
COUNTS = (-1, 0, 1, 2, 3)
RANGES = ("exposure", "lamp_k", "gamma", "vignetting", "blur", "noise", "jpeg")


@dataclass
class SetupRandomization:
    """Draws a setup per sample and renders an image as it would show it; see the module notes.

    Attributes:
        setup: the setup the training images were taken with.
        material: the crystal of the labelled layers (``None``: no oxide re-rendering).
        p: share of samples that are shifted.
        exposure, lamp_k, gamma, vignetting, blur, noise, jpeg: ``(low, high)`` of each step's
            strength (``jpeg``: the quality, 1-100).
        oxide_p: share of shifted samples also re-rendered on another oxide.
        oxide_nm: the ``(low, high)`` ranges the oxide is drawn from (uniformly over their union).
    """

    setup: Setup
    material: str | None
    p: float = 0.5
    exposure: tuple[float, float] = (1.0, 1.0)
    lamp_k: tuple[float, float] = (shifts.LAMP_K, shifts.LAMP_K)
    gamma: tuple[float, float] = (1.0, 1.0)
    vignetting: tuple[float, float] = (0.0, 0.0)
    blur: tuple[float, float] = (0.0, 0.0)
    noise: tuple[float, float] = (0.0, 0.0)
    jpeg: tuple[float, float] = (100.0, 100.0)
    oxide_p: float = 0.0
    oxide_nm: tuple[tuple[float, float], ...] = ()
    _ratios: dict = field(default_factory=dict, repr=False)
    _lamps: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], data_name: str, material: str | None) -> SetupRandomization:
        """From the ``augment.setup`` node; its ``source`` (a setup file or shipped name) defaults to
        the shipped ``paper_<data.name>``."""
        known = {"p", "source", "oxide_p", "oxide_nm", *RANGES}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"augment.setup.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        source = cfg.get("source") or f"paper_{data_name}"
        try:
            setup = resolve_setup(source)
        except ConfigError as exc:
            raise ConfigError(f"augment.setup.source: {exc} (name the data's setup file)") from None
        values: dict[str, Any] = {}
        for key in RANGES:
            if cfg.get(key) is not None:
                values[key] = config_range(cfg[key], f"augment.setup.{key}")
        for key in ("p", "oxide_p"):
            value = float(cfg.get(key) or 0.0)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment.setup.{key}: must be in [0, 1], got {value}")
            values[key] = value
        low, high = values.get("jpeg", (100.0, 100.0))
        if low < 1 or high > 100:
            raise ConfigError(f"augment.setup.jpeg: qualities in [1, 100], got {[low, high]}")
        if values.get("gamma", (1, 1))[0] <= 0:
            raise ConfigError(f"augment.setup.gamma: must be positive, got {list(values['gamma'])}")
        oxide = tuple(config_range(r, "augment.setup.oxide_nm") for r in (cfg.get("oxide_nm") or ()))
        if values["oxide_p"] > 0 and not oxide:
            raise ConfigError(
                "augment.setup.oxide_nm: oxide_p > 0 needs ranges, e.g. [[240, 278], [292, 330]]"
            )
        if values["oxide_p"] > 0 and not material:
            raise ConfigError("augment.setup.oxide_p: re-rendering the oxide needs data.material")
        return cls(setup, material, oxide_nm=oxide, **values)

    def _draw(self, rng: np.random.Generator, low_high: tuple[float, float]) -> float:
        return float(rng.uniform(*low_high)) if low_high[1] > low_high[0] else float(low_high[0])

    def _oxide(self, rng: np.random.Generator) -> float:
        widths = np.array([hi - lo for lo, hi in self.oxide_nm], dtype=float)
        pick = int(rng.choice(len(widths), p=widths / widths.sum())) if widths.sum() > 0 else 0
        value = self._draw(rng, self.oxide_nm[pick])
        low, high = self.oxide_nm[pick]
        # rounded to the grid, kept inside its range (the benchmark's thicknesses lie outside)
        return float(np.clip(round(value / OXIDE_STEP_NM) * OXIDE_STEP_NM, low, high))

    def _lamp_gains(self, rng: np.random.Generator) -> np.ndarray:
        low, high = self.lamp_k
        # on a grid through the setup's own lamp (which then gives gains of exactly 1), inside the range
        steps = round((self._draw(rng, self.lamp_k) - shifts.LAMP_K) / LAMP_STEP_K)
        key = float(np.clip(shifts.LAMP_K + steps * LAMP_STEP_K, low, high))
        if key not in self._lamps:
            self._lamps[key] = shifts.lamp_gains(self.setup, key)
        return self._lamps[key]

    def __call__(
        self, image: np.ndarray, layers: np.ndarray, substrate: Sequence[float], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (uint8) as a drawn setup shows it, and its substrate colour there.

        ``layers``: per pixel 0 substrate, n layers, -1 unknown; ``substrate``: the image's substrate
        colour (8-bit, unshifted)."""
        out = image.astype(np.float64)
        colour = np.asarray(substrate, dtype=np.float64).reshape(1, 1, 3)
        if self.oxide_p and rng.random() < self.oxide_p:
            oxide = self._oxide(rng)
            key = (tuple(np.round(colour.ravel(), 1)), oxide)
            if key not in self._ratios:
                target = dataclasses.replace(self.setup, oxide_nm=oxide)
                self._ratios[key] = rerender_ratios(colour.ravel(), self.material, self.setup, target, COUNTS)
            ratios = self._ratios[key]
            table = np.stack([ratios[c] for c in COUNTS])  # row = count + 1
            out *= table[np.clip(layers, COUNTS[0], COUNTS[-1]) + 1]
            colour = colour * ratios[0]
        gain = self._draw(rng, self.exposure) * self._lamp_gains(rng)
        vignetting = self._draw(rng, self.vignetting)
        exponent = self._draw(rng, self.gamma)

        def tone(values: np.ndarray, pixel_gain: np.ndarray | float) -> np.ndarray:
            shifted = shifts.scale_linear(
                np.clip(np.round(values), 0, 255).astype(np.uint8), gain * pixel_gain
            )
            return shifts.regamma(shifted, exponent) if exponent != 1.0 else shifted

        field_gain = shifts.falloff(image.shape, vignetting) if vignetting > 0 else 1.0
        result = tone(out, field_gain)
        colour = tone(colour, 1.0).astype(np.float64).ravel()
        sigma = self._draw(rng, self.blur)
        if sigma >= 0.1:
            result = cv2.GaussianBlur(result, (0, 0), sigma)
        noise = self._draw(rng, self.noise)
        if noise > 0:
            result = np.clip(np.round(result + rng.normal(0.0, noise, result.shape)), 0, 255).astype(np.uint8)
        quality = round(self._draw(rng, self.jpeg))
        if quality < 100:  # OpenCV's encoder: 4:2:0 chroma subsampling, as most cameras' JPEGs
            _, data = cv2.imencode(".jpg", result[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            result = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()
        return result, colour
