"""The paper's protocol end to end: Table-1 grid by 3-fold CV, selection, retraining, test-set report.

``flakeseg reproduce --profile paper --dataset mos2`` (``make reproduce``) runs, per
data set:

1. **grid**: one Hydra multirun of ``train.py`` over every Table-1 cell (augmentation x loss) x
   learning rate x batch size. The epoch axis costs no extra runs: each job trains to the largest
   epoch budget and is validated after each budget (``cv.eval_epochs``), since with a constant
   learning rate a shorter run is a prefix of the longest one.
2. **selection**: per cell, the (lr, batch, epochs) with the best CV mean per-class accuracy (ties:
   macro precision), written as a Hydra config ``selected/<data>-<cell>.yaml``.
3. **test**: one Hydra multirun of ``train.py stage=test +selected=...`` retraining each selected
   config on the whole training split and scoring the test split.
4. **report**: ``table1.md/.csv`` beside the paper's values, the test metrics, curves and figures of
   the cell with the best CV score, and ``report.md``.

Everything lives under ``--out`` (default ``outputs/reproduce``). Rerunning the same command resumes:
jobs whose results are complete are skipped (``resume=true``), failed ones are retried.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flakeseg.errors import ConfigError, FlakesegError
from flakeseg.studies.common import study_parser
from flakeseg.utils.config_files import CONFIG_DIR, load_profile
from flakeseg.utils.config_files import yaml_float as _fmt
from flakeseg.utils.files import append_invocation, write_csv_atomic, write_text_atomic

log = logging.getLogger("flakeseg.studies.reproduce")

PROFILE_DIR = CONFIG_DIR / "reproduce"
#: root train.py of a checkout (CONFIG_DIR is conf/ beside it; in a wheel it is flakeseg/conf)
TRAIN_SCRIPT = CONFIG_DIR.parent / "train.py"
DATASETS = ("mos2", "graphene")

#: Saito et al. 2019, Table 1 (MoS2, 3-fold CV mean per-class accuracy): (augment, loss) -> score.
PAPER_TABLE1 = {
    "mos2": {
        ("none", "ce"): 0.584,
        ("none", "weighted_ce"): 0.643,
        ("gray", "ce"): 0.46,
        ("gray", "weighted_ce"): 0.56,
        ("contrast", "ce"): 0.678,
        ("contrast", "weighted_ce"): 0.789,
        ("gray_contrast", "ce"): 0.633,
        ("gray_contrast", "weighted_ce"): 0.723,
    }
}
#: The paper's test-set figures (MoS2): region accuracy, and recall at precision 0.9 per class.
PAPER_TEST = {
    "mos2": {
        "region_accuracy": 0.733,
        "humans": "0.67 ± 0.11",
        "recall_at_0.9": {"monolayer": 0.76, "bilayer": 0.94},
    }
}
AUGMENT_LABELS = {
    "none": "plain",
    "gray": "+grayscale",
    "contrast": "+contrast",
    "gray_contrast": "+grayscale +contrast",
}
LOSS_LABELS = {"ce": "U-Net", "weighted_ce": "U-Net, weighted loss"}
#: Files of the test stage copied next to table1.md for the best cell.
TEST_OUTPUTS = (
    "test_metrics.json",
    "regions.csv",
    "roc_pr.csv",
    "roc_pr.png",
    "confusion_matrix.png",
    "examples.png",
)


@dataclass
class Profile:
    """A reproduction profile (``conf/reproduce/<name>.yaml``)."""

    name: str
    experiment: str
    augment: list[str]
    loss: list[str]
    lr: list[float]
    batch_size: list[int]
    epochs: list[int]
    launcher: str = "basic"
    overrides: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, name_or_path: str) -> Profile:
        path, raw = load_profile(name_or_path, PROFILE_DIR)
        try:
            profile = cls(
                name=path.stem,
                experiment=str(raw["experiment"]),
                augment=[str(a) for a in raw["cells"]["augment"]],
                loss=[str(v) for v in raw["cells"]["loss"]],
                lr=[float(v) for v in raw["grid"]["lr"]],
                batch_size=[int(v) for v in raw["grid"]["batch_size"]],
                epochs=sorted(int(v) for v in raw["grid"]["epochs"]),
                launcher=str(raw.get("launcher", "basic")),
                overrides=[str(o) for o in raw.get("overrides") or []],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: bad profile ({type(exc).__name__}: {exc})") from None
        for key in ("augment", "loss", "lr", "batch_size", "epochs"):
            if not getattr(profile, key):
                raise ConfigError(f"{path}: {key} is empty")
        return profile

    @property
    def cells(self) -> list[tuple[str, str]]:
        return list(itertools.product(self.augment, self.loss))

    def cost(self, folds: int = 3) -> dict[str, int]:
        """Training runs and epochs of the grid per data set, with and without the epoch-prefix trick."""
        runs_per_budget = len(self.cells) * len(self.lr) * len(self.batch_size) * folds
        return {
            "configs": runs_per_budget // folds * len(self.epochs),
            "runs_naive": runs_per_budget * len(self.epochs),
            "runs": runs_per_budget,
            "epochs_naive": runs_per_budget * sum(self.epochs),
            "epochs": runs_per_budget * max(self.epochs),
        }


def _entry() -> list[str]:
    """How to start ``train.py``: the checkout's script, relative to the working directory when below it
    (shorter, copyable commands), or the installed package's entry point (a wheel has no train.py)."""
    if not TRAIN_SCRIPT.is_file():
        return ["-m", "flakeseg.cli.train"]
    try:
        return [str(TRAIN_SCRIPT.relative_to(Path.cwd()))]
    except ValueError:
        return [str(TRAIN_SCRIPT)]


