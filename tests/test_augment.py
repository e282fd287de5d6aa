import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader

from flakeseg.data.catalog import FlakeImages
from flakeseg.data.classes import IGNORE_INDEX, ClassScheme
from flakeseg.data.datasets import CropDataset, SampleSeedSampler, WholeImageDataset, list_collate
from flakeseg.data.transforms import build_train_transform

# Each label has its own colour, so after any geometric transform the image says which label a pixel
# must carry.
PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], dtype=np.uint8)
GEOMETRY_ONLY = {
    "hflip": 0.5,
    "vflip": 0.5,
    "rotate_limit": 90,
    "rotate_p": 1.0,
    "hue_shift": 0,
    "contrast": None,
    "grayscale_p": 0.0,
}
SCHEME = ClassScheme(("a", "b", "c"), ((0,), (1,), (2,)), ("#000", "#111", "#222"))


def _label_image(seed: int = 0, shape=(96, 128)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 3, size=(shape[0] // 8, shape[1] // 8)).astype(np.uint8)
    mask = np.kron(blocks, np.ones((8, 8), dtype=np.uint8))
    return PALETTE[mask], mask


def _decode(image: np.ndarray) -> np.ndarray:
    """Label of each pixel from its colour; -1 where the colour is none of the palette's."""
    labels = np.full(image.shape[:2], -1, dtype=np.int64)
    for label, colour in enumerate(PALETTE):
        labels[np.all(image == colour, axis=-1)] = label
    return labels


@pytest.mark.parametrize("crop", [48, 96, 160])
def test_labels_travel_with_their_pixels_under_rotate_flip_crop(crop):
    image, mask = _label_image()
    transform = build_train_transform(GEOMETRY_ONLY, crop, image_interpolation=cv2.INTER_NEAREST)
    saw_ignored = False
    for seed in range(40):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        img, msk = out["image"], out["mask"]
        assert img.shape == (crop, crop, 3) and msk.shape == (crop, crop)
        labelled = msk != IGNORE_INDEX
        np.testing.assert_array_equal(_decode(img)[labelled], msk[labelled])
        # pixels from outside the image are ignored, never given a real class
        assert np.all(img[~labelled] == 0)
        saw_ignored |= bool((~labelled).any())
    assert saw_ignored, "rotation never brought in outside pixels: is it on?"


def test_colour_augmentations_leave_the_mask_alone():
    image, mask = _label_image(shape=(96, 96))
    cfg = {
        **GEOMETRY_ONLY,
        "rotate_limit": 0,
        "hflip": 0,
        "vflip": 0,
        "hue_shift": 10,
        "contrast": [0.7, 1.3],
        "grayscale_p": 0.5,
    }
    transform = build_train_transform(cfg, 96)
    changed = 0
    for seed in range(10):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        np.testing.assert_array_equal(out["mask"], mask)
        changed += int(not np.array_equal(out["image"], image))
    assert changed >= 8


def test_whole_image_loader_keeps_sizes_and_arrays_for_the_predictor():
    small, small_mask = _label_image(shape=(32, 48))
    large, large_mask = _label_image(shape=(48, 32))
    images, masks = list_collate([(small, small_mask), (large, large_mask)])
    assert [im.shape for im in images] == [(32, 48, 3), (48, 32, 3)]
    assert masks[1] is large_mask  # nothing padded or copied: the predictor pads each image itself


def test_sampler_seeds_differ_between_epochs_and_repeat_for_same_epoch():
    sampler = SampleSeedSampler(16, seed=3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(set(first) | set(second)) == 32


def test_no_augmented_sample_repeats_over_two_epochs_and_two_workers():
    image, mask = _label_image()
    data = FlakeImages(ids=["x"], images=[image], masks=[mask], scheme=SCHEME)
    transform = build_train_transform({**GEOMETRY_ONLY, "hue_shift": 10, "contrast": [0.7, 1.3]}, 48)
    dataset = CropDataset(data, transform, [0.5] * 3, [0.25] * 3)
    sampler = SampleSeedSampler(8, seed=0)
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=2)
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        seen += [x.numpy().tobytes() for x, _ in loader]
    assert len(seen) == 16 and len(set(seen)) == 16


def test_whole_image_dataset_gives_each_prepared_image_and_its_mask():
    image, mask = _label_image(shape=(40, 56))
    data = FlakeImages(ids=["x"], images=[image], masks=[mask], scheme=SCHEME)
    got_image, got_mask = WholeImageDataset(data)[0]
    assert got_image is image and got_mask is mask
