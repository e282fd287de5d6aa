"""The Lightning data module of one cross-validation fold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.contrasts import layer_classes, loaded_substrate_masks
from flakeseg.data.copy_paste import FlakeBank
from flakeseg.data.datasets import CropDataset, SampleSeedSampler, WholeImageDataset, list_collate
from flakeseg.data.setup_randomization import SetupRandomization
from flakeseg.data.transforms import build_train_transform, posterior_blocks
from flakeseg.errors import ConfigError


class FlakeDataModule(pl.LightningDataModule):
    """Random augmented crops of the training images; whole images for validation.

    Args:
        train: decoded training images (one fold's training part, or the whole training split).
        val: decoded validation images, or ``None``.
        data_cfg: the ``data`` config node (crop size, batch sizes, workers, normalisation).
        augment_cfg: the ``augment`` config node.
        seed: seed of crop sampling and augmentation.
    """

    def __init__(
        self,
        train: FlakeImages,
        val: FlakeImages | None,
        data_cfg: Mapping[str, Any],
        augment_cfg: Mapping[str, Any],
        seed: int,
    ):
        super().__init__()
        self.train_data, self.val_data = train, val
        self.data_cfg, self.augment_cfg = data_cfg, augment_cfg
        self.seed = int(seed)
        self.batch_size = int(data_cfg["batch_size"])
        self.eval_batch_size = int(data_cfg.get("eval_batch_size") or 1)
        self.num_workers = int(data_cfg.get("num_workers") or 0)
        for key, value in (
            ("data.batch_size", self.batch_size),
            ("data.eval_batch_size", self.eval_batch_size),
        ):
            if value < 1:
                raise ConfigError(f"{key}: must be at least 1, got {value}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers: must be >= 0, got {self.num_workers}")

    @property
    def samples_per_epoch(self) -> int:
        """Crops per epoch: ``data.samples_per_epoch`` or ``samples_per_image`` x training images."""
        explicit = self.data_cfg.get("samples_per_epoch")
        if explicit is not None:
            value = int(explicit)
            key = "data.samples_per_epoch"
        else:
            value = int(self.data_cfg["samples_per_image"]) * len(self.train_data.images)
            key = "data.samples_per_image"
        if value < 1:
            raise ConfigError(f"{key}: gives {value} samples per epoch; must be at least 1")
        return value

    def train_dataloader(self) -> DataLoader:
        classes = self.data_cfg.get("classes") or {}
        names = list(classes.get("names") or [])
        flakes = set(classes.get("region_classes") or names[1:])
        background = [i for i, name in enumerate(names) if name not in flakes] or [0]
        # subclasses kept apart (MoS2's thick flakes) are background wherever their class is
        apart = self.train_data.scheme.apart_weights
        background += [len(names) + k for k, (into, _) in enumerate(apart) if into in background]
        train = replace(self.train_data, masks=self.train_data.training_masks, apart_masks=None)
        channels = self.train_data.images[0].shape[2]
        transform = build_train_transform(
            self.augment_cfg,
            int(self.data_cfg["crop_size"]),
            background_values=background,
            channels=channels,
            posterior_blocks=posterior_blocks(self.data_cfg, len(names)),
        )
        paste_p = float(self.augment_cfg.get("copy_paste_p") or 0.0)
        if not 0.0 <= paste_p <= 1.0:
            raise ConfigError(f"augment.copy_paste_p: must be in [0, 1], got {paste_p}")
        bank = None
        if paste_p > 0:
            bank = FlakeBank(
                train.images,
                train.masks,
                [i for i in range(len(names)) if i not in background],
                background,
                normalized=bool(self.data_cfg.get("substrate_normalize")),
                max_side=int(self.data_cfg["crop_size"]),
            )
        randomize, layers = self._setup_randomization(train, names)
        dataset = CropDataset(
            train,
            transform,
            self.data_cfg["mean"],
            self.data_cfg["std"],
            bank=bank,
            paste_p=paste_p,
            paste_count=int(self.augment_cfg.get("copy_paste_count") or 1),
            randomize=randomize,
            layers=layers,
            substrate_normalize=bool(self.data_cfg.get("substrate_normalize")),
            substrate_channels=bool(self.data_cfg.get("substrate_channels")),
        )
        sampler = SampleSeedSampler(self.samples_per_epoch, self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _setup_randomization(
        self, train: FlakeImages, names: list[str]
    ) -> tuple[SetupRandomization | None, list[np.ndarray] | None]:
        """``augment.setup`` as a :class:`SetupRandomization` and each training image's layer map
        (bare substrate 0, monolayer 1, bilayer 2, ...; the rest of class 0, such as MoS2's thick
        flakes, subclasses kept apart and unlabelled pixels -1), or ``(None, None)`` when it is off."""
        cfg = self.augment_cfg.get("setup")
        if not cfg:
            return None, None
        for key in ("gmm_channels", "optics_channels"):
            if self.data_cfg.get(key):
                raise ConfigError(
                    f"augment.setup: training across simulated setups needs RGB inputs; set data.{key}=false"
                )
        if self.data_cfg.get("substrate_normalize") and train.originals is None:
            # the images were white-balanced when loaded; the shifts act on the microscope's colours
            raise ConfigError(
                "augment.setup: needs the images as the microscope gave them, but data.substrate_normalize "
                "white-balanced them when loaded; set data.substrate_choice=fitted (as experiment=best_cpu)"
            )
        randomize = SetupRandomization.from_config(
            cfg, str(self.data_cfg.get("name")), self.data_cfg.get("material")
        )
        counts = layer_classes(names)
        layers = []
        # the bare substrate, not all of class 0: the shifted image is white-balanced against its colour
        for mask, bare in zip(train.masks, loaded_substrate_masks(train), strict=True):
            layer = np.full(mask.shape, -1, dtype=np.int64)
            layer[bare] = 0  # raw label 0 lies inside class 0, resampled as the class masks are
            for cls, count in counts.items():
                layer[mask == cls] = count
            layers.append(layer)
        return randomize, layers

    def val_dataloader(self) -> DataLoader:
        if self.val_data is None:
            raise RuntimeError("FlakeDataModule has no validation images")
        # Whole images are already decoded in memory: no worker processes. The loader gets its own
        # generator: creating an iterator draws a seed from it, and drawing from the global one would
        # shift the dropout masks of later training epochs whenever validation runs.
        return DataLoader(
            WholeImageDataset(self.val_data),
            batch_size=self.eval_batch_size,
            collate_fn=list_collate,
            generator=torch.Generator().manual_seed(self.seed),
        )
