"""Where the configs live (``conf/``), and reading the YAML profiles of the studies."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from flakeseg.errors import ConfigError


def _config_dir() -> Path:
    """``conf/``: inside the installed package (a wheel carries it as ``flakeseg/conf``), else at the top
    of the checkout the package is imported from (an editable install, or ``src/`` on the path)."""
    package = Path(__file__).resolve().parents[1]
    inside = package / "conf"
    return inside if (inside / "train.yaml").is_file() else package.parents[1] / "conf"


#: the config folder of ``train.py``, ``python -m flakeseg.cli.train`` and every study's profiles
CONFIG_DIR = _config_dir()


def load_profile(name_or_path: str, profile_dir: Path) -> tuple[Path, dict]:
    """A profile file (``<profile_dir>/<name>.yaml``, or a path) read and resolved to plain data.

    An unknown name stops with one line that lists the known profiles.
    """
    path = profile_path(name_or_path, profile_dir)
    return path, OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def profile_path(name_or_path: str, profile_dir: Path) -> Path:
    """The file of a profile (``<profile_dir>/<name>.yaml``, or a path); an unknown name is one line
    that lists the known profiles."""
    path = Path(name_or_path)
    if not path.suffix:
        path = profile_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profile_dir.glob("*.yaml")))
        raise ConfigError(f"--profile: no profile {name_or_path!r} (known: {known}, or a .yaml path)")
    return path


def yaml_float(value: float) -> str:
    """A float written so that YAML and Hydra read it back as a float (``1.0e-05``, not ``1e-05``)."""
    text = repr(float(value))
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        return f"{mantissa}.0e{exponent}"
    return text


def data_selection(name_or_path: str) -> list[str]:
    """The overrides that select a data config: ``data=<name>`` for one in ``conf/data/``, or for the path
    of one elsewhere (``import-labels --conf-dir DIR`` writes ``DIR/data/<name>.yaml``) that override and
    the ``hydra.searchpath`` that finds it.

    Raises:
        ConfigError: a path that is no file, or one not inside a ``data/`` folder (Hydra's group).
    """
    if not name_or_path.endswith((".yaml", ".yml")):
        return [f"data={name_or_path}"]
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"--data: no data config file {name_or_path}")
    if path.parent.name != "data":
        raise ConfigError(f"--data: {name_or_path}: a data config file sits in a folder named data/")
    return [f"data={path.stem}", *search_path(path.parent.parent)]


def search_path(conf_dir: Path) -> list[str]:
    """``hydra.searchpath=[file://DIR]`` where ``conf_dir`` is not the package's config folder, else none."""
    conf_dir = conf_dir.resolve()
    return [] if conf_dir == CONFIG_DIR.resolve() else [f"hydra.searchpath=[file://{conf_dir}]"]


def train_hint(name: str, conf_dir: Path) -> str:
    """The command that fine-tunes the shipped MoS2 model on the data set ``name`` whose config is
    ``conf_dir/data/<name>.yaml`` (with the search path that finds it outside ``conf/``)."""
    return " ".join(["python train.py", f"data={name}", "model.init_from=mos2", *search_path(conf_dir)])


def compose_data_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The ``data`` section of ``train.py``'s config for a data set (its name, or the path of its YAML:
    :func:`data_selection`) and ``data.KEY=VALUE`` overrides, as plain data.

    Raises:
        ConfigError: ``--data/--set: ...`` in one line for an unknown data set or key.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException

    selection = data_selection(name)
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[*selection, *overrides])
    except MissingConfigException as exc:
        if exc.missing_cfg_file == f"data/{name}":  # Hydra looked everywhere it searches
            raise ConfigError(
                f"--data {name}: no such data set; available: {', '.join(exc.options or [])} "
                "(or the path of a data YAML, as import-labels writes it)"
            ) from None
        raise ConfigError(f"--data/--set: {str(exc).splitlines()[0]}") from None
    except HydraException as exc:
        raise ConfigError(f"--data/--set: {str(exc).splitlines()[0]}") from None
    return OmegaConf.to_container(cfg.data, resolve=True)