def _multirun_command(profile: Profile, out: Path, subdir: str, sweep: Sequence[str]) -> list[str]:
    """``train.py -m`` from the profile's preset and overrides, sweeping ``sweep``, jobs in ``out/subdir``."""
    return [
        sys.executable,
        *_entry(),
        "-m",
        f"experiment={profile.experiment}",
        *profile.overrides,
        *sweep,
        "task_name=reproduce",
        f"hydra/launcher={profile.launcher}",
        f"hydra.sweep.dir={out}",
        f"hydra.sweep.subdir={subdir}",
    ]


def grid_command(profile: Profile, datasets: Sequence[str], out: Path) -> list[str]:
    """The Hydra multirun of step 1 (all data sets, cells, learning rates and batch sizes)."""
    sweep = [
        f"data={','.join(datasets)}",
        f"augment={','.join(profile.augment)}",
        f"loss={','.join(profile.loss)}",
        f"optim.lr={','.join(_fmt(v) for v in profile.lr)}",
        f"data.batch_size={','.join(str(v) for v in profile.batch_size)}",
        f"cv.eval_epochs=[{','.join(str(e) for e in profile.epochs)}]",
        f"trainer.max_epochs={max(profile.epochs)}",
    ]
    subdir = "${data.name}/grid/${augment.name}-${loss.name}/lr${optim.lr}-bs${data.batch_size}"
    return _multirun_command(profile, out, subdir, sweep)


def test_command(profile: Profile, selected: Sequence[str], out: Path) -> list[str]:
    """The Hydra multirun of step 3: one ``stage=test`` job per selected config."""
    sweep = ["stage=test", f"+selected={','.join(selected)}", f"hydra.searchpath=[file://{out.resolve()}]"]
    return _multirun_command(profile, out, "${data.name}/test/${augment.name}-${loss.name}", sweep)


