"""``flakeseg export``: a training checkpoint as an ONNX model for ONNX Runtime.

The ONNX file takes ``N x 3 x H x W`` normalised images (``H`` and ``W`` multiples of the network's
stride, any size) and returns ``N x C x H x W`` logits; the model card (classes, colours,
normalisation, training scale) travels in its metadata, so ``flakeseg predict model.onnx ...`` needs
nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from flakeseg.errors import FlakesegError
from flakeseg.predictor import ONNX_CARD_KEY, ModelCard, load_torch_model

__all__ = ["export_onnx", "main"]

FORMATS = ("onnx",)
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


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints its progress to stdout; keep a CLI's output to what the user asked for."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flakeseg export",
        description=(
            "Export a training checkpoint for fast inference. The ONNX file carries the model card "
            "(classes, colours, normalisation, training scale): `flakeseg predict MODEL.onnx ...` "
            "runs it on ONNX Runtime."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by train.py (e.g. final.ckpt)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default: onnx)")
    parser.add_argument("--out", type=Path, help="output file (default: the checkpoint's name with .onnx)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = args.out or args.checkpoint.with_suffix(".onnx")
    try:
        net, card = load_torch_model(args.checkpoint)
        export_onnx(net, card, target, args.opset)
    except FlakesegError as exc:
        print(f"error: {exc}")
        return 1
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB; classes {', '.join(card.class_names)})")
    return 0
