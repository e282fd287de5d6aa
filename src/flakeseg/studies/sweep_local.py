"""Run a W&B sweep file without a W&B server: ``flakeseg sweep-local sweeps/bayes.yaml --count 10``.

The runs come from W&B's own sweep engine (the ``sweeps`` package, what the W&B server runs), asked
with ``sweeps.next_run`` for one run at a time. Each run is the sweep file's ``command`` (``train.py``
with the generated overrides) in its own process and run folder; its ``metric`` is read from the
run's ``metrics.json`` and handed back to the engine, so ``bayes`` search learns from the results.
Rerunning with the same ``--out`` continues the sweep: earlier runs are read back, not redone.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.utils.command_line import ArgumentParser
from flakeseg.utils.config_files import yaml_float
from flakeseg.utils.files import write_csv_atomic, write_json_atomic

log = logging.getLogger("flakeseg.studies.sweep_local")
RESULTS_FILE = "sweep_local.json"


def load_sweep(path: Path) -> dict[str, Any]:
    """A sweep file, checked against W&B's sweep schema."""
    with warnings.catch_warnings():  # the engine's pydantic models are pydantic-1 style
        warnings.simplefilter("ignore")
        import sweeps

    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a sweep (expected a mapping of method, metric, parameters, ...)")
    # `run_cap` is newer than the engine's schema; sweep-local enforces it itself
    problems = sweeps.schema_violations_from_proposed_config(
        {k: v for k, v in config.items() if k != "run_cap"}
    )
    if problems:
        raise ConfigError(f"{path}: not a valid W&B sweep: {problems[0]}")
    if "metric" not in config:
        raise ConfigError(f"{path}: metric: missing (sweep-local reads it from metrics.json)")
    return config


def override_value(value: Any) -> str:
    """A parameter value in Hydra's override syntax (floats as YAML floats, None as null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return yaml_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    return str(value)


def run_argv(
    sweep: Mapping[str, Any], params: Mapping[str, Any], extra: Sequence[str], run_dir: Path
) -> list[str]:
    """The sweep's ``command`` with W&B's macros filled in, then ``extra`` and the run folder."""
    args = [f"{k}={override_value(v['value'])}" for k, v in params.items()]
    command = sweep.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    argv: list[str] = []
    for part in command:
        if part == "${env}":
            continue
        if part in ("${interpreter}", "python", "python3"):
            argv.append(sys.executable)
        elif part == "${program}":
            argv.append(str(sweep.get("program", "train.py")))
        elif part in ("${args_no_hyphens}",):
            argv += args
        elif part == "${args}":
            argv += [f"--{a}" for a in args]
        elif part == "${args_override_hydra}":
            argv += [f"++{a}" for a in args]
        else:
            argv.append(str(part))
    return [*argv, *extra, f"hydra.run.dir={run_dir}"]


def _sweep_run(record: Mapping[str, Any], metric: str):
    from sweeps import RunState, SweepRun

    value = record.get("value")
    state = RunState.finished if value is not None else RunState.failed
    summary = {metric: value} if value is not None else {}
    # by alias: the engine's pydantic model does not fill fields by name under pydantic 2
    return SweepRun(
        name=record["name"],
        state=state,
        config=record["config"],
        summaryMetrics=summary,
        sampledHistory=[summary] if summary else [],
    )


def run_sweep(sweep_path: Path, count: int, out: Path, extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run up to ``count`` new runs of the sweep into ``out``; return every run's record."""
    sweep = load_sweep(sweep_path)  # first: it imports the engine with its import-time warnings silenced
    import sweeps

    metric = sweep["metric"]["name"]
    results_path = out / RESULTS_FILE
    records: list[dict[str, Any]] = []
    if results_path.is_file():
        previous = json.loads(results_path.read_text())
        if previous.get("sweep") != sweep:
            raise ConfigError(f"{results_path}: holds another sweep; use a new --out")
        records = previous["runs"]
        log.info("continuing %s: %d runs done", results_path, len(records))
    shadowed = sorted({o.split("=", 1)[0].lstrip("+~") for o in extra} & set(sweep["parameters"]))
    if shadowed:
        log.warning(
            "extra overrides replace the swept parameters %s: runs use your values, while the engine "
            "believes its suggestions ran",
            shadowed,
        )
    program = Path(str(sweep.get("program", "train.py")))
    if not program.is_file():
        raise ConfigError(f"{sweep_path}: program: {program} not found from {Path.cwd()}")
    for _ in range(count):
        with warnings.catch_warnings():  # the engine's pydantic-1 style config and GP fits warn loudly
            warnings.simplefilter("ignore")
            engine_cfg = {k: v for k, v in sweep.items() if k != "run_cap"}
            suggestion = sweeps.next_run(engine_cfg, [_sweep_run(r, metric) for r in records], validate=True)
        if "run_cap" in sweep and len(records) >= int(sweep["run_cap"]):
            log.info("the sweep reached its run_cap of %s runs", sweep["run_cap"])
            break
        if suggestion is None:
            log.info("the sweep's %s search has no runs left", sweep["method"])
            break
        name = f"run_{len(records):03d}"
        run_dir = out / name
        params = {k: {"value": _plain(v["value"])} for k, v in suggestion.config.items()}
        argv = run_argv(sweep, params, extra, run_dir)
        log.info("%s: %s", name, " ".join(a for a in argv[2:] if not a.startswith("hydra.run.dir")))
        start = time.perf_counter()
        code = subprocess.run(argv, check=False).returncode
        value = _metric(run_dir / "metrics.json", metric) if code == 0 else None
        records.append(
            {
                "name": name,
                "config": params,
                "value": value,
                "exit_code": code,
                "seconds": round(time.perf_counter() - start, 1),
                "run_dir": str(run_dir),
            }
        )
        write_json_atomic(results_path, {"sweep": sweep, "metric": metric, "runs": records})
        log.info("%s: %s = %s (exit %d)", name, metric, value, code)
    rows = [
        {
            "name": r["name"],
            **{k: v["value"] for k, v in r["config"].items()},
            metric: r["value"],
            "exit_code": r["exit_code"],
        }
        for r in records
    ]
    if rows:
        write_csv_atomic(
            out / "sweep_local.csv", rows, columns=list(dict.fromkeys(k for row in rows for k in row))
        )
    return records