def collect_grid(out: Path, dataset: str, profile: Profile) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (cell, lr, batch, epochs) from the grid's ``metrics.json`` files, and the failures.

    A job of the profile without a complete ``metrics.json`` is a failure, reported with the last
    error line of its log.
    """
    rows, failures = [], []
    for (augment, loss), lr, batch in itertools.product(profile.cells, profile.lr, profile.batch_size):
        job = out / dataset / "grid" / f"{augment}-{loss}" / f"lr{lr}-bs{batch}"
        try:
            metrics = json.loads((job / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        budgets = metrics.get("budgets") or {}
        if not metrics.get("complete") or not all(str(e) in budgets for e in profile.epochs):
            failures.append(f"{job}: {_last_error(job)}")
            continue
        for epochs in profile.epochs:
            summary = budgets[str(epochs)]
            rows.append(
                {
                    "data": dataset,
                    "augment": augment,
                    "loss": loss,
                    "lr": lr,
                    "batch_size": batch,
                    "epochs": epochs,
                    **{k: round(v, 6) for k, v in summary.items() if k.startswith("cv/")},
                    "job": str(job),
                }
            )
    return rows, failures


def _last_error(job: Path) -> str:
    """Why a job has no complete results: the error line of its ``status.json``, else of its log."""
    try:
        status = json.loads((job / "status.json").read_text())
    except (OSError, ValueError):
        status = {}
    if status.get("error"):
        return f"{status.get('state', 'failed')}: {status['error']}"
    log_file = job / "train.log"
    if not log_file.is_file():
        return "did not run (no log)"
    lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if "ERROR" in ln or "error" in ln]
    return lines[-1].split("] - ", 1)[-1] if lines else "incomplete (killed or interrupted)"


def select_best(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (augment, loss) cell, the row with the best CV mean per-class accuracy.

    Ties go to the higher macro precision, then to the cheaper run (fewer epochs, larger batch) and the
    smaller learning rate, so the choice never depends on file order.
    """
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["augment"], row["loss"])
        rank = (
            row["cv/mean_class_acc"],
            row["cv/macro_precision"],
            -row["epochs"],
            row["batch_size"],
            -row["lr"],
        )
        if key not in best or rank > best[key]["_rank"]:
            best[key] = {**row, "_rank": rank}
    return {k: {kk: vv for kk, vv in v.items() if kk != "_rank"} for k, v in best.items()}


def selected_config(row: Mapping[str, Any]) -> str:
    """A Hydra config (``+selected=...``) holding a selected cell's data set and hyperparameters."""
    return (
        "# @package _global_\n"
        f"# Selected by 3-fold CV: mean per-class accuracy {row['cv/mean_class_acc']:.4f} "
        f"± {row['cv/mean_class_acc_std']:.4f}, macro precision {row['cv/macro_precision']:.4f}\n"
        "defaults:\n"
        f"  - override /data: {row['data']}\n"
        f"  - override /augment: {row['augment']}\n"
        f"  - override /loss: {row['loss']}\n"
        f"optim:\n  lr: {_fmt(row['lr'])}\n"
        f"data:\n  batch_size: {row['batch_size']}\n"
        f"trainer:\n  max_epochs: {row['epochs']}\n"
    )


