"""The one way this package turns an image into class probabilities.

CV validation (every epoch), the test stage, the fold-model evaluation, ``compare`` and
``flakeseg predict`` all call :class:`Predictor`, so a tiling, padding or TTA change shows in every
reported number, and a CV score, a test score and a screening run of the same model and image agree.

A :class:`Predictor` is a backend (the model as a function) and a :class:`ModelCard` (what the model
needs: normalisation, training scale, substrate white balance). Backends:

- :class:`TorchBackend`: a network, ``N x 3 x h x w`` normalised tiles -> logits;
- :class:`~flakeseg.inference.onnx.OnnxBackend`: the same on ONNX Runtime;
- :class:`ClassicalBackend`: a classical model, which sees the whole image at once (its substrate
  estimate needs it) and returns probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from flakeseg.data.preprocess import prepare_image, resize_image, resize_probabilities
from flakeseg.errors import ConfigError
from flakeseg.inference import BACKENDS
from flakeseg.inference.checkpoint import ModelCard, load_torch_model
from flakeseg.inference.inputs import InputFeatures
from flakeseg.inference.tiling import predict_tiled
from flakeseg.inference.tta import D4, apply, invert

__all__ = [
    "BACKENDS",
    "SCALES",
    "CalibratedBackend",
    "ClassicalBackend",
    "Predictor",
    "TorchBackend",
    "class_indices",
    "load_card",
    "load_predictor",
    "optics_predictor",
    "resolve_device",
]

#: how far ``--scale`` may resize an image: down to a 10x objective's view for a 100x model, up to 8x
#: (training's ``data.scale`` allows up to 8; beyond, one image takes minutes and gigabytes)
SCALES = (1 / 16, 8.0)

#: probabilities are floored here before taking logs (temperature scaling works on log-probabilities)
_EPS = 1e-7


class Backend(Protocol):
    """A network as a function of a batch: ``N x 3 x h x w`` float32 -> ``N x C x h x w`` logits."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """PyTorch eager, optionally with channels-last memory or ``torch.compile``, on the CPU or a GPU.

    Args:
        net: the network; put in eval mode (the caller's train mode is its own business to restore).
        channels_last, compile: fast paths (``make bench`` measures them).
        device: where to run; ``None`` keeps the network where it is (a LightningModule's own device).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        channels_last: bool = False,
        compile: bool = False,
        device: str | torch.device | None = "cpu",
    ):
        if device is None:
            first = next(net.parameters(), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.name = "torch" + ("+channels_last" if channels_last else "") + ("+compile" if compile else "")
        if self.device.type != "cpu":
            self.name += f"@{self.device}"
        self.channels_last = channels_last
        self.net = net.eval().to(self.device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.net, dynamic=False) if compile else self.net

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward(x).float().cpu().numpy()


class CalibratedBackend:
    """A backend whose probabilities are averaged over the 8 flips/rotations (``tta``) and divided,
    as logits, by a ``temperature`` (fitted on held-out folds: ``evaluation.json``'s
    ``test_temperature``). It returns ``log(p) / T``, whose softmax is the calibrated probability.
    """

    def __init__(self, inner: Backend, tta: bool = False, temperature: float = 1.0):
        if not temperature > 0:
            raise ConfigError(f"--temperature: must be > 0, got {temperature}")
        self.inner, self.tta, self.temperature = inner, tta, float(temperature)
        self.name = (
            inner.name + ("+tta" if tta else "") + (f"+T{temperature:g}" if temperature != 1.0 else "")
        )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        transforms = D4 if self.tta else ((0, False),)
        total = None
        for transform in transforms:
            logits = torch.from_numpy(self.inner(apply(x, transform).contiguous().numpy()))
            probs = invert(torch.softmax(logits.float(), dim=1), transform)
            total = probs if total is None else total + probs
        assert total is not None
        mean = total / len(transforms)
        return (torch.log(mean.clamp_min(_EPS)) / self.temperature).numpy()


class ClassicalBackend:
    """A classical model (:class:`~flakeseg.models.classical.base.ClassicalModel`) as a backend: it
    takes the whole ``H x W x 3`` uint8 image (its substrate estimate needs all of it) and returns
    ``C x H x W`` probabilities, so it is never tiled, normalised or augmented."""

    whole_image = True

    def __init__(self, model: Any):
        self.model = model
        self.name = f"classical:{type(model).__name__}"

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(image), dtype=np.float32)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values are checked."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device: {device} asked for, but no CUDA GPU is visible")
    if not device.startswith(("cpu", "cuda")):
        raise ConfigError(f"--device: must be auto, cpu or cuda[:N], got {device!r}")
    return device


