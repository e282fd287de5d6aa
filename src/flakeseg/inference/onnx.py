"""``flakeseg export``: a training checkpoint as an ONNX model for ONNX Runtime.

The ONNX file takes ``N x 3 x H x W`` normalised images (``H`` and ``W`` multiples of the network's
stride, any size) and returns ``N x C x H x W`` logits; the model card (classes, colours,
normalisation, training scale) travels in its metadata, so ``flakeseg predict model.onnx ...`` needs
nothing else.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from flakeseg.errors import ConfigError, DataError
from flakeseg.inference.checkpoint import ModelCard

__all__ = ["ONNX_CARD_KEY", "OnnxBackend", "export_onnx", "load_onnx_card"]

#: key of the card in an ONNX file's metadata
ONNX_CARD_KEY = "flakeseg_card"

#: sides up to this many pixels (at the model's scale) are accepted by the exported graph
MAX_SIDE = 8192


def export_onnx(net: torch.nn.Module, card: ModelCard, path: Path, opset: int | None = None) -> Path:
    """Export ``net`` (eval mode) with dynamic batch, height and width; write ``path`` atomically."""
    import onnx

    multiple = max(card.input_multiple, 1)
    example = torch.zeros(1, 3, 2 * multiple, 2 * multiple)
    batch = torch.export.Dim("batch", min=1, max=1024)
    # Sides are multiples of the stride; saying so lets torch.export prove the skip shapes match.
    height = torch.export.Dim("height", min=1, max=MAX_SIDE // multiple)
    width = torch.export.Dim("width", min=1, max=MAX_SIDE // multiple)
    dims = {0: batch, 2: multiple * height, 3: multiple * width}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({**dims},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    written = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), None)
    if opset is not None and written != opset:  # the exporter converts, and falls back when it cannot
        raise ConfigError(f"--opset {opset}: the ONNX exporter cannot write it (it fell back to {written})")
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_CARD_KEY, card.to_json()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints its progress to stdout; keep a CLI's output to what the user asked for."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        yield