def write_selected(out: Path, best: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    """Write ``<out>/selected/<data>-<augment>-<loss>.yaml`` per cell; return the option names."""
    names = []
    for (augment, loss), row in sorted(best.items()):
        name = f"{row['data']}-{augment}-{loss}"
        path, text = out / "selected" / f"{name}.yaml", selected_config(row)
        stale = out / row["data"] / "test" / f"{augment}-{loss}"
        if path.is_file() and path.read_text() != text and stale.exists():
            # the grid changed the choice (e.g. a failed job finished on a rerun): old test results are stale
            log.info("selection of %s changed; removing its old test stage %s", name, stale)
            shutil.rmtree(stale)
        write_text_atomic(path, text)
        names.append(name)
    return names


def _f3(value: float | None) -> str:
    """Three decimals, or ``n/a`` for a value that could not be computed (stored as null)."""
    return "n/a" if value is None else f"{value:.3f}"


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def table1_rows(dataset: str, profile: Profile, best, tests: Mapping[tuple[str, str], Mapping]) -> list[dict]:
    """Table 1 as rows: per cell our CV score, the paper's, the selected config and the test score."""
    rows = []
    for cell in profile.cells:
        row = best.get(cell)
        test = tests.get(cell) or {}
        paper = PAPER_TABLE1.get(dataset, {}).get(cell)
        rows.append(
            {
                "augment": cell[0],
                "loss": cell[1],
                "cv_mean_class_acc": round(row["cv/mean_class_acc"], 4) if row else "",
                "cv_mean_class_acc_std": round(row["cv/mean_class_acc_std"], 4) if row else "",
                "cv_macro_precision": round(row["cv/macro_precision"], 4) if row else "",
                "cv_macro_precision_std": round(row["cv/macro_precision_std"], 4) if row else "",
                "paper_cv_mean_class_acc": paper if paper is not None else "",
                "lr": row["lr"] if row else "",
                "batch_size": row["batch_size"] if row else "",
                "epochs": row["epochs"] if row else "",
                "test_mean_class_acc": _round(test["test/mean_class_acc"]) if test else "",
                "test_macro_precision": _round(test["test/macro_precision"]) if test else "",
                "test_region_accuracy": _round(test["test/region_accuracy"]) if test else "",
            }
        )
    return rows


def table1_markdown(dataset: str, profile: Profile, best, tests) -> str:
    """Table 1 in the paper's layout: augmentation per row, U-Net and weighted-loss U-Net per column."""
    losses = profile.loss
    header = ["augmentation"]
    for loss in losses:
        label = LOSS_LABELS.get(loss, loss)
        header += [
            f"{label}: CV (ours)",
            f"{label}: paper",
            f"{label}: selected lr / batch / epochs",
            f"{label}: test",
        ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    top = max(best.values(), key=lambda r: (r["cv/mean_class_acc"], r["cv/macro_precision"]), default=None)
    for augment in profile.augment:
        cells = [AUGMENT_LABELS.get(augment, augment)]
        for loss in losses:
            row, test = best.get((augment, loss)), tests.get((augment, loss))
            paper = PAPER_TABLE1.get(dataset, {}).get((augment, loss))
            score = _pm(row["cv/mean_class_acc"], row["cv/mean_class_acc_std"]) if row else "failed"
            if row is top:
                score = f"**{score}**"
            cells += [
                score,
                f"{paper:.3f}" if paper is not None else "n/a",
                f"{_fmt(row['lr'])} / {row['batch_size']} / {row['epochs']}" if row else "",
                _f3(test["test/mean_class_acc"]) if test else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_tests(out: Path, dataset: str, profile: Profile) -> dict[tuple[str, str], dict[str, Any]]:
    """The complete ``test_metrics.json`` of each cell's test stage."""
    tests = {}
    for augment, loss in profile.cells:
        path = out / dataset / "test" / f"{augment}-{loss}" / "test_metrics.json"
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if payload.get("complete"):
            tests[(augment, loss)] = payload
    return tests


def dataset_report(
    dataset: str,
    profile: Profile,
    out: Path,
    best: Mapping[tuple[str, str], Mapping[str, Any]],
    tests: Mapping[tuple[str, str], Mapping[str, Any]],
    failures: Sequence[str],
    commands: Sequence[Sequence[str]],
    history: Sequence[Mapping[str, Any]],
) -> str:
    """``report.md`` of one data set; image links are relative to ``out/<dataset>/``."""
    cost = profile.cost()
    top_cell = max(
        best, key=lambda c: (best[c]["cv/mean_class_acc"], best[c]["cv/macro_precision"]), default=None
    )
    lines = [
        f"# Reproduction of Saito et al. 2019 on {dataset}: profile `{profile.name}`",
        "",
        "Wall time, for all data sets of the run together, per invocation of the command (a rerun skips "
        "finished work):",
        "",
        *[
            f"- {h['started']}: grid {h['grid_s']:.0f} s, test stage {h['test_s']:.0f} s, "
            f"total {h['total_s']:.0f} s (data sets {', '.join(h['datasets'])})"
            for h in history
        ],
        "",
    ]
    test_top = tests.get(top_cell) if top_cell else None
    device = (test_top or {}).get("device") or _grid_device(best)
    lines += [f"Device: {device}.", "", "## Commands", "", "```"]
    lines += [" ".join(_shell_quote(a) for a in c) for c in commands]
    lines += [
        "```",
        "",
        "## Grid",
        "",
        f"{len(profile.cells)} cells (augmentation {profile.augment} x loss {profile.loss}) x learning rate "
        f"{profile.lr} x batch size {profile.batch_size} x epochs {profile.epochs}, 3-fold CV, Adam; "
        f"preset `experiment={profile.experiment}` with {profile.overrides or 'no further overrides'}.",
        "",
        f"- configurations: {cost['configs']}; trainings without the epoch-prefix trick: "
        f"{cost['runs_naive']} "
        f"({cost['epochs_naive']} epochs)",
        f"- with it (validate after epochs {profile.epochs} of one run): {cost['runs']} trainings "
        f"({cost['epochs']} epochs), {cost['runs_naive'] / cost['runs']:.0f}x fewer runs and "
        f"{cost['epochs_naive'] / cost['epochs']:.2f}x fewer epochs",
        "",
        "## Table 1: CV mean per-class accuracy (mean ± std over 3 folds)",
        "",
        "Bold: the cell with the best CV score, whose test results follow. "
        '"paper": Saito et al. Table 1 (MoS2 only). "test": the selected config retrained on the whole '
        "training split, scored on the test split.",
        "",
        table1_markdown(dataset, profile, best, tests),
    ]
    if failures:
        lines += ["## Failed jobs", "", *[f"- {f}" for f in failures], ""]
    if top_cell and test_top:
        lines += _test_section(dataset, top_cell, test_top)
    lines += ["## Selected configs", ""]
    for cell in profile.cells:
        if cell in best:
            name = f"{dataset}-{cell[0]}-{cell[1]}"
            lines += [
                f"`selected/{name}.yaml`:",
                "",
                "```yaml",
                selected_config(best[cell]).rstrip(),
                "```",
                "",
            ]
    return "\n".join(lines) + "\n"


def _grid_device(best: Mapping) -> str:
    for row in best.values():
        try:
            return json.loads((Path(row["job"]) / "metrics.json").read_text())["device"]
        except (OSError, ValueError, KeyError):
            continue
    return "unknown"


def _shell_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg.replace(sys.executable, "python"))


def _test_section(dataset: str, cell: tuple[str, str], test: Mapping[str, Any]) -> list[str]:
    paper = PAPER_TEST.get(dataset, {})
    names = test["class_names"]
    cfg = test["config"]
    lines = [
        f"## Test split: best cell ({AUGMENT_LABELS.get(cell[0], cell[0])}, "
        f"{LOSS_LABELS.get(cell[1], cell[1])})",
        "",
        f"Retrained on all {len(test['train_ids'])} training images for "
        f"{cfg['trainer']['max_epochs']} epochs "
        f"(lr {_fmt(cfg['optim']['lr'])}, batch {cfg['data']['batch_size']}, {test['train_seconds']:.0f} s), "
        f"scored on {len(test['test_ids'])} test images at scale {cfg['data']['scale']}.",
        "",
        "| metric | ours | paper |",
        "| --- | --- | --- |",
        f"| pixel mean per-class accuracy | {_f3(test['test/mean_class_acc'])} | |",
        f"| pixel macro precision | {_f3(test['test/macro_precision'])} | |",
        f"| pixel mean IoU | {_f3(test['test/mean_iou'])} | |",
        f"| region accuracy ({test['test/regions']} regions of >= {test['test/region_min_area_px']} px, "
        f"`regions.csv`) | {_f3(test['test/region_accuracy'])} "
        f"| {paper.get('region_accuracy', 'n/a')} (non-expert humans {paper.get('humans', 'n/a')}) |",
    ]
    for name in names:
        lines.append(
            f"| {name}: precision / recall / IoU | {_f3(test[f'test/precision_{name}'])} / "
            f"{_f3(test[f'test/acc_{name}'])} / {_f3(test[f'test/iou_{name}'])} | |"
        )
    for name, curve in test["test/curves"].items():
        paper_recall = paper.get("recall_at_0.9", {}).get(name, "n/a")
        lines.append(
            f"| {name} vs rest: ROC AUC / average precision | {_f3(curve['auc'])} / "
            f"{_f3(curve['average_precision'])} | |"
        )
        lines.append(
            f"| {name} vs rest: recall at precision 0.9 | {_f3(curve['recall_at_precision_0.9'])} "
            f"| {paper_recall} |"
        )
    lines += [
        "",
        "![ROC and precision-recall](roc_pr.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![test images: image, ground truth, prediction](examples.png)",
        "",
        "Files: `test_metrics.json`, `regions.csv` (one row per ground-truth region), `roc_pr.csv`.",
        "",
    ]
    return lines


def run_multirun(command: Sequence[str], label: str) -> int:
    """Run a Hydra multirun, streaming its output; its exit code is reported, not raised."""
    log.info("%s: %s", label, " ".join(_shell_quote(a) for a in command))
    return subprocess.run(list(command), check=False).returncode


def reproduce(profile: Profile, datasets: Sequence[str], out: Path) -> dict[str, Any]:
    """Run the protocol for ``datasets`` into ``out``; return per-data-set summaries."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    wall: dict[str, float] = {}
    grid = grid_command(profile, datasets, out)
    code = run_multirun(grid, "grid")
    wall["grid"] = time.perf_counter() - started
    if code:
        log.warning("the grid multirun exited with %d; collecting what finished", code)

    best_by_data, failures_by_data, selected = {}, {}, []
    for dataset in datasets:
        rows, failures = collect_grid(out, dataset, profile)
        (out / dataset).mkdir(parents=True, exist_ok=True)
        if rows:
            write_csv_atomic(out / dataset / "grid.csv", rows)
        best_by_data[dataset] = select_best(rows)
        failures_by_data[dataset] = failures
        selected += write_selected(out, best_by_data[dataset])
    commands = [grid]
    if selected:
        test = test_command(profile, selected, out)
        commands.append(test)
        test_started = time.perf_counter()
        code = run_multirun(test, "test stage")
        wall["test"] = time.perf_counter() - test_started
        if code:
            log.warning("the test-stage multirun exited with %d; reporting what finished", code)
    wall["total"] = time.perf_counter() - started
    history = append_invocation(
        out,
        wall["total"],
        profile=profile.name,
        datasets=list(datasets),
        grid_s=round(wall.get("grid", 0.0), 1),
        test_s=round(wall.get("test", 0.0), 1),
        total_s=round(wall["total"], 1),
    )

    summaries = {}
    for dataset in datasets:
        best, failures = best_by_data[dataset], list(failures_by_data[dataset])
        tests = read_tests(out, dataset, profile)
        failures += [
            f"{out / dataset / 'test' / f'{a}-{loss}'}: {_last_error(out / dataset / 'test' / f'{a}-{loss}')}"
            for (a, loss) in best
            if (a, loss) not in tests
        ]
        target = out / dataset
        write_csv_atomic(target / "table1.csv", table1_rows(dataset, profile, best, tests))
        write_text_atomic(target / "table1.md", table1_markdown(dataset, profile, best, tests))
        top = max(
            best, key=lambda c: (best[c]["cv/mean_class_acc"], best[c]["cv/macro_precision"]), default=None
        )
        if top in tests:
            source = target / "test" / f"{top[0]}-{top[1]}"
            for name in TEST_OUTPUTS:
                shutil.copy2(source / name, target / name)
        report = dataset_report(dataset, profile, out, best, tests, failures, commands, history)
        write_text_atomic(target / "report.md", report)
        summaries[dataset] = {"best": top, "failures": failures, "report": str(target / "report.md")}
    index = [f"# Reproduction, profile `{profile.name}`", ""]
    for dataset in datasets:
        index += [
            f"- [{dataset}]({dataset}/report.md): best cell {summaries[dataset]['best']}, "
            f"{len(summaries[dataset]['failures'])} failed jobs"
        ]
    write_text_atomic(out / "report.md", "\n".join(index) + "\n")
    return summaries


def main(argv: Sequence[str] | None = None) -> int:
    args = study_parser(
        "flakeseg reproduce",
        "Reproduce Saito et al. 2019: Table-1 grid by 3-fold CV, selection, test-set report. "
        "Rerun the same command to resume after a crash or kill.",
        "reproduce",
        "cpu_quick",
        DATASETS,
        None,
        "output folder (default: outputs/reproduce for the paper profile, else outputs/reproduce_<profile>)",
    ).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        profile = Profile.load(args.profile)
        datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]
        out = args.out or Path("outputs/reproduce" + ("" if profile.name == "paper" else f"_{profile.name}"))
        summaries = reproduce(profile, datasets, out)
    except FlakesegError as exc:  # a user error: its line alone, no log prefix
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = sum(len(s["failures"]) for s in summaries.values())
    for dataset, summary in summaries.items():
        log.info("%s: best cell %s; report %s", dataset, summary["best"], summary["report"])
    if failed:
        log.error("%d jobs failed; see the reports. Rerun the same command to retry them.", failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
