"""Albumentations pipelines: the paper's training augmentation and whole-image evaluation input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.errors import ConfigError


def build_train_transform(
    augment_cfg: Mapping[str, Any],
    crop_size: int,
    ignore_index: int = IGNORE_INDEX,
    image_interpolation: int = cv2.INTER_LINEAR,
    background_values: Sequence[int] = (0,),
    channels: int = 3,
    posterior_blocks: Sequence[tuple[int, int]] = (),
) -> A.Compose:
    """The training pipeline of the paper: rotation, random crop, flips, then colour changes.

    Rotation acts on the whole image before cropping, so fewer crop pixels come from outside the image;
    those that do get ``ignore_index`` in the mask and are skipped by loss and metrics. Masks always use
    nearest-neighbour interpolation (a blend would invent labels between classes).

    Args:
        augment_cfg: the ``augment`` config node (see ``conf/augment/none.yaml`` for the keys).
        crop_size: side of the square training crops.
        ignore_index: mask value for pixels without a label.
        image_interpolation: OpenCV interpolation for the image under rotation.
        background_values: class indices that are not flakes; with ``augment.foreground_p`` > 0 that
            share of crops holds a flake pixel (a random one of the image's pixels of other classes,
            via albumentations' ``CropNonEmptyMaskIfExists``; images without flakes crop at random).
            Flakes cover about 6 % of the pixels, so most uniform crops hold none (nnU-Net: 1/3).
        channels: image channels; beyond RGB (``data.gmm_channels``, ``data.optics_channels``) only
            geometric steps and the per-channel gain (which acts on RGB) apply, so hue, contrast and
            grayscale must be off.
        posterior_blocks: ``(start, stop)`` channel slices of the fitted class posteriors, one block
            per model (``augment.posterior_dropout`` blanks them).
    """
    colour_steps = [
        key for key in ("hue_shift", "contrast", "grayscale_p") if augment_cfg.get(key) not in (None, 0, 0.0)
    ]
    if channels > 3 and colour_steps:
        raise ConfigError(
            f"augment.{colour_steps[0]}: colour changes need RGB-only images, but the inputs have "
            f"{channels} channels (data.substrate_channels, data.gmm_channels, data.optics_channels); "
            "set it to 0/null"
        )
    if crop_size < 1:
        raise ConfigError(f"data.crop_size: must be positive, got {crop_size}")
    steps: list[A.BasicTransform] = []
    rotate_limit = float(augment_cfg.get("rotate_limit") or 0)
    if rotate_limit:
        steps.append(
            A.Rotate(
                limit=(-rotate_limit, rotate_limit),
                interpolation=image_interpolation,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
                p=float(augment_cfg.get("rotate_p", 1.0)),
            )
        )
    steps += [
        A.PadIfNeeded(
            min_height=crop_size,
            min_width=crop_size,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
        ),
        _crop(crop_size, float(augment_cfg.get("foreground_p") or 0.0), [*background_values, ignore_index]),
    ]
    if augment_cfg.get("hflip"):
        steps.append(A.HorizontalFlip(p=float(augment_cfg["hflip"])))
    if augment_cfg.get("vflip"):
        steps.append(A.VerticalFlip(p=float(augment_cfg["vflip"])))
    hue = float(augment_cfg.get("hue_shift") or 0)
    if hue:
        steps.append(
            A.HueSaturationValue(
                hue_shift_limit=(-hue, hue),
                sat_shift_limit=(0, 0),
                val_shift_limit=(0, 0),
                p=float(augment_cfg.get("hue_p", 1.0)),
            )
        )
    contrast = augment_cfg.get("contrast")
    if contrast is not None:
        low, high = config_range(contrast, "augment.contrast")
        steps.append(
            A.ColorJitter(
                brightness=(1, 1),
                contrast=(low, high),
                saturation=(1, 1),
                hue=(0, 0),
                p=float(augment_cfg.get("contrast_p", 1.0)),
            )
        )
    gain = float(augment_cfg.get("gain_jitter") or 0)
    if gain:
        if not 0 < gain < 1:
            raise ConfigError(f"augment.gain_jitter: must be in [0, 1), got {gain}")
        steps.append(ChannelGain(gain))
    gray_p = float(augment_cfg.get("grayscale_p") or 0)
    if gray_p:
        steps.append(A.ToGray(num_output_channels=3, p=gray_p))
    dropout = float(augment_cfg.get("posterior_dropout") or 0)
    if dropout:
        if not 0 < dropout <= 1:
            raise ConfigError(f"augment.posterior_dropout: must be in [0, 1], got {dropout}")
        if not posterior_blocks:
            raise ConfigError(
                "augment.posterior_dropout: the inputs hold no fitted posteriors to drop; set "
                "data.optics_channels=true or data.gmm_channels=true, or the dropout to 0"
            )
        steps.append(PosteriorDropout(posterior_blocks, p=dropout))
    return A.Compose(steps)


class ChannelGain(A.ImageOnlyTransform):
    """Each RGB channel multiplied by its own factor from ``[1 - limit, 1 + limit]``: a white-balance
    error around the estimated substrate (what another lamp or camera setting does), which keeps
    every pixel's optical contrast ``I / b - 1`` unlike a hue shift. Channels after RGB are kept."""

    def __init__(self, limit: float = 0.1, p: float = 1.0):
        super().__init__(p=p)
        self.limit = float(limit)

    def get_params(self) -> dict[str, np.ndarray]:
        return {"gains": self.random_generator.uniform(1 - self.limit, 1 + self.limit, size=3)}

    def apply(self, img: np.ndarray, gains: np.ndarray, **params) -> np.ndarray:
        out = img.copy()
        out[..., :3] = np.clip(np.round(img[..., :3].astype(np.float32) * gains), 0, 255).astype(np.uint8)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("limit",)


class PosteriorDropout(A.ImageOnlyTransform):
    """The fitted class posteriors of a crop (``data.gmm_channels``, ``data.optics_channels``) say
    nothing: every class of each block equally likely (``255 / classes``). A network that sometimes
    trains without them keeps reading the RGB channels, so it need not follow the physics where the
    physics misses a layer (a network fed the optics' posteriors lost the graphene bilayers the optics
    missed: docs/results/optics_channels_cpu/)."""

    def __init__(self, blocks: Sequence[tuple[int, int]], p: float = 0.5):
        super().__init__(p=p)
        self.blocks = [(int(start), int(stop)) for start, stop in blocks]

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        out = img.copy()
        for start, stop in self.blocks:
            out[..., start:stop] = round(255 / (stop - start))
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("blocks",)


def posterior_blocks(data_cfg: Mapping[str, Any], num_classes: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` channel slices of the fitted posteriors in the network's input, in the
    order :class:`~flakeseg.inference.inputs.InputFeatures` stacks them: RGB, the substrate colour
    (``data.substrate_channels``), the GMM's ``num_classes`` posteriors, the optics' three."""
    start = 3 + 3 * bool(data_cfg.get("substrate_channels"))
    blocks = []
    for key, size in (("gmm_channels", num_classes), ("optics_channels", 3)):
        if data_cfg.get(key):
            blocks.append((start, start + size))
            start += size
    return blocks


def _crop(crop_size: int, foreground_p: float, not_foreground: list[int]) -> A.BasicTransform:
    """A random crop, or with probability ``foreground_p`` one that holds a foreground pixel."""
    if not 0.0 <= foreground_p <= 1.0:
        raise ConfigError(f"augment.foreground_p: must be in [0, 1], got {foreground_p}")
    uniform = A.RandomCrop(height=crop_size, width=crop_size)
    if foreground_p == 0.0:
        return uniform
    on_flake = A.CropNonEmptyMaskIfExists(height=crop_size, width=crop_size, ignore_values=not_foreground)
    if foreground_p == 1.0:
        return on_flake
    on_flake.p, uniform.p = foreground_p, 1.0 - foreground_p
    return A.OneOf([on_flake, uniform], p=1.0)


def config_range(value: Any, key: str) -> tuple[float, float]:
    """A config value ``[low, high]`` with ``0 <= low <= high``, or a one-line error naming ``key``."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"{key}: expected [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not 0 <= low <= high:
        raise ConfigError(f"{key}: expected 0 <= low <= high, got [{low}, {high}]")
    return low, high


def to_tensors(image: np.ndarray, mask: np.ndarray, mean: Sequence[float], std: Sequence[float]):
    """``H x W x 3`` uint8 and ``H x W`` uint8 to a normalised float ``3 x H x W`` and a long ``H x W``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    y = torch.from_numpy(np.ascontiguousarray(mask)).long()
    return x, y
