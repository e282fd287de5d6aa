"""The report of ``flakeseg ablation``: ``ablation.md``, ``.csv``, ``.json`` and two plots.

- ``ablation_steps.png``: per data set, the headline scores after each step (where people would
  rather look than read);
- ``reliability_<dataset>.png``: reliability diagrams of held-out pixels and predicted flakes, for the
  first step (the paper's recipe) and the last two (the whole recipe without and with its last step).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flakeseg.utils.files import append_invocation, write_csv_atomic, write_json_atomic, write_text_atomic
from flakeseg.utils.plotting import pyplot, save_figure_atomic


def row_values(row: Any) -> dict[str, Any]:
    """One CSV row of a :class:`flakeseg.studies.ablation.Row` (scores empty when it failed)."""
    s = row.scores or {}

    def get(key: str, digits: int = 4) -> Any:
        value = s.get(key)
        return "" if value is None else round(float(value), digits)

    return {
        "dataset": row.dataset,
        "step": row.step.name,
        "label": row.step.label,
        "trained": row.trained,
        "cv_mean_class_acc": get("cv/mean_class_acc"),
        "cv_mean_class_acc_std": get("cv/mean_class_acc_std"),
        "cv_macro_precision": get("cv/macro_precision"),
        "cv_macro_precision_std": get("cv/macro_precision_std"),
        "cv_mean_iou": get("cv/mean_iou"),
        "cv_mean_iou_std": get("cv/mean_iou_std"),
        **{
            f"cv_flake_f1_{name}{floor}": get(f"cv/flake_f1_{name}{floor}")
            for name in ("monolayer", "bilayer")
            for floor in ("_device", "")
        },
        "cv_ece": get("cv/ece"),
        "cv_flake_ece": get("cv/flake_ece"),
        "test_region_accuracy": get("test/region_accuracy"),
        "test_region_accuracy_std": get("test/region_accuracy_std"),
        "test_mean_class_acc": get("test/mean_class_acc"),
        "test_macro_precision": get("test/macro_precision"),
        "test_models": s.get("test/models", ""),
        "postprocess_min_area": s.get("postprocess_min_area", ""),
        "test_temperature": get("test_temperature", 3),
        "train_seconds": "" if row.train_seconds is None else round(row.train_seconds, 1),
        "error": row.error or "",
        "run_dir": str(row.run_dir),
        "command": row.command,
    }


def _pm(values: Mapping[str, Any], key: str) -> str:
    if values[key] == "":
        return "–"
    std = values.get(f"{key}_std", "")
    return f"{values[key]:.3f}" if std in ("", 0.0) else f"{values[key]:.3f} ± {std:.3f}"


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "–" if value == "" or value is None else fmt.format(value)


def markdown_table(values: Sequence[Mapping[str, Any]]) -> str:
    """The table of one data set's rows."""
    lines = [
        "| step | CV flake F1 mono >= 600 px | CV flake F1 bi >= 600 px | CV flake F1 mono >= 100 px "
        "| CV flake F1 bi >= 100 px | CV mean per-class acc. | CV macro precision | CV mean IoU "
        "| CV ECE (pixels) | CV ECE (flakes) | train time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in values:
        if v["error"]:
            lines.append(f"| {v['label']} | failed: {v['error']} | | | | | | | | | |")
            continue
        extra = ""
        if v["postprocess_min_area"] not in ("", 0):
            extra += f" (min area {v['postprocess_min_area']} px)"
        if v["test_temperature"] not in ("", 1.0):
            extra += f" (T = {v['test_temperature']:.2f})"
        train = f"{v['train_seconds']:.0f} s" if v["trained"] else "same models"
        lines.append(
            f"| {v['label']}{extra} | {_num(v['cv_flake_f1_monolayer_device'])} "
            f"| {_num(v['cv_flake_f1_bilayer_device'])} | {_num(v['cv_flake_f1_monolayer'])} "
            f"| {_num(v['cv_flake_f1_bilayer'])} | {_pm(v, 'cv_mean_class_acc')} "
            f"| {_pm(v, 'cv_macro_precision')} | {_pm(v, 'cv_mean_iou')} | {_num(v['cv_ece'])} "
            f"| {_num(v['cv_flake_ece'])} | {train} |"
        )
    return "\n".join(lines)


def target_lines(values: Mapping[str, Any], targets: Mapping[str, float]) -> list[str]:
    """Which targets the last row meets, with its numbers."""
    checks = [
        ("cv_mean_class_acc", "CV mean per-class accuracy", ">="),
        ("cv_macro_precision", "CV macro precision", ">="),
        ("test_region_accuracy", "test region accuracy", ">="),
        ("cv_ece", "ECE of held-out pixels", "<="),
    ]
    lines = []
    for key, label, sense in checks:
        if key not in targets or values.get(key, "") == "":
            continue
        value, goal = float(values[key]), float(targets[key])
        met = value >= goal if sense == ">=" else value <= goal
        lines.append(f"- {label}: {value:.3f} (target {sense} {goal:g}): **{'met' if met else 'not met'}**")
    return lines


def plot_steps(values: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Per data set, the headline scores after each step."""
    plt = pyplot()
    datasets = list(dict.fromkeys(v["dataset"] for v in values))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False)
    series = (
        ("cv_flake_f1_monolayer_device", "CV flake F1 monolayer >= 600 px"),
        ("cv_flake_f1_bilayer_device", "CV flake F1 bilayer >= 600 px"),
        ("cv_mean_class_acc", "CV mean per-class acc."),
        ("cv_macro_precision", "CV macro precision"),
        ("cv_ece", "CV ECE (pixels)"),
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        subset = [v for v in values if v["dataset"] == dataset]
        x = list(range(len(subset)))
        for key, label in series:
            y = [math.nan if v[key] == "" else float(v[key]) for v in subset]
            ax.plot(x, y, marker="o", label=label)
        ax.set_xticks(x, [v["step"] for v in subset], rotation=45, ha="right", fontsize=8)
        ax.set(ylim=(0, 1), title=dataset, ylabel="score")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(series), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend under the axes
    save_figure_atomic(fig, path)


def plot_reliability_pair(rows: Sequence[Any], path: Path, title: str) -> None:
    """Pixels and flakes: accuracy against confidence for each of ``rows`` (legend: the step's name)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 5.4))
    for ax, key, what in (
        (axes[0], "cv/pixel_reliability", "held-out pixels"),
        (axes[1], "cv/flake_reliability", "predicted flakes"),
    ):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for row in rows:
            used = [b for b in row.scores[key] if b["count"] > 0]
            ax.plot(
                [b["confidence"] for b in used],
                [b["accuracy"] for b in used],
                marker="o",
                label=f"up to {row.step.name} ({sum(b['count'] for b in used)} {what.split()[-1]})",
            )
        ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=what)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7)  # under the axes
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def _history(out: Path) -> list[dict[str, Any]]:
    import json

    try:
        return json.loads((out / "invocations.json").read_text())
    except (OSError, ValueError):
        return []


def write_report(
    profile: Any, rows: Sequence[Any], out: Path, wall: float, final: bool = False
) -> list[dict[str, Any]]:
    """Write ``ablation.csv``, ``ablation.json``, ``ablation.md`` and the plots for ``rows`` so far.

    ``final``: the invocation is over; its wall time joins ``invocations.json`` (listed in the report).
    """
    values = [row_values(r) for r in rows]
    write_csv_atomic(out / "ablation.csv", values)  # columns: row_values's keys
    write_json_atomic(
        out / "ablation.json",
        [{**v, "scores": r.scores} for v, r in zip(values, rows, strict=True)],
    )
    datasets = list(dict.fromkeys(v["dataset"] for v in values))
    history = (
        append_invocation(
            out, wall, profile=profile.name, datasets=datasets, rows=len(values), wall_s=round(wall, 1)
        )
        if final
        else _history(out)
    )
    device = "unknown"
    for r in rows:
        metrics_file = r.run_dir / "metrics.json"
        if r.scores and metrics_file.exists():
            import json

            device = json.loads(metrics_file.read_text()).get("device", device)
            break
    scored = [v for v in values if v["cv_mean_class_acc"] != ""]
    if scored:
        plot_steps(scored, out / "ablation_steps.png", f"ablation, profile {profile.name}")
    lines = [
        f"# The recipe step by step: profile `{profile.name}`",
        "",
        f"`flakeseg ablation --profile {profile.name} --dataset "
        f"{'all' if len(datasets) > 1 else datasets[0]} --out {out}`; device: {device}. Written "
        f"{time.strftime('%Y-%m-%d %H:%M')}; a rerun resumes (trains only what is missing). Wall time per "
        "invocation:",
        "",
        *[f"- {h['started']}: {h['wall_s']:.0f} s ({', '.join(h['datasets'])})" for h in history],
        *([f"- this one, so far: {wall:.0f} s"] if not final else []),
        "",
        "Each step adds to all the steps above it. Training steps cross-validate the recipe so far "
        f"({profile.folds} folds, the same folds for every step); evaluation steps reuse the last trained "
        "models. *CV flake F1*: predicted flakes as `flakeseg predict` lists them matched one-to-one to the "
        "labelled flakes at IoU >= 0.5 on the images' stored pixels, matches pooled over every held-out "
        "fold. Other *CV* columns: the held-out fold of each fold model, mean ± std over folds. *ECE*: "
        "top-label expected calibration error of all held-out pixels (15 bins), and of predicted flakes "
        "of at least 100 px (10 bins; right when matched at IoU >= 0.5). With temperature scaling each "
        "fold's temperature is fitted on the other folds, so the ECE stays held-out. Post-processing "
        "chooses `predict`'s min area and min confidence on the CV folds by flake F1. Every choice is "
        "made on these CV columns; test-split numbers (in ablation.csv and ablation.json) are not for "
        "choosing and are not shown here.",
        "",
        f"Common overrides: `{' '.join(profile.common)}`.",
        "",
    ]
    for dataset in datasets:
        subset = [v for v in values if v["dataset"] == dataset]
        lines += [f"## {dataset}", "", markdown_table(subset), ""]
        last = subset[-1]
        if profile.targets and last["cv_mean_class_acc"] != "" and len(subset) == len(profile.steps):
            lines += [
                f"Targets ({profile.name} profile), last row:",
                "",
                *target_lines(last, profile.targets),
                "",
            ]
        ds_rows = [r for r in rows if r.dataset == dataset and r.scores]
        if len(ds_rows) >= 2:
            figure = f"reliability_{dataset}.png"
            shown = list({id(r): r for r in (ds_rows[0], *ds_rows[-2:])}.values())
            plot_reliability_pair(shown, out / figure, f"{dataset}: reliability on held-out folds")
            lines += [f"![{dataset}: reliability diagrams]({figure})", ""]
    if scored:
        lines += ["![scores after each step](ablation_steps.png)", ""]
    lines += [
        "## Commands",
        "",
        "Each trained row is this `train.py` run (the evaluation steps reuse it):",
        "",
        "```",
    ]
    lines += list(dict.fromkeys(v["command"] for v in values if v["command"]))
    lines += ["```", ""]
    write_text_atomic(out / "ablation.md", "\n".join(lines))
    return values
