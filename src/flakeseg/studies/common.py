"""What the studies share: profiles (``conf/<study>/<name>.yaml``) and the command line (``--profile``,
``--dataset``, ``--out``, logging, one line per failed job and a non-zero exit)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.utils.command_line import ArgumentParser
from flakeseg.utils.config_files import CONFIG_DIR, load_profile, profile_path

__all__ = [
    "StudyProfile",
    "profile_study_main",
    "require_distinct_names",
    "run_study",
    "study_parser",
]


@dataclass
class StudyProfile:
    """A study profile: its name (the file's stem), data sets, folds, overrides common to every job,
    and what a subclass adds (its jobs), parsed by :meth:`parse` and checked by :meth:`check`."""

    name: str
    datasets: list[str]
    folds: int
    common: list[str]

    #: the study, ``conf/<study>/`` holds its profiles
    study: ClassVar[str]

    @classmethod
    def load(cls, name_or_path: str) -> Any:
        """The profile ``conf/<study>/<name_or_path>.yaml`` (or a path); a bad file is one line."""
        path, raw = load_profile(name_or_path, CONFIG_DIR / cls.study)
        try:
            profile = cls(
                name=path.stem,
                datasets=[str(d) for d in raw["datasets"]],
                folds=int(raw.get("folds", 3)),
                common=[str(o) for o in raw.get("common") or []],
                **cls.parse(raw),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: bad {cls.study} profile ({type(exc).__name__}: {exc})") from None
        profile.check(path)
        return profile

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """The subclass's fields from the file's contents."""
        raise NotImplementedError

    def check(self, path: Path) -> None:
        """Refuse what parses but cannot run (one line naming ``path``)."""


def require_distinct_names(path: Path, what: str, names: Sequence[str]) -> None:
    """A profile's jobs are folders named after them: at least one, no two alike."""
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"{path}: {what} need distinct names, got {list(names)}")


def study_parser(
    prog: str,
    description: str,
    group: str,
    default_profile: str,
    datasets: Sequence[str],
    default_out: Path | None,
    out_help: str = "output folder",
) -> argparse.ArgumentParser:
    """The arguments of a study whose profiles are ``conf/<group>/<name>.yaml``; an unknown profile is a
    usage error, found before the study's code (and torch) loads."""

    def existing_profile(name_or_path: str) -> str:
        try:
            profile_path(name_or_path, CONFIG_DIR / group)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("--profile: ")) from None
        return name_or_path

    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--profile",
        type=existing_profile,
        default=default_profile,
        help=f"conf/{group}/<name>.yaml or a path (default: {default_profile})",
    )
    parser.add_argument(
        "--dataset", default="all", choices=[*datasets, "all"], help="data set(s) (default: all)"
    )
    parser.add_argument("--out", type=Path, default=default_out, help=out_help)
    return parser


def run_study(
    logger: logging.Logger,
    run: Callable[[], Sequence[Any]],
    failure: Callable[[Any], str | None],
    report: Callable[[], Path],
) -> int:
    """Run a study; a user error is one line; each failed job (``failure`` says why, or ``None``) is one
    line; the exit status is 1 when anything failed."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        results = run()
    except FlakesegError as exc:  # a user error: its line alone, no log prefix
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failures = [line for line in map(failure, results) if line]
    for line in failures:
        logger.error("%s", line)
    logger.info("report: %s", report())
    return 1 if failures else 0


def study_summary(module: str) -> str:
    """The first paragraph of a study module's docstring, read from its source: ``--help`` shows it
    without importing the study (and torch)."""
    import ast

    source = Path(importlib.util.find_spec(module).origin).read_text()
    return (ast.get_docstring(ast.parse(source)) or "").split("\n\n")[0]


def profile_study_main(
    argv: Sequence[str] | None,
    name: str,
    module: str,
    profile_class: str,
    run_function: str,
    job_name: Callable[[Any], str],
) -> int:
    """``flakeseg <name>``: a study over the data sets of a profile whose results each carry
    ``dataset`` and ``error``; the report is ``<out>/<name>.md``. ``module`` (its ``profile_class``
    with a ``load`` and its ``run_function(profile, datasets, out)``) is imported after parsing."""
    args = study_parser(
        f"flakeseg {name}",
        study_summary(module),
        name,
        "cpu",
        ("mos2", "graphene"),
        Path(f"outputs/{name}"),
    ).parse_args(argv)

    def start() -> Sequence[Any]:
        study = importlib.import_module(module)
        profile = getattr(study, profile_class).load(args.profile)
        run = getattr(study, run_function)
        return run(profile, profile.datasets if args.dataset == "all" else [args.dataset], args.out)

    return run_study(
        logging.getLogger(f"flakeseg.studies.{name}"),
        start,
        lambda r: f"{r.dataset} / {job_name(r)}: {r.error}" if r.error else None,
        lambda: args.out / f"{name}.md",
    )
