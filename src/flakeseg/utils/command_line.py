"""The argument parser of every ``flakeseg`` command: a usage mistake is one line on stderr and exit
status 2, instead of argparse's usage block (the options are one ``--help`` away)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["SET_HELP", "ArgumentParser", "data_overrides", "fail"]

#: ``--set`` of every command that reads a data config: the key as train.py spells it
SET_HELP = "override a data config value as train.py spells it, e.g. --set data.root=/data/mos2 (repeatable)"


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
    """``--set`` values checked: each ``data.KEY=VALUE``, the way ``train.py`` takes the same override.

    Raises:
        ConfigError: ``--set <value>: ...`` naming the first value that is not ``data.KEY=VALUE``.
    """
    from flakeseg.errors import ConfigError

    for value in values:
        key = value.split("=", 1)[0]
        if "=" not in value or not key.startswith("data.") or key == "data.":
            hint = f"; did you mean --set data.{value}?" if "=" in value and "." not in key else ""
            raise ConfigError(f"--set {value}: only data.KEY=VALUE can be set{hint}")
    return list(values)
