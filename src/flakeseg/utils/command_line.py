"""The argument parser of every ``flakeseg`` command: a usage mistake is one line on stderr and exit
status 2, instead of argparse's usage block (the options are one ``--help`` away)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["ArgumentParser", "fail"]


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors are ``error: <message>`` alone; its sub-parsers
    are of this class too (argparse makes them with the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message.splitlines()[0]}\n" if message else "error: bad arguments\n")


def fail(message: str, status: int = 1) -> NoReturn:
    """Stop a command with one line on stderr (1: a data or file problem, 2: a usage mistake)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)
