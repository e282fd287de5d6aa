"""The images ``flakeseg predict`` screens, from the files, folders and glob patterns it was given.
Needs no torch: a wrong input is answered before the model loads."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "collect_inputs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _images_in(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def collect_inputs(
    inputs: Sequence[str], exclude: Path | None = None, recursive: bool = False
) -> tuple[list[Path], list[str]]:
    """Image files named by ``inputs`` (files, folders, glob patterns), in order, without duplicates.

    Folders give their files with an image suffix (with ``recursive``, also those of sub-folders);
    anything under ``exclude`` (the output folder) is left out, so a rerun never screens its own
    overlays.

    Returns:
        the files, and one line per input that named nothing.
    """
    found: list[Path] = []
    problems: list[str] = []
    excluded = exclude.resolve() if exclude else None

    def keep(path: Path) -> bool:
        return excluded is None or not path.resolve().is_relative_to(excluded)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = _images_in(path, "**/*" if recursive else "*")
            deeper = [] if files or recursive else [f for f in _images_in(path, "**/*") if keep(f)]
            if deeper:  # the usual slip: a folder of folders (one per sample or day)
                problems.append(
                    f"{item}: no images in the folder itself, {len(deeper)} in sub-folders: add --recursive"
                )
            elif not files:
                problems.append(f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            files = [path]
        elif any(ch in item for ch in "*?["):
            files = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not files:
                problems.append(f"{item}: pattern matches no files")
        else:
            problems.append(f"{item}: no such file or folder")
            files = []
        found += [f for f in files if keep(f)]
    unique = list(dict.fromkeys(found))
    return unique, problems