def _plain(value: Any) -> Any:
    """numpy scalars from the engine as plain Python values (JSON, Hydra)."""
    return value.item() if hasattr(value, "item") else value


def _metric(path: Path, metric: str) -> float | None:
    try:
        value = json.loads(path.read_text()).get(metric)
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _show(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def print_summary(records: Sequence[Mapping[str, Any]], metric: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep-local: {len(records)} runs, {metric}", title_justify="left")
    keys = list(dict.fromkeys(k for r in records for k in r["config"]))
    for column in ["run", *keys, metric, "exit", "s"]:
        table.add_column(column, justify="right")
    done = [r for r in records if r["value"] is not None]
    best = max(done, key=lambda r: r["value"], default=None)
    for r in records:
        value = "failed" if r["value"] is None else f"{r['value']:.4f}"
        style = "bold" if r is best else None
        table.add_row(
            r["name"],
            *[_show(r["config"].get(k, {}).get("value", "")) for k in keys],
            value,
            str(r["exit_code"]),
            f"{r['seconds']:.0f}",
            style=style,
        )
    Console().print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="flakeseg sweep-local",
        description="Run a W&B sweep file with W&B's own sweep engine, without a W&B server. Extra "
        "arguments after the options are passed to every run as Hydra overrides.",
    )
    parser.add_argument("sweep", type=Path, help="sweep file, e.g. sweeps/bayes.yaml")
    parser.add_argument("--count", type=int, default=10, help="new runs to start (default: 10)")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder of the runs (default: outputs/sweep_local/<name>)"
    )
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    out = args.out or Path("outputs/sweep_local") / args.sweep.stem
    try:
        if args.count < 1:
            raise ConfigError(f"--count: must be at least 1, got {args.count}")
        records = run_sweep(args.sweep, args.count, out, extra)
    except FlakesegError as exc:  # a user error: its line alone, no log prefix
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_summary(records, load_sweep(args.sweep)["metric"]["name"])
    log.info("results: %s", out / RESULTS_FILE)
    return 0 if any(r["value"] is not None for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
