"""Property tests (hypothesis) of the geometric training transforms on image and mask together."""

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flakeseg.data.classes import IGNORE_INDEX
from flakeseg.data.transforms import build_train_transform

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
@given(height=st.integers(2, 70), width=st.integers(2, 70), multiple=st.sampled_from([1, 8, 16, 32]))
def test_prediction_keeps_every_pixel_in_place_whatever_the_padding(height, width, multiple):
    """A pointwise "network" (class scores = the pixel's own values) must come back on its own pixel:
    the predictor's padding to the stride and its cropping back lose and move nothing."""
    from flakeseg.inference.checkpoint import ModelCard
    from flakeseg.inference.predictor import Predictor

    image, _ = _scene(height * 71 + width, height, width, 3)

    def pointwise(batch):
        assert batch.shape[2] % multiple == 0 and batch.shape[3] % multiple == 0
        return batch * 4.0

    pointwise.name = "pointwise"
    card = ModelCard(
        model={},
        class_names=list("abc"),
        class_colors=["#000000"] * 3,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        input_multiple=multiple,
    )
    probs = Predictor(pointwise, card, tile=64).probabilities_at_model_scale(image)
    assert probs.shape == (3, height, width)
    logits = image.transpose(2, 0, 1).astype(np.float64) / 255.0 * 4.0
    expected = np.exp(logits - logits.max(axis=0)) / np.exp(logits - logits.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
