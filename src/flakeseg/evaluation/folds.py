"""Cross-validation summaries: mean and std over folds, the CV table, learning curves.

``python -m flakeseg.evaluation.folds <run>/metrics.json`` prints a run's CV table as markdown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from flakeseg.utils.plotting import pyplot, save_figure_atomic

__all__ = ["cv_markdown", "cv_table", "plot_learning_curves", "print_cv_table", "summarize_folds"]


def summarize_folds(folds: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean and sample standard deviation over folds of every scalar ``val/...`` entry, as ``cv/...``.

    With a single fold the standard deviation is reported as 0.
    """
    keys = [k for k, v in folds[0].items() if k.startswith("val/") and isinstance(v, float)]
    summary: dict[str, float] = {}
    for key in keys:
        values = np.array([fold[key] for fold in folds], dtype=np.float64)
        name = "cv/" + key.removeprefix("val/")
        summary[name] = float(values.mean())
        summary[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def cv_table(
    folds: Sequence[Mapping[str, Any]], summary: Mapping[str, float], class_names: Sequence[str], title: str
) -> Table:
    """A rich table: one row per fold (``repeat.fold`` with repeated CV), then mean +- std."""
    table = Table(title=title, title_justify="left")
    table.add_column("fold", justify="right")
    columns = [
        ("mean class acc", "mean_class_acc"),
        ("macro precision", "macro_precision"),
        ("mean IoU", "mean_iou"),
    ] + [(f"acc {n}", f"acc_{n}") for n in class_names]
    for label, _ in columns:
        table.add_column(label, justify="right")
    table.add_column("train s", justify="right")
    repeated = any(fold.get("repeat") for fold in folds)
    for fold in folds:
        table.add_row(
            f"{fold.get('repeat', 0)}.{fold['fold']}" if repeated else str(fold["fold"]),
            *[f"{fold['val/' + key]:.3f}" for _, key in columns],
            f"{fold['train_seconds']:.0f}",
        )
    table.add_section()
    table.add_row(
        "mean ± std",
        *[f"{summary['cv/' + key]:.3f} ± {summary['cv/' + key + '_std']:.3f}" for _, key in columns],
        "",
        style="bold",
    )
    return table


def print_cv_table(folds, summary, class_names, title: str, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal:  # logs and pipes: wide enough that no column is cut
        console.width = max(console.width, 140)
    console.print(cv_table(folds, summary, class_names, title))
    line = flake_line(summary, class_names)
    if line:
        console.print(line, highlight=False)


def flake_line(summary: Mapping[str, Any], class_names: Sequence[str], prefix: str = "cv") -> str:
    """What a screening lab gets, in one line: per flake class, F1 (precision, recall; found / false /
    missed) of the device-sized flakes (>= 600 px, IoU 0.5), pooled over the folds' held-out images;
    empty when the run has no flake scores."""
    parts = []
    for name in class_names:
        tail = f"{name}_device"
        if f"{prefix}/flake_f1_{tail}" not in summary:
            continue
        parts.append(
            f"{name} F1 {summary[f'{prefix}/flake_f1_{tail}']:.3f} "
            f"(P {summary[f'{prefix}/flake_precision_{tail}']:.3f}, "
            f"R {summary[f'{prefix}/flake_recall_{tail}']:.3f}; "
            f"{summary[f'{prefix}/flake_tp_{tail}']} found / {summary[f'{prefix}/flake_fp_{tail}']} false / "
            f"{summary[f'{prefix}/flake_fn_{tail}']} missed)"
        )
    if not parts:
        return ""
    where = "held-out folds pooled" if prefix == "cv" else f"{prefix} split"
    return f"flakes >= 600 px, IoU 0.5 ({where}): " + "; ".join(parts)


def plot_learning_curves(folds: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Validation mean per-class accuracy and macro precision per epoch, one line per fold, as a PNG."""
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for key, ax, label in (
        ("val/mean_class_acc", axes[0], "mean per-class accuracy"),
        ("val/macro_precision", axes[1], "macro precision"),
    ):
        for fold in folds:
            history = fold.get("val_history") or []
            ax.plot([h["epoch"] for h in history], [h[key] for h in history], label=f"fold {fold['fold']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {label}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def cv_markdown(metrics: Mapping[str, Any]) -> str:
    """A markdown table of a ``metrics.json``: one row per fold, then mean +- std."""
    names = list(metrics["class_names"])
    keys = ["mean_class_acc", "macro_precision", "mean_iou"] + [f"acc_{n}" for n in names]
    header = (
        ["fold", "mean class acc", "macro precision", "mean IoU"] + [f"acc {n}" for n in names] + ["train s"]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for fold in metrics["folds"]:
        cells = (
            [str(fold["fold"])] + [f"{fold['val/' + k]:.3f}" for k in keys] + [f"{fold['train_seconds']:.0f}"]
        )
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**mean ± std**"] + [
        f"**{metrics['cv/' + k]:.3f} ± {metrics['cv/' + k + '_std']:.3f}**" for k in keys
    ]
    lines.append("| " + " | ".join([*cells, f"{metrics.get('wall_seconds', 0):.0f} (CV wall)"]) + " |")
    return "\n".join(lines) + "\n"


def _main() -> None:
    """Print the CV table of one or more metrics.json files as markdown."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flakeseg.evaluation.folds", description=_main.__doc__)
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json files written by train.py")
    for path in parser.parse_args().metrics:
        metrics = json.loads(path.read_text())
        model, config = metrics["config"]["model"], metrics["config"]
        print(
            f"### {metrics['data']}: {model['name']} (base {model.get('base_channels')}), "
            f"loss={config['loss']['name']}, augment={config['augment']['name']}\n"
        )
        print(f"`{path}`, {metrics['device']}, complete: {metrics['complete']}\n")
        print(cv_markdown(metrics))


if __name__ == "__main__":
    _main()
