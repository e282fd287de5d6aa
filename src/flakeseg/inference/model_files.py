"""What a file given as a model is, judged from its first bytes without torch, so that ``flakeseg
predict`` answers a wrong file (an image where the model goes, a text file) at once, and
:func:`~flakeseg.inference.checkpoint.load_checkpoint` never hands torch a file that is no checkpoint."""

from __future__ import annotations

from pathlib import Path

__all__ = ["checkpoint_problem"]

#: the first bytes of the image formats `flakeseg predict` reads
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
#: torch.save writes a zip archive; files of torch < 1.6 start with a pickle protocol byte
CHECKPOINT_SIGNATURES = (b"PK\x03\x04", b"\x80")
NOT_A_CHECKPOINT = "not a flakeseg checkpoint (a .ckpt from train.py or a .onnx from `flakeseg export`)"


def checkpoint_problem(path: Path | str) -> str | None:
    """``<path>: problem`` when ``path`` cannot be a training checkpoint or ONNX model, else ``None``.

    An ``.onnx`` file is left to the ONNX loader (protobuf has no signature to check).
    """
    path = Path(path)
    if not path.is_file():
        return f"{path}: {'a folder, not a model file' if path.is_dir() else 'model file not found'}"
    if path.suffix.lower() == ".onnx":
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        return f"{path}: unreadable ({exc.strerror or type(exc).__name__})"
    if head.startswith(IMAGE_SIGNATURES):
        return f"{path}: an image, not a model"
    if not head.startswith(CHECKPOINT_SIGNATURES):
        return f"{path}: {NOT_A_CHECKPOINT}"
    return None