class Predictor:
    """Class probabilities of whole images of any size and magnification.

    Args:
        backend: the model as a function (:class:`TorchBackend`, :class:`OnnxBackend
            <flakeseg.inference.onnx.OnnxBackend>` or :class:`ClassicalBackend`).
        card: the model's :class:`ModelCard`.
        tile: tile side at the model's scale (default: twice the training crop, at least 512); images
            up to this size are predicted whole (a 700 x 525 image at the CPU preset's scale 0.5 is
            one tile), padded by reflection to the network's stride.
        overlap: share of a tile shared with its neighbour.
        scale: extra resampling factor for images of another magnification than the training images
            (2.0: these images show things half as large in pixels, so they are enlarged 2x).
        batch_size: tiles per call of the backend.
        tta: average over the 8 flips and 90-degree rotations of each tile (8x the network's time).
        temperature: divide the logits by this (temperature scaling; 1: as trained).
    """

    def __init__(
        self,
        backend: Any,
        card: ModelCard,
        tile: int | None = None,
        overlap: float = 0.25,
        scale: float = 1.0,
        batch_size: int = 4,
        tta: bool = False,
        temperature: float = 1.0,
    ):
        self.whole_image = bool(getattr(backend, "whole_image", False))
        if self.whole_image and (tta or temperature != 1.0):
            raise ConfigError("tta and temperature are for networks, not classical models")
        if tta or temperature != 1.0:
            backend = CalibratedBackend(backend, tta, temperature)
        if not SCALES[0] <= scale <= SCALES[1]:  # nan too
            raise ConfigError(f"--scale: must be in [{SCALES[0]:g}, {SCALES[1]:g}], got {scale:g}")
        multiple = max(card.input_multiple, 1)
        if tile is not None and tile <= 0:
            raise ConfigError(f"--tile: a side in pixels > 0 (or leave it out), got {tile}")
        tile = tile or max(2 * card.crop_size, 512)
        if tile < multiple:
            raise ConfigError(f"--tile: must be at least the network stride {multiple}, got {tile}")
        self.tile = tile // multiple * multiple
        self.backend, self.card, self.overlap = backend, card, overlap
        self.scale, self.batch_size = scale, batch_size

    @classmethod
    def for_network(cls, net: torch.nn.Module, card: ModelCard, **options: Any) -> Predictor:
        """A predictor over a network in memory (a LightningModule's ``net``), on the network's device."""
        return cls(TorchBackend(net, device=None), card, **options)

    @property
    def resample(self) -> float:
        """The factor images are resized by before the model sees them."""
        return self.card.data_scale * self.scale

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` uint8 -> ``3 x H x W`` float32 in the model's normalisation."""
        mean = np.asarray(self.card.mean, np.float32)
        std = np.asarray(self.card.std, np.float32)
        return ((image.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1).copy()

    @cached_property
    def input_features(self) -> InputFeatures | None:
        """The card's fitted input features (substrate choice, GMM channels), or ``None``."""
        return InputFeatures.from_dict(self.card.inputs)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """An image of the microscope as the model saw its training images (resampled, white-balanced,
        with its fitted input channels)."""
        if self.input_features is None:
            return prepare_image(image, self.resample, self.card.substrate_normalize)
        return self.input_features.apply(resize_image(image, self.resample))

    def prepare_loaded(self, image: np.ndarray) -> np.ndarray:
        """An image as :func:`~flakeseg.data.catalog.load_dataset` loads it with the model's ``data``
        config, made what the model saw in training (only fitted input features remain to apply)."""
        return image if self.input_features is None else self.input_features.apply(image)

    def probabilities_at_model_scale(self, image: np.ndarray) -> np.ndarray:
        """``C x h x w`` float32 softmax probabilities of an image already :meth:`prepare`-d (as the
        data loader prepares training and validation images)."""
        if self.whole_image:
            return self.backend.probabilities(image)
        return predict_tiled(
            self.backend,
            self.normalise(image),
            self.tile,
            self.overlap,
            max(self.card.input_multiple, 1),
            self.batch_size,
        )

    #: a flat field (``H x W x 3``, median 1) every image is divided by first (``predict --flatfield``),
    #: or ``None``: then the card's, if the model was trained on flat-fielded images
    flatfield: np.ndarray | None = None
    #: an image -> the image as the model's microscope would show it (``flakeseg robustness
    #: --translate``: :func:`~flakeseg.optics.drift.translate_to_setup`), applied after the flat field
    translate: Callable[[np.ndarray], np.ndarray] | None = None

    @cached_property
    def card_flatfield(self) -> np.ndarray | None:
        """The flat field the model card keeps (its training images' microscope), at their size."""
        if not self.card.flatfield:
            return None
        from flakeseg.optics.substrate import expand_flat_field

        return expand_flat_field(self.card.flatfield)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Softmax probabilities, ``C x H x W`` float32, on the pixels of the ``H x W x 3`` uint8 image
        (divided by :attr:`flatfield` first, else by the card's flat field when the image has the
        training images' size; then :attr:`translate`-d)."""
        field = self.flatfield
        if field is None and self.card_flatfield is not None and self.card_flatfield.shape == image.shape:
            # an image of another size comes from another camera or binning, whose field the card
            # does not know: it is predicted as it is (`predict --flatfield BLANK` gives its own)
            field = self.card_flatfield
        if field is not None:
            from flakeseg.optics.substrate import apply_flat_field

            image = apply_flat_field(image, field)
        if self.translate is not None:
            image = self.translate(image)
        height, width = image.shape[:2]
        probs = self.probabilities_at_model_scale(self.prepare(image))
        return resize_probabilities(probs, height, width)  # back onto the original pixels


def load_predictor(
    path: Path | str,
    backend: str = "torch",
    onnx_path: Path | str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    **options: Any,
) -> Predictor:
    """A :class:`Predictor` for a checkpoint or ONNX file.

    Args:
        path: a training checkpoint (``.ckpt``) or an exported ONNX file (``.onnx``).
        backend: ``torch`` or ``onnx``; an ``.onnx`` file always runs on ONNX Runtime.
        onnx_path: for ``backend="onnx"`` with a checkpoint, where its export is (made if absent).
        threads: CPU threads for the network (default: the library's choice).
        device: ``cpu``, ``cuda[:N]`` or ``auto`` for the torch backend (ONNX runs on the CPU).
        options: :class:`Predictor` options (``tile``, ``overlap``, ``scale``, ``batch_size``, ``tta``,
            ``temperature``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from flakeseg.inference.onnx import OnnxBackend, load_onnx_card

        return Predictor(OnnxBackend(path, threads), load_onnx_card(path), **options)
    if threads:
        torch.set_num_threads(threads)
    net, card = load_torch_model(path)
    if backend == "torch":
        # channels-last: 1.5-1.7x the images/s of NCHW on the CPU here, same output (make bench)
        backend_ = TorchBackend(net, channels_last=True, device=resolve_device(device))
        return Predictor(backend_, card, **options)
    from flakeseg.inference.onnx import OnnxBackend, export_onnx, load_onnx_card

    target = Path(onnx_path) if onnx_path else path.with_suffix(".onnx")
    if not target.exists():
        export_onnx(net, card, target)
    return Predictor(OnnxBackend(target, threads), load_onnx_card(target), **options)


#: the classes the optics model reports (index n: n layers), as the shipped models do
OPTICS_CLASSES = ("other", "monolayer", "bilayer")


def optics_predictor(
    material: str,
    setup: Any = None,
    oxide_nm: float | None = None,
    fit_oxide: bool | None = None,
    **options: Any,
) -> Predictor:
    """A :class:`Predictor` with no trained model: the layer counts of ``material`` from thin-film
    optics (:class:`~flakeseg.models.classical.optics_layers.OpticsLayers`), zero labels.

    Args:
        material: the crystal (:func:`~flakeseg.optics.materials.material`'s names).
        setup: a :class:`~flakeseg.optics.calibration.Setup`, a setup file, or ``None``: the paper's
            microscope (:func:`~flakeseg.optics.calibration.shipped_setup`), the oxide then fitted on
            each image's substrate colour unless ``oxide_nm`` is given.
        oxide_nm: fixes the oxide thickness.
        fit_oxide: fit the oxide on each image's substrate colour, within 40 nm of the setup's (default:
            only without ``setup``; a setup calibrated on the screened microscope knows its oxide, one
            from another microscope does not).
        options: :class:`Predictor` options (``tile``, ``overlap``, ``scale``...; no TTA).
    """
    from flakeseg.models.classical.optics_layers import OpticsLayers
    from flakeseg.optics.calibration import Setup, shipped_setup

    chosen = shipped_setup() if setup is None else setup if isinstance(setup, Setup) else Setup.load(setup)
    fit_per_image = (setup is None if fit_oxide is None else fit_oxide) and oxide_nm is None
    fixed = oxide_nm if oxide_nm is not None else (None if fit_per_image else chosen.oxide_nm)
    model = OpticsLayers(len(OPTICS_CLASSES), material=material, setup=chosen.to_dict(), oxide_nm=fixed)
    card = ModelCard(
        model=model.config,
        class_names=list(OPTICS_CLASSES),
        class_colors=["#000000", "#1f5fff", "#20c020"],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        flake_classes=list(OPTICS_CLASSES[1:]),
        data=f"zero labels: {material} by thin-film optics",
        source=f"optics:{material}",
    )
    return Predictor(ClassicalBackend(model), card, **options)


def load_card(path: Path | str) -> ModelCard:
    """The card of a checkpoint (``.ckpt``) or exported ONNX file (``.onnx``)."""
    if Path(path).suffix.lower() == ".onnx":
        from flakeseg.inference.onnx import load_onnx_card

        return load_onnx_card(path)
    return load_torch_model(path)[1]


def class_indices(card: ModelCard, names: Sequence[str]) -> list[int]:
    """Indices of class ``names`` in the card; an unknown name is a one-line error."""
    unknown = [n for n in names if n not in card.class_names]
    if unknown:
        raise ConfigError(f"flake classes {unknown} are not classes of the model {card.class_names}")
    return [card.class_names.index(n) for n in names]
