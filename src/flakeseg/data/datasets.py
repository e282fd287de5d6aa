"""Torch datasets: random augmented crops for training, whole images for validation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.copy_paste import FlakeBank
from flakeseg.data.preprocess import network_rgb
from flakeseg.data.setup_randomization import SetupRandomization
from flakeseg.data.transforms import to_tensors
from flakeseg.optics.substrate import substrate_colour


class SampleSeedSampler(Sampler[int]):
    """Yields one 63-bit seed per training sample, fresh for every (seed, epoch, position).

    The seed decides which image a sample is cut from and every random choice of its augmentation.
    Seeding each sample this way, instead of relying on the worker's random state, keeps samples
    distinct across DataLoader workers and epochs (albumentations would otherwise repeat them per
    worker and per epoch) and makes them independent of the number of workers. Lightning calls
    :meth:`set_epoch` at the start of every epoch.
    """

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        sequence = np.random.SeedSequence([self.seed, self.epoch])
        seeds = sequence.generate_state(self.num_samples, dtype=np.uint64) >> np.uint64(1)
        return iter(int(s) for s in seeds)


class CropDataset(Dataset):
    """Random augmented crops of the training images, indexed by a per-sample seed.

    Use it with :class:`SampleSeedSampler`. Images are drawn uniformly, so every image contributes about
    ``num_samples / len(images)`` crops an epoch (the paper: 40 per image).
    """

    def __init__(
        self,
        data: FlakeImages,
        transform: A.Compose,
        mean: Sequence[float],
        std: Sequence[float],
        bank: FlakeBank | None = None,
        paste_p: float = 0.0,
        paste_count: int = 1,
        randomize: SetupRandomization | None = None,
        layers: Sequence[np.ndarray] | None = None,
        substrate_normalize: bool = False,
        substrate_channels: bool = False,
    ):
        if not data.images:
            raise ValueError("CropDataset needs at least one image")
        self.data = data
        self.transform = transform
        self.mean = list(mean)
        self.std = list(std)
        #: copy-paste augmentation: with probability ``paste_p`` an image gets ``paste_count`` flakes of
        #: other training images pasted on before it is augmented and cropped
        self.bank, self.paste_p, self.paste_count = bank, float(paste_p), int(paste_count)
        #: training across simulated setups: with probability ``randomize.p`` an image is re-rendered
        #: from its original (before the input features) by ``randomize``, which needs each image's
        #: ``layers`` (0 substrate, n layers, -1 unknown); ``substrate_normalize`` and
        #: ``substrate_channels`` as the input features make them (against the shifted substrate)
        self.randomize = randomize
        self.substrate_normalize, self.substrate_channels = (
            bool(substrate_normalize),
            bool(substrate_channels),
        )
        if randomize is not None:
            if layers is None or len(layers) != len(data.images):
                raise ValueError("CropDataset: setup randomisation needs a layer map per image")
            self.originals = data.originals if data.originals is not None else data.images
            self.layers = list(layers)
            self.substrates = [
                substrate_colour(image, layer == 0)
                for image, layer in zip(self.originals, self.layers, strict=True)
            ]

    def __len__(self) -> int:  # nominal; the sampler decides what an epoch holds
        return len(self.data.images)

    def __getitem__(self, sample_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(sample_seed)
        index = int(rng.integers(len(self.data.images)))
        self.transform.set_random_seed(int(rng.integers(2**31 - 1)))
        image, mask = self.data.images[index], self.data.masks[index]
        if self.randomize is not None and rng.random() < self.randomize.p:
            image, substrate = self.randomize(
                self.originals[index], self.layers[index], self.substrates[index], rng
            )
            image = network_rgb(image, substrate, self.substrate_normalize, self.substrate_channels)
        if self.bank is not None and rng.random() < self.paste_p:
            image, mask, _ = self.bank.paste(image, mask, index, rng, self.paste_count)
        out = self.transform(image=image, mask=mask)
        return to_tensors(out["image"], out["mask"], self.mean, self.std)


class WholeImageDataset(Dataset):
    """Whole prepared images and their masks, as numpy arrays, for the predictor (which pads and
    normalises them itself, exactly as at prediction). Use it with :func:`list_collate`."""

    def __init__(self, data: FlakeImages):
        self.data = data

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data.images[index], self.data.masks[index]


def list_collate(batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images of different sizes stay a list (the predictor takes them one by one)."""
    return [image for image, _ in batch], [mask for _, mask in batch]
