"""Files written whole or not at all: a kill leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "append_invocation",
    "save_image_atomic",
    "write_bytes_atomic",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes through a temporary file and a rename, so a kill never leaves half a file.

    Raises:
        OSError: naming ``path`` (not the temporary file) when the system refuses: a full disk, a
            folder that cannot be made, no permission.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be read by others
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk names no file; the user's is the one to name
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_image_atomic(image: Any, path: Path, **save_options: Any) -> None:
    """Save an ``H x W [x C]`` uint8 array or a Pillow image atomically, in the format of the suffix."""
    import io

    import numpy as np  # here, not at the top: the commands' --help reads this module and needs no numpy
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format=Image.registered_extensions()[path.suffix.lower()], **save_options)
    write_bytes_atomic(path, buffer.getvalue())


def _strict(value: Any) -> Any:
    """NaN and infinities as ``None``: strict JSON has no NaN, and other readers (JS, jq) refuse it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write strict JSON atomically (see :func:`write_text_atomic`); NaN becomes ``null``."""
    write_text_atomic(path, json.dumps(_strict(payload), indent=2, sort_keys=False, allow_nan=False))


def write_csv_atomic(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Write dict rows as CSV atomically; ``columns`` default to the first row's keys."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or (rows[0].keys() if rows else [])))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def append_invocation(out: Path, seconds: float, **fields: Any) -> list[dict[str, Any]]:
    """Append one invocation (its start time, then ``fields``) to ``<out>/invocations.json``.

    Reports that resume list every invocation's wall time, so a rerun that only re-scored does not
    hide how long the first one trained. Returns the whole history.
    """
    path = out / "invocations.json"
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError):
        history = []
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - seconds))
    history.append({"started": started, **fields})
    write_json_atomic(path, history)
    return history
