"""The training entry point: ``python train.py`` in a checkout, ``flakeseg train`` or
``python -m flakeseg.cli.train`` anywhere the package is installed. It only composes the config
(``conf/train.yaml``, found through the package) and runs the task; ``--help`` imports no Lightning.

The overrides are checked before Hydra starts the job, so a mistake is one line on stderr with no log
prefix: an unknown key names the closest known ones (exit status 2), an unknown group option lists the
available ones (2), a ``+key=value`` adding a section nothing reads is refused (2), and a bad value
names its key (1).

Examples:
    python train.py                                   # CPU preset, 3-fold CV on MoS2
    python train.py data=graphene
    python train.py -m optim.lr=1.0e-5,1.0e-4,1.0e-3  # one job per learning rate
    python train.py experiment=paper trainer=gpu      # the paper's size, on a GPU
    python train.py --help                            # every config group and value
"""

import re
import sys
from collections.abc import Sequence
from typing import Any

import hydra
from omegaconf import DictConfig

from flakeseg.utils.command_line import fail
from flakeseg.utils.config_files import CONFIG_DIR

#: Hydra's own flags: with any of them Hydra answers (help, config printing, another config), unchecked
HYDRA_FLAGS = (
    "-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-p", "--package",
    "--resolve", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
    "-sc", "--shell-completion", "--experimental-rerun",
)  # fmt: skip
MULTIRUN_FLAGS = ("-m", "--multirun")


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def run_job(cfg: DictConfig) -> float:
    from flakeseg.stages.task import run_task  # Lightning is imported here, not for --help

    return run_task(cfg)


def main() -> None:
    """``python train.py OVERRIDES``: the overrides in ``sys.argv`` checked, then Hydra's job."""
    if quick_help(sys.argv[1:]):
        return
    problem = override_problem(sys.argv[1:])
    if problem is not None:
        fail(*problem)
    run_job()


def main_argv(argv: list[str]) -> int:
    """``flakeseg train ARGS``: Hydra reads its overrides from ``sys.argv``."""
    sys.argv = ["flakeseg train", *argv]
    main()
    return 0


def config_groups() -> dict[str, list[str]]:
    """The application's config groups (``data``, ``data/classes``, ...) and their options, read from
    the config folder (Hydra's own groups, ``hydra/...``, left out as its ``--help`` does)."""
    groups = {}
    for folder in sorted(p for p in CONFIG_DIR.rglob("*") if p.is_dir()):
        name = folder.relative_to(CONFIG_DIR).as_posix()
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if options and name != "hydra" and not name.startswith("hydra/"):
            groups[name] = options
    return dict(sorted(groups.items()))


def quick_help(argv: Sequence[str]) -> bool:
    """``--help`` (or ``-h``) with nothing but overrides: Hydra's help text, the config groups listed
    from the folder rather than through Hydra's config loader (which builds one repository per group,
    a second per call; 1.2 s of the 1.4 s its help took). Returns whether help was printed."""
    import string

    if not {"-h", "--help"} & set(argv):
        return False
    rest = [arg for arg in argv if arg not in ("-h", "--help")]
    if any(arg.split("=")[0] in HYDRA_FLAGS or arg in MULTIRUN_FLAGS for arg in rest):
        return False  # Hydra's other flags with --help: Hydra answers
    from omegaconf import OmegaConf

    try:
        cfg = _compose(rest)
    except Exception:  # a bad override: Hydra's own help reports it as before
        return False
    job = OmegaConf.to_container(cfg, resolve=False)
    del job["hydra"]
    groups = "".join(f"{group}: {', '.join(options)}\n" for group, options in config_groups().items())
    text = string.Template(cfg.hydra.help.template).safe_substitute(
        APP_CONFIG_GROUPS=groups, CONFIG=OmegaConf.to_yaml(OmegaConf.create(job))
    )
    print(text)
    return True


def _compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of the values of a config as plain data."""
    if not isinstance(node, dict):
        return [prefix.removesuffix(".")]
    return [k for key, child in node.items() for k in _keys(child, f"{prefix}{key}.")]


def _closest(key: str, cfg: DictConfig) -> str:
    """``closest: a, b`` of the keys of ``cfg`` nearest ``key`` (difflib), else how to list them."""
    import difflib

    from omegaconf import OmegaConf

    known = [
        k
        for k in _keys(OmegaConf.to_container(cfg, resolve=False))
        if k.startswith("hydra.") == key.startswith("hydra.")
    ]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    return f"closest: {', '.join(close)}" if close else "`python train.py --cfg job` lists the keys"


def override_problem(argv: Sequence[str]) -> tuple[str, int] | None:
    """``(message, exit status)`` for the first override of ``argv`` that cannot run, else ``None``.

    With ``-m``, each sweep is checked at its first value (the other values are each a job's own).
    Anything this check does not recognise is left to Hydra, which reports it as before.
    """
    if any(arg.split("=")[0] in HYDRA_FLAGS for arg in argv):
        return None
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    lines = [arg for arg in argv if arg not in MULTIRUN_FLAGS]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(lines)
        if multirun:
            lines = [
                f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
                if o.is_sweep_override()
                else o.input_line
                for o in parsed
            ]
    except OverrideParseException as exc:
        return str(exc).strip().splitlines()[0], 2
    except Exception:  # a sweep form this check cannot expand (glob): Hydra's launcher judges it
        return None
    try:
        cfg = _compose(lines)
    except MissingConfigException as exc:
        group, _, option = (exc.missing_cfg_file or "").rpartition("/")
        if not group or exc.options is None:
            return None
        return f"{group}={option}: no such option; available: {', '.join(exc.options) or 'none'}", 2
    except ConfigCompositionException as exc:
        unknown = re.match(r"Could not override '([^']+)'", str(exc))
        if unknown is None:
            return str(exc).strip().splitlines()[0], 2
        key = unknown.group(1)
        rest = [line for line, o in zip(lines, parsed, strict=True) if o.key_or_group != key]
        try:
            return f"{key}: no such key; {_closest(key, _compose(rest))}", 2
        except Exception:
            return f"{key}: no such key", 2
    except Exception:  # anything else (an interpolation, a launcher's config): Hydra's own report
        return None
    choices = cfg.hydra.runtime.choices
    added = [o for o in parsed if o.is_add() and not o.key_or_group.startswith("hydra")]
    added = [o for o in added if o.key_or_group not in choices]  # +group=option (+selected=...) is read
    if added:
        base = _compose([line for line, o in zip(lines, parsed, strict=True) if o not in added])
        for o in added:
            section = o.key_or_group.split(".")[0]
            if section not in base:  # no code reads a section the config does not have
                return (
                    f"{o.input_line}: adds {o.key_or_group}, which nothing reads (not in the config); "
                    f"{_closest(o.key_or_group, base)}",
                    2,
                )
    from flakeseg.errors import ConfigError
    from flakeseg.stages.config_checks import validate_config

    try:
        validate_config(cfg)
    except ConfigError as exc:
        return str(exc), 1
    return None


if __name__ == "__main__":
    main()
