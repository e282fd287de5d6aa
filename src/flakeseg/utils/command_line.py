"""The argument parser of every ``flakeseg`` command: a usage mistake is one line on stderr and exit
status 2, instead of argparse's usage block (the options are one ``--help`` away)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

__all__ = [
    "SET_HELP",
    "ArgumentParser",
    "data_overrides",
    "fail",
    "output_file_problem",
    "output_folder_problem",
]

#: ``--set`` of every command that reads a data config: the key as train.py spells it
SET_HELP = (
    "override a data config value as train.py spells it, e.g. --set data.root=/data/mos2 or "
    "--set data/classes=four (repeatable)"
)


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are ``error: <message>`` alone; its sub-parsers
    are of this class too (argparse makes them with the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message.splitlines()[0]}\n" if message else "error: bad arguments\n")


def fail(message: str, status: int = 1) -> NoReturn:
    """Stop a command with one line on stderr (1: a data or file problem, 2: a usage mistake)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def data_overrides(values: list[str]) -> list[str]:
    """``--set`` values checked: each ``data.KEY=VALUE`` or ``data/GROUP=OPTION``, the way ``train.py``
    takes the same override.

    Raises:
        ConfigError: ``--set <value>: ...`` naming the first value that is not ``data.KEY=VALUE``.
    """
    from flakeseg.errors import ConfigError

    for value in values:
        key = value.split("=", 1)[0]
        # data.KEY=VALUE, or data/GROUP=OPTION: an option of a config group of the data set
        # (data/classes=four), as train.py takes both
        if "=" not in value or not key.startswith(("data.", "data/")) or key in ("data.", "data/"):
            hint = f"; did you mean --set data.{value}?" if "=" in value and not set(".+/") & set(key) else ""
            raise ConfigError(f"--set {value}: only data.KEY=VALUE or data/GROUP=OPTION can be set{hint}")
    return list(values)


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _cannot_write_under(folders: Sequence[Path]) -> str | None:
    """Why nothing can be written under the first of ``folders`` that exists (``path`` itself or its
    ancestors, nearest first), or ``None``: it is a file, or this user may not write there (checked
    before a model is loaded, so a run never fails at its first output)."""
    for folder in folders:
        if folder.exists():
            if not folder.is_dir():
                return f"{folder} is a file, not a folder"
            if not os.access(folder, os.W_OK | os.X_OK):
                return f"{folder} is not writable"
            return None
    return None


def output_folder_problem(path: Path, option: str) -> str | None:
    """Why ``path`` cannot be ``option``'s output folder, in one line, or ``None``."""
    if path.exists() and not path.is_dir():
        return f"{option} {path}: is a file, not a folder"
    if (blocker := _cannot_write_under([path, *path.parents])) is not None:
        return f"{option} {path}: {blocker}"
    return None


def output_file_problem(
    path: Path, option: str, suffixes: Sequence[str], kind: str, taken: Mapping[Path, str] | None = None
) -> str | None:
    """Why ``path`` cannot be ``option``'s output file, in one line, or ``None``: it must end in one of
    ``suffixes`` (``kind``: what the file is, for the message), not be a folder, and not be a file the
    command reads or writes otherwise (``taken``: path -> what it is): writing it would destroy that."""
    if path.suffix.lower() not in suffixes:
        return f"{option} {path}: {kind} is a {' or '.join(suffixes)} file"
    if path.is_dir():
        return f"{option} {path}: is a folder; name the file, e.g. {path / ('out' + suffixes[0])}"
    for other, what in (taken or {}).items():
        if _same_path(path, Path(other)):
            return f"{option} {path}: is {what}; writing there would destroy it"
    if (blocker := _cannot_write_under(list(path.parents))) is not None:
        return f"{option} {path}: {blocker}"
    return None
