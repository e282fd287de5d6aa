"""A trained model ready to predict new images: its card (what it needs) and its backends.

A training checkpoint carries everything prediction needs (class names and colours, input
normalisation, the scale it was trained at, the model config; see :class:`ModelCard`), so
``flakeseg predict`` needs nothing else. Checkpoints are read with ``weights_only=True``: a file with
pickled code is refused and nothing in it runs. An exported ONNX file carries the same card in its
metadata, so either file predicts alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from flakeseg.checkpoint_file import load_checkpoint
from flakeseg.errors import ConfigError, DataError
from flakeseg.substrate import normalize_substrate
from flakeseg.tiling import predict_tiled

__all__ = [
    "BACKENDS",
    "ModelCard",
    "OnnxBackend",
    "Predictor",
    "TorchBackend",
    "load_card",
    "load_predictor",
]

BACKENDS = ("torch", "onnx")
#: key of the card in an ONNX file's metadata
ONNX_CARD_KEY = "flakeseg_card"


@dataclass(frozen=True)
class ModelCard:
    """What prediction needs to know about a trained model.

    Attributes:
        model: the ``model`` config node (``name`` and the builder's options).
        class_names, class_colors: classes in index order and their ``#rrggbb`` display colours.
        mean, std: input normalisation, ``(pixel / 255 - mean) / std`` per RGB channel.
        data_scale: the factor the training images were resampled by (0.5: half size).
        crop_size: side of the training crops; the default tile side at prediction.
        pixel_size_um: micrometres per pixel of the training images as stored, if known.
        flake_classes: class names reported as flakes (the others are background).
        substrate_normalize: images are white-balanced against their substrate before the network
            (``data.substrate_normalize``, see :mod:`flakeseg.substrate`).
        input_multiple: input sides must be multiples of this (the network's stride).
        source: the file the card was read from.
    """

    model: dict[str, Any]
    class_names: list[str]
    class_colors: list[str]
    mean: list[float]
    std: list[float]
    data_scale: float = 1.0
    crop_size: int = 512
    pixel_size_um: float | None = None
    flake_classes: list[str] = field(default_factory=list)
    input_multiple: int = 1
    data: str = ""
    substrate_normalize: bool = False
    source: str = ""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "source"})

    @classmethod
    def from_json(cls, text: str, source: str) -> ModelCard:
        return cls(**{**json.loads(text), "source": source})


def _card_from_hparams(hparams: dict[str, Any], net: torch.nn.Module, source: str) -> ModelCard:
    names = list(hparams["class_names"])
    inference = dict(hparams.get("inference") or {})  # absent in checkpoints older than predict
    norm = hparams.get("normalization") or {"mean": [0.5] * 3, "std": [0.25] * 3}
    return ModelCard(
        model=dict(hparams["model"]),
        class_names=names,
        class_colors=list(hparams.get("class_colors") or ["#000000", "#1f5fff", "#20c020", "#d04040"])[
            : len(names)
        ],
        mean=[float(v) for v in norm["mean"]],
        std=[float(v) for v in norm["std"]],
        data_scale=float(hparams.get("data_scale", 1.0)),
        crop_size=int(inference.get("crop_size") or 512),
        pixel_size_um=inference.get("pixel_size_um"),
        flake_classes=list(inference.get("flake_classes") or names[1:]),
        input_multiple=int(getattr(net, "input_multiple", 1)),
        data=str(inference.get("data", "")),
        substrate_normalize=bool(inference.get("substrate_normalize", False)),
        source=source,
    )


def load_torch_model(path: Path | str) -> tuple[torch.nn.Module, ModelCard]:
    """The network (eval mode, CPU) and card of a training checkpoint, loaded without running pickles.

    Raises:
        DataError: one line naming the file when it is missing, corrupt, carries pickled code, or is
            not a flakeseg training checkpoint.
    """
    from flakeseg.models import build_model

    path = Path(path)
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "model" not in hparams or not isinstance(state, dict):
        raise DataError(f"{path}: not a flakeseg training checkpoint (no model config or weights in it)")
    names = list(hparams.get("class_names") or [])
    try:
        net = build_model(dict(hparams["model"]), num_classes=len(names))
    except ConfigError as exc:
        raise DataError(f"{path}: cannot rebuild its model ({exc})") from None
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    # torch.compile wraps modules as `_orig_mod`; compiled training keeps plain keys (nn.Module.compile)
    weights = {k.replace("_orig_mod.", ""): v for k, v in weights.items()}
    try:
        net.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: weights do not fit the model in its config ({first[:160]})") from None
    net.eval()
    return net, _card_from_hparams(hparams, net, str(path))


class Backend(Protocol):
    """A network as a function of a batch: ``N x 3 x h x w`` float32 -> ``N x C x h x w`` logits."""

    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """PyTorch eager, optionally with channels-last memory or ``torch.compile``, on the CPU or a GPU."""

    def __init__(
        self,
        net: torch.nn.Module,
        channels_last: bool = False,
        compile: bool = False,
        device: str | torch.device = "cpu",
    ):
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
        from flakeseg.tta import D4, apply, invert

        x = torch.from_numpy(np.ascontiguousarray(batch))
        transforms = D4 if self.tta else ((0, False),)
        total = None
        for transform in transforms:
            logits = torch.from_numpy(self.inner(apply(x, transform).contiguous().numpy()))
            probs = invert(torch.softmax(logits.float(), dim=1), transform)
            total = probs if total is None else total + probs
        assert total is not None
        mean = total / len(transforms)
        return (torch.log(mean.clamp_min(1e-7)) / self.temperature).numpy()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values are checked."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device: {device} asked for, but no CUDA GPU is visible")
    if not device.startswith(("cpu", "cuda")):
        raise ConfigError(f"--device: must be auto, cpu or cuda[:N], got {device!r}")
    return device


class OnnxBackend:
    """ONNX Runtime on the CPU (the file from ``flakeseg export``)."""

    name = "onnx"

    def __init__(self, path: Path | str, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path}: not a readable ONNX model ({first[:160]})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def load_onnx_card(path: Path | str) -> ModelCard:
    """The card stored in an exported ONNX file's metadata."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise DataError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_CARD_KEY not in meta:
        raise DataError(f"{path}: ONNX model without a flakeseg card; export it with `flakeseg export`")
    return ModelCard.from_json(meta[ONNX_CARD_KEY], str(path))


def load_card(path: Path | str) -> ModelCard:
    """The card of a checkpoint (``.ckpt``) or exported ONNX file (``.onnx``)."""
    if Path(path).suffix.lower() == ".onnx":
        return load_onnx_card(path)
    return load_torch_model(path)[1]


class Predictor:
    """Class probabilities of whole images of any size and magnification.

    Args:
        backend: the network as a batch function (:class:`TorchBackend` or :class:`OnnxBackend`).
        card: the model's :class:`ModelCard`.
        tile: tile side at the model's scale (default: twice the training crop, at least 512); images
            up to this size are predicted whole (a 700 x 525 image at the CPU preset's scale 0.5 is
            one tile).
        overlap: share of a tile shared with its neighbour.
        scale: extra resampling factor for images of another magnification than the training images
            (2.0: these images show things half as large in pixels, so they are enlarged 2x).
        tta: average over the 8 flips and 90-degree rotations of each tile (8x the network's time).
        temperature: divide the logits by this (temperature scaling; 1: as trained).
    """

    def __init__(
        self,
        backend: Backend,
        card: ModelCard,
        tile: int | None = None,
        overlap: float = 0.25,
        scale: float = 1.0,
        batch_size: int = 4,
        tta: bool = False,
        temperature: float = 1.0,
    ):
        if tta or temperature != 1.0:
            backend = CalibratedBackend(backend, tta, temperature)
        if not scale > 0:
            raise ConfigError(f"--scale: must be > 0, got {scale}")
        multiple = max(card.input_multiple, 1)
        tile = tile or max(2 * card.crop_size, 512)
        if tile < multiple:
            raise ConfigError(f"--tile: must be at least the network stride {multiple}, got {tile}")
        self.tile = tile // multiple * multiple
        self.backend, self.card, self.overlap = backend, card, overlap
        self.scale, self.batch_size = scale, batch_size

    @property
    def resample(self) -> float:
        """The factor images are resized by before the network sees them."""
        return self.card.data_scale * self.scale

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` uint8 -> ``3 x H x W`` float32 in the model's normalisation."""
        mean = np.asarray(self.card.mean, np.float32)
        std = np.asarray(self.card.std, np.float32)
        return ((image.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1).copy()

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Softmax probabilities, ``C x H x W`` float32, on the pixels of the ``H x W x 3`` uint8 image."""
        height, width = image.shape[:2]
        factor = self.resample
        work = image
        if abs(factor - 1.0) > 1e-9:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        if self.card.substrate_normalize:  # as the training images were, after resampling
            work = normalize_substrate(work)
        probs = predict_tiled(
            self.backend,
            self.normalise(work),
            self.tile,
            self.overlap,
            max(self.card.input_multiple, 1),
            self.batch_size,
        )
        if probs.shape[1:] != (height, width):  # back onto the original pixels
            probs = _resize_channels(probs, height, width)
        return probs


def _resize_channels(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    planes = [cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) for p in probs]
    out = np.stack(planes)
    return out / np.clip(out.sum(axis=0, keepdims=True), 1e-6, None)


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
        return Predictor(OnnxBackend(path, threads), load_onnx_card(path), **options)
    if threads:
        torch.set_num_threads(threads)
    net, card = load_torch_model(path)
    if backend == "torch":
        # channels-last: 1.5-1.7x the images/s of NCHW on the CPU here, same output (make bench)
        backend_ = TorchBackend(net, channels_last=True, device=resolve_device(device))
        return Predictor(backend_, card, **options)
    from flakeseg.export import export_onnx

    target = Path(onnx_path) if onnx_path else path.with_suffix(".onnx")
    if not target.exists():
        export_onnx(net, card, target)
    return Predictor(OnnxBackend(target, threads), load_onnx_card(target), **options)


def describe(card: ModelCard) -> dict[str, Any]:
    """The card as plain data for reports (source file included)."""
    return asdict(card)


def class_indices(card: ModelCard, names: Sequence[str]) -> list[int]:
    """Indices of class ``names`` in the card; an unknown name is a one-line error."""
    unknown = [n for n in names if n not in card.class_names]
    if unknown:
        raise ConfigError(f"flake classes {unknown} are not classes of the model {card.class_names}")
    return [card.class_names.index(n) for n in names]
