"""Property tests (hypothesis) of the geometric training transforms on image and mask together."""

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.data.transforms import build_train_transform, pad_to_multiple

PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], dtype=np.uint8)


def _scene(seed: int, height: int, width: int, n_labels: int):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, n_labels, size=(height // 4 + 1, width // 4 + 1)).astype(np.uint8)
    mask = np.kron(blocks, np.ones((4, 4), dtype=np.uint8))[:height, :width]
    return PALETTE[mask], mask


def _decode(image):
    labels = np.full(image.shape[:2], -1, dtype=np.int64)
    for label, colour in enumerate(PALETTE):
        labels[np.all(image == colour, axis=-1)] = label
    return labels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    height=st.integers(8, 120),
    width=st.integers(8, 120),
    crop=st.sampled_from([16, 32, 64, 96]),
    rotate_limit=st.integers(0, 90),
    hflip=st.floats(0, 1),
    vflip=st.floats(0, 1),
    n_labels=st.integers(1, 4),
)
def test_geometry_keeps_labels_with_their_pixels(
    seed, height, width, crop, rotate_limit, hflip, vflip, n_labels
):
    image, mask = _scene(seed, height, width, n_labels)
    augment = {
        "hflip": hflip,
        "vflip": vflip,
        "rotate_limit": rotate_limit,
        "rotate_p": 1.0,
        "hue_shift": 0,
        "contrast": None,
        "grayscale_p": 0.0,
    }
    transform = build_train_transform(augment, crop, image_interpolation=cv2.INTER_NEAREST)
    transform.set_random_seed(seed)
    out = transform(image=image, mask=mask)
    img, msk = out["image"], out["mask"]
    assert img.shape == (crop, crop, 3) and msk.shape == (crop, crop)  # shapes stay paired
    labels = set(np.unique(msk).tolist()) - {IGNORE_INDEX}
    assert labels <= set(np.unique(mask).tolist())  # no label is invented
    labelled = msk != IGNORE_INDEX
    np.testing.assert_array_equal(_decode(img)[labelled], msk[labelled])  # each label travels with its pixel


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), multiple=st.sampled_from([1, 8, 16, 32]))
def test_padding_keeps_every_pixel_and_ignores_the_pad(height, width, multiple):
    image, mask = _scene(height * 71 + width, height, width, 3)
    padded_image, padded_mask = pad_to_multiple(image, mask, multiple)
    assert padded_image.shape[:2] == padded_mask.shape
    assert padded_mask.shape[0] % multiple == 0 and padded_mask.shape[1] % multiple == 0
    np.testing.assert_array_equal(padded_image[:height, :width], image)
    np.testing.assert_array_equal(padded_mask[:height, :width], mask)
    outside = np.ones(padded_mask.shape, bool)
    outside[:height, :width] = False
    assert np.all(padded_mask[outside] == IGNORE_INDEX)
